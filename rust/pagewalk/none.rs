// SPDX-License-Identifier: GPL-2.0

//! No explicit walk on this architecture: [`super::walk`] returns
//! [`super::WalkError::Unsupported`] and the driver relies on `vmalloc_to_page()` alone.

use super::{Entry, PagingMode};
use core::fmt;

pub(super) const NAME: &str = "none";

impl Entry {
    /// Never called: no walk reads an entry here.
    pub fn present(&self) -> bool {
        false
    }
    /// Never called: no walk reads an entry here.
    pub fn huge(&self) -> bool {
        false
    }
    /// Never called: no walk reads an entry here.
    pub fn output_address(&self) -> u64 {
        0
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]={:#018x}",
            self.level.name(),
            self.index,
            self.raw
        )
    }
}

pub(super) fn paging_mode() -> Option<PagingMode> {
    None
}

pub(super) fn root() -> Option<(PagingMode, u64)> {
    None
}

#[inline]
pub(super) fn phys_to_virt(_phys: u64) -> usize {
    0
}

/// Never called: there is no walk.
pub(super) fn phys_offset() -> u64 {
    0
}

#[inline]
pub(super) fn vmemmap_base() -> usize {
    0
}

/// Never called: [`root`] gives no table.
///
/// # Safety
///
/// None needed; the signature is that of the other architectures.
#[inline]
pub(super) unsafe fn read_entry(_table: u64, _index: usize) -> u64 {
    0
}
