//! Demand paging, from the contract's "mmap" list: `mmap` maps nothing, each first touch of a
//! page faults once and maps exactly that page (seen with `mincore` and the `faults` and
//! `pages_mapped` counters), `MADV_DONTNEED` unmaps and a re-read faults again, `MAP_POPULATE`
//! maps everything at once, and faults are served under the per-VMA lock.

use maptest::{procfs, MapOptions, OrFail, Stats, PAGE_SIZE};
use rustix::mm::Advice;

use crate::ctx::{page, Ctx, RO};
use crate::expect::{ensure, expect_counts, expect_resident, Want};
use crate::harness::TestResult;

/// At most this many pages are touched one by one in the demand paging tests (all of them
/// for the default 16-page buffer), so that large buffers stay fast.
const SAMPLE_PAGES: usize = 16;

/// The pages the demand paging tests touch one by one, in a scrambled order: all pages (or
/// [`SAMPLE_PAGES`] spread over a large buffer), odd ones downwards, then even ones upwards.
fn touch_order(pages: usize) -> Vec<usize> {
    let sample: Vec<usize> = if pages <= SAMPLE_PAGES {
        (0..pages).collect()
    } else {
        (0..SAMPLE_PAGES)
            .map(|i| i * (pages - 1) / (SAMPLE_PAGES - 1))
            .collect()
    };
    let odd = sample.iter().skip(1).step_by(2).rev();
    let even = sample.iter().step_by(2);
    odd.chain(even).copied().collect()
}

/// MADV_DONTNEED unmaps pages; touching them again faults them in again, once each.
pub(crate) fn madvise_dontneed(ctx: &Ctx) -> TestResult {
    let pages = ctx.pages;
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, pages, RO)?;
    ctx.check_mapping("before MADV_DONTNEED", &m, 0)?;
    expect_resident("after reading every page", &m, &vec![true; pages])?;

    let base = Stats::read()?;
    m.madvise(0, ctx.size, Advice::LinuxDontNeed)
        .or_fail("madvise(MADV_DONTNEED) of the mapping")?;
    expect_resident(
        "after MADV_DONTNEED of the whole mapping",
        &m,
        &vec![false; pages],
    )?;
    expect_counts("after MADV_DONTNEED", &base, Want::default().faults(0))?;

    let retouch = [0, pages / 2, pages - 1];
    let mut want = vec![false; pages];
    for k in retouch {
        let off = page(k) + 5;
        let got = m.read(off);
        let exp = ctx.expected.byte(off);
        ensure!(
            got == exp,
            "re-read after MADV_DONTNEED at {off}: {got:#04x}, expected {exp:#04x}"
        );
        want[k] = true;
    }
    expect_resident("after re-touching pages 0, n/2 and n-1", &m, &want)?;
    expect_counts(
        "after re-touching 3 pages",
        &base,
        Want::default().faults(3),
    )?;
    ctx.check_mapping("after MADV_DONTNEED and re-reading", &m, 0)?;
    expect_counts(
        "after re-reading every page",
        &base,
        Want::default().faults(pages),
    )?;

    // A single page in the middle.
    let base = Stats::read()?;
    m.madvise(page(1), PAGE_SIZE, Advice::LinuxDontNeed)
        .or_fail("madvise(MADV_DONTNEED) of page 1")?;
    let mut want = vec![true; pages];
    want[1] = false;
    expect_resident("after MADV_DONTNEED of page 1", &m, &want)?;
    ctx.check_mapping("after MADV_DONTNEED of page 1 and re-reading", &m, 0)?;
    expect_resident("after re-reading page 1", &m, &vec![true; pages])?;
    expect_counts("after re-reading page 1", &base, Want::default().faults(1))
}

/// MAP_POPULATE maps every page at mmap time.
pub(crate) fn map_populate(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let base = Stats::read()?;
    let m = ctx.map(
        &f,
        0,
        ctx.pages,
        MapOptions {
            populate: true,
            ..RO
        },
    )?;
    expect_resident("right after mmap(MAP_POPULATE)", &m, &vec![true; ctx.pages])?;
    expect_counts(
        "after mmap(MAP_POPULATE)",
        &base,
        Want::default().faults(ctx.pages),
    )?;
    ctx.check_mapping("MAP_POPULATE mapping", &m, 0)?;
    expect_counts(
        "after reading the populated mapping",
        &base,
        Want::default().faults(ctx.pages),
    )
}

/// A fresh mapping has no page; touching page k maps exactly page k.
pub(crate) fn demand_paging_mincore(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    let mut want = vec![false; ctx.pages];
    expect_resident("fresh mapping, before any access", &m, &want)?;
    for k in touch_order(ctx.pages) {
        let off = page(k) + 1;
        let got = m.read(off);
        let exp = ctx.expected.byte(off);
        ensure!(
            got == exp,
            "first touch of page {k}, offset {off}: {got:#04x}, expected {exp:#04x}"
        );
        want[k] = true;
        expect_resident(&format!("after touching page {k}"), &m, &want)?;
    }
    // Pages mapped in one mapping are not mapped in a new one.
    let m2 = ctx.map(&f, 1, ctx.pages - 1, RO)?;
    expect_resident(
        "a second fresh mapping of the same pages",
        &m2,
        &vec![false; ctx.pages - 1],
    )
}

/// mmap faults nothing; each first touch of a page counts one fault, and maps one page,
/// later touches none.
pub(crate) fn demand_paging_faults(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let base = Stats::read()?;
    ensure!(
        base.fault_around == 1,
        "the module maps {} pages per fault; these tests need fault_around=1",
        base.fault_around
    );
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    expect_counts(
        "right after mmap",
        &base,
        Want::default().faults(0).pages_mapped(0),
    )?;
    for (i, k) in touch_order(ctx.pages).into_iter().enumerate() {
        m.read(page(k) + 3);
        expect_counts(
            &format!("after the first touch of page {k}"),
            &base,
            Want::default().faults(i + 1).pages_mapped(i + 1),
        )?;
        m.read(page(k) + PAGE_SIZE - 1);
        m.read(page(k) + 3);
        expect_counts(
            &format!("after touching page {k} again"),
            &base,
            Want::default().faults(i + 1).pages_mapped(i + 1),
        )?;
    }
    Ok(())
}

/// A `/proc/vmstat` counter.
fn vmstat(name: &str) -> Result<Option<u64>, String> {
    procfs::vmstat(name).or_fail("reading /proc/vmstat")
}

/// The faults are served under the per-VMA lock: none is refused there and retried under
/// `mmap_lock` (the driver's VMA operations have `map_pages`, see rust/vm_ops.rs).
pub(crate) fn faults_under_vma_lock(ctx: &Ctx) -> TestResult {
    let (Some(retry0), Some(ok0)) = (vmstat("vma_lock_retry")?, vmstat("vma_lock_success")?) else {
        eprintln!("faults_under_vma_lock: skipped, the kernel has no CONFIG_PER_VMA_LOCK_STATS");
        return Ok(());
    };
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    for k in 0..ctx.pages {
        m.read(page(k));
    }
    let retry = vmstat("vma_lock_retry")?.unwrap_or(0) - retry0;
    let ok = vmstat("vma_lock_success")?.unwrap_or(0) - ok0;
    ensure!(
        retry == 0,
        "{retry} of {} first touches were refused under the VMA lock and retried under mmap_lock",
        ctx.pages
    );
    ensure!(
        ok >= ctx.pages as u64,
        "only {ok} faults were served under the VMA lock, for {} first touches",
        ctx.pages
    );
    Ok(())
}
