//! The runner's exit codes. The xtask reads them to tell a failed scenario
//! from a QEMU without monitor-add and from a broken harness, so they live
//! here, where both see the same constants.

pub const PASSED: u8 = 0;
pub const FAILED: u8 = 1;
pub const HARNESS: u8 = 2;
pub const NO_MONITOR_ADD: u8 = 3;
