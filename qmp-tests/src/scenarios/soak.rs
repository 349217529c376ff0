//! Many full cycles, checking QEMU's fds and memory stay where they were.

use anyhow::{Context, Result};

use crate::scenarios::{hotplug::DynMon, lifecycle::full_cycle, usage::bounded_growth, Ctx};

pub const DEFAULT_CYCLES: u32 = 200;

/// Cycles before the baseline, so allocations made once (caches, the
/// first chardev of a kind) are not counted as growth.
pub(super) const WARM_UP: u32 = 5;

pub fn soak(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    let cycles = ctx.settings.soak_cycles;
    for i in 0..WARM_UP {
        full_cycle(ctx, &mon).with_context(|| format!("warm-up cycle {}", i + 1))?;
    }
    bounded_growth(ctx, "full cycle", cycles, |ctx| full_cycle(ctx, &mon))
}
