// SPDX-License-Identifier: GPL-2.0

//! The arm64 page walk (VMSAv8-64, stage 1, the kernel's half of the address space).
//!
//! An arm64 CPU has two roots of page tables: `TTBR0_EL1` for the lower (user) half of the
//! address space and `TTBR1_EL1` for the upper (kernel) half, whose tables are the kernel's
//! `swapper_pg_dir`. `TCR_EL1` says how they are read: the granule (`TG1`: 4, 16 or 64 KiB
//! pages), the size of the kernel half (`T1SZ`: 64 − T1SZ address bits), hence the number of
//! levels, and whether descriptors use the 52-bit LPA2 format (`DS`). This walk reads those
//! registers, as the MMU does, and then the tables.
//!
//! A descriptor is valid if bit 0 is set. Above the last level, bit 1 tells a **table**
//! descriptor (the next level's table) from a **block** descriptor (a huge page: 2 MiB at the
//! PMD, 1 GiB at the PUD with 4 KiB pages); at the last level a valid descriptor must have bit
//! 1 set and is a **page** descriptor. Block and page descriptors carry the attributes of the
//! memory they map: the memory-attribute index (`AttrIndx`, into `MAIR_EL1`: normal memory,
//! device memory), shareability (`SH`), the access permissions (`AP`: read-only, and
//! accessible from user mode), the access flag (`AF`: a descriptor without it faults on first
//! use), not-global (`nG`: tagged with the process's ASID), the contiguous hint (`CONT`: one of
//! a naturally aligned run of descriptors the TLB may cache as one), the dirty bit modifier
//! (`DBM`, which Linux uses as its "writable" bit) and the execute-never bits for the kernel
//! (`PXN`) and for user mode (`UXN`). Table descriptors carry limits for everything below them
//! (`PXNTable`, `UXNTable`, `APTable`).

use super::{Entry, Level, PagingMode};
pub(super) use crate::layout::phys_offset;
use crate::layout::{PAGE_OFFSET, PAGE_STRUCT, VMEMMAP_START};
use core::fmt;
use kernel::prelude::kunit_tests;

pub(super) const NAME: &str = "arm64";

// Descriptor bits.
const VALID: u64 = 1 << 0;
/// Bit 1: a table descriptor above the last level, a page descriptor at it; clear in a block.
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDX_SHIFT: u32 = 2;
const AP_USER: u64 = 1 << 6;
const AP_RDONLY: u64 = 1 << 7;
const SH_SHIFT: u32 = 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const DBM: u64 = 1 << 51;
const CONT: u64 = 1 << 52;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
/// Software bit 55: Linux's `PTE_DIRTY`, for memory written since it was mapped clean.
const SW_DIRTY: u64 = 1 << 55;
const PXN_TABLE: u64 = 1 << 59;
const UXN_TABLE: u64 = 1 << 60;
const AP_TABLE_SHIFT: u32 = 61;

// `TCR_EL1` fields for `TTBR1_EL1`.
const TCR_T1SZ_SHIFT: u32 = 16;
const TCR_TG1_SHIFT: u32 = 30;
const TCR_DS: u64 = 1 << 59;

/// The memory types of Linux's `MAIR_EL1`, by `AttrIndx` (`MT_*` in `asm/memory.h`).
const MEMORY_TYPES: [&str; 5] = [
    "NORMAL",
    "NORMAL_TAGGED",
    "NORMAL_NC",
    "DEVICE_nGnRnE",
    "DEVICE_nGnRE",
];

/// What a valid descriptor is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Points to the next level's table.
    Table,
    /// Maps a block (a huge page) above the last level.
    Block,
    /// Maps a page at the last level.
    Page,
}

/// Shareability (`SH`) of a block or page.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Shareability {
    /// `0b00`.
    NonShareable,
    /// `0b10`.
    Outer,
    /// `0b11`: Linux's normal memory.
    Inner,
    /// `0b01`, reserved.
    Reserved,
    /// With LPA2 (`TCR_EL1.DS`) the bits are address bits; `TCR_EL1.SH1` decides.
    FromTcr,
}

/// Reads `TCR_EL1`.
fn tcr() -> u64 {
    let tcr: u64;
    // SAFETY: Reading TCR_EL1 has no side effects and is allowed at EL1, where the kernel runs.
    unsafe {
        core::arch::asm!("mrs {}, tcr_el1", out(reg) tcr, options(nomem, nostack, preserves_flags))
    };
    tcr
}

/// Whether descriptors and `TTBR1_EL1` use the LPA2 format (52-bit addresses, 4/16 KiB pages).
fn lpa2() -> bool {
    tcr() & TCR_DS != 0
}

/// The output address of a descriptor: bits `[47:page_shift]`, and with 52-bit physical
/// addresses bits 51:48, which LPA2 keeps in bits 49:48 and 9:8, and a 64 KiB granule in bits
/// 15:12.
fn output_address(raw: u64, page_shift: u32, lpa2: bool) -> u64 {
    let low = |top: u32| raw & (((1u64 << (top + 1)) - 1) & !((1u64 << page_shift) - 1));
    if lpa2 {
        low(49) | ((raw >> 8) & 0x3) << 50
    } else if page_shift == 16 {
        low(47) | ((raw >> 12) & 0xf) << 48
    } else {
        low(47)
    }
}

impl Entry {
    /// The descriptor is valid: the MMU may use it. (At the last level a valid descriptor must
    /// also be a page descriptor; the other encoding is reserved and faults.)
    pub fn present(&self) -> bool {
        self.raw & VALID != 0 && (self.level != Level::Pte || self.raw & TABLE_OR_PAGE != 0)
    }
    /// What the valid descriptor is.
    pub fn kind(&self) -> Kind {
        match (self.level, self.raw & TABLE_OR_PAGE != 0) {
            (Level::Pte, _) => Kind::Page,
            (_, true) => Kind::Table,
            (_, false) => Kind::Block,
        }
    }
    /// The entry maps a huge page (a block) instead of pointing to a table.
    pub fn huge(&self) -> bool {
        self.present() && self.kind() == Kind::Block
    }
    fn leaf(&self) -> bool {
        self.present() && self.kind() != Kind::Table
    }
    /// The physical address the entry holds: of the next table, or of the block or page.
    pub fn output_address(&self) -> u64 {
        output_address(self.raw, kernel::page::PAGE_SHIFT as u32, lpa2())
    }
    /// `AttrIndx`: the memory type, an index into `MAIR_EL1` (block and page).
    pub fn attr_indx(&self) -> u8 {
        ((self.raw >> ATTR_INDX_SHIFT) & 0x7) as u8
    }
    /// Linux's name for the memory type of [`Self::attr_indx`], if it has one.
    pub fn memory_type(&self) -> Option<&'static str> {
        MEMORY_TYPES.get(self.attr_indx() as usize).copied()
    }
    /// `SH`: who else sees the memory coherently (block and page).
    pub fn shareability(&self) -> Shareability {
        Self::decode_sh(self.raw, lpa2())
    }
    fn decode_sh(raw: u64, lpa2: bool) -> Shareability {
        if lpa2 {
            return Shareability::FromTcr;
        }
        match (raw >> SH_SHIFT) & 0x3 {
            0b00 => Shareability::NonShareable,
            0b10 => Shareability::Outer,
            0b11 => Shareability::Inner,
            _ => Shareability::Reserved,
        }
    }
    /// `AF`, the access flag: set once the memory was used (block and page).
    pub fn accessed(&self) -> bool {
        self.leaf() && self.raw & AF != 0
    }
    /// Writes are allowed: `AP[2]` (read-only) is clear in a block or page, and `APTable[1]`
    /// in a table does not forbid writes below it.
    pub fn writable(&self) -> bool {
        if self.leaf() {
            self.raw & AP_RDONLY == 0
        } else {
            (self.raw >> AP_TABLE_SHIFT) & 0b10 == 0
        }
    }
    /// User mode may access the memory: `AP[1]` in a block or page (never for the kernel's
    /// own mappings); a table allows it unless `APTable[0]` forbids it.
    pub fn user(&self) -> bool {
        if self.leaf() {
            self.raw & AP_USER != 0
        } else {
            (self.raw >> AP_TABLE_SHIFT) & 0b01 == 0
        }
    }
    /// The kernel may not execute from the memory: `PXN` (`PXNTable` in a table).
    pub fn nx(&self) -> bool {
        self.raw & if self.leaf() { PXN } else { PXN_TABLE } != 0
    }
    /// User mode may not execute from the memory: `UXN` (`UXNTable` in a table).
    pub fn uxn(&self) -> bool {
        self.raw & if self.leaf() { UXN } else { UXN_TABLE } != 0
    }
    /// The translation is global (`nG` clear), the same for every process: kernel mappings.
    pub fn global(&self) -> bool {
        self.leaf() && self.raw & NG == 0
    }
    /// The contiguous hint: one of a naturally aligned run of descriptors mapping physically
    /// contiguous memory, which the TLB may cache as one entry.
    pub fn contiguous(&self) -> bool {
        self.leaf() && self.raw & CONT != 0
    }
    /// `DBM`, the dirty bit modifier: Linux's `PTE_WRITE`.
    pub fn dbm(&self) -> bool {
        self.leaf() && self.raw & DBM != 0
    }
    /// Linux's software dirty bit (`PTE_DIRTY`, bit 55; the hardware ignores it).
    pub fn sw_dirty(&self) -> bool {
        self.leaf() && self.raw & SW_DIRTY != 0
    }
}

impl fmt::Display for Entry {
    /// `pte[237]=0x00680000408d0703(V,PAGE,AF,RW,SH=IS,NORMAL,G,DBM,PXN,UXN)`, or for a table
    /// `pmd[3]=0x1000000040831403(V,TABLE,UXNT)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]={:#018x}(",
            self.level.name(),
            self.index,
            self.raw
        )?;
        if !self.present() {
            return f.write_str("INVALID)");
        }
        match self.kind() {
            Kind::Table => {
                f.write_str("V,TABLE")?;
                if !self.writable() {
                    f.write_str(",APT=RO")?;
                }
                if !self.user() {
                    f.write_str(",APT=NO_EL0")?;
                }
                if self.nx() {
                    f.write_str(",PXNT")?;
                }
                if self.uxn() {
                    f.write_str(",UXNT")?;
                }
            }
            kind => {
                f.write_str(if kind == Kind::Block {
                    "V,BLOCK"
                } else {
                    "V,PAGE"
                })?;
                if self.accessed() {
                    f.write_str(",AF")?;
                }
                f.write_str(if self.writable() { ",RW" } else { ",RO" })?;
                if self.user() {
                    f.write_str(",USER")?;
                }
                match self.shareability() {
                    Shareability::Inner => f.write_str(",SH=IS")?,
                    Shareability::Outer => f.write_str(",SH=OS")?,
                    Shareability::NonShareable => f.write_str(",SH=NS")?,
                    Shareability::Reserved => f.write_str(",SH=RES")?,
                    Shareability::FromTcr => {}
                }
                match self.memory_type() {
                    Some(name) => write!(f, ",{name}")?,
                    None => write!(f, ",ATTR={}", self.attr_indx())?,
                }
                f.write_str(if self.global() { ",G" } else { ",nG" })?;
                if self.contiguous() {
                    f.write_str(",CONT")?;
                }
                if self.dbm() {
                    f.write_str(",DBM")?;
                }
                if self.sw_dirty() {
                    f.write_str(",DIRTY")?;
                }
                if self.nx() {
                    f.write_str(",PXN")?;
                }
                if self.uxn() {
                    f.write_str(",UXN")?;
                }
            }
        }
        f.write_str(")")
    }
}

/// The geometry `TCR_EL1` sets for the kernel half, if it is the kernel's page size.
pub(super) fn paging_mode() -> Option<PagingMode> {
    let tcr = tcr();
    let page_shift = match (tcr >> TCR_TG1_SHIFT) & 0x3 {
        0b10 => 12,
        0b01 => 14,
        0b11 => 16,
        _ => return None,
    };
    if page_shift != kernel::page::PAGE_SHIFT as u32 {
        return None;
    }
    let va_bits = 64 - ((tcr >> TCR_T1SZ_SHIFT) & 0x3f) as u32;
    let bits = page_shift - 3;
    let levels = (va_bits - page_shift).div_ceil(bits);
    PagingMode::new(levels, va_bits, page_shift)
}

/// The physical address in `TTBR1_EL1`: bits 47:1, and with 52-bit physical addresses bits
/// 51:48 from bits 5:2 (zero otherwise, a root table being at least 64-byte aligned).
fn ttbr1_root() -> u64 {
    let ttbr1: u64;
    // SAFETY: Reading TTBR1_EL1 has no side effects and is allowed at EL1. Its table stays
    // `swapper_pg_dir` for as long as the kernel runs (also with KPTI, which switches it only
    // on the way to and from user mode).
    unsafe {
        core::arch::asm!("mrs {}, ttbr1_el1", out(reg) ttbr1, options(nomem, nostack, preserves_flags))
    };
    (ttbr1 & 0x0000_ffff_ffff_ffc0) | ((ttbr1 >> 2) & 0xf) << 48
}

/// The paging mode and the physical address of the root table: `TTBR1_EL1`'s, the kernel's
/// `swapper_pg_dir`. (The symbol is not exported to modules, so no module can compare the two;
/// every walk from this root is checked against the kernel's own instead.)
pub(super) fn root() -> Option<(PagingMode, u64)> {
    Some((paging_mode()?, ttbr1_root()))
}

/// The kernel's `__phys_to_virt()`: the linear map address of physical address `phys`.
#[inline]
pub(super) fn phys_to_virt(phys: u64) -> usize {
    (phys.wrapping_sub(phys_offset()) | PAGE_OFFSET) as usize
}

/// The address `struct page` 0 would have: the kernel's `vmemmap`, the `struct page` array
/// below the top gigabyte (`VMEMMAP_START`, from the memory map in `layout/arm64.rs`),
/// indexed from the first frame of the linear map.
#[inline]
pub(super) fn vmemmap_base() -> usize {
    let first_pfn = phys_offset() >> kernel::page::PAGE_SHIFT;
    VMEMMAP_START.wrapping_sub(first_pfn * PAGE_STRUCT) as usize
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
    // SAFETY: The table is live and in the linear map, which maps all of memory; the MMU and
    // the kernel update descriptors with single aligned 8-byte writes, which a volatile read
    // sees whole (READ_ONCE).
    unsafe { ptr.read_volatile() }
}

#[kunit_tests(mapdrv_pagewalk_arm64)]
mod tests {
    use super::*;
    use kernel::{bindings, error::code::EINVAL, prelude::*};

    /// The root of the walk, read from `TTBR1_EL1`, is a page-aligned table in memory the
    /// linear map covers, and the same on every CPU and at every call (the kernel's tables are
    /// shared by all processes).
    #[test]
    fn ttbr1_root_is_stable() {
        let root = ttbr1_root();
        assert_eq!(root & (kernel::page::PAGE_SIZE as u64 - 1), 0);
        assert!(root >= phys_offset());
        assert_eq!(ttbr1_root(), root);
    }

    /// `TCR_EL1` describes the kernel's configured geometry.
    #[test]
    fn tcr_matches_config() -> Result {
        let mode = paging_mode().ok_or(EINVAL)?;
        assert_eq!(mode.page_size(), kernel::page::PAGE_SIZE as u64);
        assert_eq!(mode.levels(), bindings::CONFIG_PGTABLE_LEVELS);
        assert!(mode.va_bits() == bindings::VA_BITS || mode.va_bits() == bindings::VA_BITS_MIN);
        Ok(())
    }

    /// The geometries of the granules and address sizes arm64 has, and what they fold.
    #[test]
    fn geometries_fold_levels() -> Result {
        // 4 KiB, 48-bit: PGD (level 0) -> PUD -> PMD -> PTE (level 3).
        let m = PagingMode::new(4, 48, 12).ok_or(EINVAL)?;
        assert!(m.folded(Level::P4d) && !m.folded(Level::Pud));
        // 4 KiB, 39-bit: three levels, the PUD folded too.
        let m = PagingMode::new(3, 39, 12).ok_or(EINVAL)?;
        assert!(m.folded(Level::Pud) && !m.folded(Level::Pmd));
        // 4 KiB, 52-bit (LPA2): five levels; the root indexes only 4 bits.
        let m = PagingMode::new(5, 52, 12).ok_or(EINVAL)?;
        assert_eq!(m.walked().next().map(|(_, _, bits)| bits), Some(4));
        // 64 KiB, 42-bit: two levels of 13 bits.
        let m = PagingMode::new(2, 42, 16).ok_or(EINVAL)?;
        assert!(m.folded(Level::Pmd) && m.walked().all(|(_, _, bits)| bits == 13));
        Ok(())
    }

    /// A page descriptor as Linux writes `PAGE_KERNEL`: valid, page, AF, read-write, inner
    /// shareable, normal memory, global, DBM, PXN, UXN.
    #[test]
    fn page_descriptor_decodes() {
        let e = Entry {
            level: Level::Pte,
            index: 5,
            raw: 0x0068_0000_4123_4703,
        };
        assert!(e.present() && e.kind() == Kind::Page && !e.huge());
        assert!(e.accessed() && e.writable() && !e.user());
        assert!(e.shareability() == Shareability::Inner || lpa2());
        assert_eq!(e.memory_type(), Some("NORMAL"));
        assert!(e.global() && e.dbm() && e.nx() && e.uxn() && !e.contiguous());
        assert_eq!(output_address(e.raw, 12, false), 0x4123_4000);
        // A read-only, user-accessible, not-global, executable, contiguous device page.
        let e = Entry {
            level: Level::Pte,
            index: 0,
            raw: 0x0010_0000_0900_0ed3,
        };
        assert!(!e.writable() && e.user() && !e.global() && !e.nx() && e.contiguous());
        assert_eq!(e.memory_type(), Some("DEVICE_nGnRE"));
        // At the last level, bit 1 clear is reserved: not a valid descriptor.
        let e = Entry {
            level: Level::Pte,
            index: 0,
            raw: 0x0068_0000_4123_4f01,
        };
        assert!(!e.present());
    }

    /// Table and block descriptors, and the LPA2 and 64 KiB forms of the output address.
    #[test]
    fn table_and_block_descriptors_decode() {
        let table = Entry {
            level: Level::Pmd,
            index: 1,
            raw: 0x1800_0000_4100_0003,
        };
        assert!(table.present() && table.kind() == Kind::Table && !table.huge());
        assert!(table.nx() && table.uxn() && table.writable() && table.user());
        assert_eq!(output_address(table.raw, 12, false), 0x4100_0000);
        let block = Entry {
            level: Level::Pmd,
            index: 2,
            raw: 0x0060_0000_4020_0f01,
        };
        assert!(block.present() && block.kind() == Kind::Block && block.huge());
        assert_eq!(
            output_address(block.raw, 12, false) & !((2 << 20) - 1),
            0x4020_0000
        );
        // LPA2: address bits 51:50 in descriptor bits 9:8.
        assert_eq!(
            output_address(0x0000_0000_4000_0303, 12, true),
            0x000c_0000_4000_0000
        );
        // 64 KiB pages with 52-bit addresses: bits 51:48 in descriptor bits 15:12.
        assert_eq!(
            output_address(0x0000_0000_4001_3003, 16, false),
            0x0003_0000_4001_0000
        );
    }

    /// The linear map (`kmalloc` memory) is mapped with blocks: the walk resolves a huge page
    /// and lands on the object's own address through [`super::phys_to_virt`]. (Not with
    /// `rodata=full`, arm64's default on CPUs without BBML3, which maps it page by page: the
    /// guest boots with `rodata=noalias`.)
    #[test]
    fn linear_map_uses_blocks() -> Result {
        let obj = KBox::new([0u8; 64], GFP_KERNEL)?;
        let addr = core::ptr::from_ref(&*obj) as usize;
        // SAFETY: `obj` keeps `addr` mapped during the walk.
        let t = unsafe { super::super::walk(addr) }.map_err(|_| EINVAL)?;
        assert_eq!(t.direct_map_addr(), addr);
        let last = t.entries().last().ok_or(EINVAL)?;
        assert!(last.huge() && last.kind() == Kind::Block);
        assert!(t.page_size > kernel::page::PAGE_SIZE as u64);
        Ok(())
    }
}
