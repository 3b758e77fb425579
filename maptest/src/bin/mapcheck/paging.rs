//! Demand paging, from the contract's "mmap" list: `mmap` maps nothing, each first touch of a
//! page faults once and maps exactly that page (seen with `mincore` and the `faults` and
//! `pages_mapped` counters), `MADV_DONTNEED` unmaps and a re-read faults again, `MAP_POPULATE`
//! maps everything at once, and faults are served under the per-VMA lock.

use std::os::unix::fs::FileExt;

use maptest::{procfs, MapOptions, Mapping, OrFail, Reservation, Stats, PAGE_SIZE};
use rustix::mm::Advice;

use crate::ctx::{page, Ctx, RO, RW_SHARED};
use crate::expect::{compare, ensure, expect_counts, expect_resident, Want};
use crate::harness::{skipped, TestResult};

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
/// `mmap_lock`. The driver's VMA operations set `VM_OPS_FAULT_VMA_LOCK` where the kernel has
/// it (the C patch of patches/), and have a `map_pages` that maps nothing where it has not
/// (see rust/vm_ops.rs); in our kernels this checks the C patch.
pub(crate) fn faults_under_vma_lock(ctx: &Ctx) -> TestResult {
    let (Some(retry0), Some(ok0)) = (vmstat("vma_lock_retry")?, vmstat("vma_lock_success")?) else {
        return skipped("the kernel has no CONFIG_PER_VMA_LOCK_STATS");
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

/// The kernel's fault injection for page allocations (`CONFIG_FAIL_PAGE_ALLOC`).
const FAIL_PAGE_ALLOC: &str = "/sys/kernel/debug/fail_page_alloc";

/// Arms `fail_page_alloc` to fail, once, the first page allocation of the calling thread made
/// under the kernel function at `start..end`; disarms it, restoring the defaults, when dropped.
struct FailOnePageAlloc;

impl FailOnePageAlloc {
    fn arm(start: u64, end: u64) -> Result<Self, String> {
        let armed = FailOnePageAlloc;
        for (file, value) in [
            ("ignore-gfp-wait", "N".to_string()),
            ("min-order", "0".to_string()),
            ("task-filter", "Y".to_string()),
            ("verbose", "1".to_string()),
            ("interval", "1".to_string()),
            ("require-start", format!("{start:#x}")),
            ("require-end", format!("{end:#x}")),
            ("times", "1".to_string()),
            ("probability", "100".to_string()),
        ] {
            std::fs::write(format!("{FAIL_PAGE_ALLOC}/{file}"), value)
                .or_fail(format!("writing {FAIL_PAGE_ALLOC}/{file}"))?;
        }
        // Last: from here on, this thread's allocations may fail.
        std::fs::write("/proc/thread-self/make-it-fail", "1").or_fail("make-it-fail")?;
        Ok(armed)
    }

    /// Disarms this thread at once, before anything else can allocate (a plain write of a
    /// constant: no heap, so no page fault of this process's own), and returns how many more
    /// failures it would have injected: 0 once it has failed its allocation.
    fn disarm(self) -> Result<String, String> {
        let stopped = std::fs::write("/proc/thread-self/make-it-fail", "0");
        let times = std::fs::read_to_string(format!("{FAIL_PAGE_ALLOC}/times"));
        drop(self);
        stopped.or_fail("make-it-fail")?;
        Ok(times.or_fail("times")?.trim().to_string())
    }
}

impl Drop for FailOnePageAlloc {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/thread-self/make-it-fail", "0");
        for (file, value) in [
            ("probability", "0"),
            ("require-start", "0"),
            ("require-end", "0xffffffffffffffff"),
            ("task-filter", "N"),
            ("min-order", "1"),
            ("ignore-gfp-wait", "Y"),
        ] {
            let _ = std::fs::write(format!("{FAIL_PAGE_ALLOC}/{file}"), value);
        }
    }
}

/// Where the kernel function `name` lies: its address and the next symbol's, from
/// `/proc/kallsyms` (root sees the real addresses).
fn kernel_function(name: &str) -> Result<(u64, u64), String> {
    let text = std::fs::read_to_string("/proc/kallsyms").or_fail("reading /proc/kallsyms")?;
    let mut addrs: Vec<u64> = Vec::new();
    let mut start = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(addr), Some(_), Some(sym)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        if sym == name && start.is_none() {
            start = Some(addr);
        }
        addrs.push(addr);
    }
    let start = start.ok_or(format!("{name} is not in /proc/kallsyms"))?;
    ensure!(start != 0, "/proc/kallsyms hides addresses (not root?)");
    let end = addrs
        .into_iter()
        .filter(|&a| a > start)
        .min()
        .ok_or(format!("no symbol after {name}"))?;
    Ok((start, end))
}

/// A fault whose page table cannot be allocated is tried again, and served then.
///
/// `vm_insert_page()` answers `-ENOMEM` both when the faulting address's page table could not
/// be allocated and when another thread's `madvise(MADV_DONTNEED)` emptied and freed it
/// between its allocation and its lock (`CONFIG_PT_RECLAIM`); the fault handler then tries
/// once more, through `vm_insert_pages()`, which tells the two apart (as fault-around does).
/// The race cannot be forced; an allocation failure can: `fail_page_alloc` (in the debug
/// kernel) fails this thread's first page allocation under `insert_page()` (the body of
/// `vm_insert_page()`, which calls it as a tail call, so that only `insert_page()` is on the
/// stack), once, while `pread()` copies the buffer into a mapping of the device where no page
/// table exists yet, a fault taken in the kernel: the first try's page table. The second try,
/// through `vm_insert_pages()`, runs in `insert_pages()` instead. The copy must succeed. (When
/// a failed first try was the fault's end, it was `VM_FAULT_OOM`, and the `pread()` failed with
/// `EFAULT`.) On a kernel without `fail_page_alloc` it is skipped.
pub(crate) fn fault_enomem_tried_again(ctx: &Ctx) -> TestResult {
    if !std::path::Path::new(FAIL_PAGE_ALLOC).exists() {
        return skipped(format!("no {FAIL_PAGE_ALLOC} in this kernel"));
    }
    let (start, end) = kernel_function("insert_page")?;
    let f = ctx.open(true)?;
    // A fresh 2 MiB-aligned reservation: no page table covers its first page yet.
    let r = Reservation::new(4 << 20, 2 << 20).or_fail("reserving address space")?;
    let m = Mapping::new_at(&f, 0, PAGE_SIZE, RW_SHARED, &r, r.addr())
        .or_fail("mmap of page 0 at the start of a page table's span")?;
    // SAFETY: `m` maps one page, readable and writable, for as long as `dst` is used; nothing
    // else in this process touches it meanwhile.
    let dst = unsafe { std::slice::from_raw_parts_mut(m.addr() as *mut u8, PAGE_SIZE) };
    let armed = FailOnePageAlloc::arm(start, end)?;
    let read = f.read_at(dst, 0);
    let left = armed.disarm()?;
    ensure!(
        left == "0",
        "no page table allocation under insert_page() failed (fail_page_alloc times is \
         {left}): was there a page table already?"
    );
    let n = read.or_fail("pread into the mapping, its page table's first allocation failing")?;
    ensure!(n == PAGE_SIZE, "pread copied {n} of {PAGE_SIZE} bytes");
    compare(
        "page 0 through the mapping",
        0,
        &m.read_range(0, 32),
        &ctx.expected_bytes(0, 32),
    )
}
