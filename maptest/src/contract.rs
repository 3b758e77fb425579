//! The buffer contract: what mapdrv's buffer holds, byte for byte.
//!
//! The driver fills its buffer at load so that any byte can be checked from userspace without
//! a copy of the buffer: byte `off` is `off % 251` (a prime, so that no page looks like its
//! neighbour), except that page `i` of `n` begins with the text `mapdrv page i of n\n`. A page
//! mapped from the wrong place shows at once.

use std::fmt;

/// The page size mapdrv works in.
pub const PAGE_SIZE: usize = 4096;

/// The period of the fill pattern (a prime).
pub const PATTERN_PERIOD: usize = 251;

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
}
