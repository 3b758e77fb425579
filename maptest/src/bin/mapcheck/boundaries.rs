//! The edge cases of every argument, from the contract's "file operations" and "mmap"
//! paragraphs: mmap lengths and offsets at, past and far past the end, or unaligned; file
//! positions that are negative or near `i64::MAX`; writes of nothing and of more than the
//! buffer. The malformed calls (a negative offset or position, an mmap length no `Mapping`
//! holds) go through [`maptest::raw`], so that the kernel and the driver answer them, not the
//! C library's wrappers; the others through `std`.

use std::ffi::c_void;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use maptest::{raw, OrFail, PAGE_SIZE};
use rustix::mm;

use crate::ctx::Ctx;
use crate::expect::{ensure, expect_errno};
use crate::harness::TestResult;

/// Raw `mmap(2)` with any length and offset, for lengths no `Mapping` could hold; the mapping,
/// if made, is unmapped at once.
fn raw_mmap(file: &File, len: usize, prot: i32, offset: i64) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: Without MAP_FIXED the kernel places a new mapping in free address space: it
    // replaces nothing and aliases no Rust object.
    let addr = raw::to_io(unsafe { raw::mmap(0, len as u64, prot, libc::MAP_SHARED, fd, offset) })?;
    // SAFETY: `addr` is the mapping just made, `len` bytes long, which no handle owns.
    let _ = unsafe { mm::munmap(addr as *mut c_void, len) };
    Ok(())
}

/// Raw `pread(2)`/`pwrite(2)` with any offset, negative ones included (`FileExt` takes a
/// `u64`).
fn raw_pread(file: &File, buf: &mut [u8], off: i64) -> io::Result<usize> {
    let (fd, addr, len) = (file.as_raw_fd(), buf.as_mut_ptr() as u64, buf.len() as u64);
    // SAFETY: `buf` is plain bytes, valid for writes of its length and borrowed mutably for the
    // call.
    let n = raw::to_io(unsafe { raw::pread(fd, addr, len, off) })?;
    Ok(n as usize)
}

fn raw_pwrite(file: &File, buf: &[u8], off: i64) -> io::Result<usize> {
    let (fd, addr, len) = (file.as_raw_fd(), buf.as_ptr() as u64, buf.len() as u64);
    // SAFETY: `buf` is initialised bytes, valid for reads of its length and borrowed for the
    // call.
    let n = raw::to_io(unsafe { raw::pwrite(fd, addr, len, off) })?;
    Ok(n as usize)
}

/// mmap lengths 0, size+1 and 2^63, offsets at and past the end and unaligned; negative and
/// huge file positions; writes of 0 bytes and of more than the buffer.
pub(crate) fn boundaries(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    let size = ctx.size;
    let r = libc::PROT_READ;
    expect_errno("mmap of length 0", raw_mmap(&f, 0, r, 0), libc::EINVAL)?;
    expect_errno(
        "mmap of size+1 bytes",
        raw_mmap(&f, size + 1, r, 0),
        libc::EINVAL,
    )?;
    // 2^63 bytes cannot fit in the address space: the kernel says ENOMEM before asking us.
    match raw_mmap(&f, 1 << 63, r, 0) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::EINVAL)) => {}
        other => {
            return Err(format!(
                "mmap of 2^63 bytes: expected ENOMEM or EINVAL, got {other:?}"
            ))
        }
    }
    expect_errno(
        "mmap of one page at offset size",
        raw_mmap(&f, PAGE_SIZE, r, size as i64),
        libc::EINVAL,
    )?;
    expect_errno(
        "mmap of one page at offset size+4096",
        raw_mmap(&f, PAGE_SIZE, r, (size + PAGE_SIZE) as i64),
        libc::EINVAL,
    )?;
    expect_errno(
        "mmap at an unaligned offset",
        raw_mmap(&f, PAGE_SIZE, r, 1),
        libc::EINVAL,
    )?;
    // The largest page offset the kernel accepts must still be refused by the driver.
    match raw_mmap(&f, PAGE_SIZE, r, i64::MAX & !(PAGE_SIZE as i64 - 1)) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOVERFLOW)) => {}
        other => {
            return Err(format!(
                "mmap at a huge offset: expected EINVAL or EOVERFLOW, got {other:?}"
            ))
        }
    }

    let mut buf = [0u8; 8];
    expect_errno(
        "pread at offset -1",
        raw_pread(&f, &mut buf, -1),
        libc::EINVAL,
    )?;
    expect_errno(
        "pwrite at offset -1",
        raw_pwrite(&f, &buf, -1),
        libc::EINVAL,
    )?;
    let near_max = (i64::MAX - 8) as u64;
    let n = f
        .read_at(&mut buf, near_max)
        .or_fail("pread near i64::MAX")?;
    ensure!(n == 0, "pread near i64::MAX returned {n}, expected 0");
    expect_errno(
        "pwrite near i64::MAX",
        f.write_at(&buf, near_max),
        libc::ENOSPC,
    )?;
    expect_errno(
        "lseek to -1",
        raw::to_io(raw::lseek(f.as_raw_fd(), -1, libc::SEEK_SET)),
        libc::EINVAL,
    )?;
    expect_errno(
        "lseek to i64::MAX",
        (&f).seek(SeekFrom::Start(i64::MAX as u64)),
        libc::EINVAL,
    )?;
    expect_errno(
        "lseek by i64::MIN from the end",
        (&f).seek(SeekFrom::End(i64::MIN)),
        libc::EINVAL,
    )?;

    // A write of nothing writes nothing, anywhere, even past the end.
    for off in [0, size, size + PAGE_SIZE] {
        let n = f
            .write_at(&[], off as u64)
            .or_fail(format!("pwrite of 0 bytes at {off}"))?;
        ensure!(n == 0, "pwrite of 0 bytes at {off} returned {n}");
    }
    // A write of more than the buffer fills it to the end and stops there.
    let all = ctx.expected_bytes(0, size);
    let mut more = all.clone();
    more.extend_from_slice(&[0xA5; 3 * PAGE_SIZE]);
    let n = f
        .write_at(&more, 0)
        .or_fail("pwrite of size + 3 pages at 0")?;
    ensure!(
        n == size,
        "pwrite of {} bytes at 0 returned {n}, expected the size {size}",
        more.len()
    );
    ctx.check_file("after a write longer than the buffer", &f)
}
