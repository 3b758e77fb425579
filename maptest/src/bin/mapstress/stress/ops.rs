//! The threads of a `stress` process: mapping threads (random windows, touches, writes,
//! `MADV_DONTNEED`) and an I/O thread (`pread`/`pwrite`, `lseek` with `read`/`write`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use maptest::errors::{errno_name, OrFail};
use maptest::raw;
use maptest::rng::Rng;
use maptest::{MapOptions, Mapping, Mismatch, PAGE_SIZE};
use rustix::fs::{seek, SeekFrom};
use rustix::io::Errno;
use rustix::mm::Advice;

use super::StressCtx;
use crate::contents::page_span;
use crate::PAGE;
use maptest::device::pread_exact;

/// Checks `len` bytes of `m` from `off` against `want` (the bytes the mapping must show, which
/// hold the buffer from offset `dev_off + off`).
fn check_mapped(
    m: &Mapping,
    off: usize,
    len: usize,
    dev_off: u64,
    want: &[u8],
    what: &str,
) -> Result<(), String> {
    for (i, &w) in want.iter().enumerate().take(len) {
        let got = m.read(off + i);
        if got != w {
            let mis = Mismatch {
                offset: dev_off as usize + off + i,
                want: w,
                got,
            };
            return Err(format!("{what}: {mis}"));
        }
    }
    Ok(())
}

/// One thread mapping random windows of the buffer.
pub(super) fn map_thread(
    ctx: &StressCtx,
    file: &File,
    common: &Mapping,
    rng: &mut Rng,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let mut ops = 0;
    let mut iter = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < ctx.deadline {
        iter += 1;
        let r = if rng.chance(1, 4) {
            common_op(ctx, common, rng)
        } else {
            window_op(ctx, file, rng)
        };
        ops += r.map_err(|e| format!("iteration {iter}: {e}"))?;
    }
    Ok(ops)
}

/// Reads, writes (the contract's bytes) or discards pages of the process's shared mapping.
fn common_op(ctx: &StressCtx, m: &Mapping, rng: &mut Rng) -> Result<u64, String> {
    let pages = m.len() / PAGE_SIZE;
    let k = rng.index(pages);
    let (off, len) = page_span(rng);
    let at = k * PAGE_SIZE + off;
    match rng.below(4) {
        0 | 1 => {
            let want = ctx.c.slice(at as u64, len as u64);
            check_mapped(
                m,
                at,
                len,
                0,
                &want,
                "read through the shared MAP_SHARED window",
            )?;
        }
        2 => {
            let want = ctx.c.slice(at as u64, len as u64);
            for (i, &b) in want.iter().enumerate() {
                m.write(at + i, b);
            }
        }
        _ => {
            let n = rng.range(1, (pages - k) as u64) as usize;
            m.madvise(k * PAGE_SIZE, n * PAGE_SIZE, Advice::LinuxDontNeed)
                .or_fail(format!(
                    "madvise(MADV_DONTNEED) of pages {k}..{} of the shared window",
                    k + n
                ))?;
        }
    }
    Ok(1)
}

/// Maps a random window, touches, writes and discards its pages, unmaps it.
fn window_op(ctx: &StressCtx, file: &File, rng: &mut Rng) -> Result<u64, String> {
    let c = ctx.c;
    let first = rng.below(c.pages);
    let count = rng.range(1, (c.pages - first).min(64));
    let opts = MapOptions {
        write: rng.chance(1, 2),
        exec: false,
        private: rng.chance(1, 4),
        populate: rng.chance(1, 4),
    };
    let dev_off = first * PAGE;
    let what = format!(
        "mapping of pages {first}..{} ({})",
        first + count,
        opts.describe()
    );
    let m = Mapping::new(file, dev_off, (count * PAGE) as usize, opts)
        .or_fail(format!("mmap: {what}"))?;
    let mut ops = 1;
    // MAP_PRIVATE pages this thread wrote: their contents.
    let mut shadow: Vec<Option<Vec<u8>>> = vec![None; count as usize];
    let want_at = |shadow: &[Option<Vec<u8>>], k: usize, off: usize, len: usize| -> Vec<u8> {
        match &shadow[k] {
            Some(p) => p[off..off + len].to_vec(),
            None => c
                .slice(dev_off + (k * PAGE_SIZE + off) as u64, len as u64)
                .into_owned(),
        }
    };

    // Reads a random span of a random page through the mapping and checks it.
    let check_random = |rng: &mut Rng, shadow: &[Option<Vec<u8>>], how: &str| {
        let k = rng.index(count as usize);
        let (off, len) = page_span(rng);
        let want = want_at(shadow, k, off, len);
        let at = k * PAGE_SIZE + off;
        check_mapped(&m, at, len, dev_off, &want, &format!("{how} the {what}"))
    };

    for _ in 0..rng.range(1, 4) {
        check_random(rng, &shadow, "read through")?;
        ops += 1;
    }
    if opts.write && !opts.private && rng.chance(1, 2) {
        let k = rng.index(count as usize);
        let (off, len) = page_span(rng);
        let at = k * PAGE_SIZE + off;
        for (i, &b) in c.slice(dev_off + at as u64, len as u64).iter().enumerate() {
            m.write(at + i, b);
        }
        ops += 1;
    }
    if opts.write && opts.private && rng.chance(1, 2) {
        let k = rng.index(count as usize);
        let (off, len) = page_span(rng);
        let at = k * PAGE_SIZE + off;
        let page = shadow[k]
            .get_or_insert_with(|| c.slice(dev_off + (k * PAGE_SIZE) as u64, PAGE).into_owned());
        for i in 0..len {
            let b = rng.next_u64() as u8;
            page[off + i] = b;
            m.write(at + i, b);
        }
        let want = want_at(&shadow, k, off, len);
        check_mapped(
            &m,
            at,
            len,
            dev_off,
            &want,
            &format!("our own writes through the {what}"),
        )?;
        // Copy-on-write: the device itself still holds the contract's bytes.
        let mut got = vec![0u8; len];
        pread_exact(file, &mut got, dev_off + at as u64)?;
        c.check(dev_off + at as u64, &got)
            .map_err(|mis| format!("pread after writes through a MAP_PRIVATE mapping: {mis}"))?;
        ops += 2;
    }
    if rng.chance(1, 3) {
        m.madvise(0, m.len(), Advice::LinuxDontNeed)
            .or_fail(format!("madvise(MADV_DONTNEED) of the {what}"))?;
        shadow.iter_mut().for_each(|s| *s = None);
        check_random(rng, &shadow, "re-read after MADV_DONTNEED of")?;
        ops += 2;
    }
    drop(m);
    Ok(ops + 1)
}

/// A transfer's result as a plain result: the count, or the errno.
fn io_result(r: rustix::io::Result<usize>) -> Result<u64, i32> {
    r.map(|n| n as u64).map_err(Errno::raw_os_error)
}

/// `lseek` as a plain result: the new position, or the errno.
fn lseek(file: &File, pos: SeekFrom) -> Result<u64, i32> {
    seek(file, pos).map_err(Errno::raw_os_error)
}

fn show_io(r: Result<u64, i32>) -> String {
    match r {
        Ok(n) => format!("{n}"),
        Err(e) => errno_name(e),
    }
}

/// One thread doing `pread`/`pwrite` on the process's descriptor and `lseek` with
/// `read`/`write` on one of its own.
pub(super) fn io_thread(
    ctx: &StressCtx,
    file: &File,
    rng: &mut Rng,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let c = ctx.c;
    let size = c.size;
    let own = OpenOptions::new()
        .read(true)
        .write(true)
        .open(ctx.dev)
        .or_fail(format!("open {} O_RDWR", ctx.dev))?;
    let mut buf = vec![0u8; 3 * PAGE_SIZE];
    // The source of writes: the contract's bytes first, then whatever pads the slice to the
    // length asked for (the kernel stops at the end of the buffer and never reads the padding).
    let mut out = vec![0u8; 2 * PAGE_SIZE];
    let mut ops = 0u64;
    let mut iter = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < ctx.deadline {
        iter += 1;
        let fail = |what: String| format!("iteration {iter}: {what}");
        let off = rng.below(size + PAGE);
        let len = rng.below(3 * PAGE + 1);
        let n_exp = if off >= size { 0 } else { len.min(size - off) };
        match rng.below(8) {
            0..=2 => {
                let r = io_result(rustix::io::pread(file, &mut buf[..len as usize], off));
                if r != Ok(n_exp) {
                    return Err(fail(format!(
                        "pread({len}) at {off}: got {}, expected {n_exp}",
                        show_io(r)
                    )));
                }
                c.check(off, &buf[..n_exp as usize])
                    .map_err(|m| fail(format!("pread({len}) at {off}: {m}")))?;
                ops += 1;
            }
            3 | 4 => {
                let len = len.min(2 * PAGE);
                let n_exp = if off >= size { 0 } else { len.min(size - off) };
                let want = if len == 0 {
                    Ok(0)
                } else if off >= size {
                    Err(libc::ENOSPC)
                } else {
                    Ok(n_exp)
                };
                // The kernel reads at most `n_exp` bytes (the room before the end); with `len`
                // 0 or past the end it reads nothing.
                out[..n_exp as usize].copy_from_slice(&c.slice(off.min(size), n_exp));
                let r = io_result(rustix::io::pwrite(file, &out[..len as usize], off));
                if r != want {
                    return Err(fail(format!(
                        "pwrite({len}) of the contract's bytes at {off}: got {}, expected {}",
                        show_io(r),
                        show_io(want)
                    )));
                }
                ops += 1;
            }
            5 => {
                let pos = rng.below(size + 1);
                let r = lseek(&own, SeekFrom::Start(pos));
                if r != Ok(pos) {
                    return Err(fail(format!("lseek({pos}, SEEK_SET): got {}", show_io(r))));
                }
                let n_exp = len.min(size - pos);
                let r = io_result(rustix::io::read(&own, &mut buf[..len as usize]));
                if r != Ok(n_exp) {
                    return Err(fail(format!(
                        "read({len}) at position {pos}: got {}, expected {n_exp}",
                        show_io(r)
                    )));
                }
                c.check(pos, &buf[..n_exp as usize])
                    .map_err(|m| fail(format!("read({len}) at {pos}: {m}")))?;
                let r = lseek(&own, SeekFrom::Current(0));
                if r != Ok(pos + n_exp) {
                    return Err(fail(format!(
                        "lseek(0, SEEK_CUR) after read({len}) at {pos}: got {}, expected {}",
                        show_io(r),
                        pos + n_exp
                    )));
                }
                ops += 3;
            }
            6 => {
                let back = rng.below(size + 1);
                let pos = size - back;
                let r = lseek(&own, SeekFrom::End(-(back as i64)));
                if r != Ok(pos) {
                    return Err(fail(format!(
                        "lseek(-{back}, SEEK_END): got {}, expected {pos}",
                        show_io(r)
                    )));
                }
                let len = len.min(2 * PAGE);
                let n_exp = len.min(size - pos);
                let want = if len == 0 {
                    Ok(0)
                } else if pos >= size {
                    Err(libc::ENOSPC)
                } else {
                    Ok(n_exp)
                };
                // The kernel reads at most `n_exp` bytes, the contract's bytes at `pos`.
                out[..n_exp as usize].copy_from_slice(&c.slice(pos, n_exp));
                let r = io_result(rustix::io::write(&own, &out[..len as usize]));
                if r != want {
                    return Err(fail(format!(
                        "write({len}) of the contract's bytes at position {pos}: got {}, expected {}",
                        show_io(r),
                        show_io(want)
                    )));
                }
                let after = pos + r.unwrap_or(0);
                let r = lseek(&own, SeekFrom::Current(0));
                if r != Ok(after) {
                    return Err(fail(format!(
                        "lseek(0, SEEK_CUR) after the write: got {}, expected {after}",
                        show_io(r)
                    )));
                }
                ops += 3;
            }
            _ => {
                let cases = [
                    (-1, libc::SEEK_SET, "SEEK_SET"),
                    (size as i64 + 1, libc::SEEK_SET, "SEEK_SET"),
                    (1, libc::SEEK_END, "SEEK_END"),
                    (0, 7, "whence 7"),
                ];
                let (o, w, name) = cases[rng.index(cases.len())];
                // Malformed on purpose (a negative position, an unknown whence): `maptest::raw`.
                let r = raw::lseek(own.as_raw_fd(), o, w).map(|p| p as u64);
                if r != Err(libc::EINVAL) {
                    return Err(fail(format!(
                        "lseek({o}, {name}): got {}, expected EINVAL",
                        show_io(r)
                    )));
                }
                // SAFETY: A negative offset is refused before any memory is touched; `buf` is
                // valid for 16 bytes anyway.
                let r = unsafe { raw::pread(file.as_raw_fd(), buf.as_mut_ptr() as u64, 16, -1) }
                    .map(|n| n as u64);
                if r != Err(libc::EINVAL) {
                    return Err(fail(format!(
                        "pread(16) at -1: got {}, expected EINVAL",
                        show_io(r)
                    )));
                }
                ops += 2;
            }
        }
    }
    Ok(ops)
}
