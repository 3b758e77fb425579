// SPDX-License-Identifier: GPL-2.0

//! The x86_64 memory map (`Documentation/arch/x86/x86_64/mm.rst`): the direct map, vmalloc and
//! vmemmap at bases that move at every boot (`CONFIG_RANDOMIZE_MEMORY`), the kernel image at
//! `__START_KERNEL_map` and the modules right above it.

use super::Region;
use crate::pagewalk;
use kernel::{bindings, page::PAGE_SIZE};

/// The number of regions [`regions`] gives.
pub(super) const REGIONS: usize = 5;

/// Where the kernel image is mapped (`__START_KERNEL_map`).
const START_KERNEL_MAP: usize = 0xffff_ffff_8000_0000;
/// The end of the modules' region: the fixmap begins there.
#[cfg(not(CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP))]
const MODULES_END: usize = 0xffff_ffff_ff00_0000;
#[cfg(CONFIG_DEBUG_KMAP_LOCAL_FORCE_MAP)]
const MODULES_END: usize = 0xffff_ffff_fe00_0000;
/// With KMSAN, the vmalloc region is the first quarter of the area (the rest holds its
/// metadata).
const VMALLOC_PART: usize = if cfg!(CONFIG_KMSAN) { 4 } else { 1 };

/// Where the kernel image starts in physical memory (`phys_base`: where the boot loader put
/// it, or where it relocated itself).
fn phys_base() -> u64 {
    // SAFETY: Set during early boot, read-only afterwards.
    unsafe { bindings::phys_base as u64 }
}

/// The kernel's `__phys_addr_symbol()`: the physical address of `addr` in the kernel image.
pub(super) fn image_phys(addr: usize) -> u64 {
    (addr.wrapping_sub(START_KERNEL_MAP) as u64).wrapping_add(phys_base())
}

pub(super) fn regions() -> Option<[Region; REGIONS]> {
    let five = pagewalk::paging_mode()?.levels() == 5;
    // SAFETY: The bases are set during early boot and read-only afterwards. `high_memory`, the
    // end of the direct map's memory, grows with memory hotplug: a volatile read (READ_ONCE)
    // sees a whole value, possibly a stale one.
    let (page_offset, vmalloc, vmemmap, high_memory) = unsafe {
        (
            bindings::page_offset_base,
            bindings::vmalloc_base,
            bindings::vmemmap_base,
            (&raw const bindings::high_memory).read_volatile() as usize,
        )
    };
    // The number of page frames the direct map covers (the kernel's `max_pfn`).
    let max_pfn = high_memory.saturating_sub(page_offset) / PAGE_SIZE;
    let vmalloc_tb = if five {
        bindings::VMALLOC_SIZE_TB_L5
    } else {
        bindings::VMALLOC_SIZE_TB_L4
    } as usize;
    let image = bindings::KERNEL_IMAGE_SIZE as usize;
    Some([
        Region {
            name: "direct_map",
            start: page_offset,
            end: page_offset + max_pfn * PAGE_SIZE,
            phys: Some(0),
        },
        Region {
            name: "vmalloc",
            start: vmalloc,
            end: vmalloc + (vmalloc_tb << 40) / VMALLOC_PART,
            phys: None,
        },
        Region {
            name: "vmemmap",
            start: vmemmap,
            end: vmemmap + max_pfn * core::mem::size_of::<bindings::page>(),
            phys: None,
        },
        Region {
            name: "kernel_image",
            start: START_KERNEL_MAP,
            end: START_KERNEL_MAP + image,
            phys: Some(image_phys(START_KERNEL_MAP)),
        },
        Region {
            name: "modules",
            start: START_KERNEL_MAP + image,
            end: MODULES_END,
            phys: None,
        },
    ])
}
