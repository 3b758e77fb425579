//! The contract's contents with a fast in-memory copy, and the checks both modes make with it:
//! the buffer read back through `pread`, the driver's counters against a baseline.

use std::borrow::Cow;
use std::fs::File;

use maptest::device::pread_exact;
use maptest::errors::OrFail;
use maptest::rng::Rng;
use maptest::{buffer_size, Expected, Mismatch, Stats, PAGE_SIZE};

use crate::PAGE;

/// `Expected` bytes kept in memory for fast comparison and as `write` sources.
const IMAGE_MAX: usize = 8 << 20;

pub(crate) struct Contents {
    expected: Expected,
    pub(crate) size: u64,
    pub(crate) pages: u64,
    /// The expected bytes of `[0, min(size, IMAGE_MAX))`.
    image: Vec<u8>,
}

impl Contents {
    fn new(pages: usize) -> Contents {
        let expected = Expected::new(pages);
        let size = expected.len();
        let image = (0..size.min(IMAGE_MAX)).map(|o| expected.byte(o)).collect();
        Contents {
            expected,
            size: size as u64,
            pages: pages as u64,
            image,
        }
    }

    pub(crate) fn byte(&self, off: u64) -> u8 {
        match self.image.get(off as usize) {
            Some(&b) => b,
            None => self.expected.byte(off as usize),
        }
    }

    /// The expected bytes of `[off, off + len)`, which must lie inside the buffer.
    pub(crate) fn slice(&self, off: u64, len: u64) -> Cow<'_, [u8]> {
        let (o, l) = (off as usize, len as usize);
        match self.image.get(o..o + l) {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned((o..o + l).map(|x| self.expected.byte(x)).collect()),
        }
    }

    /// Compares `data`, the buffer from offset `off` on, with the contract.
    pub(crate) fn check(&self, off: u64, data: &[u8]) -> Result<(), Mismatch> {
        let (o, l) = (off as usize, data.len());
        if self.image.get(o..o + l) == Some(data) {
            return Ok(());
        }
        self.expected.check(o, data)
    }
}

/// Opens the device and learns the size of its buffer.
pub(crate) fn open_contents(dev: &str) -> Result<Contents, String> {
    let f = File::open(dev).or_fail(format!("open {dev}"))?;
    let size = buffer_size(&f).or_fail(format!("lseek(SEEK_END) on {dev}"))?;
    if size == 0 || !size.is_multiple_of(PAGE) {
        return Err(format!(
            "buffer size {size} (from lseek SEEK_END) is not a positive multiple of {PAGE}"
        ));
    }
    let pages =
        usize::try_from(size / PAGE).map_err(|_| format!("buffer size {size} is too big"))?;
    Ok(Contents::new(pages))
}

/// Reads the whole buffer through a new descriptor and compares it with the contract.
pub(crate) fn verify_device(dev: &str, c: &Contents) -> Result<(), String> {
    let f = File::open(dev).or_fail(format!("open {dev}"))?;
    verify_fd(&f, c, 0, c.size)
}

/// Compares `[off, off + len)` of the buffer, read with `pread` on `file`, with the contract.
pub(crate) fn verify_fd(file: &File, c: &Contents, off: u64, len: u64) -> Result<(), String> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; len.min(CHUNK) as usize];
    let mut at = off;
    while at < off + len {
        let n = (off + len - at).min(CHUNK) as usize;
        pread_exact(file, &mut buf[..n], at)?;
        c.check(at, &buf[..n])
            .map_err(|m| format!("pread of the buffer: {m}"))?;
        at += n as u64;
    }
    Ok(())
}

/// Compares the live-object counters with a baseline.
pub(crate) fn check_counters(when: &str, base: &Stats, now: &Stats) -> Result<(), String> {
    let mut bad = Vec::new();
    if now.mappings != base.mappings {
        bad.push(format!(
            "mappings is {}, baseline {}",
            now.mappings, base.mappings
        ));
    }
    if now.opens != base.opens {
        bad.push(format!("opens is {}, baseline {}", now.opens, base.opens));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{when}: {}", bad.join(", ")))
    }
}

/// A random span inside a page to check or write: (offset in the page, length).
pub(crate) fn page_span(rng: &mut Rng) -> (usize, usize) {
    if rng.chance(1, 8) {
        return (0, PAGE_SIZE);
    }
    let off = rng.index(PAGE_SIZE);
    let len = rng.range(1, 64.min((PAGE_SIZE - off) as u64)) as usize;
    (off, len)
}
