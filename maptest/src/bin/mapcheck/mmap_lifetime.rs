//! What can be done with a mapping once made, from the contract's "mmap" list: it cannot grow
//! with `mremap` (`EFAULT`), but it can shrink, be partly unmapped, outlive its descriptor
//! (still counted, and holding the file open), and be shared with a forked child.

use std::ffi::c_void;

use maptest::errors::errno_name;
use maptest::mapping::page_unmapped;
use maptest::{Mapping, OrFail, Stats, PAGE_SIZE};
use rustix::io::Errno;
use rustix::mm::{self, MremapFlags};

use crate::children::spawn;
use crate::ctx::{page, pread_exact, Ctx, RO, RW_SHARED};
use crate::expect::{ensure, expect_counts, expect_errno, Want};
use crate::harness::TestResult;

/// Whether no mapping covers the page at `addr`.
fn unmapped(addr: usize) -> Result<bool, String> {
    // The reason is formatted after the call: nothing is allocated (which might map memory)
    // between the munmap being checked and mincore.
    page_unmapped(addr).or_fail(format!("mincore at {addr:#x}"))
}

/// Checks that growing `m` in place to `new_len` fails; a failure other than EFAULT is noted
/// on stderr.
fn expect_no_growth(m: &mut Mapping, new_len: usize, what: &str) -> TestResult {
    let old = m.len();
    // EFAULT is the kernel's answer for a VM_DONTEXPAND area, checked before anything that
    // could refuse the growth for other reasons (room, limits): it shows the driver forbade it.
    expect_errno(
        &format!("mremap from {old} to {new_len} bytes ({what})"),
        m.remap(new_len),
        libc::EFAULT,
    )
}

/// The mapping cannot grow with mremap, not even into free space inside the buffer.
pub(crate) fn mremap_grow(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let mut m = ctx.map(&f, 0, ctx.pages, RO)?;
    m.read(0);
    // Free the last page, so that growing back has room and only the driver can refuse it.
    m.unmap_tail(PAGE_SIZE).or_fail("munmap of the last page")?;
    let after = m.addr() + m.len();
    ensure!(
        unmapped(after)?,
        "the page after the mapping is mapped again after munmap"
    );
    expect_no_growth(&mut m, ctx.size, "by one page, into the free page after it")?;
    expect_no_growth(&mut m, ctx.size + PAGE_SIZE, "past the end of the buffer")?;

    // Nor by moving it.
    let (addr, len) = (m.addr(), m.len());
    // SAFETY: On failure nothing changes. On success the mapping has moved: the old range,
    // which `m` owns, is gone, so `m` is forgotten below and the new range unmapped.
    let moved = unsafe {
        mm::mremap(
            addr as *mut c_void,
            len,
            len + PAGE_SIZE,
            MremapFlags::MAYMOVE,
        )
    };
    match moved {
        Ok(moved) => {
            // SAFETY: `moved` is the moved mapping, `len + PAGE_SIZE` bytes long, which no
            // handle owns.
            let _ = unsafe { mm::munmap(moved, len + PAGE_SIZE) };
            std::mem::forget(m);
            return Err(format!(
                "mremap(MREMAP_MAYMOVE) from {len} to {} bytes succeeded",
                len + PAGE_SIZE
            ));
        }
        Err(err) => ensure!(
            err == Errno::FAULT,
            "mremap(MREMAP_MAYMOVE) from {len} to {} bytes: expected EFAULT, got {}",
            len + PAGE_SIZE,
            errno_name(err.raw_os_error())
        ),
    }
    ensure!(
        m.len() == ctx.size - PAGE_SIZE,
        "the mapping is now {} bytes",
        m.len()
    );
    ctx.check_mapping("mapping after the failed mremap calls", &m, 0)
}

/// Shrinking with mremap works, keeps the bytes, and frees the rest of the range.
pub(crate) fn mremap_shrink(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let base = Stats::read()?;
    let mut m = ctx.map(&f, 0, ctx.pages, RO)?;
    m.read(0);
    let keep = ctx.pages / 2;
    m.remap(page(keep))
        .or_fail(format!("mremap from {} to {keep} pages", ctx.pages))?;
    for k in keep..ctx.pages {
        ensure!(
            unmapped(m.addr() + page(k))?,
            "page {k} is still mapped after mremap shrank the mapping to {keep} pages"
        );
    }
    // Pages 1.. were never touched: they fault in now, after the shrink.
    ctx.check_mapping("mapping shrunk by mremap", &m, 0)?;
    expect_counts(
        "after shrinking with mremap",
        &base,
        Want::default().mappings(1),
    )?;

    // The same with a mapping at a page offset.
    let mut o = ctx.map(&f, 1, ctx.pages - 1, RO)?;
    o.remap(PAGE_SIZE)
        .or_fail(format!("mremap from {} to 1 page", ctx.pages - 1))?;
    ctx.check_mapping("mapping at page offset 1 shrunk to one page", &o, page(1))
}

/// munmap of the end or of the middle of a mapping leaves the rest correct.
pub(crate) fn munmap_partial(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let mut m = ctx.map(&f, 0, ctx.pages, RO)?;
    for k in (0..ctx.pages).step_by(2) {
        m.read(page(k));
    }
    m.unmap_tail(PAGE_SIZE).or_fail("munmap of the last page")?;
    ensure!(
        unmapped(m.addr() + m.len())?,
        "the last page is still mapped after munmap"
    );
    ctx.check_mapping("mapping after munmap of its last page", &m, 0)?;

    // Punch a hole at page 1: `m` keeps page 0, `tail` pages 2...
    let mut tail = m.split_off(page(2));
    m.unmap_tail(PAGE_SIZE).or_fail("munmap of page 1")?;
    ensure!(
        unmapped(m.addr() + page(1))?,
        "page 1 is still mapped after munmap"
    );
    ctx.check_mapping("page 0, before the hole", &m, 0)?;
    ctx.check_mapping("pages after the hole", &tail, page(2))?;
    if tail.len() > PAGE_SIZE {
        tail.unmap_tail(PAGE_SIZE)
            .or_fail("munmap of the last page after the hole")?;
        ctx.check_mapping("pages after the hole, shortened", &tail, page(2))?;
    }
    Ok(())
}

/// A mapping keeps working, and counting, after its descriptor is closed.
pub(crate) fn mmap_outlives_fd(ctx: &Ctx) -> TestResult {
    let base = Stats::read()?;
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    m.read(0);
    drop(f);
    // The mapping holds the open file: it is released only with the mapping.
    expect_counts(
        "after closing the fd of a live mapping",
        &base,
        Want::default().mappings(1).opens(1),
    )?;
    ctx.check_mapping("mapping whose fd was closed", &m, 0)?;
    drop(m);
    expect_counts(
        "after unmapping it",
        &base,
        Want::default().mappings(0).opens(0),
    )
}

/// A child sees the parent's mapping, and the parent sees the child's shared writes.
pub(crate) fn fork_shared(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    let m = ctx.map(&f, 0, ctx.pages, RW_SHARED)?;
    for k in 0..ctx.pages / 2 {
        m.read(page(k));
    }
    // One page the parent has mapped, one it has not.
    let offs = [100, page(ctx.pages - 1) + 200];
    let values = offs.map(|o| !ctx.expected.byte(o));
    spawn(|| {
        ctx.check_mapping("the child's copy of the mapping", &m, 0)?;
        for (o, v) in offs.iter().zip(values) {
            m.write(*o, v);
        }
        Ok(())
    })?
    .wait()
    .map_err(|e| format!("child: {e}"))?;
    for (o, v) in offs.iter().zip(values) {
        let got = m.read(*o);
        ensure!(
            got == v,
            "the child wrote {v:#04x} at {o} through MAP_SHARED; the parent's mapping reads {got:#04x}"
        );
        let got = pread_exact(&f, *o, 1)?[0];
        ensure!(
            got == v,
            "the child wrote {v:#04x} at {o} through MAP_SHARED; pread reads {got:#04x}"
        );
    }
    for o in offs {
        ctx.restore(&f, o, 1)?;
    }
    ctx.check_mapping("the parent's mapping after restoring", &m, 0)?;
    ctx.check_file("after restoring", &f)
}
