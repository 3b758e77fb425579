//! The generator: the weighted choice of each step's call, and the choosers of its arguments,
//! mostly from the edges of each argument class.
//!
//! Every random draw of a run comes from `Fuzz::rng`, in a fixed order: a seed replays the
//! same calls only as long as the choosers draw the same numbers in the same order.

use maptest::rng::Rng;

use super::model::{Access, Buf, FdArg, Rw, Span, BAD_FDS};
use super::tables::{
    is_valid_advice, KERNEL_ADDR, KNOWN_ADVICE, LOW_LIMIT, MADV_DONTNEED, MADV_NORMAL,
    MADV_WILLNEED, MAX_RW_COUNT, PROT_RW, PROT_SEM, SOME_IOCTLS, USER_MAX_4L, VFS_IOCTLS,
};
use super::{Fuzz, HEAP_LIMIT};
use crate::PAGE;

impl Fuzz<'_> {
    /// One step: a call chosen by weight (a call on a mapping when there is none is an `mmap`).
    pub(super) fn one_step(&mut self) -> Result<(), String> {
        // Weights in thousandths.
        const OPS: &[(&str, u32)] = &[
            ("open", 50),
            ("close", 30),
            ("mmap", 120),
            ("munmap", 55),
            ("mremap", 40),
            ("mprotect", 50),
            ("madvise", 80),
            ("msync", 40),
            ("touch", 160),
            ("read", 50),
            ("write", 40),
            ("pread", 70),
            ("pwrite", 60),
            ("lseek", 70),
            ("ioctl", 30),
            ("fork", 3),
        ];
        let weights: Vec<u32> = OPS
            .iter()
            .map(|&(name, w)| {
                if name == "fork" && self.in_child {
                    0
                } else {
                    w
                }
            })
            .collect();
        let op = OPS[self.rng.weighted(&weights)].0;
        let needs_region = matches!(
            op,
            "munmap" | "mremap" | "mprotect" | "madvise" | "msync" | "touch"
        );
        if needs_region && self.regions.is_empty() {
            return self.op_mmap();
        }
        match op {
            "open" => self.op_open(),
            "close" => self.op_close(),
            "mmap" => self.op_mmap(),
            "munmap" => self.op_munmap(),
            "mremap" => self.op_mremap(),
            "mprotect" => self.op_mprotect(),
            "madvise" => self.op_madvise(),
            "msync" => self.op_msync(),
            "touch" => self.op_touch(),
            "read" => self.op_rw(Rw::Read),
            "write" => self.op_rw(Rw::Write),
            "pread" => self.op_rw(Rw::Pread),
            "pwrite" => self.op_rw(Rw::Pwrite),
            "lseek" => self.op_lseek(),
            "ioctl" => self.op_ioctl(),
            _ => self.op_fork(),
        }
    }

    // --- descriptors --------------------------------------------------------------------------

    /// A descriptor argument: mostly one of the pool, sometimes one that is not open.
    pub(super) fn pick_fd(&mut self) -> FdArg {
        if self.fds.is_empty() || self.rng.chance(1, 16) {
            let fd = self.rng.pick(BAD_FDS);
            return FdArg {
                fd,
                access: None,
                idx: None,
            };
        }
        let i = self.rng.index(self.fds.len());
        self.fd_arg(i)
    }

    /// The access mode of a new descriptor.
    pub(super) fn pick_access(&mut self) -> Access {
        [Access::Ro, Access::Rw, Access::Wo][self.rng.weighted(&[35, 45, 20])]
    }

    // --- mmap ---------------------------------------------------------------------------------

    /// The length and offset of an `mmap`: mostly a window inside the buffer (the length may
    /// end inside its last page), otherwise edge values of each.
    pub(super) fn pick_map_range(&mut self) -> (u64, u64) {
        if self.rng.chance(3, 5) {
            let first = self.rng.below(self.pages);
            let count = self.rng.range(1, self.pages - first);
            let short = if self.rng.chance(1, 4) {
                self.rng.below(PAGE)
            } else {
                0
            };
            (count * PAGE - short, first * PAGE)
        } else {
            (self.pick_map_len(), self.pick_map_off())
        }
    }

    fn pick_map_len(&mut self) -> u64 {
        let (size, pages) = (self.size, self.pages);
        match self.rng.below(12) {
            0 => 0,
            1 => 1,
            2 => PAGE * self.rng.range(1, pages),
            3 => size,
            4 => size + 1,
            5 => size + PAGE,
            6 => 1 << 63,
            7 => u64::MAX,
            8 => u64::MAX - self.rng.below(PAGE - 1),
            9 => self.rng.next_u64(),
            10 => self.rng.range(1, size),
            _ => PAGE * self.rng.range(pages + 1, 4 * pages),
        }
    }

    fn pick_map_off(&mut self) -> u64 {
        let (size, pages) = (self.size, self.pages);
        match self.rng.below(11) {
            0 => 0,
            1 => PAGE * self.rng.below(pages),
            2 => size,
            3 => size + PAGE * self.rng.range(1, 16),
            4 => PAGE * self.rng.below(pages) + self.rng.range(1, PAGE - 1),
            5 => 1 << 62,
            6 => (i64::MAX as u64) & !(PAGE - 1),
            7 => 0u64.wrapping_sub(PAGE),
            8 => self.rng.next_u64() & !(PAGE - 1),
            9 => self.rng.next_u64(),
            _ => 0u64.wrapping_sub(PAGE * self.rng.range(1, pages)),
        }
    }

    /// The protection of an `mmap`.
    pub(super) fn pick_map_prot(&mut self) -> i32 {
        let prots = [
            libc::PROT_READ,
            PROT_RW,
            libc::PROT_WRITE,
            libc::PROT_NONE,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::PROT_EXEC,
            PROT_RW | libc::PROT_EXEC,
            libc::PROT_READ | PROT_SEM,
        ];
        prots[self.rng.weighted(&[40, 25, 5, 5, 5, 3, 3, 4])]
    }

    /// The flags of an `mmap`: shared or private, perhaps populated.
    pub(super) fn pick_map_flags(&mut self) -> i32 {
        let mut flags = if self.rng.chance(3, 5) {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        if self.rng.chance(1, 5) {
            flags |= libc::MAP_POPULATE;
        }
        flags
    }

    // --- mappings -----------------------------------------------------------------------------

    /// A random region: its index, address, size in pages and description.
    pub(super) fn pick_region(&mut self) -> (usize, u64, usize, String) {
        let i = self.rng.index(self.regions.len());
        let r = &self.regions[i];
        (i, r.addr, r.pages(), r.desc())
    }

    /// A range argument, mostly inside a random region.
    pub(super) fn pick_span(&mut self) -> (u64, u64, Span) {
        let i = self.rng.index(self.regions.len());
        let (addr, n) = (self.regions[i].addr, self.regions[i].pages());
        match self.rng.below(20) {
            0..=13 => {
                let (first, pages) = if self.rng.chance(2, 5) {
                    (0, n)
                } else {
                    let first = self.rng.index(n);
                    (first, self.rng.range(1, (n - first) as u64) as usize)
                };
                let short = if self.rng.chance(1, 4) {
                    self.rng.below(PAGE)
                } else {
                    0
                };
                (
                    addr + first as u64 * PAGE,
                    pages as u64 * PAGE - short,
                    Span::In { i, first, pages },
                )
            }
            14 => (addr + PAGE * self.rng.below(n as u64), 0, Span::Zero),
            15 => (addr + self.rng.range(1, PAGE - 1), PAGE, Span::Unaligned),
            16 | 17 => {
                let a = if self.low_ok && self.rng.chance(1, 2) {
                    PAGE * self.rng.range(1, 8)
                } else {
                    KERNEL_ADDR + PAGE * self.rng.below(256)
                };
                (a, PAGE * self.rng.range(1, 4), Span::Unmapped)
            }
            _ => {
                // The rounded length is 0, or the end wraps around below the start.
                let len = if self.rng.chance(1, 2) {
                    u64::MAX - self.rng.below(PAGE - 1)
                } else {
                    0u64.wrapping_sub(addr)
                        .wrapping_add(PAGE * self.rng.range(1, 16))
                };
                (addr, len, Span::Overflow)
            }
        }
    }

    /// The protection of an `mprotect`, undefined and growth bits included.
    pub(super) fn pick_mprotect_prot(&mut self) -> i32 {
        let prots = [
            libc::PROT_NONE,
            libc::PROT_READ,
            libc::PROT_WRITE,
            PROT_RW,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::PROT_EXEC,
            PROT_RW | libc::PROT_EXEC,
            libc::PROT_READ | PROT_SEM,
            PROT_RW | PROT_SEM,
            libc::PROT_READ | 0x10,
            libc::PROT_READ | 0x100,
            libc::PROT_READ | libc::PROT_GROWSDOWN,
            libc::PROT_READ | libc::PROT_GROWSUP,
            libc::PROT_GROWSDOWN | libc::PROT_GROWSUP,
        ];
        prots[self
            .rng
            .weighted(&[10, 30, 6, 25, 5, 3, 3, 4, 4, 2, 2, 2, 2, 2])]
    }

    /// The advice of an `madvise`: mostly common ones, then any valid one, then values that
    /// are no advice.
    pub(super) fn pick_advice(&mut self) -> i32 {
        match self.rng.below(20) {
            0..=5 => MADV_DONTNEED,
            6 | 7 => MADV_WILLNEED,
            8 | 9 => MADV_NORMAL,
            10..=16 => self.rng.pick(KNOWN_ADVICE),
            _ => loop {
                // Values that are no advice (HWPOISON and SOFT_OFFLINE are never sent).
                let a = match self.rng.below(3) {
                    0 => self.rng.range(5, 7) as i32,
                    1 => self.rng.range(26, 300) as i32,
                    _ => self.rng.next_u64() as i32,
                };
                if !is_valid_advice(a) {
                    break a;
                }
            },
        }
    }

    /// The flags of an `msync`, invalid combinations included.
    pub(super) fn pick_msync_flags(&mut self) -> i32 {
        [
            libc::MS_ASYNC,
            libc::MS_SYNC,
            libc::MS_INVALIDATE,
            libc::MS_ASYNC | libc::MS_INVALIDATE,
            libc::MS_SYNC | libc::MS_INVALIDATE,
            0,
            libc::MS_ASYNC | libc::MS_SYNC,
            0x8,
        ][self.rng.weighted(&[20, 20, 10, 10, 10, 5, 5, 5])]
    }

    // --- read, write, pread, pwrite -----------------------------------------------------------

    fn pick_count(&mut self) -> u64 {
        let size = self.size;
        match self.rng.below(14) {
            0 => 0,
            1 => 1,
            2..=5 => self.rng.range(2, 2 * PAGE),
            6 => size,
            7 => size + self.rng.range(1, PAGE),
            8 => MAX_RW_COUNT + 1,
            9 => 1 << 31,
            10 => 1 << self.rng.range(32, 63),
            11 => u64::MAX - self.rng.below(PAGE),
            12 => self
                .rng
                .range(USER_MAX_4L - (1 << 32), USER_MAX_4L + (1 << 32)),
            _ => self.rng.next_u64(),
        }
    }

    pub(super) fn pick_pos(&mut self) -> i64 {
        let size = self.size as i64;
        match self.rng.below(14) {
            0 => 0,
            1..=4 => self.rng.range(0, size as u64) as i64,
            5 => size,
            6 => size + self.rng.range(1, 2 * PAGE) as i64,
            7 => i64::MAX,
            8 => i64::MAX - self.rng.below(2 * PAGE) as i64,
            9 => -1,
            10 => i64::MIN,
            11 => -(self.rng.range(1, 1 << 40) as i64),
            12 => size - self.rng.range(1, 64) as i64,
            _ => self.rng.next_u64() as i64,
        }
    }

    /// The user buffer and the count of a `read`/`write` family call at file position `pos`:
    /// mostly ours, sometimes a device mapping, an unmapped or a kernel address. The kernel
    /// moves at most min(count, size - pos) bytes; an ordinary buffer has room for
    /// [`HEAP_LIMIT`] of them, and the count is cut down where more could move.
    pub(super) fn pick_buf(&mut self, kind: Rw, pos: i64) -> (Buf, u64) {
        let mut buf = Buf::Heap;
        let mut count = self.pick_count();
        match self.rng.below(20) {
            12..=15 if !self.regions.is_empty() => {
                let picked = if kind.reads() {
                    self.pick_region_dest(pos)
                } else {
                    self.pick_region_src(pos)
                };
                if let Some((i, ro, most, fault)) = picked {
                    buf = Buf::Region { i, ro, fault };
                    count = match self.rng.below(5) {
                        0 => 0,
                        1 | 2 => most,
                        3 => 1.min(most),
                        _ => self.rng.range(0, most),
                    };
                }
            }
            16 => buf = Buf::Unmapped(0),
            17 if self.low_ok => {
                buf = Buf::Unmapped(PAGE * self.rng.range(1, LOW_LIMIT / PAGE - 1))
            }
            18 | 19 => buf = Buf::Kernel(KERNEL_ADDR + self.rng.below(1 << 20)),
            _ => {}
        }
        let room = self.room(pos);
        if matches!(buf, Buf::Heap) && room > HEAP_LIMIT && count.min(MAX_RW_COUNT) > HEAP_LIMIT {
            count = self.rng.range(0, HEAP_LIMIT);
        }
        (buf, count)
    }

    /// The bytes between file position `pos` and the end of the buffer.
    pub(super) fn room(&self, pos: i64) -> u64 {
        if pos >= 0 && (pos as u64) < self.size {
            self.size - pos as u64
        } else {
            0
        }
    }

    /// A mapping to `read` into at file position `pos`: (region, offset in it, most bytes to
    /// ask for, whether the first byte faults).
    ///
    /// Into a MAP_SHARED mapping only at the very bytes being read (so the buffer does not
    /// change) or at a page that is not writable (nothing is copied); into a MAP_PRIVATE one
    /// anywhere (the model records what lands there).
    fn pick_region_dest(&mut self, pos: i64) -> Option<(usize, u64, u64, bool)> {
        for _ in 0..4 {
            let i = self.rng.index(self.regions.len());
            let r = &self.regions[i];
            let len = r.len();
            let identity = pos >= r.dev_off as i64 && (pos as u64) < r.dev_off + len;
            let ro = if r.shared && identity && self.rng.chance(3, 4) {
                pos as u64 - r.dev_off
            } else if r.shared {
                let closed: Vec<usize> = (0..r.pages())
                    .filter(|&p| r.prot[p] & libc::PROT_WRITE == 0)
                    .collect();
                if closed.is_empty() {
                    continue;
                }
                let p = closed[self.rng.index(closed.len())];
                p as u64 * PAGE + self.rng.below(PAGE)
            } else {
                self.rng.below(len)
            };
            let k = r.prefix_with(ro, libc::PROT_WRITE);
            if k == 0 {
                return Some((i, ro, len - ro, true));
            }
            if r.shared && r.dev_off + ro != pos as u64 {
                continue;
            }
            return Some((i, ro, k, false));
        }
        None
    }

    /// A mapping to `write` from at file position `pos`: (region, offset, most bytes, whether
    /// the first byte faults). The bytes must be the contract's bytes at `pos`.
    fn pick_region_src(&mut self, pos: i64) -> Option<(usize, u64, u64, bool)> {
        for _ in 0..4 {
            let i = self.rng.index(self.regions.len());
            let r = &self.regions[i];
            let len = r.len();
            if self.rng.chance(1, 4) {
                let closed: Vec<usize> = (0..r.pages()).filter(|&p| r.prot[p] == 0).collect();
                if !closed.is_empty() {
                    let p = closed[self.rng.index(closed.len())];
                    let ro = p as u64 * PAGE + self.rng.below(PAGE);
                    return Some((i, ro, len - ro, true));
                }
            }
            if pos < r.dev_off as i64 || pos as u64 >= r.dev_off + len {
                continue;
            }
            let ro = pos as u64 - r.dev_off;
            // x86 maps write-only pages readable: only PROT_NONE stops the kernel's copy.
            let k = r.prefix_with(ro, PROT_RW);
            if k == 0 {
                return Some((i, ro, len - ro, true));
            }
            // The bytes the model holds must be the contract's (MAP_PRIVATE pages may differ).
            let mut m = 0;
            while m < k {
                let o = ro + m;
                if r.shadow[(o / PAGE) as usize].is_none() {
                    m = (o / PAGE + 1) * PAGE - ro;
                    continue;
                }
                if self.model_byte(r, o) != self.c.byte(r.dev_off + o) {
                    break;
                }
                m += 1;
            }
            let m = m.min(k);
            if m > 0 {
                return Some((i, ro, m, false));
            }
        }
        None
    }

    // --- lseek, ioctl -------------------------------------------------------------------------

    /// The whence of an `lseek`: the three the contract knows, SEEK_DATA/SEEK_HOLE, or none.
    pub(super) fn pick_whence(&mut self) -> u32 {
        match self.rng.weighted(&[30, 25, 20, 8, 8, 9]) {
            0 => libc::SEEK_SET as u32,
            1 => libc::SEEK_CUR as u32,
            2 => libc::SEEK_END as u32,
            3 => libc::SEEK_DATA as u32,
            4 => libc::SEEK_HOLE as u32,
            _ => self.rng.pick(&[5, 6, 0xffff, u32::MAX]),
        }
    }

    /// The offset of an `lseek`: around the buffer's bounds, or anything.
    pub(super) fn pick_seek_off(&mut self) -> i64 {
        let size = self.size as i64;
        match self.rng.below(12) {
            0 => 0,
            1..=3 => self.rng.range(0, 2 * size as u64) as i64 - size,
            4 => size,
            5 => -size,
            6 => size + 1,
            7 => -(size + 1),
            8 => i64::MAX,
            9 => i64::MIN,
            10 => self.rng.range(0, PAGE) as i64 - PAGE as i64 / 2,
            _ => self.rng.next_u64() as i64,
        }
    }

    /// An ioctl command: a known one, or any the VFS does not handle itself.
    pub(super) fn pick_ioctl_cmd(&mut self) -> u32 {
        match self.rng.below(3) {
            0 => self.rng.pick(SOME_IOCTLS),
            _ => loop {
                let c = self.rng.next_u64() as u32;
                if !VFS_IOCTLS.contains(&c) {
                    break c;
                }
            },
        }
    }

    /// An ioctl argument: 0, an address of ours, or anything.
    pub(super) fn pick_ioctl_arg(&mut self) -> u64 {
        match self.rng.below(3) {
            0 => 0,
            1 => self.scratch.as_ptr() as u64,
            _ => self.rng.next_u64(),
        }
    }
}

/// `0` or `MREMAP_MAYMOVE`, as likely.
pub(super) fn pick_mremap_flag(rng: &mut Rng) -> i32 {
    if rng.chance(1, 2) {
        0
    } else {
        libc::MREMAP_MAYMOVE
    }
}
