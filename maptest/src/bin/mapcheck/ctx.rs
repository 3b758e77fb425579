//! The context of a run: the device under test, the size of its buffer and what the contract
//! says it holds, with the ways of opening, mapping, reading and restoring it that every test
//! uses.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use maptest::{buffer_size, Expected, MapOptions, Mapping, Mismatch, OrFail, PAGE_SIZE};

use crate::expect::ensure;
use crate::harness::TestResult;

/// Byte offset of page `k`.
pub(crate) fn page(k: usize) -> usize {
    k * PAGE_SIZE
}

/// A read-only `MAP_SHARED` mapping, the default.
pub(crate) const RO: MapOptions = MapOptions {
    write: false,
    exec: false,
    private: false,
    populate: false,
};
/// A writable `MAP_SHARED` mapping.
pub(crate) const RW_SHARED: MapOptions = MapOptions { write: true, ..RO };
/// A writable `MAP_PRIVATE` mapping.
pub(crate) const RW_PRIVATE: MapOptions = MapOptions {
    write: true,
    private: true,
    ..RO
};

/// Where an mmap that should have failed put its mapping (already unmapped again).
pub(crate) struct MappedAt(usize);

impl fmt::Debug for MappedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mapped at {:#x}", self.0)
    }
}

/// Tries an mmap that should fail; if it succeeds, the mapping is unmapped at once.
pub(crate) fn try_map(
    file: &File,
    offset: usize,
    len: usize,
    opts: MapOptions,
) -> io::Result<MappedAt> {
    Mapping::new(file, offset as u64, len, opts).map(|m| MappedAt(m.addr()))
}

/// The file position (`lseek(fd, 0, SEEK_CUR)`).
pub(crate) fn position(file: &File) -> Result<i64, String> {
    let pos = rustix::fs::tell(file).or_fail("lseek(0, SEEK_CUR)")?;
    Ok(pos as i64)
}

/// Reads exactly `len` bytes at `off` with `pread`, failing on a premature end of file.
pub(crate) fn pread_exact(file: &File, off: usize, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    maptest::device::pread_exact(file, &mut buf, off as u64)?;
    Ok(buf)
}

/// The device under test and what its buffer holds.
pub(crate) struct Ctx {
    pub(crate) device: String,
    /// Buffer size in bytes, from `lseek(SEEK_END)`.
    pub(crate) size: usize,
    pub(crate) pages: usize,
    pub(crate) expected: Expected,
}

impl Ctx {
    pub(crate) fn new(device: &str) -> Result<Ctx, String> {
        let file = File::open(device).or_fail(format!("open {device}"))?;
        let size = buffer_size(&file).or_fail(format!("lseek(SEEK_END) on {device}"))?;
        let size = usize::try_from(size).map_err(|_| format!("buffer size {size} is too big"))?;
        ensure!(
            size.is_multiple_of(PAGE_SIZE),
            "buffer size {size} (from lseek SEEK_END) is not a multiple of {PAGE_SIZE}"
        );
        let pages = size / PAGE_SIZE;
        ensure!(
            pages >= 4,
            "the buffer has {pages} pages; mapcheck needs at least 4"
        );
        Ok(Ctx {
            device: device.to_owned(),
            size,
            pages,
            expected: Expected::new(pages),
        })
    }

    /// Opens the device read-only, or read-write.
    pub(crate) fn open(&self, write: bool) -> Result<File, String> {
        let mode = if write { "O_RDWR" } else { "O_RDONLY" };
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(&self.device)
            .or_fail(format!("open {} {mode}", self.device))
    }

    /// Maps `pages` pages of `file` from page `first`.
    pub(crate) fn map(
        &self,
        file: &File,
        first: usize,
        pages: usize,
        opts: MapOptions,
    ) -> Result<Mapping, String> {
        Mapping::new(file, page(first) as u64, page(pages), opts).or_fail(format!(
            "mmap of {pages} pages at page offset {first} ({})",
            opts.describe()
        ))
    }

    /// The expected contents of `len` bytes from buffer offset `off`.
    pub(crate) fn expected_bytes(&self, off: usize, len: usize) -> Vec<u8> {
        (off..off + len).map(|o| self.expected.byte(o)).collect()
    }

    /// Checks every byte of a mapping that begins at buffer offset `start`.
    pub(crate) fn check_mapping(&self, what: &str, m: &Mapping, start: usize) -> TestResult {
        self.expected
            .check(start, &m.to_vec())
            .map_err(|mis| format!("{what}: {mis}"))
    }

    /// Checks the whole buffer as `pread` returns it.
    pub(crate) fn check_file(&self, what: &str, file: &File) -> TestResult {
        let got = pread_exact(file, 0, self.size)?;
        self.expected
            .check(0, &got)
            .map_err(|mis| format!("{what}: pread: {mis}"))
    }

    /// Writes the original bytes of `[off, off + len)` back with `pwrite`.
    pub(crate) fn restore(&self, file: &File, off: usize, len: usize) -> TestResult {
        file.write_all_at(&self.expected_bytes(off, len), off as u64)
            .or_fail(format!("pwrite restoring {len} bytes at {off}"))
    }

    /// Checks the buffer; if it differs from the contract, writes the contract back and
    /// returns the first difference.
    pub(crate) fn repair(&self) -> Result<Option<Mismatch>, String> {
        let file = self.open(true)?;
        let got = pread_exact(&file, 0, self.size)?;
        match self.expected.check(0, &got) {
            Ok(()) => Ok(None),
            Err(mis) => {
                self.restore(&file, 0, self.size)?;
                Ok(Some(mis))
            }
        }
    }
}
