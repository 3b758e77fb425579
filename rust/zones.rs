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
//! `spanned_pages`), as `/proc/zoneinfo` shows them, node by node: the kernel's only node,
//! `contig_page_data`, without `CONFIG_NUMA` (the project's guest kernels), or each of
//! `node_data[]` with it (distribution kernels, such as Debian's). Spans can
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

use kernel::{
    bindings,
    str::{CStr, CStrExt as _},
};

/// A zone: its node and its name (`DMA32`, `Normal`, ...).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// The node the zone belongs to.
    pub node: u32,
    /// The kernel's name of the zone, as in `/proc/zoneinfo`.
    pub name: &'static str,
}

/// The zone whose span holds page frame `pfn`, or `None` if none does (a hole).
pub fn zone_of_pfn(pfn: u64) -> Option<Zone> {
    imp::zone_of_pfn(pfn)
}

/// The first zone of `node`, node number `nid`, whose span holds `pfn`.
///
/// # Safety
///
/// `node` points to a node of the kernel, its `pglist_data`, which is never freed (a node taken
/// offline keeps it, for when it comes back).
unsafe fn zone_in_node(node: *const bindings::pglist_data, nid: u32, pfn: u64) -> Option<Zone> {
    for i in 0..bindings::MAX_NR_ZONES as usize {
        // SAFETY: `node` is valid (the function's safety requirement), and `i` is below the
        // length of its `node_zones` array.
        let zone = unsafe { &raw const (*node).node_zones[i] };
        // SAFETY: `zone` is valid (above). The span changes only with memory hotplug, under the
        // zone's span seqlock; a single aligned volatile read (READ_ONCE) sees a whole value, and
        // a span that changes meanwhile only makes the answer stale.
        let (start, spanned, name) = unsafe {
            (
                (&raw const (*zone).zone_start_pfn).read_volatile(),
                (&raw const (*zone).spanned_pages).read_volatile(),
                (&raw const (*zone).name).read_volatile(),
            )
        };
        if name.is_null() || spanned == 0 {
            continue;
        }
        if (start as u64..start as u64 + spanned as u64).contains(&pfn) {
            // SAFETY: A zone's name is a string literal of the kernel (`zone_names[]`), never
            // freed; it is set at boot, and set again, to the same string, when memory is
            // added to the node.
            let name = unsafe { CStr::from_char_ptr(name) };
            return Some(Zone {
                node: nid,
                name: name.to_str().unwrap_or("?"),
            });
        }
    }
    None
}

/// Without `CONFIG_NUMA` (the project's guest kernels), the kernel's only node is the static
/// `contig_page_data`.
#[cfg(not(CONFIG_NUMA))]
mod imp {
    use super::*;

    pub(super) fn zone_of_pfn(pfn: u64) -> Option<Zone> {
        // SAFETY: `contig_page_data` is the kernel's only node, a static that lives as long as
        // the kernel.
        unsafe { zone_in_node(&raw const bindings::contig_page_data, 0, pfn) }
    }
}

/// With `CONFIG_NUMA` (distribution kernels, such as Debian's), the nodes are `node_data[]`,
/// one entry for each of the `nr_node_ids` possible nodes.
#[cfg(CONFIG_NUMA)]
mod imp {
    use super::*;

    pub(super) fn zone_of_pfn(pfn: u64) -> Option<Zone> {
        // SAFETY: `nr_node_ids` is set during boot, before any module loads, and only read after.
        let nodes = unsafe { (&raw const bindings::nr_node_ids).read() };
        // The C declaration is an array of unknown length (`node_data[]`); it has `MAX_NUMNODES`
        // entries, and `nr_node_ids` is at most that.
        let table = (&raw const bindings::node_data).cast::<*mut bindings::pglist_data>();
        for nid in 0..nodes {
            // SAFETY: `nid` is below `nr_node_ids` (above). An entry is set once, when its
            // node is first set up, and never cleared: a volatile read sees the pointer whole.
            let node = unsafe { table.add(nid as usize).read_volatile() };
            if node.is_null() {
                continue;
            }
            // SAFETY: A non-null entry of `node_data` is a node of the kernel, never freed.
            if let Some(zone) = unsafe { zone_in_node(node, nid, pfn) } {
                return Some(zone);
            }
        }
        None
    }
}
