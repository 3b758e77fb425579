// SPDX-License-Identifier: GPL-2.0

//! Where memory lives: the regions of the kernel's virtual address space, and where a live
//! allocation of each kind falls in them.
//!
//! The kernel's half of the address space is cut into regions with fixed jobs (on x86_64,
//! `Documentation/arch/x86/x86_64/mm.rst`; the bases move at every boot with
//! `CONFIG_RANDOMIZE_MEMORY`):
//!
//! - the **direct map**: all of physical memory, mapped linearly, so that a physical address
//!   is the virtual one minus the region's base. `__get_free_page()` and `kmalloc()` hand out
//!   memory here: no page table has to change, and the memory is physically contiguous.
//! - **vmalloc**: addresses that only the page tables relate to physical memory, page by page.
//!   `vmalloc()` and the kernel stacks (`CONFIG_VMAP_STACK`) live here: virtually contiguous,
//!   physically anywhere.
//! - **vmemmap**: the array of `struct page`, one per page frame.
//! - the **kernel image** (its code and data) and the **modules**, near the top.
//!
//! [`show`] writes the regions of the running kernel and, for one live allocation of each
//! kind (made for the occasion and freed again), its virtual address, the physical address the
//! page tables give ([`crate::pagewalk`]), and the region it falls in; for the direct map it
//! checks the lesson's arithmetic, physical = virtual − base. Only x86_64 is implemented.
//!
//! # Examples
//!
//! ```
//! use crate::layout;
//!
//! if let Some(regions) = layout::regions() {
//!     for r in &regions {
//!         pr_info!("{}: {} bytes\n", r.name, r.end - r.start);
//!     }
//! }
//! ```

use crate::pagewalk;
use core::fmt;
use kernel::{bindings, page::PAGE_SIZE, prelude::*};

/// One region of the kernel's virtual address space.
#[derive(Copy, Clone, Debug)]
pub struct Region {
    /// Short name: `direct_map`, `vmalloc`, `vmemmap`, `kernel_image`, `modules`.
    pub name: &'static str,
    /// First address.
    pub start: usize,
    /// Address just past the region (the part in use, for the direct map and vmemmap).
    pub end: usize,
}

impl Region {
    fn contains(&self, addr: usize) -> bool {
        (self.start..self.end).contains(&addr)
    }
}

/// The regions of the running kernel, in address order; `None` where not implemented.
pub fn regions() -> Option<[Region; 5]> {
    arch::regions()
}

/// A region's name for `addr`, or `none`.
fn region_of(regions: &[Region], addr: usize) -> &'static str {
    regions
        .iter()
        .find(|r| r.contains(addr))
        .map_or("none", |r| r.name)
}

/// Writes the layout (`/sys/kernel/debug/mapdrv/layout`): one `region` line per region, then
/// one `alloc` line per kind of allocation. `buffer` is the driver's vmalloc buffer (address
/// and size).
pub fn show(f: &mut fmt::Formatter<'_>, buffer: (usize, usize)) -> fmt::Result {
    let (Some(regions), Some(mode)) = (regions(), pagewalk::paging_mode()) else {
        return writeln!(f, "# mapdrv layout: not available on this architecture");
    };
    writeln!(f, "# mapdrv layout: {}, {mode}", pagewalk::ARCH)?;
    for r in &regions {
        writeln!(
            f,
            "region {} start={:#x} end={:#x} size={}",
            r.name,
            r.start,
            r.end,
            r.end - r.start
        )?;
    }
    let alloc = |f: &mut fmt::Formatter<'_>, what: &str, addr: usize, size: usize, extra| {
        alloc_line(f, &regions, what, addr, size, extra)
    };

    // One page from the page allocator, and 100 bytes from the slab allocator: both in the
    // direct map.
    if let Some(page) = FreePage::new() {
        alloc(f, "get_free_page", page.0, PAGE_SIZE, None)?;
    }
    if let Ok(small) = KVec::<u8>::with_capacity(100, GFP_KERNEL) {
        // SAFETY: `small` is a live allocation of the slab allocator (`kmalloc`).
        let real = unsafe { bindings::ksize(small.as_ptr().cast()) };
        alloc(f, "kmalloc", small.as_ptr() as usize, 100, Some(real))?;
    }
    // A million bytes from vmalloc: in the vmalloc region, like the driver's buffer.
    if let Ok(big) = VVec::<u8>::with_capacity(1_000_000, GFP_KERNEL) {
        alloc(f, "vmalloc", big.as_ptr() as usize, 1_000_000, None)?;
    }
    alloc(f, "mapdrv_buffer", buffer.0, buffer.1, None)?;
    // Code: a function of this module, and one of the kernel.
    alloc(f, "module_function", show as *const () as usize, 0, None)?;
    alloc(
        f,
        "kernel_function",
        bindings::_printk as *const () as usize,
        0,
        None,
    )?;
    // A variable on this task's kernel stack.
    let local = 0u64;
    alloc(
        f,
        "stack_variable",
        core::ptr::from_ref(&local) as usize,
        8,
        None,
    )
}

/// One `alloc` line: where `addr` is, virtually and physically.
fn alloc_line(
    f: &mut fmt::Formatter<'_>,
    regions: &[Region],
    what: &str,
    addr: usize,
    size: usize,
    real_size: Option<usize>,
) -> fmt::Result {
    let region = region_of(regions, addr);
    write!(f, "alloc {what} virt={addr:#x} size={size}")?;
    if let Some(real) = real_size {
        write!(f, " ksize={real}")?;
    }
    // SAFETY: Every caller's `addr` stays mapped during the call: memory it holds, code of
    // this module (loaded while its file is read) or of the kernel, or its own stack.
    match unsafe { pagewalk::walk(addr) } {
        Ok(t) => {
            write!(f, " phys={:#x}", t.phys)?;
            if region == "direct_map" {
                // The lesson's arithmetic: in the direct map, physical = virtual - base.
                let base = regions.first().map_or(0, |r| r.start);
                let ok = addr.wrapping_sub(base) as u64 == t.phys;
                write!(f, " direct_map_check={}", if ok { "ok" } else { "FAILED" })?;
            }
        }
        Err(_) => write!(f, " phys=none")?,
    }
    writeln!(f, " region={region}")
}

/// A page from `__get_free_page()`, freed on drop.
struct FreePage(usize);

impl FreePage {
    fn new() -> Option<Self> {
        // `__get_free_page(GFP_KERNEL)`.
        // SAFETY: Allocates one page; no other requirement.
        let addr = unsafe { bindings::get_free_pages_noprof(bindings::GFP_KERNEL, 0) };
        (addr != 0).then_some(FreePage(addr))
    }
}

impl Drop for FreePage {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `__get_free_pages(_, 0)` and is freed once, here.
        unsafe { bindings::free_pages(self.0, 0) };
    }
}

#[cfg(target_arch = "x86_64")]
mod arch {
    use super::*;

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

    pub(super) fn regions() -> Option<[Region; 5]> {
        let five = pagewalk::paging_mode()?.levels() == 5;
        // SAFETY: The bases are set during early boot and read-only afterwards. `high_memory`,
        // the end of the direct map's memory, grows with memory hotplug: a volatile read
        // (READ_ONCE) sees a whole value, possibly a stale one.
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
            },
            Region {
                name: "vmalloc",
                start: vmalloc,
                end: vmalloc + (vmalloc_tb << 40) / VMALLOC_PART,
            },
            Region {
                name: "vmemmap",
                start: vmemmap,
                end: vmemmap + max_pfn * core::mem::size_of::<bindings::page>(),
            },
            Region {
                name: "kernel_image",
                start: START_KERNEL_MAP,
                end: START_KERNEL_MAP + image,
            },
            Region {
                name: "modules",
                start: START_KERNEL_MAP + image,
                end: MODULES_END,
            },
        ])
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod arch {
    use super::*;

    pub(super) fn regions() -> Option<[Region; 5]> {
        None
    }
}
