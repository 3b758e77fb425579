// SPDX-License-Identifier: GPL-2.0

//! The arm64 memory map (`arch/arm64/include/asm/memory.h` and `pgtable.h`), for the
//! configured `VA_BITS`: from the bottom of the kernel's half, the linear map (the direct map)
//! from `PAGE_OFFSET`, the modules' 2 GiB from the middle, `_PAGE_END(VA_BITS_MIN)`, then
//! vmalloc, and vmemmap below the top gigabyte. The kernel image has no region of its own: it
//! is mapped in vmalloc, at `KIMAGE_VADDR` (the end of the modules' region) plus the KASLR
//! offset, and its physical address is the virtual one minus `kimage_voffset`.

use super::Region;
use crate::pagewalk;
use kernel::{bindings, page::PAGE_SHIFT};

/// The number of regions [`regions`] gives.
pub(super) const REGIONS: usize = 4;

/// `_PAGE_OFFSET(va)`: the start of the top `1 << va` bytes.
const fn page_offset(va: u32) -> u64 {
    !0u64 << va
}

/// `_PAGE_END(va)`: the start of the top half of those bytes.
const fn page_end(va: u32) -> u64 {
    !0u64 << (va - 1)
}

/// `PAGE_OFFSET`: the start of the linear map.
pub(crate) const PAGE_OFFSET: u64 = page_offset(bindings::VA_BITS);
/// `MODULES_VADDR`: the modules' region, 2 GiB (`MODULES_VSIZE`) up to `KIMAGE_VADDR`.
const MODULES_VADDR: u64 = page_end(bindings::VA_BITS_MIN);
const MODULES_END: u64 = MODULES_VADDR + (2 << 30);
/// `VMEMMAP_END`: vmemmap ends 1 GiB below the top (PCI I/O and the fixmap are above it).
const VMEMMAP_END: u64 = !0u64 << 30;
/// `sizeof(struct page)`.
pub(crate) const PAGE_STRUCT: u64 = core::mem::size_of::<bindings::page>() as u64;
/// `VMEMMAP_START`: room for a `struct page` for every page the linear map can hold.
pub(crate) const VMEMMAP_START: u64 =
    VMEMMAP_END - ((MODULES_VADDR - PAGE_OFFSET) >> PAGE_SHIFT) * PAGE_STRUCT;

/// Where the linear map starts in physical memory (`PHYS_OFFSET`, `memstart_addr`).
pub(crate) fn phys_offset() -> u64 {
    // SAFETY: Set during early boot, read-only afterwards.
    unsafe { bindings::memstart_addr as u64 }
}

/// The kernel's `__kimg_to_phys()`: the physical address of `addr` in the kernel image.
pub(super) fn image_phys(addr: usize) -> u64 {
    // SAFETY: Set during early boot, read-only afterwards.
    (addr as u64).wrapping_sub(unsafe { bindings::kimage_voffset })
}

pub(super) fn regions() -> Option<[Region; REGIONS]> {
    let va_bits = pagewalk::paging_mode()?.va_bits();
    // SAFETY: `high_memory`, the end of the linear map's memory, grows with memory hotplug: a
    // volatile read (READ_ONCE) sees a whole value, possibly a stale one.
    let high_memory = unsafe { (&raw const bindings::high_memory).read_volatile() } as u64;
    let linear_end = high_memory.max(PAGE_OFFSET);
    // `VMALLOC_END`: 8 MiB below vmemmap, or, where the CPU has fewer address bits than the
    // kernel was built for (52-bit kernels on 48-bit CPUs), below the part of vmemmap in use.
    let vmemmap_unused = (page_offset(va_bits).max(PAGE_OFFSET) - PAGE_OFFSET) >> PAGE_SHIFT;
    let vmalloc_end = VMEMMAP_START + vmemmap_unused * PAGE_STRUCT - (8 << 20);
    let pages = (linear_end - PAGE_OFFSET) >> PAGE_SHIFT;
    Some([
        Region {
            name: "direct_map",
            start: PAGE_OFFSET as usize,
            end: linear_end as usize,
            phys: Some(phys_offset()),
        },
        Region {
            name: "modules",
            start: MODULES_VADDR as usize,
            end: MODULES_END as usize,
            phys: None,
        },
        Region {
            name: "vmalloc",
            start: MODULES_END as usize,
            end: vmalloc_end as usize,
            phys: None,
        },
        Region {
            name: "vmemmap",
            start: VMEMMAP_START as usize,
            end: (VMEMMAP_START + pages * PAGE_STRUCT) as usize,
            phys: None,
        },
    ])
}
