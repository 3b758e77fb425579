// SPDX-License-Identifier: GPL-2.0

//! Walking the kernel page tables by hand.
//!
//! The MMU turns a virtual address into a physical one by walking a tree of page tables. Each
//! level takes some bits of the address (9 with 4 KiB pages) as an index into a table of
//! 8-byte entries; an entry holds the physical address of the next table, or of the page
//! itself, and flags. The kernel names the levels PGD → P4D → PUD → PMD → PTE; a machine with
//! fewer levels folds the missing ones away (with 4 levels, the P4D). An entry above the PTE
//! level may also map a large block directly (a huge page: 2 MiB at the PMD, 1 GiB at the PUD
//! with 4 KiB pages).
//!
//! [`walk`] does that walk in software for a kernel virtual address, level by level, from the
//! root of the kernel's page tables that the CPU uses now, and reports every entry it read. The
//! kernel's own `vmalloc_to_page()` does the same walk; the driver compares the two. Tables are
//! read through the kernel's linear map of physical memory (the direct map), which also gives
//! every page frame a second kernel address ([`Translation::direct_map_addr`]).
//!
//! What differs between architectures is kept in one module each, behind the same interface:
//!
//! - **x86_64** (`pagewalk/x86_64.rs`): the root is in `CR3`; 4-level or, with `LA57`, 5-level
//!   paging; entries carry P, W, U, NX, G and PS (huge) bits.
//! - **arm64** (`pagewalk/arm64.rs`): kernel addresses are translated through `TTBR1_EL1`, whose
//!   tables are `swapper_pg_dir`; `TCR_EL1` gives the granule and the address size, hence the
//!   levels; descriptors are table, block or page descriptors with access permissions (AP),
//!   shareability (SH), a memory-attribute index (AttrIndx), the access flag (AF), PXN/UXN,
//!   nG and the contiguous hint.
//!
//! Elsewhere [`walk`] returns [`WalkError::Unsupported`].
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

#[cfg(target_arch = "x86_64")]
#[path = "pagewalk/x86_64.rs"]
mod arch;

#[cfg(target_arch = "aarch64")]
#[path = "pagewalk/arm64.rs"]
mod arch;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[path = "pagewalk/none.rs"]
mod arch;

/// The architecture's name as the kernel spells it (`x86_64`, `arm64`), or `none`.
pub const ARCH: &str = arch::NAME;

/// A level of the page table tree.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Level {
    /// Page Global Directory: the root.
    Pgd,
    /// Page 4th-level Directory: only a level of its own with 5 levels.
    P4d,
    /// Page Upper Directory: a huge entry here maps 1 GiB (with 4 KiB pages).
    Pud,
    /// Page Middle Directory: a huge entry here maps 2 MiB (with 4 KiB pages).
    Pmd,
    /// Page Table Entry: maps one page.
    Pte,
}

impl Level {
    /// Every level, from the root down.
    pub const ALL: [Level; 5] = [Level::Pgd, Level::P4d, Level::Pud, Level::Pmd, Level::Pte];

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

    fn upper_name(self) -> &'static str {
        match self {
            Level::Pgd => "PGD",
            Level::P4d => "P4D",
            Level::Pud => "PUD",
            Level::Pmd => "PMD",
            Level::Pte => "PTE",
        }
    }
}

/// The geometry of the page tables the CPU walks for kernel addresses.
///
/// # Invariants
///
/// `2 <= levels <= 5`, `page_shift > 3`, and `va_bits` leaves the root level between 1 and
/// `page_shift - 3` index bits: `(levels - 1) * (page_shift - 3) + page_shift < va_bits <=
/// levels * (page_shift - 3) + page_shift`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PagingMode {
    levels: u32,
    va_bits: u32,
    page_shift: u32,
}

impl PagingMode {
    /// The geometry of `levels` levels of tables translating `va_bits`-bit addresses into
    /// pages of `1 << page_shift` bytes, or `None` if those do not fit together.
    pub const fn new(levels: u32, va_bits: u32, page_shift: u32) -> Option<Self> {
        if levels < 2 || levels > 5 || page_shift <= 3 || page_shift > 16 {
            return None;
        }
        let bits = page_shift - 3;
        let top_shift = page_shift + (levels - 1) * bits;
        if va_bits <= top_shift || va_bits > top_shift + bits {
            return None;
        }
        Some(Self {
            levels,
            va_bits,
            page_shift,
        })
    }

    /// How many levels of tables the walk reads.
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// How many bits of a kernel address the tables translate.
    pub fn va_bits(&self) -> u32 {
        self.va_bits
    }

    /// The page size (the granule) in bytes.
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }

    /// Whether the kernel's `level` is folded away, i.e. not a table of its own.
    pub fn folded(&self, level: Level) -> bool {
        !self.walked().any(|(l, _, _)| l == level)
    }

    /// The levels walked, from the root down, each with the lowest address bit its index
    /// takes and the number of index bits. The root is always the PGD and the last level the
    /// PTE; the kernel folds the P4D first, then the PUD, then the PMD.
    #[inline]
    pub fn walked(&self) -> Levels {
        let bits = self.page_shift - 3;
        let shift = self.page_shift + (self.levels - 1) * bits;
        Levels {
            // The root first, then the last `levels - 1` of P4D, PUD, PMD, PTE in `Level::ALL`.
            at: (5 - self.levels) as usize,
            root: (5 - self.levels) as usize,
            shift,
            width: self.va_bits - shift,
            bits,
        }
    }
}

/// The levels of a walk, from the root down: [`PagingMode::walked`]. A plain iterator, which
/// a fault's walk (`pte_run`) runs inline.
#[derive(Clone, Debug)]
pub struct Levels {
    /// Where the next level is in `Level::ALL` (5: past the PTE); at `root`, the root (PGD).
    at: usize,
    root: usize,
    /// The lowest address bit, and the number of bits, of the next level's index.
    shift: u32,
    width: u32,
    /// Index bits of a level below the root.
    bits: u32,
}

impl Iterator for Levels {
    type Item = (Level, u32, u32);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let level = if self.at == self.root {
            Level::Pgd
        } else {
            *Level::ALL.get(self.at)?
        };
        let item = (level, self.shift, self.width);
        self.at += 1;
        // Lowered once per level below the root: it ends at `page_shift - bits` (3) after the
        // PTE, and is not used then.
        self.shift = self.shift.wrapping_sub(self.bits);
        self.width = self.bits;
        Some(item)
    }
}

impl fmt::Display for PagingMode {
    /// `4-level paging (PGD -> PUD -> PMD -> PTE; P4D folded), 4 KiB pages, 48-bit addresses`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-level paging (", self.levels())?;
        for (i, (level, _, _)) in self.walked().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            f.write_str(level.upper_name())?;
        }
        let mut folded = Level::ALL.iter().filter(|&&l| self.folded(l)).peekable();
        if folded.peek().is_some() {
            f.write_str("; ")?;
            for (i, l) in folded.enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(l.upper_name())?;
            }
            f.write_str(" folded")?;
        }
        write!(
            f,
            "), {} KiB pages, {}-bit addresses",
            self.page_size() / 1024,
            self.va_bits()
        )
    }
}

// `pr_*!` format through the kernel's own `Display` trait.
impl kernel::fmt::Display for PagingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One page table entry read during a walk. What its bits mean is the architecture's: see
/// the methods of the architecture's module, and its `Display`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The level of the table the entry is in.
    pub level: Level,
    /// The entry's index in its table (some bits of the address).
    pub index: usize,
    /// The entry as the MMU sees it.
    pub raw: u64,
}

/// The result of a walk: every entry read, and where it led.
#[derive(Clone, Debug)]
pub struct Translation {
    entries: [Option<Entry>; 5],
    /// The physical address the virtual address translates to.
    pub phys: u64,
    /// The size of the page or block that maps it: a page, or a huge page.
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

    /// The page frame number: the physical address in pages.
    pub fn pfn(&self) -> u64 {
        self.phys >> kernel::page::PAGE_SHIFT
    }

    /// The address of the frame's `struct page` in the kernel's `vmemmap` array.
    pub fn page_ptr(&self) -> usize {
        page_ptr(self.phys)
    }

    /// The kernel virtual address of the same byte in the direct map of physical memory.
    pub fn direct_map_addr(&self) -> usize {
        arch::phys_to_virt(self.phys)
    }
}

/// How the kernel gets from a page frame number to the frame's `struct page` and to its
/// address in the direct map: `pfn_to_page()` is `vmemmap + pfn` (C pointer arithmetic, in
/// steps of one `struct page`), and `__va()` is `page_offset + (phys - phys_offset)`.
pub struct MemMap {
    /// The address `struct page` 0 would have.
    pub vmemmap: usize,
    /// The size of a `struct page`, in bytes.
    pub struct_page_size: usize,
    /// The physical address the direct map starts with.
    pub phys_offset: u64,
    /// The kernel address of the direct map's start: where `phys_offset` is mapped.
    pub page_offset: usize,
}

/// This kernel's [`MemMap`], as boot set it up (randomised, where the kernel randomises its
/// layout).
pub fn mem_map() -> MemMap {
    MemMap {
        vmemmap: arch::vmemmap_base(),
        struct_page_size: core::mem::size_of::<kernel::bindings::page>(),
        phys_offset: arch::phys_offset(),
        page_offset: arch::phys_to_virt(arch::phys_offset()),
    }
}

/// The address of the `struct page` of the frame holding physical address `phys`, in the
/// kernel's `vmemmap` array.
#[inline]
fn page_ptr(phys: u64) -> usize {
    let pfn = (phys >> kernel::page::PAGE_SHIFT) as usize;
    // Wrapping, as the kernel's pointer arithmetic: no check on the fault-around path. (The
    // product fits anyway: a page frame number of at most 52 bits of address, times 64.)
    arch::vmemmap_base()
        .wrapping_add(pfn.wrapping_mul(core::mem::size_of::<kernel::bindings::page>()))
}

/// The page table entries of consecutive pages: the PTE of one address and the entries after
/// it, to the end of its page table.
///
/// Made by [`pte_run`], which walks the upper levels once: the PTEs of the next pages are the
/// next entries of the same table, read without walking again. That is how the kernel's own
/// fault-around (`filemap_map_pages()`) and `apply_to_page_range()` go through a range.
///
/// # Invariants
///
/// Unless `len` is zero (an empty run, [`PteRun::empty`]), `entries` is the direct-map address
/// of entry `first` of a PTE table of the kernel's that stays in place for `'a`, and
/// `first + len` is at most that table's number of entries.
pub struct PteRun<'a> {
    entries: *const u64,
    first: usize,
    len: usize,
    _mapped: core::marker::PhantomData<&'a ()>,
}

impl PteRun<'_> {
    /// A run of no entries: [`PteRun::entry`] is `None` for every `i`.
    #[inline]
    pub fn empty() -> Self {
        // INVARIANT: `len` is zero.
        PteRun {
            entries: core::ptr::null(),
            first: 0,
            len: 0,
            _mapped: core::marker::PhantomData,
        }
    }

    /// The run's first `n` entries at most: for a caller that must not read past its own
    /// pages, which may end before the table does.
    #[inline]
    pub fn shortened(self, n: usize) -> Self {
        // INVARIANT: A shorter run of the same table, or still empty.
        PteRun {
            len: self.len.min(n),
            ..self
        }
    }

    /// The PTE of the page `i` pages after the run's first, or `None` if that is past the
    /// run's end.
    #[inline]
    pub fn entry(&self, i: usize) -> Option<Entry> {
        if i >= self.len {
            return None;
        }
        // SAFETY: `len` is not zero, so `entries` is entry `first` of a PTE table live for
        // `'a`, in the direct map, which maps all of memory, and `first + i` is below the
        // table's number of entries (type invariants, `i < len`): entry `first + i` is in the
        // same table. The MMU and the kernel update entries with single aligned 8-byte writes,
        // which a volatile read sees whole (READ_ONCE), as `arch::read_entry` reads them.
        let raw = unsafe { self.entries.add(i).read_volatile() };
        Some(Entry {
            level: Level::Pte,
            index: self.first.wrapping_add(i),
            raw,
        })
    }

    /// The address of the `struct page` that the PTE `i` pages after the run's first maps, or
    /// `None` if that is past the run's end or the entry is not present.
    #[inline]
    pub fn page_ptr(&self, i: usize) -> Option<usize> {
        let entry = self.entry(i)?;
        entry.present().then(|| page_ptr(entry.output_address()))
    }
}

/// Walks the page tables down to the PTE table of the kernel virtual address `addr`, and
/// returns the entries from `addr`'s PTE to the end of that table.
///
/// Fails like [`walk`] if an upper level is not present, and with
/// [`WalkError::Unsupported`] also if a huge page maps `addr` (there is no PTE table then).
///
/// # Safety
///
/// The page at `addr` must stay mapped for `'a` (for example, it lies in memory the caller
/// owns), so that the tables on its path, and its PTE table which the run reads, are not freed
/// meanwhile. (The entries of other pages in that table may change; reading one gives what it
/// holds at the time.)
pub unsafe fn pte_run<'a>(addr: usize) -> Result<PteRun<'a>, WalkError> {
    let (mode, mut table) = arch::root().ok_or(WalkError::Unsupported)?;
    let addr64 = addr as u64;
    for (level, shift, bits) in mode.walked() {
        let index = ((addr64 >> shift) & ((1 << bits) - 1)) as usize;
        if level == Level::Pte {
            // INVARIANT: `table` came from a present, non-huge entry of the level above the PTE
            // (the PMD, or the root with two levels) on the path to `addr`, whose page the
            // caller keeps mapped for `'a`; it has `1 << bits` entries, of 8 bytes each, and
            // `index` is below that.
            return Ok(PteRun {
                entries: (arch::phys_to_virt(table) + index * 8) as *const u64,
                first: index,
                len: (1 << bits) - index,
                _mapped: core::marker::PhantomData,
            });
        }
        // SAFETY: As in `walk`: `table` is the root or came from a present table entry on the
        // path to `addr`, which the caller keeps mapped; `index < 1 << bits`.
        let raw = unsafe { arch::read_entry(table, index) };
        let entry = Entry { level, index, raw };
        if !entry.present() {
            return Err(WalkError::NotPresent(entry));
        }
        if entry.huge() {
            return Err(WalkError::Unsupported);
        }
        table = entry.output_address();
    }
    // Not reached: the PTE level always ends the walk.
    Err(WalkError::Unsupported)
}

/// Why a walk stopped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The entry at this level is not valid: nothing is mapped at the address.
    NotPresent(Entry),
    /// No explicit walk on this architecture, or a page table geometry it does not know.
    Unsupported,
}

/// The paging mode of this CPU, if an explicit walk is implemented here.
pub fn paging_mode() -> Option<PagingMode> {
    arch::paging_mode()
}

/// Translates the kernel virtual address `addr` by walking the page tables in software.
///
/// # Safety
///
/// `addr` must stay mapped for the duration of the call (for example, it lies in memory the
/// caller owns), so that the page tables on its path are not freed while they are read.
pub unsafe fn walk(addr: usize) -> Result<Translation, WalkError> {
    let (mode, mut table) = arch::root().ok_or(WalkError::Unsupported)?;
    let mut entries = [None; 5];
    let addr64 = addr as u64;
    for (slot, (level, shift, bits)) in mode.walked().enumerate() {
        let index = ((addr64 >> shift) & ((1 << bits) - 1)) as usize;
        // SAFETY: `table` is the root or came from a valid table entry of the level above on
        // the path to `addr`, which the caller keeps mapped, so the table is live; `index` is
        // below the table's `1 << bits` entries.
        let raw = unsafe { arch::read_entry(table, index) };
        let entry = Entry { level, index, raw };
        entries[slot] = Some(entry);
        if !entry.present() {
            return Err(WalkError::NotPresent(entry));
        }
        let next = entry.output_address();
        if level == Level::Pte || entry.huge() {
            let size = 1u64 << shift;
            return Ok(Translation {
                entries,
                phys: (next & !(size - 1)) | (addr64 & (size - 1)),
                page_size: size,
            });
        }
        table = next;
    }
    // Not reached: the PTE level always ends the walk.
    Err(WalkError::Unsupported)
}
