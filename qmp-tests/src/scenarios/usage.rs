//! QEMU's open file descriptors and resident memory, from /proc.

use std::fs;

use anyhow::{ensure, Context, Result};

use crate::scenarios::Ctx;

/// A couple of fds may legitimately be in flight (e.g. an iothread's
/// eventfd) at the moment we look.
pub const FD_TOLERANCE: i64 = 2;
/// Measured on a release build, 120 runs of test_soak and
/// test_removal_paths_no_leak on both routes: VmRSS moved by -8 to +20
/// KiB. 25 times the largest of those still fails a leak of 16 KiB per
/// monitor over the shortest run (40 cycles).
pub const RSS_TOLERANCE_KIB: i64 = 512;

pub struct Usage {
    pub fds: i64,
    pub rss_kib: i64,
}

/// AddressSanitizer keeps freed memory in quarantine and its allocator
/// grows in large steps, so RSS says nothing about leaks there; its
/// LeakSanitizer reports them at exit instead (the sanitizer check).
pub fn has_asan(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|maps| maps.contains("libasan"))
}

pub fn usage(pid: u32) -> Result<Usage> {
    let fd_dir = format!("/proc/{pid}/fd");
    let fds = fs::read_dir(&fd_dir).with_context(|| format!("listing {fd_dir}"))?.count() as i64;
    let status_path = format!("/proc/{pid}/status");
    let status =
        fs::read_to_string(&status_path).with_context(|| format!("reading {status_path}"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {status_path}"))?;
    Ok(Usage { fds, rss_kib })
}

/// Runs `cycle` `cycles` times between two looks at QEMU's usage, notes
/// the figures as `what`, and fails if fds or (without ASan) memory grew.
/// The caller warms up first, so allocations made once are not counted.
pub fn bounded_growth(
    ctx: &mut Ctx,
    what: &str,
    cycles: u32,
    mut cycle: impl FnMut(&mut Ctx) -> Result<()>,
) -> Result<()> {
    let pid = ctx.machine.pid();
    let before = usage(pid)?;
    for i in 0..cycles {
        cycle(ctx).with_context(|| format!("{what}: cycle {} of {cycles}", i + 1))?;
    }
    let after = usage(pid)?;
    let fd_growth = after.fds - before.fds;
    let rss_growth = after.rss_kib - before.rss_kib;
    let asan = has_asan(pid);
    let rss_bound = if asan {
        "not bounded under AddressSanitizer: LeakSanitizer checks at exit".to_owned()
    } else {
        format!("bound +{RSS_TOLERANCE_KIB}")
    };
    let figures = format!(
        "{what}: {cycles} cycles: open fds {} -> {} ({fd_growth:+}, bound +{FD_TOLERANCE}), \
         VmRSS {} -> {} KiB ({rss_growth:+}, {rss_bound})",
        before.fds, after.fds, before.rss_kib, after.rss_kib
    );
    ctx.note(figures.clone());
    ensure!(
        fd_growth <= FD_TOLERANCE && (asan || rss_growth <= RSS_TOLERANCE_KIB),
        "QEMU leaked: {figures}"
    );
    Ok(())
}
