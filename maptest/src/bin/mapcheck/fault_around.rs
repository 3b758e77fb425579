//! The fault-around tests: the module loaded with `fault_around=16` maps, in each fault, the
//! naturally aligned block of 16 pages that holds the faulting one, cut to the VMA (and so to
//! the buffer). `mapcheck --fault-around` runs them (their table is
//! [`FAULT_AROUND_TESTS`](crate::harness::FAULT_AROUND_TESTS)).
//!
//! Each test places its mappings at chosen addresses in a reservation aligned to 2 MiB, the
//! span of one page table, so that the blocks are known in advance: page table index `i` is
//! the page at `base + i * 4096`, and the block of page `i` is `i & !15 .. (i & !15) + 16`.

use std::fs::File;
use std::os::unix::fs::FileExt;

use maptest::{MapOptions, Mapping, OrFail, Reservation, Stats, PAGE_SIZE};
use rustix::mm::Advice;

use crate::ctx::{page, Ctx, RO, RW_SHARED};
use crate::expect::{compare, ensure, expect_counts, expect_resident, Want};
use crate::harness::TestResult;

/// The window the module must be loaded with.
const N: usize = 16;
/// The span of one page table: 512 pages.
const TABLE: usize = 512 * PAGE_SIZE;

/// The pages `lo..hi` of a mapping of `pages` pages, as residency flags.
fn flags(pages: usize, ranges: &[(usize, usize)]) -> Vec<bool> {
    let mut f = vec![false; pages];
    for &(lo, hi) in ranges {
        f[lo..hi].iter_mut().for_each(|b| *b = true);
    }
    f
}

/// Checks that the module maps `N` pages per fault, and that the buffer is big enough.
fn setup(ctx: &Ctx) -> Result<(File, Reservation, Stats), String> {
    let stats = Stats::read()?;
    ensure!(
        stats.fault_around == N as u64,
        "the module maps {} pages per fault; load it with fault_around={N}",
        stats.fault_around
    );
    ensure!(
        ctx.pages >= 64,
        "the buffer has {} pages; these tests need 64",
        ctx.pages
    );
    let f = ctx.open(true)?;
    // Two page tables' worth, so that a mapping can straddle their boundary.
    let r = Reservation::new(2 * TABLE, TABLE).or_fail("reserving address space")?;
    Ok((f, r, stats))
}

/// Maps `pages` pages of the buffer from page `first` at page table index `at` of `r`.
fn map_at(
    f: &File,
    r: &Reservation,
    at: usize,
    first: usize,
    pages: usize,
    opts: MapOptions,
) -> Result<Mapping, String> {
    Mapping::new_at(
        f,
        page(first) as u64,
        page(pages),
        opts,
        r,
        r.addr() + page(at),
    )
    .or_fail(format!(
        "mmap of {pages} pages from page {first} at index {at} of a page table ({})",
        opts.describe()
    ))
}

/// Checks the first bytes of every resident page of `m`, which maps the buffer from `first`.
fn check_resident_bytes(ctx: &Ctx, what: &str, m: &Mapping, first: usize) -> TestResult {
    let resident = m.resident().or_fail(format!("{what}: mincore"))?;
    for (k, _) in resident.iter().enumerate().filter(|(_, r)| **r) {
        let want = ctx.expected_bytes(page(first + k), 32);
        compare(
            &format!("{what}: page {k}"),
            page(first + k),
            &m.read_range(page(k), 32),
            &want,
        )?;
    }
    Ok(())
}

/// One fault maps the aligned block of 16 around the faulting page, and nothing else; a touch
/// inside the block faults no more.
pub(crate) fn fault_around_aligned_block(ctx: &Ctx) -> TestResult {
    let (f, r, base) = setup(ctx)?;
    let m = map_at(&f, &r, 0, 0, 64, RO)?;
    expect_resident("fresh mapping", &m, &flags(64, &[]))?;
    m.read(page(5));
    expect_resident("after touching page 5", &m, &flags(64, &[(0, 16)]))?;
    expect_counts(
        "after touching page 5",
        &base,
        Want::default().faults(1).pages_mapped(16),
    )?;
    m.read(page(15) + 7);
    m.read(page(0));
    expect_counts(
        "after touching pages 15 and 0",
        &base,
        Want::default().faults(1).pages_mapped(16),
    )?;
    m.read(page(37));
    expect_resident(
        "after touching page 37",
        &m,
        &flags(64, &[(0, 16), (32, 48)]),
    )?;
    expect_counts(
        "after touching page 37",
        &base,
        Want::default().faults(2).pages_mapped(32),
    )?;
    check_resident_bytes(ctx, "aligned blocks", &m, 0)
}

/// The block is cut to the VMA, at both ends, and the neighbours get the right pages of the
/// buffer (the mapping's offset counts).
pub(crate) fn fault_around_vma_edges(ctx: &Ctx) -> TestResult {
    let (f, r, base) = setup(ctx)?;
    // Table indices 3..13, inside the block 0..16: one fault maps the whole VMA.
    let small = map_at(&f, &r, 3, 3, 10, RO)?;
    small.read(page(4));
    expect_resident(
        "10-page VMA inside one block",
        &small,
        &flags(10, &[(0, 10)]),
    )?;
    expect_counts(
        "10-page VMA inside one block",
        &base,
        Want::default().faults(1).pages_mapped(10),
    )?;
    check_resident_bytes(ctx, "10-page VMA", &small, 3)?;
    // Table indices 20..60 (buffer pages 24..64): the blocks 16..32 and 48..64 are cut at
    // the VMA's start and end.
    let wide = map_at(&f, &r, 20, 24, 40, RO)?;
    wide.read(page(0));
    expect_resident(
        "first page of a VMA at index 20",
        &wide,
        &flags(40, &[(0, 12)]),
    )?;
    wide.read(page(39));
    expect_resident(
        "and its last page, at index 59",
        &wide,
        &flags(40, &[(0, 12), (28, 40)]),
    )?;
    expect_counts(
        "the VMA at index 20",
        &base,
        Want::default().faults(3).pages_mapped(10 + 12 + 12),
    )?;
    check_resident_bytes(ctx, "VMA at index 20", &wide, 24)
}

/// A block never crosses into the next page table: a VMA straddling two tables is mapped in
/// two faults, one per table.
pub(crate) fn fault_around_page_table_edge(ctx: &Ctx) -> TestResult {
    let (f, r, base) = setup(ctx)?;
    // Indices 504..512 of the first table, then 0..8 of the second.
    let m = map_at(&f, &r, 504, 0, 16, RO)?;
    m.read(page(0));
    expect_resident("first page, index 504", &m, &flags(16, &[(0, 8)]))?;
    m.read(page(8));
    expect_resident(
        "ninth page, index 0 of the next table",
        &m,
        &flags(16, &[(0, 16)]),
    )?;
    expect_counts(
        "a VMA across two page tables",
        &base,
        Want::default().faults(2).pages_mapped(16),
    )?;
    check_resident_bytes(ctx, "a VMA across two page tables", &m, 0)
}

/// Pages of the block that are still mapped are left alone; only the missing ones are mapped,
/// and counted.
pub(crate) fn fault_around_partly_mapped(ctx: &Ctx) -> TestResult {
    let (f, r, base) = setup(ctx)?;
    let m = map_at(&f, &r, 0, 0, 64, RO)?;
    m.read(page(5));
    for k in [3, 9] {
        m.madvise(page(k), PAGE_SIZE, Advice::LinuxDontNeed)
            .or_fail(format!("MADV_DONTNEED of page {k}"))?;
    }
    expect_resident(
        "after dropping pages 3 and 9",
        &m,
        &flags(64, &[(0, 3), (4, 9), (10, 16)]),
    )?;
    m.read(page(9));
    expect_resident("after touching page 9", &m, &flags(64, &[(0, 16)]))?;
    expect_counts(
        "after touching page 9",
        &base,
        Want::default().faults(2).pages_mapped(16 + 2),
    )?;
    // All of the block but its last page dropped, then its first page touched.
    m.madvise(0, page(15), Advice::LinuxDontNeed)
        .or_fail("MADV_DONTNEED of pages 0..15")?;
    m.read(page(0));
    expect_resident("after touching page 0", &m, &flags(64, &[(0, 16)]))?;
    expect_counts(
        "after touching page 0",
        &base,
        Want::default().faults(3).pages_mapped(16 + 2 + 15),
    )?;
    check_resident_bytes(ctx, "a block mapped in pieces", &m, 0)
}

/// A write fault on a private mapping maps the faulting page alone (and copies it); a read
/// fault on the same mapping maps the whole block.
pub(crate) fn fault_around_private_write(ctx: &Ctx) -> TestResult {
    let (f, r, base) = setup(ctx)?;
    let private = MapOptions {
        write: true,
        private: true,
        ..RO
    };
    let m = map_at(&f, &r, 0, 0, 64, private)?;
    let off = page(5) + 100;
    let old = ctx.expected.byte(off);
    m.write(off, !old);
    expect_resident("after writing page 5", &m, &flags(64, &[(5, 6)]))?;
    expect_counts(
        "after writing page 5",
        &base,
        Want::default().faults(1).pages_mapped(1),
    )?;
    ensure!(
        m.read(off) == !old,
        "the private copy does not hold the write"
    );
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, off as u64)
        .or_fail("pread of the written byte")?;
    ensure!(
        byte[0] == old,
        "a write to a private mapping reached the buffer"
    );
    m.read(page(20));
    expect_resident("after reading page 20", &m, &flags(64, &[(5, 6), (16, 32)]))?;
    expect_counts(
        "after reading page 20",
        &base,
        Want::default().faults(2).pages_mapped(17),
    )
}

/// A write fault on a shared mapping maps the block writable: writing a neighbour faults no
/// more, and the writes reach the buffer.
pub(crate) fn fault_around_shared_write(ctx: &Ctx) -> TestResult {
    let (f, r, base) = setup(ctx)?;
    let m = map_at(&f, &r, 0, 0, 64, RW_SHARED)?;
    let (a, b) = (page(5) + 10, page(6) + 10);
    let (old_a, old_b) = (ctx.expected.byte(a), ctx.expected.byte(b));
    m.write(a, !old_a);
    expect_resident("after writing page 5", &m, &flags(64, &[(0, 16)]))?;
    m.write(b, !old_b);
    expect_counts(
        "after writing pages 5 and 6",
        &base,
        Want::default().faults(1).pages_mapped(16),
    )?;
    let mut bytes = [0u8; 2];
    f.read_exact_at(&mut bytes[..1], a as u64)
        .or_fail("pread")?;
    f.read_exact_at(&mut bytes[1..], b as u64)
        .or_fail("pread")?;
    ensure!(
        bytes == [!old_a, !old_b],
        "the buffer holds {bytes:02x?} after the writes, expected {:02x?}",
        [!old_a, !old_b]
    );
    m.write(a, old_a);
    m.write(b, old_b);
    Ok(())
}

/// `MAP_POPULATE` faults every block once: 64 pages in 4 faults.
pub(crate) fn fault_around_populate(ctx: &Ctx) -> TestResult {
    let (f, r, base) = setup(ctx)?;
    let populate = MapOptions {
        populate: true,
        ..RO
    };
    let m = map_at(&f, &r, 0, 0, 64, populate)?;
    expect_resident("right after mmap", &m, &flags(64, &[(0, 64)]))?;
    expect_counts(
        "right after mmap",
        &base,
        Want::default().faults(4).pages_mapped(64),
    )?;
    check_resident_bytes(ctx, "a populated mapping", &m, 0)
}
