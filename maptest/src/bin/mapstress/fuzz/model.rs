//! The fuzzer's model of its state: the pool of descriptors, the mappings of the device it
//! holds and what each mapped page must show, and the kinds of arguments it passes.

use std::os::fd::RawFd;

use maptest::Mismatch;

use super::Fuzz;
use crate::PAGE;

/// The most descriptors and mappings the pool holds at once.
pub(super) const MAX_FDS: usize = 6;
pub(super) const MAX_REGIONS: usize = 12;
/// Descriptor numbers that are never open.
pub(super) const BAD_FDS: &[RawFd] = &[-1, 1_000_000, 0x3fff_ffff];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Access {
    Ro,
    Rw,
    Wo,
}

impl Access {
    pub(super) fn flags(self) -> i32 {
        match self {
            Access::Ro => libc::O_RDONLY,
            Access::Rw => libc::O_RDWR,
            Access::Wo => libc::O_WRONLY,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Access::Ro => "O_RDONLY",
            Access::Rw => "O_RDWR",
            Access::Wo => "O_WRONLY",
        }
    }

    pub(super) fn read(self) -> bool {
        self != Access::Wo
    }

    pub(super) fn write(self) -> bool {
        self != Access::Ro
    }
}

/// An open descriptor of the pool.
#[derive(Clone)]
pub(super) struct PoolFd {
    pub(super) fd: RawFd,
    pub(super) access: Access,
    /// The file position (shared with forked children, re-read after each one).
    pub(super) pos: u64,
}

/// A descriptor argument: one of the pool, or one that is not open.
#[derive(Clone, Copy)]
pub(super) struct FdArg {
    pub(super) fd: RawFd,
    pub(super) access: Option<Access>,
    pub(super) idx: Option<usize>,
}

impl FdArg {
    pub(super) fn desc(&self) -> String {
        match self.access {
            Some(a) => format!("fd {} ({})", self.fd, a.name()),
            None => format!("fd {} (not open)", self.fd),
        }
    }
}

/// A mapping of the device the fuzzer made and still has: one `mmap` result, or a piece of one
/// left by a partial `munmap`/`mremap`.
#[derive(Clone)]
pub(super) struct Region {
    pub(super) id: u64,
    pub(super) addr: u64,
    /// Offset in the buffer of the first page.
    pub(super) dev_off: u64,
    pub(super) shared: bool,
    /// How the descriptor it was mapped through was opened.
    pub(super) access: Access,
    /// Per page: `PROT_READ`/`PROT_WRITE` as set by `mmap` and `mprotect`.
    pub(super) prot: Vec<i32>,
    /// Per page, for MAP_PRIVATE: the contents, once the fuzzer changed them (otherwise the
    /// page shows the buffer, which always holds the contract's bytes).
    pub(super) shadow: Vec<Option<Box<[u8]>>>,
    /// `MADV_DONTFORK` was applied to (part of) it: forked children do not get it.
    pub(super) dontfork: bool,
}

impl Region {
    pub(super) fn pages(&self) -> usize {
        self.prot.len()
    }

    pub(super) fn len(&self) -> u64 {
        self.pages() as u64 * PAGE
    }

    /// Whether the area has `VM_SHARED`: MAP_SHARED of a descriptor open for writing.
    pub(super) fn vm_shared(&self) -> bool {
        self.shared && self.access.write()
    }

    pub(super) fn desc(&self) -> String {
        format!(
            "mapping #{} ({} of an {} fd, buffer pages {}..{}, at {:#x})",
            self.id,
            if self.shared {
                "MAP_SHARED"
            } else {
                "MAP_PRIVATE"
            },
            self.access.name(),
            self.dev_off / PAGE,
            self.dev_off / PAGE + self.pages() as u64,
            self.addr
        )
    }

    /// Bytes from region offset `ro` up to the first page whose protection lacks all of `bits`,
    /// or the end.
    pub(super) fn prefix_with(&self, ro: u64, bits: i32) -> u64 {
        let mut p = (ro / PAGE) as usize;
        while p < self.pages() && self.prot[p] & bits != 0 {
            p += 1;
        }
        (p as u64 * PAGE).saturating_sub(ro)
    }
}

/// Reads the byte at `addr`.
///
/// # Safety
///
/// `addr` must lie in a page of a live mapping that can be read (the fuzzer's model says so).
pub(super) unsafe fn peek(addr: u64) -> u8 {
    // SAFETY: The caller guarantees a readable mapped page; volatile, as the kernel and other
    // processes change these bytes behind the compiler's back.
    unsafe { (addr as *const u8).read_volatile() }
}

/// Writes the byte at `addr`.
///
/// # Safety
///
/// `addr` must lie in a page of a live mapping that can be written, which no Rust reference
/// covers.
pub(super) unsafe fn poke(addr: u64, v: u8) {
    // SAFETY: As for `peek`, for writing.
    unsafe { (addr as *mut u8).write_volatile(v) }
}

/// The kind of a `read`/`write` family call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Rw {
    Read,
    Write,
    Pread,
    Pwrite,
}

impl Rw {
    pub(super) fn name(self) -> &'static str {
        match self {
            Rw::Read => "read",
            Rw::Write => "write",
            Rw::Pread => "pread",
            Rw::Pwrite => "pwrite",
        }
    }

    pub(super) fn reads(self) -> bool {
        matches!(self, Rw::Read | Rw::Pread)
    }

    pub(super) fn positional(self) -> bool {
        matches!(self, Rw::Pread | Rw::Pwrite)
    }
}

/// The user buffer of a `read`/`write` family call.
#[derive(Clone, Copy)]
pub(super) enum Buf {
    /// Memory of ours large enough for any transfer the kernel can make.
    Heap,
    /// A mapping of the device, laid out so that the transfer either fully succeeds or faults
    /// on its first byte.
    Region { i: usize, ro: u64, fault: bool },
    /// NULL or an unmapped low address: a user address, but no memory behind it.
    Unmapped(u64),
    /// A kernel address: `access_ok()` refuses it.
    Kernel(u64),
}

/// A range argument of `mprotect`/`madvise`/`msync`.
#[derive(Clone, Copy)]
pub(super) enum Span {
    /// Pages `first..first + pages` of region `i` (the length may be short of the last page by
    /// less than a page).
    In {
        i: usize,
        first: usize,
        pages: usize,
    },
    /// A length of 0 at a page of a region.
    Zero,
    /// An address inside a region that is not page aligned.
    Unaligned,
    /// A range no mapping covers (low addresses or the kernel half).
    Unmapped,
    /// A length whose page rounding or end wraps around: the call fails before any work.
    Overflow,
}

impl Fuzz<'_> {
    pub(super) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    pub(super) fn fd_arg(&self, idx: usize) -> FdArg {
        let f = &self.fds[idx];
        FdArg {
            fd: f.fd,
            access: Some(f.access),
            idx: Some(idx),
        }
    }

    pub(super) fn span_desc(&self, span: Span) -> String {
        match span {
            Span::In { i, first, pages } => {
                format!(
                    "pages {first}..{} of {}",
                    first + pages,
                    self.regions[i].desc()
                )
            }
            Span::Zero => "length 0".into(),
            Span::Unaligned => "unaligned address".into(),
            Span::Unmapped => "nothing mapped".into(),
            Span::Overflow => "length wraps around".into(),
        }
    }

    /// The byte the model says region `r` shows at region offset `off`.
    pub(super) fn model_byte(&self, r: &Region, off: u64) -> u8 {
        match &r.shadow[(off / PAGE) as usize] {
            Some(p) => p[(off % PAGE) as usize],
            None => self.c.byte(r.dev_off + off),
        }
    }

    /// Checks `len` bytes of region `i` from region offset `off` against the model, reading
    /// them through the mapping; every page in the range must be readable.
    pub(super) fn verify_region(
        &mut self,
        i: usize,
        off: u64,
        len: u64,
        what: &str,
    ) -> Result<(), String> {
        self.touches += 1;
        let r = &self.regions[i];
        for o in off..off + len {
            debug_assert!(r.prot[(o / PAGE) as usize] & libc::PROT_READ != 0);
            // SAFETY: `o` lies in region `i`, which is mapped, in a page the model says is
            // readable.
            let got = unsafe { peek(r.addr + o) };
            let want = self.model_byte(r, o);
            if got != want {
                let private = if r.shadow[(o / PAGE) as usize].is_some() {
                    " (a MAP_PRIVATE page the fuzzer wrote)"
                } else {
                    ""
                };
                return Err(format!(
                    "{what}: {} at region offset {o:#x}{private}: {}",
                    r.desc(),
                    Mismatch {
                        offset: (r.dev_off + o) as usize,
                        want,
                        got
                    }
                ));
            }
        }
        Ok(())
    }

    /// Sets the model's bytes of region `i` from region offset `off` (MAP_PRIVATE only).
    pub(super) fn set_private(&mut self, i: usize, off: u64, data: &[u8]) {
        let c = self.c;
        let r = &mut self.regions[i];
        for (k, &b) in data.iter().enumerate() {
            let o = off + k as u64;
            let p = (o / PAGE) as usize;
            let dev_page = r.dev_off + p as u64 * PAGE;
            let page = r.shadow[p]
                .get_or_insert_with(|| c.slice(dev_page, PAGE).into_owned().into_boxed_slice());
            page[(o % PAGE) as usize] = b;
        }
    }

    /// Removes pages `a..b` of region `i` from the model, which the kernel has unmapped.
    pub(super) fn cut(&mut self, i: usize, a: usize, b: usize) {
        let mut r = self.regions.remove(i);
        let tail_prot = r.prot.split_off(b);
        let tail_shadow = r.shadow.split_off(b);
        if !tail_prot.is_empty() {
            let tail = Region {
                id: self.new_id(),
                addr: r.addr + b as u64 * PAGE,
                dev_off: r.dev_off + b as u64 * PAGE,
                shared: r.shared,
                access: r.access,
                prot: tail_prot,
                shadow: tail_shadow,
                dontfork: r.dontfork,
            };
            self.regions.push(tail);
        }
        r.prot.truncate(a);
        r.shadow.truncate(a);
        if a > 0 {
            self.regions.push(r);
        }
    }
}
