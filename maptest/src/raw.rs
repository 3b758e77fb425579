//! System calls with the arguments a typed wrapper refuses to pass: the tests of refusals.
//!
//! The contract says what the driver, and the kernel before it, must do with *malformed*
//! arguments: an undefined `PROT_` bit, a negative offset, a length that wraps, an address in
//! the kernel's half, a descriptor that is not open, `SEEK_SET` to -1. `rustix` (rightly) cannot
//! express most of them: its flags are typed bit sets, its offsets unsigned, its descriptors
//! borrowed from open files. So `mapcheck`'s boundary tests and `mapstress fuzz` make these
//! calls here, with raw numbers, through `libc::syscall` (not the C library's wrappers, which
//! check or convert some arguments themselves). Everything well-formed goes through `rustix`
//! elsewhere in the crate.
//!
//! Each call returns a [`SysResult`]: the kernel's return value or its errno, as the kernel
//! gave it.

use std::ffi::{c_long, CStr};
use std::os::fd::RawFd;

/// A system call's result: its return value, or the errno it failed with.
pub type SysResult = Result<i64, i32>;

/// A [`SysResult`] as an `io::Result`, for the code that reports errors by name.
pub fn to_io(r: SysResult) -> std::io::Result<i64> {
    r.map_err(std::io::Error::from_raw_os_error)
}

fn result(ret: c_long) -> SysResult {
    if ret == -1 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(ret)
    }
}

/// `mmap(addr, len, prot, flags, fd, off)` with any values.
///
/// # Safety
///
/// If the call can succeed with `MAP_FIXED` (or `MAP_FIXED_NOREPLACE` where `addr` is free),
/// `[addr, addr + len)` must hold no Rust object: the new mapping replaces what was there.
/// Without those flags the kernel picks free address space, and any arguments are sound.
pub unsafe fn mmap(addr: u64, len: u64, prot: i32, flags: i32, fd: RawFd, off: i64) -> SysResult {
    // SAFETY: The caller guarantees that the mapping, if made, replaces no Rust object; a typed
    // wrapper cannot pass undefined PROT_/MAP_ bits, negative offsets or closed descriptors.
    result(unsafe {
        libc::syscall(
            libc::SYS_mmap,
            addr as c_long,
            len as c_long,
            prot as c_long,
            flags as c_long,
            fd as c_long,
            off as c_long,
        )
    })
}

/// `munmap(addr, len)` with any values.
///
/// # Safety
///
/// `[addr, addr + len)` must hold no Rust object and no page another handle owns (a
/// [`Mapping`](crate::mapping::Mapping) would unmap it again).
pub unsafe fn munmap(addr: u64, len: u64) -> SysResult {
    // SAFETY: The caller guarantees the range is free of Rust objects and handles; a typed
    // wrapper cannot pass unaligned, wrapping or kernel addresses.
    result(unsafe { libc::syscall(libc::SYS_munmap, addr as c_long, len as c_long) })
}

/// `mremap(addr, old_len, new_len, flags, new_addr)` with any values.
///
/// # Safety
///
/// As for [`munmap()`] for the old range (a shrink or a move unmaps part of it), and as for
/// [`mmap()`] with `MAP_FIXED` for the new one if `MREMAP_FIXED` is set.
pub unsafe fn mremap(
    addr: u64,
    old_len: u64,
    new_len: u64,
    flags: i32,
    new_addr: u64,
) -> SysResult {
    // SAFETY: The caller guarantees both ranges are free of Rust objects and handles; a typed
    // wrapper cannot pass undefined MREMAP_ bits or the unaligned addresses the tests send.
    result(unsafe {
        libc::syscall(
            libc::SYS_mremap,
            addr as c_long,
            old_len as c_long,
            new_len as c_long,
            flags as c_long,
            new_addr as c_long,
        )
    })
}

/// `mprotect(addr, len, prot)` with any values.
///
/// # Safety
///
/// No Rust reference may point into the range: a later access through one that the new
/// protection forbids would fault (the crate reads mappings with volatile accesses only).
pub unsafe fn mprotect(addr: u64, len: u64, prot: i32) -> SysResult {
    // SAFETY: The caller guarantees no reference points into the range; a typed wrapper cannot
    // pass undefined PROT_ bits such as PROT_SEM or growth flags on a device mapping.
    result(unsafe {
        libc::syscall(
            libc::SYS_mprotect,
            addr as c_long,
            len as c_long,
            prot as c_long,
        )
    })
}

/// `madvise(addr, len, advice)` with any values.
///
/// # Safety
///
/// No Rust reference may point into the range (advice such as `MADV_DONTNEED` discards the
/// contents of private pages), and the advice must not be `MADV_HWPOISON` or
/// `MADV_SOFT_OFFLINE`, which take the pages out of use for the whole machine.
pub unsafe fn madvise(addr: u64, len: u64, advice: i32) -> SysResult {
    // SAFETY: The caller guarantees the conditions above; rustix's `Advice` is a closed enum
    // and cannot send the unknown values whose refusal is tested.
    result(unsafe {
        libc::syscall(
            libc::SYS_madvise,
            addr as c_long,
            len as c_long,
            advice as c_long,
        )
    })
}

/// `msync(addr, len, flags)` with any values.
pub fn msync(addr: u64, len: u64, flags: i32) -> SysResult {
    // SAFETY: msync writes back or invalidates caches of file pages; it changes no memory of
    // this process, whatever the arguments. Typed flags cannot pass MS_ASYNC|MS_SYNC or
    // undefined bits.
    result(unsafe {
        libc::syscall(
            libc::SYS_msync,
            addr as c_long,
            len as c_long,
            flags as c_long,
        )
    })
}

/// `read(fd, buf, count)` into any address.
///
/// # Safety
///
/// Whatever of `[buf, buf + count)` the kernel may write must hold no Rust object other than
/// plain bytes nobody reads meanwhile; an address with nothing mapped only fails (`EFAULT`).
pub unsafe fn read(fd: RawFd, buf: u64, count: u64) -> SysResult {
    // SAFETY: The caller guarantees the destination; a typed wrapper takes a slice, and cannot
    // pass a bad address or a count beyond the memory behind it, which the tests need.
    result(unsafe { libc::syscall(libc::SYS_read, fd as c_long, buf as c_long, count as c_long) })
}

/// `pread64(fd, buf, count, pos)` into any address, at any position.
///
/// # Safety
///
/// As for [`read()`].
pub unsafe fn pread(fd: RawFd, buf: u64, count: u64, pos: i64) -> SysResult {
    // SAFETY: As in `read`; a typed wrapper cannot pass a negative position either.
    result(unsafe {
        libc::syscall(
            libc::SYS_pread64,
            fd as c_long,
            buf as c_long,
            count as c_long,
            pos as c_long,
        )
    })
}

/// `write(fd, buf, count)` from any address.
///
/// # Safety
///
/// Whatever of `[buf, buf + count)` the kernel may read must be initialised memory nobody
/// writes meanwhile through a Rust reference, or have nothing mapped (`EFAULT`).
pub unsafe fn write(fd: RawFd, buf: u64, count: u64) -> SysResult {
    // SAFETY: The caller guarantees the source; a typed wrapper takes a slice, and cannot pass
    // a bad address or a count beyond the memory behind it.
    result(unsafe {
        libc::syscall(
            libc::SYS_write,
            fd as c_long,
            buf as c_long,
            count as c_long,
        )
    })
}

/// `pwrite64(fd, buf, count, pos)` from any address, at any position.
///
/// # Safety
///
/// As for [`write()`].
pub unsafe fn pwrite(fd: RawFd, buf: u64, count: u64, pos: i64) -> SysResult {
    // SAFETY: As in `write`; a typed wrapper cannot pass a negative position either.
    result(unsafe {
        libc::syscall(
            libc::SYS_pwrite64,
            fd as c_long,
            buf as c_long,
            count as c_long,
            pos as c_long,
        )
    })
}

/// `lseek(fd, off, whence)` with any values (`SEEK_SET` to a negative offset, an unknown
/// `whence`, a descriptor that is not open).
pub fn lseek(fd: RawFd, off: i64, whence: i32) -> SysResult {
    // SAFETY: lseek touches no memory; on a descriptor some `File` owns it moves a position
    // that every user of the file reads from the kernel anyway. `SeekFrom` cannot express a
    // negative absolute offset or an unknown whence.
    result(unsafe {
        libc::syscall(
            libc::SYS_lseek,
            fd as c_long,
            off as c_long,
            whence as c_long,
        )
    })
}

/// `ioctl(fd, cmd, arg)` with a command the driver does not know.
///
/// # Safety
///
/// `cmd` must not be one the VFS handles itself for any file (`FIONREAD`, `FIGETBSZ`, ...):
/// those read or write through `arg`. The driver has no `ioctl`, so for any other command
/// nothing touches `arg`.
pub unsafe fn ioctl(fd: RawFd, cmd: u32, arg: u64) -> SysResult {
    // SAFETY: The caller guarantees that nothing reads or writes through `arg`; rustix's ioctl
    // takes a typed `Ioctl` whose argument it owns, not an arbitrary number.
    result(unsafe { libc::syscall(libc::SYS_ioctl, fd as c_long, cmd as c_long, arg as c_long) })
}

/// `openat(AT_FDCWD, path, flags)`: a new descriptor the caller owns as a number (the fuzzer
/// keeps a pool of them, closed or not, and passes bad ones on purpose).
pub fn open(path: &CStr, flags: i32) -> SysResult {
    // SAFETY: `path` is a valid C string; open touches no other memory of ours.
    result(unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD as c_long,
            path.as_ptr() as c_long,
            flags as c_long,
        )
    })
}

/// `close(fd)` of a descriptor number.
///
/// # Safety
///
/// No `File`, `OwnedFd` or other handle may own `fd`: it would close, or worse, use a later
/// descriptor with the same number. Numbers that are not open only fail (`EBADF`).
pub unsafe fn close(fd: RawFd) -> SysResult {
    // SAFETY: The caller guarantees no handle owns `fd`; typed descriptors cannot be bad.
    result(unsafe { libc::syscall(libc::SYS_close, fd as c_long) })
}
