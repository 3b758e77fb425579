//! Mapping handles: the device's buffer mapped into this process, and address space set aside.
//!
//! A [`Mapping`] is what `mmap(2)` of the device returns, owned: it is unmapped when dropped, and
//! its bytes are only ever read and written through volatile accesses, because the driver's
//! buffer changes under it (another mapping, `write(2)`, another process). The system calls
//! go through `rustix`, whose flags are typed; only `mincore(2)`, which `rustix` does not wrap,
//! is called through `libc`.
//!
//! ```no_run
//! use maptest::mapping::{MapOptions, Mapping};
//!
//! let file = std::fs::File::open("/dev/mapdrv")?;
//! let m = Mapping::new(&file, 0, 4096, MapOptions::default())?;
//! assert_eq!(m.resident()?, [false]); // nothing is mapped before the first touch
//! let first = m.read(0); // the fault handler maps the page now
//! assert_eq!(m.resident()?, [true]);
//! # let _ = first;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::ffi::c_void;
use std::fs::File;
use std::io;
use std::ptr::NonNull;

use rustix::mm::{self, Advice, MapFlags, MprotectFlags, MremapFlags, MsyncFlags, ProtFlags};

use crate::contract::{Expected, Mismatch, PAGE_SIZE};

/// Protection and sharing of a [`Mapping`]; the default is a read-only shared mapping.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapOptions {
    pub write: bool,
    pub exec: bool,
    pub private: bool,
    pub populate: bool,
}

impl MapOptions {
    /// The `PROT_...` and `MAP_...` flags these options stand for, for messages.
    pub fn describe(&self) -> String {
        let mut s = String::from("PROT_READ");
        if self.write {
            s += "|PROT_WRITE";
        }
        if self.exec {
            s += "|PROT_EXEC";
        }
        s += if self.private {
            ", MAP_PRIVATE"
        } else {
            ", MAP_SHARED"
        };
        if self.populate {
            s += "|MAP_POPULATE";
        }
        s
    }

    fn prot(&self) -> ProtFlags {
        let mut prot = ProtFlags::READ;
        if self.write {
            prot |= ProtFlags::WRITE;
        }
        if self.exec {
            prot |= ProtFlags::EXEC;
        }
        prot
    }

    fn flags(&self) -> MapFlags {
        let mut flags = if self.private {
            MapFlags::PRIVATE
        } else {
            MapFlags::SHARED
        };
        if self.populate {
            flags |= MapFlags::POPULATE;
        }
        flags
    }
}

/// Address space set aside (an inaccessible anonymous mapping), aligned as asked, for
/// mappings placed at chosen addresses with [`Mapping::new_at`]. Unmapped on drop.
///
/// # Invariants
///
/// `[addr, addr + len)` is a mapping of this process that no Rust object lives in.
pub struct Reservation {
    addr: usize,
    len: usize,
}

impl Reservation {
    /// Reserves `len` bytes at an address aligned to `align` (a power of two).
    pub fn new(len: usize, align: usize) -> io::Result<Reservation> {
        let total = len + align;
        let ptr = Self::anonymous(std::ptr::null_mut(), total, MapFlags::NORESERVE)?;
        let start = ptr as usize;
        let addr = start.next_multiple_of(align);
        let end = addr + len;
        // Give back what lies outside the aligned part.
        // SAFETY: Both ranges are parts of the mapping just made, which nothing else uses.
        unsafe {
            if addr > start {
                mm::munmap(ptr, addr - start)?;
            }
            if start + total > end {
                mm::munmap(end as *mut c_void, start + total - end)?;
            }
        }
        Ok(Reservation { addr, len })
    }

    /// Reserves `len` bytes where the kernel places a mapping that asks for `hint`: the address
    /// is only a hint, and where it lands tells how large the address space is.
    pub fn near(hint: usize, len: usize) -> io::Result<Reservation> {
        let addr = Self::anonymous(hint as *mut c_void, len, MapFlags::empty())? as usize;
        Ok(Reservation { addr, len })
    }

    fn anonymous(hint: *mut c_void, len: usize, extra: MapFlags) -> io::Result<*mut c_void> {
        // SAFETY: Without MAP_FIXED the kernel places the new inaccessible mapping in free
        // address space (the hint is only a hint): it replaces nothing and aliases no Rust
        // object.
        let ptr = unsafe {
            mm::mmap_anonymous(hint, len, ProtFlags::empty(), MapFlags::PRIVATE | extra)
        }?;
        Ok(ptr)
    }

    pub fn addr(&self) -> usize {
        self.addr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the range is ours and holds no Rust object; mappings
        // placed in it are unmapped with it, and their `Mapping` handles then unmap nothing
        // that belongs to anyone else (drop them first).
        let _ = unsafe { mm::munmap(self.addr as *mut c_void, self.len) };
    }
}

/// A mapping made with `mmap(2)`, unmapped on drop.
///
/// # Invariants
///
/// `[ptr, ptr + len)` is a mapping of this process owned by this handle alone. Its bytes change
/// under it (another mapping, `write(2)`, another process), so they are only read and written
/// through volatile accesses, never through Rust references.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: The mapping is plain memory; moving the handle to another thread is fine.
unsafe impl Send for Mapping {}
// SAFETY: All accesses are volatile reads and writes of bytes; concurrent ones are the
// documented behaviour of shared memory.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` from byte offset `offset`.
    pub fn new(file: &File, offset: u64, len: usize, opts: MapOptions) -> io::Result<Mapping> {
        // SAFETY: Without MAP_FIXED the kernel places the new mapping in free address space:
        // it replaces nothing and aliases no Rust object.
        let ptr = unsafe {
            mm::mmap(
                std::ptr::null_mut(),
                len,
                opts.prot(),
                opts.flags(),
                file,
                offset,
            )
        }?;
        Self::from_raw(ptr, len)
    }

    /// Like [`Mapping::new`], but at address `addr` (`MAP_FIXED`), which must lie in `within`:
    /// the mapping replaces that part of the reservation.
    pub fn new_at(
        file: &File,
        offset: u64,
        len: usize,
        opts: MapOptions,
        within: &Reservation,
        addr: usize,
    ) -> io::Result<Mapping> {
        if addr < within.addr() || addr.saturating_add(len) > within.addr() + within.len() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: The range lies in `within` (checked above), which by its invariant holds no
        // Rust object, so replacing it with the new mapping invalidates nothing.
        let ptr = unsafe {
            mm::mmap(
                addr as *mut c_void,
                len,
                opts.prot(),
                opts.flags() | MapFlags::FIXED,
                file,
                offset,
            )
        }?;
        Self::from_raw(ptr, len)
    }

    /// Maps `len` bytes of anonymous memory (`MAP_PRIVATE | MAP_ANONYMOUS`): the kernel's own
    /// memory to compare the device's with, and the fragmenter's.
    pub fn anonymous(len: usize, opts: MapOptions) -> io::Result<Mapping> {
        let mut flags = MapFlags::PRIVATE;
        if opts.populate {
            flags |= MapFlags::POPULATE;
        }
        // SAFETY: As in `new`.
        let ptr = unsafe { mm::mmap_anonymous(std::ptr::null_mut(), len, opts.prot(), flags) }?;
        Self::from_raw(ptr, len)
    }

    fn from_raw(ptr: *mut c_void, len: usize) -> io::Result<Mapping> {
        let ptr =
            NonNull::new(ptr.cast()).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(Mapping { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    fn start(&self) -> *mut c_void {
        self.ptr.as_ptr().cast()
    }

    fn check(&self, off: usize) {
        assert!(
            off < self.len,
            "offset {off} outside a mapping of {} bytes",
            self.len
        );
    }

    /// Reads the byte at `off` (faulting its page in if needed).
    pub fn read(&self, off: usize) -> u8 {
        self.check(off);
        // SAFETY: `off` is inside the mapping, which stays mapped while `self` lives.
        unsafe { self.ptr.as_ptr().add(off).read_volatile() }
    }

    /// Writes the byte at `off`. The mapping must be writable, or the process gets `SIGSEGV`.
    pub fn write(&self, off: usize, value: u8) {
        self.check(off);
        // SAFETY: As in `read`; writability is the caller's part, a fault is not memory-unsafe.
        unsafe { self.ptr.as_ptr().add(off).write_volatile(value) }
    }

    /// Touches one byte at the start of each page in `pages`, in order: reads it, or with
    /// `write` writes 1 to it. Each first touch of a page faults it in. Returns the sum of the
    /// bytes read, so the reads cannot be optimised away. The range is checked once, not at each
    /// access: this is the loop the benchmark times.
    pub fn touch(&self, pages: std::ops::Range<usize>, write: bool) -> u64 {
        assert!(
            pages.end.saturating_mul(PAGE_SIZE) <= self.len,
            "pages {pages:?} outside a mapping of {} bytes",
            self.len
        );
        let mut sum = 0u64;
        for p in pages {
            // SAFETY: Page `p` lies inside the mapping (checked above), which stays mapped
            // while `self` lives; the access is volatile. Writability is the caller's part: a
            // fault is a signal, not memory-unsafety.
            unsafe {
                let byte = self.ptr.as_ptr().add(p * PAGE_SIZE);
                if write {
                    byte.write_volatile(1);
                } else {
                    sum = sum.wrapping_add(u64::from(byte.read_volatile()));
                }
            }
        }
        sum
    }

    /// Sets every byte of the (writable) mapping to `value`.
    pub fn fill(&self, value: u8) {
        // SAFETY: The range is the whole mapping, mapped while `self` lives; by the type
        // invariant no reference points into it but those of `as_slice`, whose callers promise
        // that nothing writes while theirs lives. A read-only mapping faults: a signal.
        unsafe { self.ptr.as_ptr().write_bytes(value, self.len) }
    }

    /// The mapping's bytes as a slice, for reads at memory speed (the benchmark's).
    ///
    /// # Safety
    ///
    /// Nothing may write to the mapped pages while the slice lives: not this process (through
    /// this or another mapping of the same pages), not `write(2)` to the device, not another
    /// process. A mapping is memory other parties can change, which a `&[u8]` forbids.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: The mapping is `len` bytes, mapped while `self` lives, and readable (every
        // `Mapping` has PROT_READ); the caller guarantees that nothing writes to it meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Copies `len` bytes from `off` out of the mapping.
    pub fn read_range(&self, off: usize, len: usize) -> Vec<u8> {
        (off..off + len).map(|i| self.read(i)).collect()
    }

    /// Compares the mapping, which holds the buffer from offset `start` on, with the expected
    /// contents a page at a time (never a copy of the whole mapping, which may be as large as
    /// memory); returns the first mismatch.
    pub fn verify(&self, expected: &Expected, start: usize) -> Result<(), Mismatch> {
        let mut off = 0;
        while off < self.len {
            let n = PAGE_SIZE.min(self.len - off);
            expected.check(start + off, &self.read_range(off, n))?;
            off += n;
        }
        Ok(())
    }

    /// Copies the whole mapping.
    pub fn to_vec(&self) -> Vec<u8> {
        self.read_range(0, self.len)
    }

    /// Which pages of the mapping are resident, from `mincore(2)`.
    pub fn resident(&self) -> io::Result<Vec<bool>> {
        let mut vec = vec![0u8; self.len.div_ceil(PAGE_SIZE)];
        mincore(self.addr(), self.len, &mut vec)?;
        Ok(vec.iter().map(|b| b & 1 != 0).collect())
    }

    /// `madvise(2)` on `len` bytes from `off`.
    pub fn madvise(&self, off: usize, len: usize, advice: Advice) -> io::Result<()> {
        assert!(off.saturating_add(len) <= self.len);
        // SAFETY: The range lies in our mapping; no Rust reference points into it, so no
        // advice (even one that discards pages) can invalidate one.
        Ok(unsafe { mm::madvise(self.ptr.as_ptr().add(off).cast(), len, advice) }?)
    }

    /// `mprotect(2)` on the whole mapping.
    pub fn mprotect(&self, prot: MprotectFlags) -> io::Result<()> {
        // SAFETY: As for `madvise`; a later access the protection forbids is a signal, not
        // undefined behaviour, as all accesses are volatile.
        Ok(unsafe { mm::mprotect(self.start(), self.len, prot) }?)
    }

    /// `msync(2)` on the whole mapping.
    pub fn msync(&self, flags: MsyncFlags) -> io::Result<()> {
        // SAFETY: msync changes no memory contents; the range is our mapping.
        Ok(unsafe { mm::msync(self.start(), self.len, flags) }?)
    }

    /// Resizes the mapping in place with `mremap(2)` (no `MREMAP_MAYMOVE`).
    pub fn remap(&mut self, new_len: usize) -> io::Result<()> {
        // SAFETY: Without MREMAP_MAYMOVE the mapping stays where it is; a grow only takes free
        // address space after it, and `self.len` follows the new size.
        unsafe { mm::mremap(self.start(), self.len, new_len, MremapFlags::empty()) }?;
        self.len = new_len;
        Ok(())
    }

    /// Unmaps the whole mapping, reporting a failure (dropping it ignores one).
    pub fn unmap(mut self) -> io::Result<()> {
        let len = std::mem::replace(&mut self.len, 0);
        // SAFETY: By the type invariant we own the mapping and no reference points into it;
        // with `len` 0, `drop` unmaps nothing again.
        Ok(unsafe { mm::munmap(self.start(), len) }?)
    }

    /// Unmaps `len` bytes at the end of the mapping (a partial `munmap(2)`).
    pub fn unmap_tail(&mut self, len: usize) -> io::Result<()> {
        assert!(len <= self.len && len.is_multiple_of(PAGE_SIZE));
        let keep = self.len - len;
        // SAFETY: The tail is ours and no reference points into it; afterwards `self.len` no
        // longer covers it.
        unsafe { mm::munmap(self.ptr.as_ptr().add(keep).cast(), len) }?;
        self.len = keep;
        Ok(())
    }

    /// Splits the handle in two at byte `at`, a multiple of [`PAGE_SIZE`] strictly inside the
    /// mapping: `self` keeps `[0, at)` and the returned handle owns `[at, len)`.
    ///
    /// No system call is made (the kernel's area is not split by this). Each handle unmaps only
    /// its own part when dropped, so a hole can be punched in the middle of a mapping with
    /// `split_off` followed by [`Mapping::unmap_tail`] on the first part.
    pub fn split_off(&mut self, at: usize) -> Mapping {
        assert!(
            at > 0 && at < self.len && at.is_multiple_of(PAGE_SIZE),
            "cannot split a mapping of {} bytes at {at}",
            self.len
        );
        // SAFETY: `at` is strictly inside the mapping, so the pointer stays within it (and is
        // not null).
        let ptr = unsafe { self.ptr.add(at) };
        let tail = Mapping {
            ptr,
            len: self.len - at,
        };
        self.len = at;
        tail
    }

    /// The line of `/proc/self/maps` that describes this mapping.
    pub fn maps_line(&self) -> io::Result<String> {
        let maps = std::fs::read_to_string("/proc/self/maps")?;
        let start = format!("{:x}-", self.addr());
        maps.lines()
            .find(|l| l.starts_with(&start))
            .map(str::to_owned)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "mapping not in /proc/self/maps")
            })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: By the type invariant we own the mapping and no reference points into it.
            let _ = unsafe { mm::munmap(self.start(), self.len) };
        }
    }
}

/// `mincore(2)`: one byte per page of `[addr, addr + len)` into `vec`, bit 0 set if resident.
/// Fails with `ENOMEM` if part of the range is not mapped.
///
/// `rustix` has no `mincore`, so this is the one memory call made through `libc`.
pub fn mincore(addr: usize, len: usize, vec: &mut [u8]) -> io::Result<()> {
    assert!(vec.len() >= len.div_ceil(PAGE_SIZE));
    // SAFETY: mincore only reads page tables, whatever is or is not mapped at `addr`, and
    // writes one byte per page into `vec`, which has room for them (checked above).
    if unsafe { libc::mincore(addr as *mut c_void, len, vec.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether no mapping covers the page at `addr` (`mincore(2)` fails with `ENOMEM` then).
/// Allocates nothing, so nothing gets mapped between an `munmap` and this check.
pub fn page_unmapped(addr: usize) -> io::Result<bool> {
    let mut vec = [0u8; 1];
    match mincore(addr, PAGE_SIZE, &mut vec) {
        Ok(()) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => Ok(true),
        Err(e) => Err(e),
    }
}

/// The size of the device's buffer: `lseek(fd, 0, SEEK_END)` (a char device's `st_size` is 0),
/// leaving the file position at 0.
pub fn buffer_size(file: &File) -> io::Result<u64> {
    use rustix::fs::{seek, SeekFrom};
    let end = seek(file, SeekFrom::End(0))?;
    seek(file, SeekFrom::Start(0))?;
    Ok(end)
}
