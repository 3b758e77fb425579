//! Userspace side of mapdrv: what the buffer must contain, and safe handles on the system calls
//! that map it.
//!
//! Shared by `maptest` (the program a person runs) and `mapcheck` (the test suite run in the
//! guest).

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::ptr::NonNull;

/// The page size mapdrv works in.
pub const PAGE_SIZE: usize = 4096;

/// The period of the fill pattern (a prime).
pub const PATTERN_PERIOD: usize = 251;

/// Where mapdrv publishes its counters.
pub const STATS_PATH: &str = "/sys/kernel/debug/mapdrv/stats";

/// Where mapdrv publishes its page-table walk of the buffer (kernel addresses: root only).
pub const PAGEWALK_PATH: &str = "/sys/kernel/debug/mapdrv/pagewalk";

/// The text that begins page `index` of a buffer of `pages` pages.
pub fn page_header(index: usize, pages: usize) -> String {
    format!("mapdrv page {index} of {pages}\n")
}

/// The contents mapdrv puts in a buffer of `pages` pages: byte `off` is `off % 251`, except that
/// page `i` begins with [`page_header`].
pub struct Expected {
    pages: usize,
    headers: Vec<Vec<u8>>,
}

impl Expected {
    pub fn new(pages: usize) -> Self {
        let headers = (0..pages)
            .map(|i| page_header(i, pages).into_bytes())
            .collect();
        Expected { pages, headers }
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    /// The byte expected at buffer offset `off`.
    pub fn byte(&self, off: usize) -> u8 {
        let (page, in_page) = (off / PAGE_SIZE, off % PAGE_SIZE);
        match self.headers.get(page).and_then(|h| h.get(in_page)) {
            Some(&b) => b,
            None => (off % PATTERN_PERIOD) as u8,
        }
    }

    /// Compares `data`, which holds the buffer from offset `start` on, with the expected
    /// contents; returns the first mismatch.
    pub fn check(&self, start: usize, data: &[u8]) -> Result<(), Mismatch> {
        for (i, &got) in data.iter().enumerate() {
            let want = self.byte(start + i);
            if got != want {
                return Err(Mismatch {
                    offset: start + i,
                    want,
                    got,
                });
            }
        }
        Ok(())
    }
}

/// A byte that differs from the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    pub offset: usize,
    pub want: u8,
    pub got: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offset {} (page {}, byte {}): expected {:#04x}, read {:#04x}",
            self.offset,
            self.offset / PAGE_SIZE,
            self.offset % PAGE_SIZE,
            self.want,
            self.got
        )
    }
}

/// The symbolic name of an errno value (`EINVAL`), or `errno N`.
pub fn errno_name(n: i32) -> String {
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EHWPOISON => "EHWPOISON",
        _ => return format!("errno {n}"),
    };
    name.to_owned()
}

/// An I/O error as its errno name, or its text if it carries no errno.
pub fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n),
        None => e.to_string(),
    }
}

/// The name of a signal number (`SIGSEGV`), or `?`.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => "?",
    }
}

/// Turns a -1 return into the last OS error.
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

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
}

/// Address space set aside (an inaccessible anonymous mapping), aligned as asked, for
/// mappings placed at chosen addresses with [`Mapping::new_at`]. Unmapped on drop.
pub struct Reservation {
    addr: usize,
    len: usize,
}

impl Reservation {
    /// Reserves `len` bytes at an address aligned to `align` (a power of two).
    pub fn new(len: usize, align: usize) -> io::Result<Reservation> {
        let total = len + align;
        // SAFETY: A new inaccessible mapping at an address of the kernel's choice aliases no
        // Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = ptr as usize;
        let addr = start.next_multiple_of(align);
        // Give back what lies outside the aligned part.
        // SAFETY: Both ranges are parts of the mapping just made, which nothing else uses.
        unsafe {
            if addr > start {
                libc::munmap(ptr, addr - start);
            }
            let end = addr + len;
            if start + total > end {
                libc::munmap(end as *mut libc::c_void, start + total - end);
            }
        }
        Ok(Reservation { addr, len })
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
        // SAFETY: The range is ours; mappings placed in it are unmapped with it, and their
        // `Mapping` handles then unmap nothing that belongs to anyone else (drop them first).
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// A mapping made with `mmap(2)`, unmapped on drop.
///
/// Its bytes change under it (another mapping, `write(2)`, another process), so they are only
/// read and written through volatile accesses, never through Rust references.
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
        Self::map(file, offset, len, opts, None)
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
        Self::map(file, offset, len, opts, Some(addr))
    }

    fn map(
        file: &File,
        offset: u64,
        len: usize,
        opts: MapOptions,
        fixed: Option<usize>,
    ) -> io::Result<Mapping> {
        let mut prot = libc::PROT_READ;
        if opts.write {
            prot |= libc::PROT_WRITE;
        }
        if opts.exec {
            prot |= libc::PROT_EXEC;
        }
        let mut flags = if opts.private {
            libc::MAP_PRIVATE
        } else {
            libc::MAP_SHARED
        };
        if opts.populate {
            flags |= libc::MAP_POPULATE;
        }
        if fixed.is_some() {
            flags |= libc::MAP_FIXED;
        }
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: A new mapping at an address of the kernel's choice aliases no Rust object;
        // one at a fixed address replaces only part of a `Reservation`, which holds no Rust
        // object either (checked by `new_at`).
        let ptr = unsafe {
            libc::mmap(
                fixed.map_or(std::ptr::null_mut(), |a| a as *mut libc::c_void),
                len,
                prot,
                flags,
                file.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
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
        let pages = self.len.div_ceil(PAGE_SIZE);
        let mut vec = vec![0u8; pages];
        // SAFETY: The range is our mapping; `vec` has one byte per page.
        cvt(unsafe { libc::mincore(self.ptr.as_ptr().cast(), self.len, vec.as_mut_ptr()) })?;
        Ok(vec.iter().map(|b| b & 1 != 0).collect())
    }

    /// `madvise(2)` on `len` bytes from `off`.
    pub fn madvise(&self, off: usize, len: usize, advice: libc::c_int) -> io::Result<()> {
        // SAFETY: The range lies in our mapping; advice cannot invalidate Rust references, as
        // none exist into the mapping.
        cvt(unsafe { libc::madvise(self.ptr.as_ptr().add(off).cast(), len, advice) }).map(drop)
    }

    /// `mprotect(2)` on the whole mapping.
    pub fn mprotect(&self, prot: libc::c_int) -> io::Result<()> {
        // SAFETY: As for `madvise`.
        cvt(unsafe { libc::mprotect(self.ptr.as_ptr().cast(), self.len, prot) }).map(drop)
    }

    /// `msync(2)` on the whole mapping.
    pub fn msync(&self, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: As for `madvise`.
        cvt(unsafe { libc::msync(self.ptr.as_ptr().cast(), self.len, flags) }).map(drop)
    }

    /// Resizes the mapping in place with `mremap(2)` (no `MREMAP_MAYMOVE`).
    pub fn remap(&mut self, new_len: usize) -> io::Result<()> {
        // SAFETY: Without MREMAP_MAYMOVE the mapping stays where it is; `self.len` follows.
        let p = unsafe { libc::mremap(self.ptr.as_ptr().cast(), self.len, new_len, 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.len = new_len;
        Ok(())
    }

    /// Unmaps `len` bytes at the end of the mapping (a partial `munmap(2)`).
    pub fn unmap_tail(&mut self, len: usize) -> io::Result<()> {
        assert!(len <= self.len && len.is_multiple_of(PAGE_SIZE));
        let keep = self.len - len;
        // SAFETY: The tail is ours; afterwards `self.len` no longer covers it.
        cvt(unsafe { libc::munmap(self.ptr.as_ptr().add(keep).cast(), len) })?;
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
            // SAFETY: We own the mapping and no references into it exist.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// The size of the device's buffer: `lseek(fd, 0, SEEK_END)` (a char device's `st_size` is 0).
pub fn buffer_size(file: &File) -> io::Result<u64> {
    // SAFETY: lseek on a valid descriptor.
    let end = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_END) };
    if end < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: As above; back to the start for the caller.
    if unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(end as u64)
}

/// Checks that `path` is a character device (not a regular file someone created by mistake).
pub fn is_char_device(path: &str) -> io::Result<bool> {
    Ok(std::fs::metadata(path)?.file_type().is_char_device())
}

/// The counters of `/sys/kernel/debug/mapdrv/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub pages: u64,
    /// Fault handler calls that mapped the faulting page.
    pub faults: u64,
    pub mappings: u64,
    pub opens: u64,
    /// Pages the fault handler mapped, neighbours (fault-around) included.
    pub pages_mapped: u64,
    /// The module's `fault_around` parameter: pages per fault.
    pub fault_around: u64,
}

impl Stats {
    pub fn read() -> io::Result<Stats> {
        Self::parse(&std::fs::read_to_string(STATS_PATH)?)
    }

    pub fn parse(text: &str) -> io::Result<Stats> {
        let mut s = Stats::default();
        let mut seen = 0;
        for line in text.lines() {
            let bad = || {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad stats line {line:?}"),
                )
            };
            let (key, value) = line.split_once(": ").ok_or_else(bad)?;
            let value: u64 = value.trim().parse().map_err(|_| bad())?;
            let slot = match key {
                "pages" => &mut s.pages,
                "faults" => &mut s.faults,
                "mappings" => &mut s.mappings,
                "opens" => &mut s.opens,
                "pages_mapped" => &mut s.pages_mapped,
                "fault_around" => &mut s.fault_around,
                _ => return Err(bad()),
            };
            *slot = value;
            seen += 1;
        }
        if seen != 6 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "stats lacks a key",
            ));
        }
        Ok(s)
    }
}

/// `mknod(2)` for a character device node.
pub fn mknod_char(path: &str, major: u32, minor: u32, mode: u32) -> io::Result<()> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let dev = libc::makedev(major, minor);
    // SAFETY: `c` is a valid C string.
    cvt(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | mode as libc::mode_t, dev) }).map(drop)
}

/// The major number `/proc/devices` lists for `name`.
pub fn proc_devices_major(name: &str) -> io::Result<Option<u32>> {
    let text = std::fs::read_to_string("/proc/devices")?;
    let mut in_char = false;
    for line in text.lines() {
        if line.starts_with("Character devices:") {
            in_char = true;
            continue;
        }
        if line.starts_with("Block devices:") {
            in_char = false;
        }
        if in_char {
            let mut it = line.split_whitespace();
            if let (Some(num), Some(n)) = (it.next(), it.next()) {
                if n == name {
                    return Ok(num.parse().ok());
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_overwrite_pattern() {
        let e = Expected::new(3);
        let h = page_header(1, 3);
        assert_eq!(h, "mapdrv page 1 of 3\n");
        for (i, b) in h.bytes().enumerate() {
            assert_eq!(e.byte(PAGE_SIZE + i), b);
        }
        let after = PAGE_SIZE + h.len();
        assert_eq!(e.byte(after), (after % PATTERN_PERIOD) as u8);
        assert_eq!(e.byte(100), (100 % PATTERN_PERIOD) as u8);
    }

    #[test]
    fn check_finds_first_mismatch() {
        let e = Expected::new(1);
        let mut data: Vec<u8> = (0..PAGE_SIZE).map(|o| e.byte(o)).collect();
        assert!(e.check(0, &data).is_ok());
        data[300] ^= 1;
        data[400] ^= 1;
        assert_eq!(e.check(0, &data).unwrap_err().offset, 300);
    }

    #[test]
    fn stats_parse() {
        let text =
            "pages: 16\nfaults: 3\nmappings: 1\nopens: 2\npages_mapped: 5\nfault_around: 4\n";
        assert_eq!(
            Stats::parse(text).unwrap(),
            Stats {
                pages: 16,
                faults: 3,
                mappings: 1,
                opens: 2,
                pages_mapped: 5,
                fault_around: 4,
            }
        );
        assert!(Stats::parse("pages: 16\n").is_err());
        assert!(Stats::parse("pages: x\nfaults: 3\nmappings: 1\nopens: 2\n").is_err());
    }
}
