//! The model of expected results: for each call, the set of results the contract (or the
//! kernel's own checks, where they come first) allows for its arguments.
//!
//! Each `*_expect` function follows the kernel's order of checks, cited in its comment; the
//! calls whose arguments and expectation are chosen together (`munmap`, `mremap`, `open`,
//! `close`, `ioctl`, `fork`) state theirs where they are made.

use maptest::errors::errno_name;
use maptest::raw::SysResult;

use super::model::{Buf, FdArg, Rw, Span};
use super::tables::{
    is_valid_advice, page_align, CONFIG_ADVICE, MADV_COLD, MADV_COLLAPSE, MADV_DODUMP, MADV_DOFORK,
    MADV_DONTDUMP, MADV_DONTFORK, MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE,
    MADV_GUARD_INSTALL, MADV_GUARD_REMOVE, MADV_HUGEPAGE, MADV_KEEPONFORK, MADV_MERGEABLE,
    MADV_NOHUGEPAGE, MADV_NORMAL, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
    MADV_RANDOM, MADV_REMOVE, MADV_SEQUENTIAL, MADV_UNMERGEABLE, MADV_WILLNEED, MADV_WIPEONFORK,
    MAX_RW_COUNT, NO_ROOM_LEN, PROT_RW, PROT_SEM, USER_MAX_4L, USER_MAX_5L,
};
use super::Fuzz;
use crate::PAGE;

/// A call's result as printed: its value (in hex if large) or its errno's name.
pub(super) fn show(r: SysResult) -> String {
    match r {
        Ok(v) if v > 0xffff_ffff => format!("{v:#x}"),
        Ok(v) => format!("{v}"),
        Err(e) => errno_name(e),
    }
}

/// The results allowed for one call: success with a value in a range, and errors.
#[derive(Clone, Debug)]
pub(super) struct Expect {
    ok: Option<(i64, i64)>,
    errs: Vec<i32>,
}

impl Expect {
    pub(super) fn ok(v: i64) -> Expect {
        Expect {
            ok: Some((v, v)),
            errs: Vec::new(),
        }
    }

    pub(super) fn ok_in(lo: i64, hi: i64) -> Expect {
        Expect {
            ok: Some((lo, hi)),
            errs: Vec::new(),
        }
    }

    pub(super) fn err(e: i32) -> Expect {
        Expect {
            ok: None,
            errs: vec![e],
        }
    }

    /// Also allows the error `e`.
    pub(super) fn or(mut self, e: i32) -> Expect {
        if !self.errs.contains(&e) {
            self.errs.push(e);
        }
        self
    }

    /// Also allows success with the value `v` (only where no other success is allowed).
    pub(super) fn or_ok(mut self, v: i64) -> Expect {
        if self.ok.is_none() {
            self.ok = Some((v, v));
        }
        self
    }

    pub(super) fn allows(&self, r: SysResult) -> bool {
        match r {
            Ok(v) => self.ok.is_some_and(|(lo, hi)| (lo..=hi).contains(&v)),
            Err(e) => self.errs.contains(&e),
        }
    }

    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        match self.ok {
            Some((lo, hi)) if lo == hi => parts.push(format!("success ({})", show(Ok(lo)))),
            Some((lo, hi)) => parts.push(format!("success ({}..={})", show(Ok(lo)), show(Ok(hi)))),
            None => {}
        }
        parts.extend(self.errs.iter().map(|&e| errno_name(e)));
        parts.join(" or ")
    }
}

impl Fuzz<'_> {
    /// What `mmap(NULL, len, prot, flags, fd, off)` may return, in the order the kernel checks
    /// (arch/x86/kernel/sys_x86_64.c, mm/mmap.c `do_mmap()`, then the driver).
    pub(super) fn mmap_expect(
        &self,
        fd: &FdArg,
        len: u64,
        prot: i32,
        flags: i32,
        off: u64,
    ) -> Expect {
        // sys_mmap: the offset must be page aligned.
        if !off.is_multiple_of(PAGE) {
            return Expect::err(libc::EINVAL);
        }
        let Some(access) = fd.access else {
            return Expect::err(libc::EBADF);
        };
        if len == 0 {
            return Expect::err(libc::EINVAL);
        }
        let alen = page_align(len);
        // The length rounds up to 0.
        if alen == 0 {
            return Expect::err(libc::ENOMEM);
        }
        let (pgoff, npages) = (off / PAGE, alen / PAGE);
        if pgoff.checked_add(npages).is_none() {
            return Expect::err(libc::EOVERFLOW);
        }
        // Longer than the address space: get_unmapped_area() fails (with 5-level paging too,
        // as a NULL hint keeps to the 47-bit window).
        if alen > USER_MAX_4L {
            return Expect::err(libc::ENOMEM);
        }
        // A very long mapping may find no free range: ENOMEM before anything else.
        let no_room = alen > NO_ROOM_LEN;
        let shared = flags & libc::MAP_TYPE == libc::MAP_SHARED;
        let mut want = if pgoff > (u64::MAX - alen) / PAGE {
            // file_mmap_ok(): the end of the range overflows the file offsets.
            Expect::err(libc::EOVERFLOW)
        } else if (shared && prot & libc::PROT_WRITE != 0 && !access.write()) || !access.read() {
            // Writable MAP_SHARED needs FMODE_WRITE; any mapping needs FMODE_READ.
            Expect::err(libc::EACCES)
        } else {
            // From here on, a private writable mapping is charged against the overcommit limit
            // first (ENOMEM for one longer than RAM), then the driver decides: PROT_EXEC is
            // EPERM (also what the kernel says first on a noexec mount such as devtmpfs), a
            // range outside the buffer EINVAL.
            let mut w = if prot & libc::PROT_EXEC != 0 {
                Expect::err(libc::EPERM)
            } else if pgoff + npages > self.pages {
                Expect::err(libc::EINVAL)
            } else {
                Expect::ok_in(PAGE as i64, USER_MAX_5L as i64)
            };
            if !shared && prot & libc::PROT_WRITE != 0 && alen >= self.totalram {
                w = w.or(libc::ENOMEM);
            }
            w
        };
        if no_room {
            want = want.or(libc::ENOMEM);
        }
        want
    }

    /// What `mprotect(addr, len, prot)` may return: mm/mprotect.c `do_mprotect_pkey()`, in its
    /// order.
    pub(super) fn mprotect_expect(&self, addr: u64, len: u64, prot: i32, span: Span) -> Expect {
        let grows = prot & (libc::PROT_GROWSDOWN | libc::PROT_GROWSUP);
        let plain = prot & !grows;
        let alen = page_align(len);
        if grows == libc::PROT_GROWSDOWN | libc::PROT_GROWSUP || !addr.is_multiple_of(PAGE) {
            Expect::err(libc::EINVAL)
        } else if len == 0 {
            Expect::ok(0)
        } else if addr.wrapping_add(alen) <= addr {
            Expect::err(libc::ENOMEM)
        } else if plain & !(PROT_RW | libc::PROT_EXEC | PROT_SEM) != 0 {
            // arch_validate_prot()
            Expect::err(libc::EINVAL)
        } else if let Span::In { i, .. } = span {
            let r = &self.regions[i];
            if grows != 0 {
                // Our areas grow in neither direction.
                Expect::err(libc::EINVAL)
            } else if plain & libc::PROT_EXEC != 0 {
                // The driver cleared VM_MAYEXEC.
                Expect::err(libc::EACCES)
            } else if plain & libc::PROT_WRITE != 0 && r.shared && !r.access.write() {
                // No VM_MAYWRITE for a shared mapping of a read-only descriptor.
                Expect::err(libc::EACCES)
            } else {
                Expect::ok(0)
            }
        } else {
            // Nothing mapped at the start.
            Expect::err(libc::ENOMEM)
        }
    }

    /// What `madvise(addr, len, advice)` may return: mm/madvise.c `do_madvise()`, the advice,
    /// then `check_input_range()`, then the areas ([`Fuzz::advice_expect`]).
    pub(super) fn madvise_expect(&self, addr: u64, len: u64, advice: i32, span: Span) -> Expect {
        let alen = page_align(len);
        let want = if !is_valid_advice(advice)
            || !addr.is_multiple_of(PAGE)
            || (len != 0 && alen == 0)
            || addr.wrapping_add(alen) < addr
        {
            Expect::err(libc::EINVAL)
        } else if len == 0 {
            Expect::ok(0)
        } else {
            match span {
                Span::In { i, first, pages } => self.advice_expect(advice, i, first, pages),
                _ => Expect::err(libc::ENOMEM),
            }
        };
        if CONFIG_ADVICE.contains(&advice) {
            want.or(libc::EINVAL)
        } else {
            want
        }
    }

    /// What madvise of `advice` on pages `first..first + pages` of region `i` may return.
    pub(super) fn advice_expect(
        &self,
        advice: i32,
        i: usize,
        first: usize,
        pages: usize,
    ) -> Expect {
        let r = &self.regions[i];
        let prots = &r.prot[first..first + pages];
        match advice {
            MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_WILLNEED | MADV_DONTNEED
            | MADV_DONTNEED_LOCKED | MADV_DONTFORK | MADV_DONTDUMP | MADV_KEEPONFORK
            | MADV_COLD | MADV_PAGEOUT => Expect::ok(0),
            // MADV_FREE is for anonymous memory; DOFORK, DODUMP and guard regions are refused
            // for VM_SPECIAL (VM_MIXEDMAP, VM_DONTEXPAND) areas; WIPEONFORK needs anonymous.
            MADV_FREE | MADV_DOFORK | MADV_DODUMP | MADV_WIPEONFORK | MADV_GUARD_INSTALL
            | MADV_GUARD_REMOVE => Expect::err(libc::EINVAL),
            // Punching a hole: EACCES unless shared and writable, then the VFS answers ENODEV
            // (fallocate on a character device).
            MADV_REMOVE => {
                if r.vm_shared() {
                    Expect::err(libc::ENODEV)
                } else {
                    Expect::err(libc::EACCES)
                }
            }
            // Valid only with CONFIG_KSM / CONFIG_TRANSPARENT_HUGEPAGE; they do nothing to a
            // VM_SPECIAL area then (MADV_COLLAPSE refuses it).
            MADV_MERGEABLE | MADV_UNMERGEABLE | MADV_HUGEPAGE | MADV_NOHUGEPAGE => {
                Expect::err(libc::EINVAL).or_ok(0)
            }
            MADV_COLLAPSE => Expect::err(libc::EINVAL),
            // GUP checks the area's permissions: EINVAL where they lack.
            MADV_POPULATE_READ => {
                if prots.iter().all(|p| p & libc::PROT_READ != 0) {
                    Expect::ok(0)
                } else {
                    Expect::err(libc::EINVAL)
                }
            }
            MADV_POPULATE_WRITE => {
                if prots.iter().all(|p| p & libc::PROT_WRITE != 0) {
                    Expect::ok(0)
                } else {
                    Expect::err(libc::EINVAL)
                }
            }
            _ => Expect::err(libc::EINVAL),
        }
    }

    /// What `msync(addr, len, flags)` may return: mm/msync.c, in its order.
    pub(super) fn msync_expect(&self, addr: u64, len: u64, flags: i32, span: Span) -> Expect {
        let alen = page_align(len);
        let end = addr.wrapping_add(alen);
        if flags & !(libc::MS_ASYNC | libc::MS_INVALIDATE | libc::MS_SYNC) != 0
            || !addr.is_multiple_of(PAGE)
            || (flags & libc::MS_ASYNC != 0 && flags & libc::MS_SYNC != 0)
        {
            Expect::err(libc::EINVAL)
        } else if end < addr {
            Expect::err(libc::ENOMEM)
        } else if end == addr {
            Expect::ok(0)
        } else {
            match span {
                // MS_SYNC of a VM_SHARED area calls vfs_fsync_range(), and so the driver's
                // fsync, which succeeds: the contract says msync works.
                Span::In { .. } => Expect::ok(0),
                _ => Expect::err(libc::ENOMEM),
            }
        }
    }

    /// What a `read`/`write` family call may return (fs/read_write.c, then the driver).
    pub(super) fn rw_expect(
        &self,
        kind: Rw,
        fd: &FdArg,
        pos: i64,
        count: u64,
        ptr: u64,
        buf: Buf,
    ) -> Expect {
        if kind.positional() && pos < 0 {
            return Expect::err(libc::EINVAL);
        }
        let Some(access) = fd.access else {
            return Expect::err(libc::EBADF);
        };
        if (kind.reads() && !access.read()) || (!kind.reads() && !access.write()) {
            return Expect::err(libc::EBADF);
        }
        // access_ok(): the end must not wrap and must be a user address; between the 4-level
        // and the 5-level limit it depends on the paging mode.
        let end = ptr.wrapping_add(count);
        if end < ptr || end > USER_MAX_5L {
            return Expect::err(libc::EFAULT);
        }
        let maybe_efault = end > USER_MAX_4L;
        let want = (|| {
            // rw_verify_area(): the end position must not overflow.
            if kind.positional() && (i128::from(pos) + i128::from(count)) > i128::from(i64::MAX) {
                return Expect::err(libc::EINVAL);
            }
            let count = count.min(MAX_RW_COUNT);
            let pos = pos as u64;
            if kind.reads() {
                if pos >= self.size || count == 0 {
                    return Expect::ok(0);
                }
            } else {
                if count == 0 {
                    return Expect::ok(0);
                }
                if pos >= self.size {
                    return Expect::err(libc::ENOSPC);
                }
            }
            let n = count.min(self.size - pos);
            match buf {
                Buf::Heap | Buf::Region { fault: false, .. } => Expect::ok(n as i64),
                Buf::Unmapped(_) | Buf::Kernel(_) | Buf::Region { fault: true, .. } => {
                    Expect::err(libc::EFAULT)
                }
            }
        })();
        if maybe_efault {
            want.or(libc::EFAULT)
        } else {
            want
        }
    }

    /// What `lseek(fd, off, whence)` may return, the file being at `pos`.
    pub(super) fn lseek_expect(&self, fd: &FdArg, off: i64, whence: u32, pos: i64) -> Expect {
        let size = self.size as i64;
        if fd.access.is_none() {
            Expect::err(libc::EBADF)
        } else if whence > 4 {
            // ksys_lseek(): beyond SEEK_MAX.
            Expect::err(libc::EINVAL)
        } else if whence <= 2 {
            let base = match whence {
                0 => 0,
                1 => pos,
                _ => size,
            };
            let t = i128::from(base) + i128::from(off);
            if (0..=i128::from(size)).contains(&t) {
                Expect::ok(t as i64)
            } else {
                Expect::err(libc::EINVAL)
            }
        } else {
            // SEEK_DATA/SEEK_HOLE: the contract knows only SET/CUR/END; anything else is EINVAL.
            Expect::err(libc::EINVAL)
        }
    }
}
