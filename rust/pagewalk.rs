// SPDX-License-Identifier: GPL-2.0

//! Walking the kernel page tables by hand.
//!
//! The MMU turns a virtual address into a physical one by walking a tree of page tables. On
//! x86_64 with 4-level paging the tree has four levels, PGD → PUD → PMD → PTE (the kernel's P4D
//! level is folded into the PGD); with 5-level paging (`LA57`) there are five, PGD → P4D → PUD →
//! PMD → PTE. Each level takes 9 bits of the address as an index into a table of 512 entries of
//! 8 bytes; an entry holds the physical address of the next table and flags. A present PUD or
//! PMD entry with the PS bit maps a huge page (1 GiB or 2 MiB) directly. The last 12 bits of
//! the address are the offset in the 4 KiB page.
//!
//! [`walk`] does that walk in software for a kernel virtual address, level by level, from the
//! page tables the CPU uses now (`CR3`; their kernel half is the same in every process), and
//! reports every entry it read. The kernel's own `vmalloc_to_page()` does the same walk; the
//! driver compares the two.
//!
//! Page tables are read through the kernel's direct map of physical memory, at
//! `page_offset_base + physical address`; the same map gives every page frame a second,
//! linear kernel address ([`Translation::direct_map_addr`]).
//!
//! Only x86_64 has an implementation; elsewhere [`walk`] returns [`WalkError::Unsupported`].
//!
//! # Examples
//!
//! ```
//! use crate::pagewalk;
//!
//! let vbox = VBox::new(0u64, GFP_KERNEL)?;
//! let addr = core::ptr::from_ref(&*vbox) as usize;
//! // SAFETY: `vbox` keeps `addr` mapped during the walk.
//! match unsafe { pagewalk::walk(addr) } {
//!     Ok(t) => pr_info!("pfn {:#x}\n", t.pfn()),
//!     Err(e) => pr_info!("no walk: {e:?}\n"),
//! }
//! # Ok::<(), Error>(())
//! ```

use core::fmt;

/// A level of the page table tree.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Level {
    /// Page Global Directory: the root.
    Pgd,
    /// Page 4th-level Directory: only a level of its own with 5-level paging.
    P4d,
    /// Page Upper Directory: a huge entry here maps 1 GiB.
    Pud,
    /// Page Middle Directory: a huge entry here maps 2 MiB.
    Pmd,
    /// Page Table Entry: maps one 4 KiB page.
    Pte,
}

impl Level {
    /// The name used in the kernel's sources, in lower case.
    pub fn name(self) -> &'static str {
        match self {
            Level::Pgd => "pgd",
            Level::P4d => "p4d",
            Level::Pud => "pud",
            Level::Pmd => "pmd",
            Level::Pte => "pte",
        }
    }
}

/// The paging mode the CPU runs in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// 48-bit virtual addresses: PGD → PUD → PMD → PTE (P4D folded into the PGD).
    FourLevel,
    /// 57-bit virtual addresses (`LA57`): PGD → P4D → PUD → PMD → PTE.
    FiveLevel,
}

impl fmt::Display for PagingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PagingMode::FourLevel => {
                f.write_str("4-level paging (PGD -> PUD -> PMD -> PTE; P4D folded)")
            }
            PagingMode::FiveLevel => {
                f.write_str("5-level paging (PGD -> P4D -> PUD -> PMD -> PTE)")
            }
        }
    }
}

// `pr_*!` format through the kernel's own `Display` trait.
impl kernel::fmt::Display for PagingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One page table entry read during a walk.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The level of the table the entry is in.
    pub level: Level,
    /// The entry's index in its table (9 bits of the address).
    pub index: usize,
    /// The entry as the MMU sees it.
    pub raw: u64,
}

// x86_64 page table entry bits.
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const GLOBAL: u64 = 1 << 8;
const NX: u64 = 1 << 63;
/// Bits 12 to 51: the physical address of the next table or of the page.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

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

/// The result of a walk: every entry read, and where it led.
#[derive(Clone, Debug)]
pub struct Translation {
    entries: [Option<Entry>; 5],
    /// The physical address the virtual address translates to.
    pub phys: u64,
    /// The size of the page that maps it: 4 KiB, or 2 MiB or 1 GiB for a huge page.
    pub page_size: u64,
}

impl Translation {
    /// The entries read, from the root down.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten()
    }

    /// The entry read at `level`, if the walk had that level.
    pub fn entry(&self, level: Level) -> Option<&Entry> {
        self.entries().find(|e| e.level == level)
    }

    /// The page frame number: the physical address in 4 KiB pages.
    pub fn pfn(&self) -> u64 {
        self.phys >> 12
    }

    /// The address of the frame's `struct page` in the kernel's `vmemmap` array.
    pub fn page_ptr(&self) -> usize {
        arch::vmemmap_base() + self.pfn() as usize * core::mem::size_of::<kernel::bindings::page>()
    }

    /// The kernel virtual address of the same byte in the direct map of physical memory.
    pub fn direct_map_addr(&self) -> usize {
        arch::page_offset_base() + self.phys as usize
    }
}

/// Why a walk stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The entry at this level is not present: nothing is mapped at the address.
    NotPresent(Entry),
    /// No explicit walk on this architecture.
    Unsupported,
}

/// Translates the kernel virtual address `addr` by walking the page tables in software.
///
/// # Safety
///
/// `addr` must stay mapped for the duration of the call (for example, it lies in memory the
/// caller owns), so that the page tables on its path are not freed while they are read.
pub unsafe fn walk(addr: usize) -> Result<Translation, WalkError> {
    // SAFETY: Same requirements.
    unsafe { arch::walk(addr) }
}

/// The paging mode of this CPU, if an explicit walk is implemented here.
pub fn paging_mode() -> Option<PagingMode> {
    arch::paging_mode()
}

#[cfg(target_arch = "x86_64")]
mod arch {
    use super::*;
    use kernel::bindings;

    /// `CR4.LA57`: 5-level paging is on.
    const CR4_LA57: u64 = 1 << 12;

    pub(super) fn paging_mode() -> Option<PagingMode> {
        let cr4: u64;
        // SAFETY: Reading CR4 has no side effects and is allowed in kernel mode.
        unsafe {
            kernel::asm!("movq %cr4, {}"; out(reg) cr4, options(nomem, nostack, preserves_flags))
        };
        Some(if cr4 & CR4_LA57 != 0 {
            PagingMode::FiveLevel
        } else {
            PagingMode::FourLevel
        })
    }

    pub(super) fn page_offset_base() -> usize {
        // SAFETY: Set once during early boot, read-only afterwards.
        unsafe { bindings::page_offset_base }
    }

    pub(super) fn vmemmap_base() -> usize {
        // SAFETY: Set once during early boot, read-only afterwards.
        unsafe { bindings::vmemmap_base }
    }

    /// Reads entry `index` of the table at physical address `table`.
    ///
    /// # Safety
    ///
    /// `table` must be the physical address of a live page table and `index < 512`.
    unsafe fn read_entry(table: u64, index: usize) -> u64 {
        let ptr = (page_offset_base() + table as usize + index * 8) as *const u64;
        // SAFETY: The table is live and in the direct map; the MMU and the kernel update entries
        // with single aligned 8-byte writes, which a volatile read sees whole (READ_ONCE).
        unsafe { ptr.read_volatile() }
    }

    /// The x86_64 walk behind [`super::walk`].
    ///
    /// # Safety
    ///
    /// As for [`super::walk`].
    pub(super) unsafe fn walk(addr: usize) -> Result<Translation, WalkError> {
        let mode = paging_mode().ok_or(WalkError::Unsupported)?;
        let levels: &[(Level, u32)] = match mode {
            PagingMode::FiveLevel => &[
                (Level::Pgd, 48),
                (Level::P4d, 39),
                (Level::Pud, 30),
                (Level::Pmd, 21),
                (Level::Pte, 12),
            ],
            PagingMode::FourLevel => &[
                (Level::Pgd, 39),
                (Level::Pud, 30),
                (Level::Pmd, 21),
                (Level::Pte, 12),
            ],
        };

        let cr3: u64;
        // SAFETY: Reading CR3 has no side effects and is allowed in kernel mode.
        unsafe {
            kernel::asm!("movq %cr3, {}"; out(reg) cr3, options(nomem, nostack, preserves_flags))
        };
        // The low 12 bits of CR3 are the PCID and cache control, not address.
        let mut table = cr3 & ADDR_MASK;
        let mut entries = [None; 5];
        let addr64 = addr as u64;

        for (slot, &(level, shift)) in levels.iter().enumerate() {
            let index = ((addr64 >> shift) & 511) as usize;
            // SAFETY: `table` is the root (CR3) or came from a present entry of the level above
            // on the path to `addr`, which the caller keeps mapped, so the table is live.
            let raw = unsafe { read_entry(table, index) };
            let entry = Entry { level, index, raw };
            entries[slot] = Some(entry);
            if !entry.present() {
                return Err(WalkError::NotPresent(entry));
            }
            if level == Level::Pte || entry.huge() {
                let size = 1u64 << shift;
                // For a huge page, the entry's address bits below `shift` hold flags (PAT).
                let base = raw & ADDR_MASK & !(size - 1);
                return Ok(Translation {
                    entries,
                    phys: base | (addr64 & (size - 1)),
                    page_size: size,
                });
            }
            table = raw & ADDR_MASK;
        }
        // Not reached: the PTE level always ends the walk.
        Err(WalkError::Unsupported)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod arch {
    use super::*;

    pub(super) fn paging_mode() -> Option<PagingMode> {
        None
    }
    pub(super) fn page_offset_base() -> usize {
        0
    }
    pub(super) fn vmemmap_base() -> usize {
        0
    }
    /// No walk on this architecture.
    ///
    /// # Safety
    ///
    /// None needed; the signature is that of the x86_64 walk.
    pub(super) unsafe fn walk(_addr: usize) -> Result<Translation, WalkError> {
        Err(WalkError::Unsupported)
    }
}
