// SPDX-License-Identifier: GPL-2.0

//! Nodes and zones: which part of physical memory a page frame belongs to.
//!
//! The kernel splits physical memory into nodes (one per bank of memory on a NUMA machine; a
//! single node, 0, elsewhere), and every node into zones by what the memory can be used for:
//! `DMA` (the first 16 MiB, for old ISA devices), `DMA32` (the first 4 GiB, for devices that
//! can only address 32 bits), `Normal` (the rest), and `Movable` (memory the kernel keeps free
//! of unmovable allocations). The page allocator keeps its free blocks per zone, in lists by
//! order (blocks of 2^order pages): `/proc/buddyinfo` counts them.
//!
//! [`zone_of_pfn`] finds the zone of a page frame from the zones' spans (`zone_start_pfn`,
//! `spanned_pages`), as `/proc/zoneinfo` shows them. It is implemented for kernels without
//! `CONFIG_NUMA` (the guest's), whose only node is the kernel's `contig_page_data`. Spans can
//! overlap where `ZONE_MOVABLE` is carved out of another zone (`movablecore=`, memory
//! hotplug); the first zone whose span holds the frame is named then, which may not be the
//! page's own (that is in the page's flags, `page_zone()`, which has no binding a module can
//! call).
//!
//! # Examples
//!
//! ```
//! use crate::{pagewalk, zones};
//!
//! let vbox = VBox::new(0u64, GFP_KERNEL)?;
//! // SAFETY: `vbox` keeps its page mapped during the walk.
//! if let Ok(t) = unsafe { pagewalk::walk(core::ptr::from_ref(&*vbox) as usize) } {
//!     if let Some(z) = zones::zone_of_pfn(t.pfn()) {
//!         pr_info!("node {}, zone {}\n", z.node, z.name);
//!     }
//! }
//! # Ok::<(), Error>(())
//! ```

/// A zone: its node and its name (`DMA32`, `Normal`, ...).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// The node the zone belongs to.
    pub node: u32,
    /// The kernel's name of the zone, as in `/proc/zoneinfo`.
    pub name: &'static str,
}

/// The zone whose span holds page frame `pfn`, or `None` if none does (a hole, or a kernel
/// with `CONFIG_NUMA`, where this is not implemented).
pub fn zone_of_pfn(pfn: u64) -> Option<Zone> {
    imp::zone_of_pfn(pfn)
}

#[cfg(not(CONFIG_NUMA))]
mod imp {
    use super::*;
    use kernel::{
        bindings,
        str::{CStr, CStrExt as _},
    };

    pub(super) fn zone_of_pfn(pfn: u64) -> Option<Zone> {
        let node = &raw const bindings::contig_page_data;
        for i in 0..bindings::MAX_NR_ZONES as usize {
            // SAFETY: `contig_page_data` is the kernel's only node, a static that lives as long
            // as the kernel, and `i` is below the length of its `node_zones` array.
            let zone = unsafe { &raw const (*node).node_zones[i] };
            // SAFETY: `zone` is valid (above). The span changes only with memory hotplug, under
            // the zone's span seqlock; a single aligned volatile read (READ_ONCE) sees a whole
            // value, and a span that changes meanwhile only makes the answer stale.
            let (start, spanned, name) = unsafe {
                (
                    (&raw const (*zone).zone_start_pfn).read_volatile(),
                    (&raw const (*zone).spanned_pages).read_volatile(),
                    (*zone).name,
                )
            };
            if name.is_null() || spanned == 0 {
                continue;
            }
            if (start as u64..start as u64 + spanned as u64).contains(&pfn) {
                // SAFETY: A zone's name is a string literal of the kernel (`zone_names[]`),
                // set at boot and never freed.
                let name = unsafe { CStr::from_char_ptr(name) };
                return Some(Zone {
                    node: 0,
                    name: name.to_str().unwrap_or("?"),
                });
            }
        }
        None
    }
}

#[cfg(CONFIG_NUMA)]
mod imp {
    use super::*;

    pub(super) fn zone_of_pfn(_pfn: u64) -> Option<Zone> {
        None
    }
}
