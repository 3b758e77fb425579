//! mmap of the device, from the contract's "mmap" list: what fits in the buffer maps from its
//! page offset, the rest is `EINVAL`; `PROT_EXEC` is refused (`EPERM`), and neither it nor
//! writing to a read-only descriptor can be added later with `mprotect` (`EACCES`); writes
//! through `MAP_SHARED` reach the buffer, those through `MAP_PRIVATE` stay private.

use std::fs::{File, OpenOptions};

use maptest::{page_header, MapOptions, OrFail};
use rustix::mm::{Advice, MprotectFlags};

use crate::ctx::{page, pread_exact, try_map, Ctx, RO, RW_PRIVATE, RW_SHARED};
use crate::expect::{compare, ensure, expect_errno};
use crate::harness::TestResult;
use crate::nodes::exec_node;

/// A shared and a private mapping of the whole buffer show its contents.
pub(crate) fn mmap_whole(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    ctx.check_mapping("MAP_SHARED mapping of the whole buffer", &m, 0)?;
    let p = ctx.map(
        &f,
        0,
        ctx.pages,
        MapOptions {
            private: true,
            ..RO
        },
    )?;
    ctx.check_mapping("MAP_PRIVATE mapping of the whole buffer", &p, 0)
}

/// A mapping at a page offset inside the buffer maps from that page.
pub(crate) fn mmap_offset(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let pages = ctx.pages;
    let mut firsts = vec![1, pages / 2, pages - 1];
    firsts.dedup();
    for first in firsts {
        let m = ctx.map(&f, first, pages - first, RO)?;
        let header = page_header(first, pages);
        let got = m.read_range(0, header.len());
        ensure!(
            got == header.as_bytes(),
            "mapping at page offset {first} begins with {:?}, expected {header:?}",
            String::from_utf8_lossy(&got)
        );
        ctx.check_mapping(&format!("mapping at page offset {first}"), &m, page(first))?;
    }
    let first = pages - 2;
    let m = ctx.map(&f, first, 1, RO)?;
    ctx.check_mapping(
        &format!("one-page mapping at page offset {first}"),
        &m,
        page(first),
    )
}

/// A mapping that does not fit in the buffer fails with EINVAL.
pub(crate) fn mmap_einval(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let pages = ctx.pages;
    let cases = [
        (0, pages + 1, "one page longer than the buffer"),
        (pages, 1, "offset at the end"),
        (pages - 1, 2, "last page and one more"),
        (pages + 1, 1, "offset past the end"),
    ];
    for opts in [
        RO,
        MapOptions {
            private: true,
            ..RO
        },
    ] {
        for (first, len, why) in cases {
            expect_errno(
                &format!(
                    "mmap of {len} pages at page offset {first} of {pages} ({why}; {})",
                    opts.describe()
                ),
                try_map(&f, page(first), page(len), opts),
                libc::EINVAL,
            )?;
        }
    }
    Ok(())
}

/// PROT_EXEC is refused with EPERM.
pub(crate) fn mmap_prot_exec(ctx: &Ctx) -> TestResult {
    let node = exec_node(ctx)?;
    let ro = File::open(&node.path).or_fail(format!("open {} O_RDONLY", node.path))?;
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&node.path)
        .or_fail(format!("open {} O_RDWR", node.path))?;
    let cases = [
        (&ro, MapOptions { exec: true, ..RO }),
        (
            &ro,
            MapOptions {
                exec: true,
                private: true,
                ..RO
            },
        ),
        (
            &rw,
            MapOptions {
                exec: true,
                ..RW_SHARED
            },
        ),
    ];
    for (file, opts) in cases {
        expect_errno(
            &format!("mmap ({}) of {}", opts.describe(), node.path),
            try_map(file, 0, ctx.size, opts),
            libc::EPERM,
        )?;
    }
    Ok(())
}

/// A read-only mapping cannot be made executable later: mprotect fails with EACCES.
pub(crate) fn mprotect_exec(ctx: &Ctx) -> TestResult {
    let node = exec_node(ctx)?;
    let f = File::open(&node.path).or_fail(format!("open {} O_RDONLY", node.path))?;
    for opts in [
        RO,
        MapOptions {
            private: true,
            ..RO
        },
    ] {
        let kind = if opts.private {
            "MAP_PRIVATE"
        } else {
            "MAP_SHARED"
        };
        let m = ctx.map(&f, 0, ctx.pages, opts)?;
        m.read(0);
        expect_errno(
            &format!("mprotect(PROT_READ|PROT_EXEC) of a read-only {kind} mapping"),
            m.mprotect(MprotectFlags::READ | MprotectFlags::EXEC),
            libc::EACCES,
        )?;
        let line = m
            .maps_line()
            .or_fail("finding the mapping in /proc/self/maps")?;
        let perms = line.split_whitespace().nth(1).unwrap_or("");
        ensure!(
            !perms.contains('x'),
            "after the failed mprotect the mapping is {perms:?}: {line}"
        );
        ctx.check_mapping(&format!("{kind} mapping after the failed mprotect"), &m, 0)?;
    }
    Ok(())
}

/// A writable MAP_SHARED mapping of an O_RDONLY descriptor is refused with EACCES, at mmap
/// time and at mprotect time.
pub(crate) fn mmap_write_rdonly(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    expect_errno(
        "mmap (PROT_READ|PROT_WRITE, MAP_SHARED) of an O_RDONLY fd",
        try_map(&f, 0, ctx.size, RW_SHARED),
        libc::EACCES,
    )?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    expect_errno(
        "mprotect(PROT_READ|PROT_WRITE) of a MAP_SHARED mapping of an O_RDONLY fd",
        m.mprotect(MprotectFlags::READ | MprotectFlags::WRITE),
        libc::EACCES,
    )
}

/// Offsets the mapping write tests write to: a touched page, a page header, an untouched page.
fn write_offsets(ctx: &Ctx) -> [usize; 3] {
    [100, page(1), page(ctx.pages - 1) + 200]
}

/// Writes through a MAP_SHARED mapping reach the buffer: pread and another mapping see them.
pub(crate) fn mmap_shared_write(ctx: &Ctx) -> TestResult {
    let rw = ctx.open(true)?;
    let ro = ctx.open(false)?;
    let a = ctx.map(&rw, 0, ctx.pages, RW_SHARED)?;
    let b = ctx.map(&ro, 0, ctx.pages, RO)?;
    // Page 0 of `b` is mapped before the writes, the others after.
    b.read(0);
    let mut want = ctx.expected_bytes(0, ctx.size);
    for off in write_offsets(ctx) {
        want[off] = !want[off];
        a.write(off, want[off]);
    }
    compare("the written mapping", 0, &a.to_vec(), &want)?;
    compare(
        "pread after writes through MAP_SHARED",
        0,
        &pread_exact(&rw, 0, ctx.size)?,
        &want,
    )?;
    compare(
        "another MAP_SHARED mapping (another open)",
        0,
        &b.to_vec(),
        &want,
    )?;
    // Writing the original bytes back with pwrite shows in both mappings.
    for off in write_offsets(ctx) {
        ctx.restore(&rw, off, 1)?;
    }
    ctx.check_mapping("the written mapping after pwrite restored it", &a, 0)?;
    ctx.check_mapping("the other mapping after pwrite restored it", &b, 0)?;
    ctx.check_file("after restoring", &rw)
}

/// Writes through a MAP_PRIVATE mapping stay in that mapping.
pub(crate) fn mmap_private_cow(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let p = ctx.map(&f, 0, ctx.pages, RW_PRIVATE)?;
    let shared = ctx.map(&f, 0, ctx.pages, RO)?;
    let p2 = ctx.map(&f, 0, ctx.pages, RW_PRIVATE)?;
    // Page 0 is mapped (read-only) before it is written; the last page is not.
    p.read(0);
    shared.read(0);
    p2.read(0);
    let mut want = ctx.expected_bytes(0, ctx.size);
    for off in write_offsets(ctx) {
        want[off] = !want[off];
        p.write(off, want[off]);
    }
    compare("the MAP_PRIVATE mapping written to", 0, &p.to_vec(), &want)?;
    ctx.check_file("after writes through MAP_PRIVATE", &f)?;
    ctx.check_mapping(
        "MAP_SHARED mapping after writes through MAP_PRIVATE",
        &shared,
        0,
    )?;
    ctx.check_mapping(
        "another MAP_PRIVATE mapping after writes through the first",
        &p2,
        0,
    )?;

    // A write through the second private mapping does not show in the first.
    let off = write_offsets(ctx)[0];
    let other = ctx.expected.byte(off) ^ 0x0f;
    p2.write(off, other);
    let got = p.read(off);
    ensure!(
        got == want[off],
        "a MAP_PRIVATE write of {other:#04x} at {off} changed another MAP_PRIVATE mapping: read {got:#04x}, expected {:#04x}",
        want[off]
    );
    ctx.check_mapping(
        "MAP_SHARED mapping after writes through two MAP_PRIVATE mappings",
        &shared,
        0,
    )?;
    ctx.check_file("after writes through two MAP_PRIVATE mappings", &f)?;

    // MADV_DONTNEED drops the private copies: the buffer shows through again.
    p.madvise(0, ctx.size, Advice::LinuxDontNeed)
        .or_fail("madvise(MADV_DONTNEED)")?;
    ctx.check_mapping(
        "MAP_PRIVATE mapping after MADV_DONTNEED dropped its copies",
        &p,
        0,
    )
}
