// SPDX-License-Identifier: GPL-2.0

//! The x86_64 page walk: the root of the tables is in `CR3`; with 4 KiB pages each level
//! indexes 9 bits, four levels for 48-bit addresses (the P4D folded), five with `LA57` for
//! 57-bit ones. A present PUD or PMD entry with the PS bit maps a huge page.

use super::{Entry, Level, PagingMode};
use core::fmt;
use kernel::{bindings, prelude::kunit_tests};

pub(super) const NAME: &str = "x86_64";

// Page table entry bits.
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const GLOBAL: u64 = 1 << 8;
const NX: u64 = 1 << 63;
/// Bits 12 to 51: the physical address of the next table or of the page.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// `CR4.LA57`: 5-level paging is on.
const CR4_LA57: u64 = 1 << 12;

impl Entry {
    /// The MMU may use the entry.
    pub fn present(&self) -> bool {
        self.raw & PRESENT != 0
    }
    /// Writes are allowed (if every level above allows them).
    pub fn writable(&self) -> bool {
        self.raw & WRITABLE != 0
    }
    /// User mode may access the memory (never for the kernel's own mappings).
    pub fn user(&self) -> bool {
        self.raw & USER != 0
    }
    /// Instruction fetches are forbidden.
    pub fn nx(&self) -> bool {
        self.raw & NX != 0
    }
    /// The translation survives a `CR3` switch (kernel mappings).
    pub fn global(&self) -> bool {
        self.raw & GLOBAL != 0 && (self.level == Level::Pte || self.huge())
    }
    /// The entry maps a huge page instead of pointing to a table (PUD and PMD only).
    pub fn huge(&self) -> bool {
        matches!(self.level, Level::Pud | Level::Pmd) && self.raw & HUGE != 0
    }
    /// The physical address the entry holds: of the next table, or of the (huge) page; for a
    /// huge page the low bits may hold flags (PAT), which the walk masks off.
    pub fn output_address(&self) -> u64 {
        self.raw & ADDR_MASK
    }
}

impl fmt::Display for Entry {
    /// `pte[291]=0x8000000004567163(P,W,NX,G)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]={:#018x}(",
            self.level.name(),
            self.index,
            self.raw
        )?;
        let flags = [
            (self.present(), "P"),
            (self.writable(), "W"),
            (self.user(), "U"),
            (self.nx(), "NX"),
            (self.global(), "G"),
            (self.huge(), "HUGE"),
        ];
        let mut first = true;
        for (_, name) in flags.iter().filter(|(set, _)| *set) {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
        f.write_str(")")
    }
}

pub(super) fn paging_mode() -> Option<PagingMode> {
    let cr4: u64;
    // SAFETY: Reading CR4 has no side effects and is allowed in kernel mode.
    unsafe {
        kernel::asm!("movq %cr4, {}"; out(reg) cr4, options(nomem, nostack, preserves_flags))
    };
    if cr4 & CR4_LA57 != 0 {
        PagingMode::new(5, 57, 12)
    } else {
        PagingMode::new(4, 48, 12)
    }
}

/// The paging mode and the physical address of the root table of the tables in use.
pub(super) fn root() -> Option<(PagingMode, u64)> {
    let mode = paging_mode()?;
    let cr3: u64;
    // SAFETY: Reading CR3 has no side effects and is allowed in kernel mode.
    unsafe {
        kernel::asm!("movq %cr3, {}"; out(reg) cr3, options(nomem, nostack, preserves_flags))
    };
    // The low 12 bits of CR3 are the PCID and cache control, not address.
    Some((mode, cr3 & ADDR_MASK))
}

/// The start of the direct map (`page_offset_base`, randomised at boot).
#[inline]
pub(super) fn page_offset_base() -> usize {
    // SAFETY: Set once during early boot, read-only afterwards.
    unsafe { bindings::page_offset_base }
}

/// The physical address the direct map starts with: 0, all of physical memory from its start.
#[inline]
pub(super) fn phys_offset() -> u64 {
    0
}

/// The kernel's `__va()`: the direct map address of physical address `phys`.
#[inline]
pub(super) fn phys_to_virt(phys: u64) -> usize {
    page_offset_base() + phys as usize
}

/// The address of `struct page` 0 (`vmemmap_base`, randomised at boot).
#[inline]
pub(super) fn vmemmap_base() -> usize {
    // SAFETY: Set once during early boot, read-only afterwards.
    unsafe { bindings::vmemmap_base }
}

/// Reads entry `index` of the table at physical address `table`.
///
/// # Safety
///
/// `table` must be the physical address of a live page table and `index` below its number of
/// entries.
#[inline]
pub(super) unsafe fn read_entry(table: u64, index: usize) -> u64 {
    let ptr = (phys_to_virt(table) + index * 8) as *const u64;
    // SAFETY: The table is live and in the direct map; the MMU and the kernel update entries
    // with single aligned 8-byte writes, which a volatile read sees whole (READ_ONCE).
    unsafe { ptr.read_volatile() }
}

#[kunit_tests(mapdrv_pagewalk_x86_64)]
mod tests {
    use super::*;

    #[test]
    fn entry_flags_decode() {
        let e = Entry {
            level: Level::Pte,
            index: 3,
            raw: 0x8000_0000_0123_4163,
        };
        assert!(e.present() && e.writable() && !e.user() && e.nx() && e.global() && !e.huge());
        assert_eq!(e.output_address(), 0x123_4000);
        let pmd = Entry {
            level: Level::Pmd,
            index: 0,
            raw: 0x0000_0000_0020_00e3,
        };
        assert!(pmd.huge() && !pmd.nx());
        // The PS bit means nothing at the PTE level (it is PAT there).
        let pte = Entry {
            level: Level::Pte,
            index: 0,
            raw: 0x83,
        };
        assert!(!pte.huge());
    }

    #[test]
    fn paging_modes() -> kernel::error::Result {
        use kernel::error::code::EINVAL;
        let four = PagingMode::new(4, 48, 12).ok_or(EINVAL)?;
        assert!(four.folded(Level::P4d) && !four.folded(Level::Pud));
        let five = PagingMode::new(5, 57, 12).ok_or(EINVAL)?;
        assert!(!five.folded(Level::P4d));
        assert!(PagingMode::new(4, 57, 12).is_none());
        Ok(())
    }
}
