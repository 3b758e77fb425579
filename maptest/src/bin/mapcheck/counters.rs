//! The counters of the stats file, from the contract's "statistics" paragraph: `opens` counts
//! open files (not descriptors), `mappings` counts live VMAs (through failed mmaps, forks and
//! splits by munmap).

use maptest::{MapOptions, OrFail, Stats, PAGE_SIZE};

use crate::children::{spawn, Signal};
use crate::ctx::{page, try_map, Ctx, RO};
use crate::expect::{ensure, expect_counts, expect_errno, Want};
use crate::harness::TestResult;

/// `opens` counts open files: +1 per open, none for dup, -1 when the last fd is closed.
pub(crate) fn counter_opens(ctx: &Ctx) -> TestResult {
    let base = Stats::read()?;
    let opens = |n| Want::default().opens(n).mappings(0);
    let a = ctx.open(false)?;
    expect_counts("after one open", &base, opens(1))?;
    let b = ctx.open(true)?;
    expect_counts("after a second open", &base, opens(2))?;
    let a2 = a.try_clone().or_fail("dup")?;
    expect_counts(
        "after dup of the first fd (same open file)",
        &base,
        opens(2),
    )?;
    drop(a);
    expect_counts(
        "after closing the first fd (its dup still open)",
        &base,
        opens(2),
    )?;
    drop(a2);
    expect_counts("after closing the dup too", &base, opens(1))?;
    drop(b);
    expect_counts("after closing everything", &base, opens(0))
}

/// `mappings` counts live mappings: +1 per mmap, nothing for a failed one, -1 per munmap.
pub(crate) fn counter_mappings(ctx: &Ctx) -> TestResult {
    let base = Stats::read()?;
    let f = ctx.open(false)?;
    let counts = |m| Want::default().mappings(m).opens(1);
    expect_counts("after open", &base, counts(0))?;
    let a = ctx.map(&f, 0, ctx.pages, RO)?;
    expect_counts("after one mmap", &base, counts(1))?;
    let b = ctx.map(&f, 1, 1, RO)?;
    expect_counts("after a second mmap", &base, counts(2))?;
    a.read(0);
    b.read(0);
    expect_counts("after touching both", &base, counts(2))?;
    expect_errno(
        "mmap at the end of the buffer",
        try_map(&f, ctx.size, PAGE_SIZE, RO),
        libc::EINVAL,
    )?;
    let exec = try_map(&f, 0, ctx.size, MapOptions { exec: true, ..RO });
    ensure!(exec.is_err(), "mmap with PROT_EXEC succeeded");
    expect_counts("after two failed mmap calls", &base, counts(2))?;
    drop(a);
    expect_counts("after unmapping the first", &base, counts(1))?;
    drop(b);
    expect_counts("after unmapping both", &base, counts(0))?;
    drop(f);
    expect_counts("after close", &base, Want::default().mappings(0).opens(0))
}

/// A forked child's copy of a mapping counts as a mapping; fork opens nothing.
pub(crate) fn counter_mappings_fork(ctx: &Ctx) -> TestResult {
    let base = Stats::read()?;
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    m.read(0);
    expect_counts("after mmap", &base, Want::default().mappings(1).opens(1))?;
    let (ready, go) = (Signal::new()?, Signal::new()?);
    let child = spawn(|| {
        ready.post(1)?;
        go.wait(1)
    })?;
    let check = ready.wait(1).and_then(|()| {
        expect_counts(
            "with a forked child alive",
            &base,
            Want::default().mappings(2).opens(1),
        )
    });
    let _ = go.post(1);
    let waited = child.wait().map_err(|e| format!("child: {e}"));
    check?;
    waited?;
    expect_counts(
        "after the child exited",
        &base,
        Want::default().mappings(1).opens(1),
    )?;
    drop(m);
    drop(f);
    expect_counts(
        "after munmap and close",
        &base,
        Want::default().mappings(0).opens(0),
    )
}

/// munmap in the middle splits a mapping in two; at the end nothing is left.
pub(crate) fn counter_mappings_split(ctx: &Ctx) -> TestResult {
    let base = Stats::read()?;
    let f = ctx.open(false)?;
    let mut head = ctx.map(&f, 0, ctx.pages, RO)?;
    expect_counts("after mmap", &base, Want::default().mappings(1))?;
    let mut tail = head.split_off(page(2));
    head.unmap_tail(PAGE_SIZE).or_fail("munmap of page 1")?;
    expect_counts(
        "after munmap of a page in the middle",
        &base,
        Want::default().mappings(2),
    )?;
    // Pages 2..n; at least two of them since the buffer has at least 4 pages.
    tail.unmap_tail(PAGE_SIZE)
        .or_fail("munmap of the last page")?;
    expect_counts(
        "after munmap of the last page as well",
        &base,
        Want::default().mappings(2),
    )?;
    head.read(0);
    tail.read(0);
    drop(head);
    expect_counts(
        "after unmapping the first piece",
        &base,
        Want::default().mappings(1),
    )?;
    drop(tail);
    drop(f);
    expect_counts(
        "after unmapping everything",
        &base,
        Want::default().mappings(0).opens(0),
    )
}
