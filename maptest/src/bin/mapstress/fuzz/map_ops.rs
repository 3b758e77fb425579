//! The fuzzer's operations on mappings: mmap, munmap, mremap, mprotect, madvise, msync, and
//! touching mapped pages.

use super::expect::Expect;
use super::generator::pick_mremap_flag;
use super::model::{poke, Access, Region, Span, MAX_REGIONS};
use super::tables::{
    advice_name, hex, page_align, prot_name, KERNEL_ADDR, LOW_LIMIT, MADV_DONTFORK, MADV_DONTNEED,
    MADV_DONTNEED_LOCKED, PROT_RW,
};
use super::Fuzz;
use crate::contents::page_span;
use crate::PAGE;
use maptest::raw;

impl Fuzz<'_> {
    // --- mmap ---------------------------------------------------------------------------------

    pub(super) fn op_mmap(&mut self) -> Result<(), String> {
        if self.regions.len() >= MAX_REGIONS {
            return self.op_munmap();
        }
        if self.fds.is_empty() {
            return self.op_open();
        }
        let fd = self.pick_fd();
        let (len, off) = self.pick_map_range();
        let prot = self.pick_map_prot();
        let flags = self.pick_map_flags();
        let want = self.mmap_expect(&fd, len, prot, flags, off);
        let flag_name = format!(
            "{}{}",
            if flags & libc::MAP_TYPE == libc::MAP_SHARED {
                "MAP_SHARED"
            } else {
                "MAP_PRIVATE"
            },
            if flags & libc::MAP_POPULATE != 0 {
                "|MAP_POPULATE"
            } else {
                ""
            }
        );
        let call = format!(
            "mmap(NULL, {}, {}, {flag_name}, {}, {})",
            hex(len),
            prot_name(prot),
            fd.desc(),
            hex(off)
        );
        // SAFETY: Without MAP_FIXED the kernel places a new mapping in free address space, so
        // no memory of ours is replaced; a mapping that should not exist is reported.
        let r = unsafe { raw::mmap(0, len, prot, flags, fd.fd, off as i64) };
        self.judge(call.clone(), r, &want)?;
        let Ok(addr) = r else { return Ok(()) };
        let (addr, alen) = (addr as u64, page_align(len));
        if !addr.is_multiple_of(PAGE) {
            return Err(format!(
                "{call} returned {addr:#x}, which is not page aligned"
            ));
        }
        if let Some(o) = self
            .regions
            .iter()
            .find(|o| addr < o.addr + o.len() && o.addr < addr + alen)
        {
            return Err(format!(
                "{call} returned {addr:#x}, overlapping the live {}",
                o.desc()
            ));
        }
        let access = fd.access.unwrap_or(Access::Ro);
        let pages = (alen / PAGE) as usize;
        let id = self.new_id();
        self.regions.push(Region {
            id,
            addr,
            dev_off: off,
            shared: flags & libc::MAP_TYPE == libc::MAP_SHARED,
            access,
            prot: vec![prot & PROT_RW; pages],
            shadow: vec![None; pages],
            dontfork: false,
        });
        if self.trace {
            let d = self.regions.last().map(Region::desc).unwrap_or_default();
            println!("# [{}]   is {d}", self.step);
        }
        Ok(())
    }

    // --- munmap, mremap -----------------------------------------------------------------------

    pub(super) fn op_munmap(&mut self) -> Result<(), String> {
        let (i, addr, n, desc) = self.pick_region();
        let choice = self.rng.below(10);
        let (a, len, want, cut) = match choice {
            0..=4 => (
                addr,
                n as u64 * PAGE - self.rng.below(PAGE),
                Expect::ok(0),
                Some((0, n)),
            ),
            5..=7 if n >= 2 => {
                let first = self.rng.index(n);
                let last = self.rng.range(first as u64 + 1, n as u64) as usize;
                let (first, last) = if first == 0 && last == n {
                    (1, n)
                } else {
                    (first, last)
                };
                let short = if self.rng.chance(1, 4) {
                    self.rng.below(PAGE)
                } else {
                    0
                };
                (
                    addr + first as u64 * PAGE,
                    (last - first) as u64 * PAGE - short,
                    Expect::ok(0),
                    Some((first, last)),
                )
            }
            5..=8 => match self.rng.below(5) {
                0 => (
                    addr + self.rng.range(1, PAGE - 1),
                    PAGE,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                1 => (addr, 0, Expect::err(libc::EINVAL), None),
                2 => (
                    KERNEL_ADDR + PAGE * self.rng.below(256),
                    PAGE,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                3 => (addr, 1 << 63, Expect::err(libc::EINVAL), None),
                _ => (addr, u64::MAX, Expect::err(libc::EINVAL), None),
            },
            _ if self.low_ok => {
                // Nothing is mapped there: success, and nothing happens.
                let p = self.rng.range(1, LOW_LIMIT / PAGE - 1);
                (
                    p * PAGE,
                    PAGE * self.rng.range(1, LOW_LIMIT / PAGE - p),
                    Expect::ok(0),
                    None,
                )
            }
            _ => (addr, 0, Expect::err(libc::EINVAL), None),
        };
        let desc = if (addr..addr + n as u64 * PAGE).contains(&a) {
            desc
        } else {
            "nothing mapped there".to_owned()
        };
        let call = format!("munmap({a:#x}, {}) [{desc}]", hex(len));
        // SAFETY: The range is a region of ours (forgotten below on success), an address range
        // where nothing is mapped, or arguments the kernel refuses before doing anything.
        let r = unsafe { raw::munmap(a, len) };
        self.judge(call, r, &want)?;
        if let (Ok(_), Some((first, last))) = (r, cut) {
            self.cut(i, first, last);
        }
        Ok(())
    }

    pub(super) fn op_mremap(&mut self) -> Result<(), String> {
        let (i, addr, n, desc) = self.pick_region();
        let old = n as u64 * PAGE;
        // (address, old length, new length, flags, expected, pages kept: a..b cut)
        let (a, old_len, new_len, flags, want, cut): (
            u64,
            u64,
            u64,
            i32,
            Expect,
            Option<(usize, usize)>,
        ) = match self.rng.below(10) {
            0..=2 if n >= 2 => {
                let keep = self.rng.range(1, n as u64 - 1);
                let new_len = keep * PAGE - self.rng.below(PAGE);
                (
                    addr,
                    old,
                    new_len,
                    pick_mremap_flag(&mut self.rng),
                    Expect::ok(addr as i64),
                    Some((keep as usize, n)),
                )
            }
            3 if n >= 2 => {
                // Shrinking a head of the region unmaps its middle.
                let o = self.rng.range(2, n as u64);
                let keep = self.rng.range(1, o - 1);
                (
                    addr,
                    o * PAGE,
                    keep * PAGE,
                    0,
                    Expect::ok(addr as i64),
                    Some((keep as usize, o as usize)),
                )
            }
            4 => (
                addr,
                old,
                old,
                pick_mremap_flag(&mut self.rng),
                Expect::ok(addr as i64),
                None,
            ),
            5 | 6 | 0..=3 => {
                // Growing: VM_DONTEXPAND makes it EFAULT (ENOMEM is the other answer the
                // contract allows), in place or moving.
                let more = PAGE * self.rng.range(1, self.pages);
                let want = Expect::err(libc::EFAULT).or(libc::ENOMEM);
                let flags = pick_mremap_flag(&mut self.rng);
                (addr, old, old + more, flags, want, None)
            }
            7 => match self.rng.below(6) {
                0 => (addr, old, 0, 0, Expect::err(libc::EINVAL), None),
                1 => (
                    addr,
                    old,
                    1 << 62,
                    libc::MREMAP_MAYMOVE,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                2 => (
                    addr + self.rng.range(1, PAGE - 1),
                    old,
                    old,
                    0,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                3 => (addr, old, old, 8, Expect::err(libc::EINVAL), None),
                // MREMAP_FIXED needs MREMAP_MAYMOVE.
                4 => (
                    addr,
                    old,
                    old,
                    libc::MREMAP_FIXED,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                // MREMAP_DONTUNMAP is refused for VM_DONTEXPAND areas.
                _ => (
                    addr,
                    old,
                    old,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP,
                    Expect::err(libc::EINVAL),
                    None,
                ),
            },
            _ => {
                // No mapping there: EFAULT, whether shrinking or growing.
                let a = if self.low_ok && self.rng.chance(1, 2) {
                    PAGE * self.rng.range(1, 4)
                } else {
                    KERNEL_ADDR + PAGE * self.rng.below(256)
                };
                let (o, nl) = if self.rng.chance(1, 2) {
                    (2 * PAGE, PAGE)
                } else {
                    (PAGE, 2 * PAGE)
                };
                (a, o, nl, 0, Expect::err(libc::EFAULT), None)
            }
        };
        let desc = if (addr..addr + n as u64 * PAGE).contains(&a) {
            desc
        } else {
            "nothing mapped there".to_owned()
        };
        let call = format!(
            "mremap({a:#x}, {}, {}, {flags:#x}) [{desc}]",
            hex(old_len),
            hex(new_len)
        );
        // SAFETY: The old range is (a head of) a region of ours or unmapped; shrinking unmaps
        // only pages of that region, which the model forgets below; the grows and moves
        // attempted are ones the contract refuses (a success is reported as a failure).
        let r = unsafe { raw::mremap(a, old_len, new_len, flags, 0) };
        self.judge(call, r, &want)?;
        if let (Ok(_), Some((keep, end))) = (r, cut) {
            self.cut(i, keep, end);
        }
        Ok(())
    }

    // --- mprotect, madvise, msync -------------------------------------------------------------

    pub(super) fn op_mprotect(&mut self) -> Result<(), String> {
        let (addr, len, span) = self.pick_span();
        let prot = self.pick_mprotect_prot();
        let want = self.mprotect_expect(addr, len, prot, span);
        let call = format!(
            "mprotect({addr:#x}, {}, {}) [{}]",
            hex(len),
            prot_name(prot),
            self.span_desc(span)
        );
        // SAFETY: The range is inside a region of ours (whose protection the model follows),
        // unmapped, or refused before any change.
        let r = unsafe { raw::mprotect(addr, len, prot) };
        self.judge(call, r, &want)?;
        if let (Ok(_), Span::In { i, first, pages }) = (r, span) {
            let plain = prot & !(libc::PROT_GROWSDOWN | libc::PROT_GROWSUP);
            for p in &mut self.regions[i].prot[first..first + pages] {
                *p = plain & PROT_RW;
            }
        }
        Ok(())
    }

    pub(super) fn op_madvise(&mut self) -> Result<(), String> {
        let (addr, len, span) = self.pick_span();
        let advice = self.pick_advice();
        let want = self.madvise_expect(addr, len, advice, span);
        let call = format!(
            "madvise({addr:#x}, {}, {}) [{}]",
            hex(len),
            advice_name(advice),
            self.span_desc(span)
        );
        // SAFETY: The range is inside a region of ours, unmapped, or refused before any work;
        // the advice values that could poison pages are never sent. Discarded pages of private
        // regions are forgotten by the model below.
        let r = unsafe { raw::madvise(addr, len, advice) };
        self.judge(call, r, &want)?;
        if let (Ok(_), Span::In { i, first, pages }) = (r, span) {
            match advice {
                MADV_DONTNEED | MADV_DONTNEED_LOCKED => {
                    for s in &mut self.regions[i].shadow[first..first + pages] {
                        *s = None;
                    }
                }
                MADV_DONTFORK => self.regions[i].dontfork = true,
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn op_msync(&mut self) -> Result<(), String> {
        let (addr, len, span) = self.pick_span();
        let flags = self.pick_msync_flags();
        let want = self.msync_expect(addr, len, flags, span);
        let call = format!(
            "msync({addr:#x}, {}, {flags:#x}) [{}]",
            hex(len),
            self.span_desc(span)
        );
        // msync changes no memory contents; the range is ours, unmapped or refused.
        let r = raw::msync(addr, len, flags);
        self.judge(call, r, &want)
    }

    // --- touching mapped pages ----------------------------------------------------------------

    pub(super) fn op_touch(&mut self) -> Result<(), String> {
        let i = self.rng.index(self.regions.len());
        let n = self.regions[i].pages();
        let p = self.rng.index(n);
        let prot = self.regions[i].prot[p];
        let (off, len) = page_span(&mut self.rng);
        let at = p as u64 * PAGE + off as u64;
        let len = len as u64;
        let write =
            prot & libc::PROT_WRITE != 0 && (prot & libc::PROT_READ == 0 || self.rng.chance(1, 2));
        if write {
            let r = &self.regions[i];
            let data: Vec<u8> = if r.shared {
                // Shared: only the contract's bytes.
                self.c.slice(r.dev_off + at, len).into_owned()
            } else {
                (0..len).map(|_| self.rng.next_u64() as u8).collect()
            };
            let base = self.regions[i].addr + at;
            for (k, &b) in data.iter().enumerate() {
                // SAFETY: The byte lies in page `p` of region `i`, which the model says is
                // mapped and writable.
                unsafe { poke(base + k as u64, b) };
            }
            if !self.regions[i].shared {
                self.set_private(i, at, &data);
            }
            self.touches += 1;
            if prot & libc::PROT_READ != 0 {
                self.verify_region(i, at, len, "read back after writing through the mapping")?;
            }
        } else if prot & libc::PROT_READ != 0 {
            self.verify_region(i, at, len, "read through the mapping")?;
        }
        Ok(())
    }
}
