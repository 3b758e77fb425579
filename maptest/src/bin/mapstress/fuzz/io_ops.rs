//! The fuzzer's file operations: open, close, read, write, pread, pwrite, lseek, ioctl.

use std::borrow::Cow;

use maptest::raw;

use super::expect::Expect;
use super::model::{Buf, PoolFd, Rw, BAD_FDS, MAX_FDS};
use super::tables::{hex, whence_name, MAX_RW_COUNT};
use super::Fuzz;

impl Fuzz<'_> {
    // --- open, close --------------------------------------------------------------------------

    pub(super) fn op_open(&mut self) -> Result<(), String> {
        if self.fds.len() >= MAX_FDS {
            return self.op_close();
        }
        let access = self.pick_access();
        let r = raw::open(&self.cpath, access.flags() | libc::O_CLOEXEC);
        // Root opens the device with any access mode.
        self.judge(
            format!("open({}, {})", self.dev, access.name()),
            r,
            &Expect::ok_in(0, i64::from(i32::MAX)),
        )?;
        if let Ok(fd) = r {
            self.fds.push(PoolFd {
                fd: fd as i32,
                access,
                pos: 0,
            });
        }
        Ok(())
    }

    pub(super) fn op_close(&mut self) -> Result<(), String> {
        if self.fds.is_empty() || self.rng.chance(1, 10) {
            let fd = self.rng.pick(BAD_FDS);
            // SAFETY: The number is not an open descriptor; close only fails.
            let r = unsafe { raw::close(fd) };
            return self.judge(
                format!("close({fd}) (not open)"),
                r,
                &Expect::err(libc::EBADF),
            );
        }
        let i = self.rng.index(self.fds.len());
        let f = self.fds.remove(i);
        // SAFETY: The descriptor belongs to the pool, which forgets it here; no Rust object owns
        // it. Mappings made through it stay valid (they hold the file).
        let r = unsafe { raw::close(f.fd) };
        self.judge(
            format!("close(fd {} ({}))", f.fd, f.access.name()),
            r,
            &Expect::ok(0),
        )
    }

    // --- read, write, pread, pwrite -----------------------------------------------------------

    pub(super) fn op_rw(&mut self, kind: Rw) -> Result<(), String> {
        let fd = self.pick_fd();
        let pos: i64 = if kind.positional() {
            self.pick_pos()
        } else {
            fd.idx.map_or(0, |i| self.fds[i].pos as i64)
        };
        let (buf, count) = self.pick_buf(kind, pos);
        let moved = count.min(MAX_RW_COUNT).min(self.room(pos));
        // The source of a write from memory of ours: the contract's bytes at `pos` (otherwise
        // an empty slice of the contents in memory, so that its address is still one of ours).
        let src: Cow<'_, [u8]> = if matches!(buf, Buf::Heap) && !kind.reads() && moved > 0 {
            self.c.slice(pos as u64, moved)
        } else {
            self.c.slice(0, 0)
        };
        let ptr: u64 = match buf {
            Buf::Heap if kind.reads() => self.scratch.as_mut_ptr() as u64,
            Buf::Heap => src.as_ptr() as u64,
            Buf::Region { i, ro, .. } => self.regions[i].addr + ro,
            Buf::Unmapped(a) | Buf::Kernel(a) => a,
        };
        let want = self.rw_expect(kind, &fd, pos, count, ptr, buf);
        let what = match buf {
            Buf::Heap => "buffer".to_owned(),
            Buf::Region { i, ro, fault } => format!(
                "at offset {ro:#x} of {}{}",
                self.regions[i].desc(),
                if fault { ", not accessible there" } else { "" }
            ),
            Buf::Unmapped(_) => "unmapped user address".to_owned(),
            Buf::Kernel(_) => "kernel address".to_owned(),
        };
        let at = if kind.positional() {
            format!(", {pos}")
        } else {
            String::new()
        };
        let call = format!(
            "{}({}, {ptr:#x}, {}{at}) [{what}, position {pos}]",
            kind.name(),
            fd.desc(),
            hex(count)
        );
        // SAFETY: The kernel writes (read) or reads (write) at most `moved` bytes at `ptr`:
        // `scratch` has room for them and `src` holds them; a device mapping is chosen so that
        // the whole transfer lies in pages of the region that allow it (or none does, and the
        // first byte faults), and what lands in a MAP_PRIVATE page is recorded below; the
        // other addresses have no memory behind them. The buffer only ever receives the
        // contract's bytes.
        let r = unsafe {
            match kind {
                Rw::Read => raw::read(fd.fd, ptr, count),
                Rw::Write => raw::write(fd.fd, ptr, count),
                Rw::Pread => raw::pread(fd.fd, ptr, count, pos),
                Rw::Pwrite => raw::pwrite(fd.fd, ptr, count, pos),
            }
        };
        drop(src);
        self.judge(call.clone(), r, &want)?;
        if matches!(buf, Buf::Region { .. }) {
            self.count(
                format!("{} (a device mapping as the buffer)", kind.name()),
                r,
            );
        }
        let Ok(n) = r else { return Ok(()) };
        let n = n as u64;
        if !kind.positional() {
            if let Some(i) = fd.idx {
                self.fds[i].pos += n;
            }
        }
        if n == 0 || !kind.reads() {
            return Ok(());
        }
        let pos = pos as u64;
        match buf {
            Buf::Heap => {
                let got = &self.scratch[..n as usize];
                self.c
                    .check(pos, got)
                    .map_err(|m| format!("{call}: wrong bytes: {m}"))?;
            }
            Buf::Region { i, ro, .. } => {
                if !self.regions[i].shared {
                    let data = self.c.slice(pos, n).into_owned();
                    self.set_private(i, ro, &data);
                }
                let readable = self.regions[i].prefix_with(ro, libc::PROT_READ);
                let check = n.min(readable).min(512);
                self.verify_region(i, ro, check, &format!("after {call}"))?;
            }
            _ => {}
        }
        Ok(())
    }

    // --- lseek, ioctl -------------------------------------------------------------------------

    pub(super) fn op_lseek(&mut self) -> Result<(), String> {
        let fd = self.pick_fd();
        let whence = self.pick_whence();
        let off = self.pick_seek_off();
        let pos = fd.idx.map_or(0, |i| self.fds[i].pos as i64);
        let want = self.lseek_expect(&fd, off, whence, pos);
        let call = format!(
            "lseek({}, {off}, {}) [position {pos}]",
            fd.desc(),
            whence_name(whence)
        );
        let r = raw::lseek(fd.fd, off, whence as i32);
        self.judge(call, r, &want)?;
        if let (Ok(p), Some(i)) = (r, fd.idx) {
            self.fds[i].pos = p as u64;
        }
        Ok(())
    }

    pub(super) fn op_ioctl(&mut self) -> Result<(), String> {
        let fd = self.pick_fd();
        let cmd = self.pick_ioctl_cmd();
        let arg = self.pick_ioctl_arg();
        let want = if fd.access.is_none() {
            Expect::err(libc::EBADF)
        } else {
            Expect::err(libc::ENOTTY)
        };
        let call = format!("ioctl({}, {cmd:#x}, {arg:#x})", fd.desc());
        // SAFETY: The commands the VFS itself handles (which may use the argument) are never
        // sent; the driver has no ioctl, so nothing reads or writes through `arg`.
        let r = unsafe { raw::ioctl(fd.fd, cmd, arg) };
        self.judge(call, r, &want)
    }
}
