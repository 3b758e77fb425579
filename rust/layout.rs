// SPDX-License-Identifier: GPL-2.0

//! Where memory lives: the regions of the kernel's virtual address space, and where a live
//! allocation of each kind falls in them.
//!
//! The kernel's half of the address space is cut into regions with fixed jobs:
//!
//! - the **direct map**: all of physical memory, mapped linearly, so that a physical address
//!   is the virtual one minus the region's base. `__get_free_page()` and `kmalloc()` hand out
//!   memory here: no page table has to change, and the memory is physically contiguous.
//! - **vmalloc**: addresses that only the page tables relate to physical memory, page by page.
//!   `vmalloc()` and the kernel stacks (`CONFIG_VMAP_STACK`) live here: virtually contiguous,
//!   physically anywhere.
//! - **vmemmap**: the array of `struct page`, one per page frame.
//! - the **kernel image** (its code and data) and the **modules**.
//!
//! Where they are is the architecture's business, one module each:
//!
//! - **x86_64** (`layout/x86_64.rs`, `Documentation/arch/x86/x86_64/mm.rst`): the direct map,
//!   vmalloc and vmemmap move at every boot (`CONFIG_RANDOMIZE_MEMORY`); the kernel image has
//!   a region of its own at the top, `__START_KERNEL_map`, with the modules right above it.
//! - **arm64** (`layout/arm64.rs`, `arch/arm64/include/asm/memory.h`): the direct map is
//!   called the linear map and starts at `PAGE_OFFSET`, the bottom of the kernel's half; the
//!   modules' 2 GiB come next, then vmalloc, and the kernel image is mapped *inside* vmalloc,
//!   at `KIMAGE_VADDR` (plus the KASLR offset), not in a region of its own.
//!
//! Two regions map physical memory linearly, and a region line gives the physical address of
//! its start (`phys=`) where that holds: the direct map (physical = virtual − start +
//! `phys`: on x86_64 `phys` is 0, on arm64 it is `PHYS_OFFSET`, where RAM begins), and the
//! kernel image, which has an offset of its own (x86_64: `__START_KERNEL_map` − `phys_base`;
//! arm64: `kimage_voffset`).
//!
//! [`show`] writes the regions of the running kernel and, for one live allocation of each
//! kind (made for the occasion and freed again), its virtual address, the physical address the
//! page tables give ([`crate::pagewalk`]), and the region it falls in; for the direct map and
//! the kernel image it checks the arithmetic against the walk.
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

#[cfg(target_arch = "x86_64")]
#[path = "layout/x86_64.rs"]
mod arch;

#[cfg(target_arch = "aarch64")]
#[path = "layout/arm64.rs"]
mod arch;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[path = "layout/none.rs"]
mod arch;

/// arm64's memory map, which its page walk uses too: the linear map and vmemmap (and the size
/// of its entries).
#[cfg(target_arch = "aarch64")]
pub(crate) use arch::{phys_offset, PAGE_OFFSET, PAGE_STRUCT, VMEMMAP_START};

/// One region of the kernel's virtual address space.
#[derive(Copy, Clone, Debug)]
pub struct Region {
    /// Short name: `direct_map`, `vmalloc`, `vmemmap`, `kernel_image`, `modules`.
    pub name: &'static str,
    /// First address.
    pub start: usize,
    /// Address just past the region (the part in use, for the direct map and vmemmap).
    pub end: usize,
    /// Where the region maps physical memory linearly: the physical address of `start`.
    pub phys: Option<u64>,
}

impl Region {
    fn contains(&self, addr: usize) -> bool {
        (self.start..self.end).contains(&addr)
    }

    /// The physical address of `addr` by this region's linear arithmetic, if it has one.
    fn linear_phys(&self, addr: usize) -> Option<u64> {
        let offset = addr.wrapping_sub(self.start) as u64;
        Some(self.phys?.wrapping_add(offset))
    }
}

/// The regions of the running kernel, in address order; `None` where not implemented.
pub fn regions() -> Option<[Region; arch::REGIONS]> {
    arch::regions()
}

/// The region `addr` is in, or `None`.
fn region_of(regions: &[Region], addr: usize) -> Option<&Region> {
    regions.iter().find(|r| r.contains(addr))
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
        write!(
            f,
            "region {} start={:#x} end={:#x} size={}",
            r.name,
            r.start,
            r.end,
            r.end - r.start
        )?;
        if let Some(phys) = r.phys {
            write!(f, " phys={phys:#x}")?;
        }
        writeln!(f)?;
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
            // The lesson's arithmetic: in the direct map, physical = virtual - start + phys.
            if let Some(linear) = region.filter(|r| r.name == "direct_map") {
                let ok = linear.linear_phys(addr) == Some(t.phys);
                write!(f, " direct_map_check={}", if ok { "ok" } else { "FAILED" })?;
            }
            // The kernel image's own offset, wherever its region is.
            if what == "kernel_function" {
                let ok = arch::image_phys(addr) == t.phys;
                write!(f, " image_check={}", if ok { "ok" } else { "FAILED" })?;
            }
        }
        Err(_) => write!(f, " phys=none")?,
    }
    writeln!(f, " region={}", region.map_or("none", |r| r.name))
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
