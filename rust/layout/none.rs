// SPDX-License-Identifier: GPL-2.0

//! No memory map on this architecture: [`super::show`] says the layout is not available.

use super::Region;

/// The number of regions [`regions`] gives.
pub(super) const REGIONS: usize = 0;

/// Never called: there is no layout to check.
pub(super) fn image_phys(_addr: usize) -> u64 {
    0
}

pub(super) fn regions() -> Option<[Region; REGIONS]> {
    None
}
