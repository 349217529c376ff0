//! Many full cycles, checking QEMU's fds and memory stay where they were.

use std::fs;

use anyhow::{ensure, Context, Result};

use crate::scenarios::{hotplug::DynMon, lifecycle::full_cycle, Ctx};

pub const DEFAULT_CYCLES: u32 = 200;

/// Cycles before the baseline, so allocations made once (caches, the
/// first chardev of a kind) are not counted as growth.
const WARM_UP: u32 = 5;
/// A couple of fds may legitimately be in flight (e.g. an iothread's
/// eventfd) at the moment we look.
const FD_TOLERANCE: i64 = 2;
const RSS_TOLERANCE_KIB: i64 = 4 * 1024;

struct Usage {
    fds: i64,
    rss_kib: i64,
}

/// AddressSanitizer keeps freed memory in quarantine and its allocator
/// grows in large steps, so RSS says nothing about leaks there; its
/// LeakSanitizer reports them at exit instead (the sanitizer check).
fn has_asan(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|maps| maps.contains("libasan"))
}

fn usage(pid: u32) -> Result<Usage> {
    let fd_dir = format!("/proc/{pid}/fd");
    let fds = fs::read_dir(&fd_dir)
        .with_context(|| format!("listing {fd_dir}"))?
        .count() as i64;
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

pub fn soak(ctx: &mut Ctx) -> Result<()> {
    let mon = DynMon::new(ctx, "")?;
    let cycles = ctx.settings.soak_cycles;
    for i in 0..WARM_UP {
        full_cycle(ctx, &mon).with_context(|| format!("warm-up cycle {}", i + 1))?;
    }
    let pid = ctx.machine.pid();
    let before = usage(pid)?;
    for i in 0..cycles {
        full_cycle(ctx, &mon).with_context(|| format!("cycle {} of {cycles}", i + 1))?;
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
        "{cycles} cycles: open fds {} -> {} ({fd_growth:+}, bound +{FD_TOLERANCE}), \
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
