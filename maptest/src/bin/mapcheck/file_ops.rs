//! The file operations of the contract: `read` and `pread` (the buffer's bytes, 0 at or past
//! the end), `lseek` (the three `whence`s, `EINVAL` outside `0..=size`), `write` and `pwrite`
//! (into the buffer, shortened at the end, `ENOSPC` past it, `EBADF` without `O_RDWR`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use maptest::{page_header, raw, OrFail, PAGE_SIZE};

use crate::ctx::{page, position, pread_exact, Ctx};
use crate::expect::{compare, ensure, expect_errno};
use crate::harness::TestResult;

/// How `lseek(2)` to `to` is shown: `lseek(-10, SEEK_CUR)`.
fn lseek_call(to: SeekFrom) -> String {
    let (off, whence) = match to {
        SeekFrom::Start(off) => (off as i64, "SEEK_SET"),
        SeekFrom::Current(off) => (off, "SEEK_CUR"),
        SeekFrom::End(off) => (off, "SEEK_END"),
    };
    format!("lseek({off}, {whence})")
}

/// `lseek(2)` to a valid place; returns the new position.
fn seek(mut file: &File, to: SeekFrom) -> Result<i64, String> {
    let pos = file.seek(to).or_fail(lseek_call(to))?;
    Ok(pos as i64)
}

// ---------------------------------------------------------------------------------------------
// read, pread, lseek.
// ---------------------------------------------------------------------------------------------

/// read(2) with a buffer larger than the device returns the whole buffer, then 0.
pub(crate) fn read_whole(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let mut buf = vec![0u8; ctx.size + PAGE_SIZE];
    let mut total = 0;
    loop {
        let n = (&f)
            .read(&mut buf[total..])
            .or_fail(format!("read at position {total}"))?;
        if n == 0 {
            break;
        }
        total += n;
        ensure!(
            total <= ctx.size,
            "read(2) returned {total} bytes, more than the {} of the buffer",
            ctx.size
        );
    }
    ensure!(
        total == ctx.size,
        "read(2) reached the end after {total} bytes, expected {}",
        ctx.size
    );
    ctx.expected
        .check(0, &buf[..total])
        .map_err(|mis| format!("read(2): {mis}"))?;
    let n = (&f).read(&mut buf).or_fail("read at the end")?;
    ensure!(n == 0, "read(2) at the end returned {n}, expected 0");
    let pos = position(&f)?;
    ensure!(
        pos == ctx.size as i64,
        "file position after reading it all is {pos}, expected {}",
        ctx.size
    );
    Ok(())
}

/// read(2) in 1000-byte pieces (crossing page boundaries) returns the buffer in order.
pub(crate) fn read_chunks(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let mut buf = [0u8; 1000];
    let mut pos = 0;
    loop {
        let n = (&f)
            .read(&mut buf)
            .or_fail(format!("read(1000) at position {pos}"))?;
        if n == 0 {
            break;
        }
        ensure!(
            pos + n <= ctx.size,
            "read(2) went past the end: {} bytes",
            pos + n
        );
        ctx.expected
            .check(pos, &buf[..n])
            .map_err(|mis| format!("read(1000) at {pos}: {mis}"))?;
        pos += n;
    }
    ensure!(
        pos == ctx.size,
        "read(2) reached the end after {pos} bytes, expected {}",
        ctx.size
    );
    Ok(())
}

/// pread at various offsets returns those bytes and leaves the file position alone.
pub(crate) fn pread_offsets(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let last = ctx.pages - 1;
    let cases = [
        (0, 64),
        (1, 10),
        (PAGE_SIZE - 7, 20),
        (page(1), page_header(1, ctx.pages).len() + 8),
        (page(last), 64),
        (ctx.size / 2 + 123, 300),
        (ctx.size - 1, 1),
    ];
    for (off, len) in cases {
        let got = pread_exact(&f, off, len)?;
        ctx.expected
            .check(off, &got)
            .map_err(|mis| format!("pread({len}) at {off}: {mis}"))?;
    }
    let pos = position(&f)?;
    ensure!(pos == 0, "pread moved the file position to {pos}");
    Ok(())
}

/// pread at or past the end returns 0; one that crosses the end is short.
pub(crate) fn pread_end(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let size = ctx.size as u64;
    let mut buf = [0u8; 100];
    for off in [
        size,
        size + 1,
        size + PAGE_SIZE as u64,
        2 * size,
        size + (1 << 40),
    ] {
        let n = f
            .read_at(&mut buf[..16], off)
            .or_fail(format!("pread(16) at {off}"))?;
        ensure!(
            n == 0,
            "pread(16) at {off} (buffer of {size} bytes) returned {n}, expected 0"
        );
    }
    let off = ctx.size - 10;
    let n = f
        .read_at(&mut buf, off as u64)
        .or_fail(format!("pread(100) at {off}"))?;
    ensure!(
        n == 10,
        "pread(100) at {off}, 10 bytes before the end, returned {n}, expected 10"
    );
    ctx.expected
        .check(off, &buf[..n])
        .map_err(|mis| format!("pread(100) at {off}: {mis}"))?;
    seek(&f, SeekFrom::End(0))?;
    let n = (&f).read(&mut buf).or_fail("read at the end")?;
    ensure!(
        n == 0,
        "read(2) after lseek(0, SEEK_END) returned {n}, expected 0"
    );
    Ok(())
}

/// SEEK_SET, SEEK_CUR and SEEK_END move the position, and reads follow it.
pub(crate) fn llseek_whence(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let size = ctx.size as i64;
    let page = PAGE_SIZE as i64;
    let seek_to = |to: SeekFrom, want: i64| -> TestResult {
        let got = seek(&f, to)?;
        ensure!(
            got == want,
            "{} returned {got}, expected {want}",
            lseek_call(to)
        );
        Ok(())
    };
    let read_at_pos = |pos: usize, len: usize| -> TestResult {
        let mut buf = vec![0u8; len];
        let n = (&f)
            .read(&mut buf)
            .or_fail(format!("read({len}) at position {pos}"))?;
        ensure!(n == len, "read({len}) at position {pos} returned {n}");
        ctx.expected
            .check(pos, &buf)
            .map_err(|mis| format!("read after lseek: {mis}"))
    };
    seek_to(SeekFrom::Start(100), 100)?;
    read_at_pos(100, 10)?;
    seek_to(SeekFrom::Current(0), 110)?;
    seek_to(SeekFrom::Current(-10), 100)?;
    seek_to(SeekFrom::Current(page), 100 + page)?;
    read_at_pos(100 + PAGE_SIZE, 5)?;
    seek_to(SeekFrom::End(0), size)?;
    seek_to(SeekFrom::End(-page), size - page)?;
    read_at_pos(
        ctx.size - PAGE_SIZE,
        page_header(ctx.pages - 1, ctx.pages).len(),
    )?;
    seek_to(SeekFrom::Start(ctx.size as u64), size)?;
    seek_to(SeekFrom::Current(-size), 0)?;
    seek_to(SeekFrom::Start(0), 0)
}

/// A seek to before 0 or past the end fails with EINVAL and leaves the position alone.
pub(crate) fn llseek_einval(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let size = ctx.size as i64;
    let start = 200;
    seek(&f, SeekFrom::Start(start as u64))?;
    let cases = [
        (-1, libc::SEEK_SET, "SEEK_SET"),
        (size + 1, libc::SEEK_SET, "SEEK_SET"),
        (size * 2, libc::SEEK_SET, "SEEK_SET"),
        (-(start + 1), libc::SEEK_CUR, "SEEK_CUR"),
        (size - start + 1, libc::SEEK_CUR, "SEEK_CUR"),
        (1, libc::SEEK_END, "SEEK_END"),
        (-(size + 1), libc::SEEK_END, "SEEK_END"),
    ];
    for (off, whence, name) in cases {
        expect_errno(
            &format!("lseek({off}, {name}) at position {start} of {size}"),
            raw::to_io(raw::lseek(f.as_raw_fd(), off, whence)),
            libc::EINVAL,
        )?;
        let pos = position(&f)?;
        ensure!(
            pos == start,
            "the failed lseek({off}, {name}) moved the position from {start} to {pos}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// write, pwrite.
// ---------------------------------------------------------------------------------------------

/// The expected bytes at `off`, inverted: certainly different from the contract.
fn inverted(ctx: &Ctx, off: usize, len: usize) -> Vec<u8> {
    ctx.expected_bytes(off, len).iter().map(|b| !b).collect()
}

/// pwrite and write change exactly the bytes written, at the right place.
pub(crate) fn write_pwrite(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    // pwrite across the boundary of pages 0 and 1.
    let off = PAGE_SIZE - 8;
    let data = inverted(ctx, off, 16);
    let n = f
        .write_at(&data, off as u64)
        .or_fail(format!("pwrite(16) at {off}"))?;
    ensure!(n == 16, "pwrite(16) at {off} returned {n}");
    let mut want = ctx.expected_bytes(off - 8, 32);
    want[8..24].copy_from_slice(&data);
    compare(
        "pread after pwrite",
        off - 8,
        &pread_exact(&f, off - 8, 32)?,
        &want,
    )?;

    // write(2) at the file position, which it advances.
    let pos = page(2) + 100;
    seek(&f, SeekFrom::Start(pos as u64))?;
    let data2 = inverted(ctx, pos, 10);
    let n = (&f)
        .write(&data2)
        .or_fail(format!("write(10) at position {pos}"))?;
    ensure!(n == 10, "write(10) at position {pos} returned {n}");
    let now = position(&f)?;
    ensure!(
        now == (pos + 10) as i64,
        "write(10) at {pos} left the position at {now}, expected {}",
        pos + 10
    );
    compare("pread after write", pos, &pread_exact(&f, pos, 10)?, &data2)?;

    ctx.restore(&f, off, 16)?;
    ctx.restore(&f, pos, 10)?;
    ctx.check_file("after restoring", &f)
}

/// A write that crosses the end is shortened to the bytes before the end.
pub(crate) fn write_short(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    let off = ctx.size - 10;
    let data: Vec<u8> = (0..100u8).map(|i| 0xa5 ^ i).collect();
    let n = f
        .write_at(&data, off as u64)
        .or_fail(format!("pwrite(100) at {off}"))?;
    ensure!(
        n == 10,
        "pwrite(100) at {off}, 10 bytes before the end, returned {n}, expected 10"
    );
    compare(
        "pread after the short pwrite",
        off,
        &pread_exact(&f, off, 10)?,
        &data[..10],
    )?;

    let pos = ctx.size - 5;
    seek(&f, SeekFrom::Start(pos as u64))?;
    let n = (&f)
        .write(&data[..20])
        .or_fail(format!("write(20) at position {pos}"))?;
    ensure!(
        n == 5,
        "write(20) at position {pos}, 5 bytes before the end, returned {n}, expected 5"
    );
    let now = position(&f)?;
    ensure!(
        now == ctx.size as i64,
        "the short write left the position at {now}, expected {}",
        ctx.size
    );
    compare(
        "pread after the short write",
        pos,
        &pread_exact(&f, pos, 5)?,
        &data[..5],
    )?;

    ctx.restore(&f, off, 10)?;
    ctx.check_file("after restoring", &f)
}

/// A write at or past the end fails with ENOSPC and changes nothing.
pub(crate) fn write_enospc(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    let size = ctx.size as u64;
    for off in [size, size + 1, size + PAGE_SIZE as u64, 2 * size] {
        expect_errno(
            &format!("pwrite(8) at {off} (buffer of {size} bytes)"),
            f.write_at(&[0x5a; 8], off),
            libc::ENOSPC,
        )?;
    }
    seek(&f, SeekFrom::End(0))?;
    expect_errno(
        &format!("write(8) at position {size} (the end)"),
        (&f).write(&[0x5a; 8]),
        libc::ENOSPC,
    )?;
    let pos = position(&f)?;
    ensure!(
        pos == size as i64,
        "the failed write moved the position to {pos}"
    );
    ctx.check_file("after the failed writes", &f)
}

/// write and pwrite on an O_RDONLY descriptor fail with EBADF.
pub(crate) fn write_rdonly_ebadf(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    expect_errno(
        "write(8) on an O_RDONLY fd",
        (&f).write(&[0x5a; 8]),
        libc::EBADF,
    )?;
    expect_errno(
        "pwrite(8) at 100 on an O_RDONLY fd",
        f.write_at(&[0x5a; 8], 100),
        libc::EBADF,
    )?;
    ctx.check_file("after the failed writes", &f)
}
