// SPDX-License-Identifier: GPL-2.0

//! VMA operations: a driver's say in what happens when userspace touches its mapping.
//!
//! C headers: [`include/linux/mm.h`](srctree/include/linux/mm.h) (`struct vm_operations_struct`,
//! `struct vm_fault`), [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h)
//! (`struct vm_area_desc`). See also [`mmap_prepare.rst`].
//!
//! [`mmap_prepare.rst`]: srctree/Documentation/filesystems/mmap_prepare.rst
//!
//! A file's `f_op->mmap_prepare()` hook describes the mapping about to be made in a
//! [`VmAreaDesc`]: it may refuse it, adjust its flags, and install operations with
//! [`VmAreaDesc::set_vm_ops`]. Nothing is mapped then: the first access of userspace to each
//! page raises a page fault, and the kernel calls [`VmOperations::fault`], which finds the page
//! that backs the faulting address and inserts it with [`VmFault::insert_page`]. This is demand
//! paging, as for any file mapping.
//!
//! # Why `mmap_prepare` and not `mmap`
//!
//! `f_op->mmap()` gets a VMA that already exists, and the kernel may still fail the `mmap(2)`
//! after the hook returned success; a VMA freed that way is not closed, so a reference the hook
//! stored in `vm_private_data` would leak, and a second call installing operations would leak the
//! first one. Linux 7.3 deprecates that hook. `f_op->mmap_prepare()` runs before the VMA exists
//! and must have no side effects: [`VmAreaDesc::set_vm_ops`] only records a borrowed pointer (a
//! second call simply replaces the first), and the VMA's own reference is taken by the kernel's
//! `vm_ops->mapped` callback, which runs once the VMA is established and never for a mapping that
//! failed. From then on the reference is the VMA's: [`VmOperations::open`] takes one for every
//! copy of it (`fork()`, a split, `mremap()`), [`VmOperations::close`] drops it.
//!
//! # Fault-around, and the per-VMA lock
//!
//! A handler may map more than the faulting page: [`VmFault::window`] gives the aligned block
//! of pages around it, and [`VmFault::insert_pages`] maps them in batches. This is what the
//! kernel's fault-around does for the page cache (`do_fault_around()`), done in `fault`
//! instead of `vm_ops->map_pages`, for a reason the kernel's exports leave no way around:
//! `map_pages` runs under `rcu_read_lock()` and must not allocate, and every exported way to
//! install a page table entry (`vm_insert_page()`, `vm_insert_pages()`, `vmf_insert_pfn()`,
//! `vmf_insert_mixed()`, `apply_to_page_range()`) allocates the page table when the PMD entry
//! is empty. Checking the PMD first does not help: with `CONFIG_PT_RECLAIM` an
//! `madvise(MADV_DONTNEED)` on another thread, which holds the same VMA read lock, can empty
//! and free the page table between the check and the call. The page cache's own `map_pages`
//! copes with that through `pte_offset_map_lock()` and `pmd_install()`, which are not exported.
//!
//! No `vm_ops->map_pages` is installed, then. The operations table sets `VM_OPS_FAULT_VMA_LOCK`
//! in `vm_ops_flags` instead, which tells `vmf_can_call_fault()` that `fault` may run under the
//! per-VMA lock alone; without it, every fault taken under that lock would be refused and done
//! again under `mmap_lock`, which doubles its cost. A Rust handler is safe under the VMA lock,
//! because all it can reach of the mapping through [`VmFault`] is what that lock protects: the
//! VMA's range and flags ([`FaultVma`]), and the insertion of pages.
// BEGIN out-of-tree fallback: from here to the END line, none of this goes into patches/.
//!
//! A kernel without `VM_OPS_FAULT_VMA_LOCK` (one without the series of `patches/`) only lets
//! `fault` run under the per-VMA lock for operations that have a `map_pages`. Built for such a
//! kernel (Kbuild looks for the flag in its generated bindings), the table has a `map_pages`
//! that maps nothing, and a read fault pays for the `do_fault_around()` that calls it: a page
//! table preallocation and an RCU read section, for nothing.
// END out-of-tree fallback
//!
//! # Lifetimes
//!
//! The operations table and the code of [`VmOperations`] belong to the module that implements
//! it, and every VMA that has them keeps using them until it is closed. That is sound because of
//! a chain of references the kernel keeps: a VMA holds a reference on its file (`vm_file`) until
//! after `close`; an open file holds a reference on the module that owns its file operations
//! (`fops_get()` when it is opened); so the module cannot be unloaded while any such VMA exists.
//! The types make the first link hold: [`VmAreaDesc`] carries the module that owns the file being
//! mapped, and [`VmAreaDesc::set_vm_ops`] accepts only operations implemented by that same module.
//!
//! # Examples
//!
//! ```
//! use core::ptr::NonNull;
//! use kernel::{alloc::allocator::Vmalloc, page::PAGE_SIZE, prelude::*};
//! use kernel::{mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations}, sync::{Arc, ArcBorrow}};
//!
//! /// One page of vmalloc memory, shown to every process that maps it.
//! struct OnePage(VVec<u8>);
//!
//! #[vtable]
//! impl VmOperations for OnePage {
//!     type Ptr = Arc<Self>;
//!
//!     fn fault<'f>(
//!         this: ArcBorrow<'_, Self>,
//!         vmf: &'f VmFault,
//!     ) -> Result<Mapped<'f>, FaultError> {
//!         if vmf.pgoff() != 0 {
//!             return Err(FaultError::SigBus);
//!         }
//!         let ptr = NonNull::new(this.0.as_ptr().cast_mut()).ok_or(FaultError::SigBus)?;
//!         // SAFETY: `ptr` is the start of a vmalloc allocation that lives as long as `this`.
//!         let page = unsafe { Vmalloc::to_page(ptr) };
//!         vmf.insert_page(&page)
//!     }
//! }
//!
//! // The data every VMA will hold a reference to.
//! let one = Arc::new(OnePage(VVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?), GFP_KERNEL)?;
//! assert_eq!(one.0.len(), PAGE_SIZE);
//! # Ok::<(), Error>(())
//! ```

use crate::vma_desc::VmAreaDesc;
use core::{marker::PhantomData, mem::MaybeUninit};
use kernel::{
    bindings,
    error::code::{EBUSY, EFAULT, ENOMEM},
    ffi::{c_int, c_ulong, c_void},
    mm::virt::VmaRef,
    page::{BorrowedPage, Page},
    prelude::*,
    sync::{
        aref::{ARef, AlwaysRefCounted},
        Arc, ArcBorrow,
    },
    types::{ForeignOwnable, Opaque},
    ModuleMetadata,
};

/// Why a fault could not be resolved; userspace sees the corresponding signal.
///
/// # Examples
///
/// ```
/// use kernel::mm::vm_ops::FaultError;
///
/// // A fault past the end of what the driver can map is the process's error: SIGBUS.
/// fn past_end(pgoff: usize, pages: usize) -> Result<(), FaultError> {
///     if pgoff >= pages {
///         return Err(FaultError::SigBus);
///     }
///     Ok(())
/// }
/// assert_eq!(past_end(4, 4), Err(FaultError::SigBus));
/// assert_eq!(past_end(3, 4), Ok(()));
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// The address has no backing (for example past the end of the object): `SIGBUS`.
    SigBus,
    /// Memory for the page tables could not be allocated (`VM_FAULT_OOM`), after the allocator
    /// itself has reclaimed and, where it could, called the OOM killer. A user access is then
    /// retried, after a memory cgroup's pending OOM handling (`pagefault_out_of_memory()`, which
    /// warns that the error "leaked out"); a kernel access (`copy_to_user()` into the mapping)
    /// fails with `EFAULT`. So it means memory, never a race: see [`FaultError::Retry`].
    Oom,
    /// Nothing was mapped, because the page table changed meanwhile (another thread's
    /// `madvise(MADV_DONTNEED)` freed it, say): the access faults again and is served then, as
    /// the kernel's own `finish_fault()` does in that case (`VM_FAULT_NOPAGE`).
    Retry,
}

/// The error of a fault whose page `vm_insert_pages()` could not map (other than `-EBUSY`, a
/// page mapped already): `-EFAULT`, its page table was freed between its allocation and its lock
/// (or a table above it could not be allocated), so the access faults again; `-ENOMEM`, no page
/// table could be allocated; anything else, no mapping can be made there.
fn insert_error(errno: c_int) -> FaultError {
    if errno == EFAULT.to_errno() {
        FaultError::Retry
    } else if errno == ENOMEM.to_errno() {
        FaultError::Oom
    } else {
        FaultError::SigBus
    }
}

/// [`VmFault::window`] in numbers, for a fault at user `address` (rounded down to its page),
/// file page `pgoff`, in a VMA over `vma_start..vma_end`, of a file of `file_pages` pages: the
/// window's first page, the faulting page and the page just past the window, as indices in the
/// faulting address's page table, `(from, pte, to)`.
///
/// The window is the naturally aligned block of `max` pages (rounded down to a power of two, in
/// `1..=PTRS_PER_PTE`) around the fault, cut to the VMA and to the file, and it always holds the
/// faulting page: `from <= pte < to <= PTRS_PER_PTE`, with `pte - from` at most the VMA's pages
/// before `address` and at most `pgoff`, and `to - pte` at most the pages from `address` to the
/// VMA's end and to the file's, or 1. No input overflows, `usize::MAX` anywhere included (for a
/// fault, the kernel guarantees `vma_start <= address < vma_end`).
pub(crate) fn window_bounds(
    max: usize,
    address: usize,
    vma_start: usize,
    vma_end: usize,
    pgoff: usize,
    file_pages: usize,
) -> (usize, usize, usize) {
    const PTRS: usize = bindings::PTRS_PER_PTE as usize;
    const SHIFT: u32 = bindings::PAGE_SHIFT;
    // The largest power of two not above `max`, in 1..=PTRS.
    let max = max.clamp(1, PTRS);
    let n = 1 << (usize::BITS - 1 - max.leading_zeros());
    // The index of the faulting page within its page table, as in `do_fault_around()`.
    let pte = (address >> SHIFT) % PTRS;
    let before = (address.saturating_sub(vma_start) >> SHIFT).min(pgoff);
    let after_in_vma = (vma_end.saturating_sub(address) >> SHIFT).max(1);
    let after_in_file = file_pages.saturating_sub(pgoff).max(1);
    let block = pte & !(n - 1);
    let from = block.max(pte - pte.min(before));
    // Each bound is at least `pte + 1`: the window holds the faulting page.
    let to = (block + n)
        .min(PTRS)
        .min(pte.saturating_add(after_in_vma))
        .min(pte.saturating_add(after_in_file));
    (from, pte, to)
}

impl FaultError {
    fn to_vm_fault(self) -> bindings::vm_fault_t {
        match self {
            FaultError::SigBus => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
            FaultError::Oom => bindings::vm_fault_reason_VM_FAULT_OOM,
            FaultError::Retry => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
        }
    }
}

/// Proof that the faulting address of one fault is mapped; only [`VmFault::insert_page`] makes
/// one.
///
/// Requiring it as the result of [`VmOperations::fault`] means a handler cannot report success
/// without a page table entry in place, which would make the faulting access fault forever. The
/// lifetime `'f` is the borrow of the [`VmFault`] it was made for, and the type is invariant in
/// it, so a proof cannot be kept and returned by a later fault:
///
/// ```ignore,compile_fail
/// use kernel::{prelude::*, sync::{Arc, ArcBorrow}};
/// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations};
///
/// struct Cheat(Option<Mapped<'static>>);
///
/// #[vtable]
/// impl VmOperations for Cheat {
///     type Ptr = Arc<Self>;
///
///     fn fault<'f>(
///         _this: ArcBorrow<'_, Self>,
///         vmf: &'f VmFault,
///     ) -> Result<Mapped<'f>, FaultError> {
///         let page = kernel::page::Page::alloc_page(GFP_KERNEL).map_err(|_| FaultError::Oom)?;
///         let proof = vmf.insert_page(&page)?;
///         let kept: Mapped<'static> = proof;
///         Ok(kept) // error: lifetime may not live long enough
///     }
/// }
/// ```
///
/// # Examples
///
/// ```
/// use kernel::{page::Page, prelude::*, sync::{Arc, ArcBorrow}};
/// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations};
///
/// struct Counted(kernel::sync::atomic::Atomic<u64>);
///
/// #[vtable]
/// impl VmOperations for Counted {
///     type Ptr = Arc<Self>;
///
///     fn fault<'f>(
///         this: ArcBorrow<'_, Self>,
///         vmf: &'f VmFault,
///     ) -> Result<Mapped<'f>, FaultError> {
///         let page = Page::alloc_page(GFP_KERNEL).map_err(|_| FaultError::Oom)?;
///         let mapped = vmf.insert_page(&page)?;
///         // Count only the faults that installed the entry, not those that lost a race.
///         if mapped.was_new() {
///             this.0.add(1, kernel::sync::atomic::Relaxed);
///         }
///         Ok(mapped)
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Mapped<'f> {
    new: bool,
    pages: usize,
    _fault: PhantomData<fn(&'f ()) -> &'f ()>,
}

impl Mapped<'_> {
    /// Whether this fault installed the entry. `false` when another thread's fault on the same
    /// address won the race and installed it first.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::{FaultError, Mapped};
    ///
    /// fn count(mapped: &Result<Mapped<'_>, FaultError>) -> u64 {
    ///     matches!(mapped, Ok(m) if m.was_new()) as u64
    /// }
    /// assert_eq!(count(&Err(FaultError::Oom)), 0);
    /// ```
    pub fn was_new(&self) -> bool {
        self.new
    }

    /// How many page table entries this fault installed: the faulting page's, if
    /// [`Mapped::was_new`], and those of the neighbours that [`VmFault::insert_pages`] mapped
    /// with it.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::{FaultError, Mapped};
    ///
    /// fn pages(mapped: &Result<Mapped<'_>, FaultError>) -> usize {
    ///     mapped.as_ref().map_or(0, Mapped::pages)
    /// }
    /// assert_eq!(pages(&Err(FaultError::SigBus)), 0);
    /// ```
    pub fn pages(&self) -> usize {
        self.pages
    }
}

/// A page lent for `'p`, which [`VmFault::insert_pages`] can map: a `&'p Page` or a
/// [`BorrowedPage<'p>`].
///
/// `insert_pages` takes the `struct page` of each page it is given and maps it only after it
/// has taken a batch of them, so every page must stay allocated for the whole call. A borrow
/// says that; an owned page (a [`Page`], or a box of one) would be freed as soon as its
/// pointer was taken. The trait is sealed: only borrows implement it.
///
/// # Examples
///
/// Both kinds of borrow can be given:
///
/// ```
/// use kernel::{page::{BorrowedPage, Page}, prelude::*};
/// use kernel::mm::vm_ops::PageBorrow;
///
/// use core::ptr::NonNull;
///
/// fn first<'p, I>(pages: I) -> Option<*mut kernel::bindings::page>
/// where
///     I: IntoIterator,
///     I::Item: PageBorrow<'p>,
/// {
///     pages.into_iter().next().map(|p| p.as_ptr())
/// }
///
/// let pages = [Page::alloc_page(GFP_KERNEL)?, Page::alloc_page(GFP_KERNEL)?];
/// assert_eq!(first(&pages), Some(pages[0].as_ptr()));
/// let ptr = NonNull::new(pages[1].as_ptr()).ok_or(EINVAL)?;
/// // SAFETY: `ptr` is the `struct page` of `pages[1]`, which owns the page and outlives `lent`.
/// let lent = unsafe { BorrowedPage::from_raw(ptr) };
/// assert_eq!(first([lent]), Some(pages[1].as_ptr()));
/// # Ok::<(), Error>(())
/// ```
///
/// Owned pages cannot be given, since they would be freed before they are mapped:
///
/// ```ignore,compile_fail
/// use kernel::{page::Page, prelude::*};
/// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault};
///
/// fn fresh<'f>(vmf: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
///     let window = vmf.window(16, 16);
///     let pages = (0..window.pages()).map(|_| Page::alloc_page(GFP_KERNEL).unwrap());
///     vmf.insert_pages(&window, pages) // error[E0277]
/// }
/// ```
pub trait PageBorrow<'p>: core::ops::Deref<Target = Page> + private::Sealed {}

impl<'p> PageBorrow<'p> for &'p Page {}
impl<'p> PageBorrow<'p> for BorrowedPage<'p> {}

mod private {
    use kernel::page::{BorrowedPage, Page};

    /// Keeps [`super::PageBorrow`] to the borrows it is implemented for.
    pub trait Sealed {}

    impl Sealed for &Page {}
    impl Sealed for BorrowedPage<'_> {}
}

/// A page fault being handled: the kernel's `struct vm_fault`.
///
/// Its fields are read through a raw pointer, never through a reference to the whole struct: the
/// core mm writes other fields of it (`pte`, `ptl`, `prealloc_pte`, ...) while the handler runs.
///
/// # Invariants
///
/// For the lifetime of a `&VmFault`, `inner` is a valid `struct vm_fault` passed to a
/// `vm_operations_struct::fault` callback, whose VMA is valid and read-locked (mmap or VMA lock),
/// and whose `vma`, `pgoff` and `address` fields do not change.
///
/// # Examples
///
/// ```
/// use kernel::{page::Page, prelude::*};
/// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault};
///
/// /// Maps the same page at every address of the VMA.
/// fn same_page<'f>(vmf: &'f VmFault, page: &Page) -> Result<Mapped<'f>, FaultError> {
///     pr_debug!("fault at {:#x} (page {} of the file)\n", vmf.address(), vmf.pgoff());
///     vmf.insert_page(page)
/// }
/// ```
#[repr(transparent)]
pub struct VmFault {
    inner: Opaque<bindings::vm_fault>,
}

impl VmFault {
    /// # Safety
    ///
    /// `ptr` must be the `struct vm_fault` of a fault handler call that lasts at least `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::vm_fault) -> &'a Self {
        // SAFETY: `Self` is transparent over `vm_fault`; the caller guarantees validity.
        unsafe { &*ptr.cast() }
    }

    /// The area the fault is in, as a handler may see it: its range and flags, nothing that
    /// could change it (see [`FaultVma`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::VmFault;
    ///
    /// fn in_first_page(vmf: &VmFault) -> bool {
    ///     vmf.address() == vmf.vma().start()
    /// }
    /// ```
    #[inline]
    pub fn vma(&self) -> &FaultVma {
        FaultVma::new(self.vma_ref())
    }

    /// The VMA itself, for the abstraction's own use: nothing of it that could undo an
    /// insertion reaches a handler.
    #[inline]
    fn vma_ref(&self) -> &VmaRef {
        // SAFETY: By the type invariants `inner` is valid and `vma` is not written during the
        // handler; the field is read through the raw pointer.
        let vma = unsafe { (*self.inner.get()).__bindgen_anon_1.vma };
        // SAFETY: By the type invariants the VMA is valid and read-locked during the handler,
        // which outlives `&self`.
        unsafe { VmaRef::from_raw(vma) }
    }

    /// The faulting user address, rounded down to its page.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::vm_ops::VmFault, page::PAGE_SIZE};
    ///
    /// fn index_in_vma(vmf: &VmFault) -> usize {
    ///     (vmf.address() - vmf.vma().start()) / PAGE_SIZE
    /// }
    /// ```
    pub fn address(&self) -> usize {
        // SAFETY: By the type invariants `inner` is valid and `address` does not change.
        unsafe { (*self.inner.get()).__bindgen_anon_1.address }
    }

    /// The page of the mapped file that the address falls in: the VMA's page offset plus the
    /// page index of the address within the VMA.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::{FaultError, VmFault};
    ///
    /// fn checked_index(vmf: &VmFault, pages: usize) -> Result<usize, FaultError> {
    ///     Some(vmf.pgoff()).filter(|&i| i < pages).ok_or(FaultError::SigBus)
    /// }
    /// ```
    pub fn pgoff(&self) -> usize {
        // SAFETY: By the type invariants `inner` is valid and `pgoff` does not change.
        unsafe { (*self.inner.get()).__bindgen_anon_1.pgoff }
    }

    /// Maps `page` (a [`Page`], or a [`BorrowedPage`] through its `Deref`) at the faulting
    /// address with the protection of the VMA.
    ///
    /// The VMA takes its own reference on the page (dropped on unmap), so `page` need only stay
    /// valid during the call. The VMA must be a mixed map ([`VmAreaDesc::set_mixedmap`]);
    /// otherwise the fault fails with [`FaultError::SigBus`]. In a private mapping the entry is
    /// read-only and a write then copies the page (copy-on-write): the page itself is never
    /// written.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{page::Page, prelude::*};
    /// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault};
    ///
    /// fn map_fresh_page<'f>(vmf: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
    ///     let page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO).map_err(|_| FaultError::Oom)?;
    ///     // The VMA holds its own reference: `page` may be dropped when this returns.
    ///     vmf.insert_page(&page)
    /// }
    /// ```
    #[inline]
    pub fn insert_page(&self, page: &Page) -> Result<Mapped<'_>, FaultError> {
        let page = page.as_ptr();
        let vma = self.vma_ref();
        // What `VmaRef::as_mixedmap_vma` checks, without making an `Option` of the VMA.
        if vma.flags() & kernel::mm::virt::flags::MIXEDMAP == 0 {
            return Err(FaultError::SigBus);
        }
        // SAFETY: `vma` is a mixed map (checked above), read-locked for the fault (type
        // invariants), and the faulting address lies in it; `page` is the `struct page` of a
        // page borrowed for the call, and the VMA takes its own reference. (What
        // `VmaMixedMap::vm_insert_page` does, without its result conversion: this is the
        // fault's hot path.)
        let ret = unsafe { bindings::vm_insert_page(vma.as_ptr(), self.address(), page) };
        let new = if ret == 0 {
            true
        } else {
            // SAFETY: `page` is still borrowed.
            unsafe { self.insert_page_failed(page, ret) }?
        };
        Ok(Mapped {
            new,
            pages: usize::from(new),
            _fault: PhantomData,
        })
    }

    /// [`VmFault::insert_page`] when `vm_insert_page()` failed with `errno`: whether the page
    /// is mapped now by this fault (`true`) or was by another (`false`). Out of line, given only
    /// what it cannot find again (the page), and with a result that fits in a register, so that
    /// the fault's hot path, the success, keeps no more registers than it needs.
    ///
    /// `-EBUSY`: another thread's fault on this address got there first; it is mapped.
    /// `-ENOMEM`: no page table. Either it could not be allocated, or another thread freed it
    /// between its allocation and its lock (`madvise(MADV_DONTNEED)` emptied it, and
    /// `CONFIG_PT_RECLAIM` freed it): `vm_insert_page()` says `-ENOMEM` for both. So the page
    /// is inserted once more, through `vm_insert_pages()`, which tells the two apart, and one
    /// page and a window follow one rule ([`insert_error`]): a table freed meanwhile is
    /// [`FaultError::Retry`], memory that cannot be had [`FaultError::Oom`].
    ///
    /// # Safety
    ///
    /// `page` must point to a valid `struct page`, whose page stays allocated during the call.
    #[cold]
    #[inline(never)]
    unsafe fn insert_page_failed(
        &self,
        page: *mut bindings::page,
        errno: c_int,
    ) -> Result<bool, FaultError> {
        if errno == EBUSY.to_errno() {
            return Ok(false);
        }
        if errno != ENOMEM.to_errno() {
            return Err(FaultError::SigBus);
        }
        let Some(vma) = self.vma_ref().as_mixedmap_vma() else {
            return Err(FaultError::SigBus);
        };
        let mut ptrs = [page];
        let mut left: c_ulong = 1;
        // SAFETY: As in `insert_page`: `vma` is a mixed map, read-locked for the fault, and the
        // faulting address lies in it; `ptrs` holds one page, valid for the call (the
        // caller's guarantee).
        let again = unsafe {
            bindings::vm_insert_pages(vma.as_ptr(), self.address(), ptrs.as_mut_ptr(), &mut left)
        };
        match again {
            0 => Ok(true),
            e if e == EBUSY.to_errno() => Ok(false),
            e => Err(insert_error(e)),
        }
    }

    /// Whether this is a write fault on a private (copy-on-write) mapping.
    fn is_cow(&self) -> bool {
        // SAFETY: By the type invariants `inner` is valid; `flags` is read through the raw
        // pointer. The kernel changes it during a fault only to drop locks, which a handler
        // that is running has not done.
        let flags = unsafe { (*self.inner.get()).flags };
        flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0
            && self.vma_ref().flags() & kernel::mm::virt::flags::SHARED == 0
    }

    /// The pages that may be mapped together with the faulting one (fault-around): the
    /// naturally aligned block of `max` pages (rounded down to a power of two, at most one page
    /// table's worth) that holds the faulting address, cut to the VMA, to its page table, and
    /// to the pages `0..file_pages` of the file.
    ///
    /// For a write fault on a private mapping the window is the faulting page alone: the
    /// write copies that page, and only that one (copy-on-write), and mapping the file's pages
    /// around it would only have them copied on their own writes later.
    ///
    /// The kernel's own fault-around for the page cache (`do_fault_around()`, with
    /// `fault_around_bytes` for `max`) starts from the same aligned block, but when the VMA
    /// begins inside it, it moves the window's end on by as much; here the window never leaves
    /// the block, so which pages a fault maps depends only on where it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::VmFault;
    ///
    /// /// A fault always maps at least the faulting page.
    /// fn at_least_one(vmf: &VmFault, file_pages: usize) -> bool {
    ///     let window = vmf.window(16, file_pages);
    ///     window.pages() >= 1 && window.pages() <= 16
    /// }
    /// ```
    pub fn window(&self, max: usize, file_pages: usize) -> FaultWindow<'_> {
        let max = if self.is_cow() { 1 } else { max };
        let vma = self.vma_ref();
        let (address, pgoff) = (self.address(), self.pgoff());
        let (from, pte, to) =
            window_bounds(max, address, vma.start(), vma.end(), pgoff, file_pages);
        // INVARIANT: `from <= pte < to <= PTRS_PER_PTE`, so the window is in one page table and
        // holds the faulting address; `window_bounds` keeps it inside the VMA (`pte - from`
        // pages at most before the address, and `to - pte` at most from it to the VMA's end);
        // and `pte - from <= pgoff`, so `pgoff - (pte - from)` is the file page at the window's
        // first address.
        FaultWindow {
            address: address - ((pte - from) << bindings::PAGE_SHIFT),
            pgoff: pgoff - (pte - from),
            pages: to - from,
            fault: pte - from,
            _fault: PhantomData,
        }
    }

    /// Maps the pages of `window` that are not mapped yet, the faulting one among them: `pages`
    /// gives them in order, from the page for the window's first file page
    /// ([`FaultWindow::pgoff`]) on, each a `&Page` or a [`BorrowedPage`] ([`PageBorrow`]),
    /// valid for `'p`, so for the whole call. Pages that another thread has
    /// mapped meanwhile are left alone; if `pages` ends first, the window ends there.
    ///
    /// Fails only if the faulting page itself could not be mapped; a neighbour that cannot be
    /// mapped just stays unmapped until its own fault. If the page table went away meanwhile
    /// (`-EFAULT` from `vm_insert_pages()`: another thread's `madvise(MADV_DONTNEED)` freed
    /// it), the fault fails with [`FaultError::Retry`] and is taken again. The pages are
    /// inserted in batches, one page table lock each (`vm_insert_pages()`). Like
    /// [`VmFault::insert_page`], this needs a mixed map, takes the VMA's own reference on each
    /// page, and maps with the protection of the VMA.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{page::Page, prelude::*};
    /// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault};
    ///
    /// /// Maps up to 16 pages of `pages` around the fault, in one fault.
    /// fn fault_around<'f>(vmf: &'f VmFault, pages: &[Page]) -> Result<Mapped<'f>, FaultError> {
    ///     let window = vmf.window(16, pages.len());
    ///     vmf.insert_pages(&window, pages.iter().skip(window.pgoff()))
    /// }
    /// ```
    pub fn insert_pages<'f, 'p, I>(
        &'f self,
        window: &FaultWindow<'f>,
        pages: I,
    ) -> Result<Mapped<'f>, FaultError>
    where
        I: IntoIterator,
        I::Item: PageBorrow<'p>,
    {
        /// Pages per call of `vm_insert_pages()`, which takes the page table lock once per 8:
        /// 512 bytes of pointers on the stack.
        const BATCH: usize = 64;
        let Some(vma) = self.vma_ref().as_mixedmap_vma() else {
            return Err(FaultError::SigBus);
        };
        // `Some(true)`: this fault mapped the faulting page; `Some(false)`: it was mapped.
        let mut fault_page = None;
        let mut inserted = 0;
        let mut next = 0;
        let mut error = FaultError::SigBus;
        let mut end = false;
        let mut pages = pages.into_iter();
        'window: while next < window.pages && !end {
            // Written up to `len` before `vm_insert_pages()` reads them (no zeroing per batch).
            let mut ptrs = [const { MaybeUninit::<*mut bindings::page>::uninit() }; BATCH];
            // The batch: up to `BATCH` pages of the `pages - next` left (`next < pages`).
            let want = (window.pages - next).min(BATCH);
            let mut len = 0;
            while len < want {
                let Some(p) = pages.next() else {
                    // The window ends here (after this batch).
                    end = true;
                    break;
                };
                ptrs[len] = MaybeUninit::new(p.as_ptr());
                len += 1;
            }
            if len == 0 {
                break;
            }
            let first = next;
            let mut at = 0;
            while at < len {
                let mut left = (len - at) as c_ulong;
                let addr = window.address + ((first + at) << bindings::PAGE_SHIFT);
                // SAFETY: `vma` is a mixed map, read-locked for the fault; `addr` and the
                // `left` pages after it lie in the window, so in the VMA (type invariants of
                // `FaultWindow`, made for this fault). `ptrs[at..len]` are initialized, each to
                // a page borrowed for `'p`, which outlives the call (`PageBorrow`); the
                // VMA takes its own references. `vm_insert_pages()` writes back how many were
                // not mapped.
                let ret = unsafe {
                    bindings::vm_insert_pages(
                        vma.as_ptr(),
                        addr,
                        ptrs[at..].as_mut_ptr().cast(),
                        &mut left,
                    )
                };
                let done = (len - at) - left as usize;
                inserted += done;
                if (first + at..first + at + done).contains(&window.fault) {
                    fault_page = Some(true);
                }
                at += done;
                match ret {
                    0 => break,
                    // The page at `at` is mapped already (a racing fault): skip it.
                    e if e == EBUSY.to_errno() => {
                        if first + at == window.fault {
                            fault_page = Some(false);
                        }
                        at += 1;
                    }
                    // A neighbour that cannot be mapped stays unmapped: skip it.
                    _ if first + at != window.fault => at += 1,
                    // The faulting page itself.
                    e => {
                        error = insert_error(e);
                        break 'window;
                    }
                }
            }
            next = first + len;
        }
        match fault_page {
            Some(new) => Ok(Mapped {
                new,
                pages: inserted,
                _fault: PhantomData,
            }),
            None => Err(error),
        }
    }
}

/// The VMA of a fault, as its handler sees it ([`VmFault::vma`]): where it is and how it is
/// mapped, and nothing that could change it.
///
/// A handler must not be able to take back what it mapped: one that inserted the page, then
/// unmapped it again (`VmaRef::zap_vma_range`), and returned the [`Mapped`] it got would leave
/// the access with no entry, and the process faulting on it forever. So the handler is not
/// given the [`VmaRef`] (nor its `mm`). (That closes the way through the fault, not every
/// way: a handler that looks the VMA up again through the current task's `mm` can still unmap
/// it. Either way the result is a process that faults again, never memory unsafety.)
///
/// ```ignore,compile_fail
/// use kernel::{page::{Page, PAGE_SIZE}, prelude::*, sync::{Arc, ArcBorrow}};
/// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations};
///
/// struct Undo;
///
/// #[vtable]
/// impl VmOperations for Undo {
///     type Ptr = Arc<Self>;
///
///     fn fault<'f>(_: ArcBorrow<'_, Self>, vmf: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
///         let page = Page::alloc_page(GFP_KERNEL).map_err(|_| FaultError::Oom)?;
///         let mapped = vmf.insert_page(&page)?;
///         vmf.vma().zap_vma_range(vmf.address(), PAGE_SIZE); // error[E0599]
///         Ok(mapped)
///     }
/// }
/// ```
///
/// # Invariants
///
/// The wrapped VMA is that of a fault being handled, valid and read-locked (mmap or VMA lock)
/// for as long as the reference to it.
///
/// # Examples
///
/// ```
/// use kernel::{mm::{virt::flags, vm_ops::VmFault}, page::PAGE_SIZE};
///
/// /// How many pages of the VMA lie before the faulting one.
/// fn pages_before(vmf: &VmFault) -> usize {
///     (vmf.address() - vmf.vma().start()) / PAGE_SIZE
/// }
///
/// /// Whether a write to this VMA reaches the file.
/// fn writes_shared(vmf: &VmFault) -> bool {
///     vmf.vma().flags() & flags::SHARED != 0
/// }
/// ```
#[repr(transparent)]
pub struct FaultVma(VmaRef);

impl FaultVma {
    #[inline]
    fn new(vma: &VmaRef) -> &Self {
        // SAFETY: `Self` is transparent over `VmaRef`; the reference keeps `vma`'s lifetime.
        // INVARIANT: Only `VmFault::vma` calls this, with the VMA of its fault.
        unsafe { &*core::ptr::from_ref(vma).cast::<Self>() }
    }

    /// The first user address of the VMA.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::VmFault;
    ///
    /// fn at_start(vmf: &VmFault) -> bool {
    ///     vmf.address() == vmf.vma().start()
    /// }
    /// ```
    #[inline]
    pub fn start(&self) -> usize {
        self.0.start()
    }

    /// The user address just past the VMA.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::vm_ops::VmFault, page::PAGE_SIZE};
    ///
    /// fn in_last_page(vmf: &VmFault) -> bool {
    ///     vmf.address() + PAGE_SIZE == vmf.vma().end()
    /// }
    /// ```
    #[inline]
    pub fn end(&self) -> usize {
        self.0.end()
    }

    /// The VMA's flags, a combination of the constants in [`kernel::mm::virt::flags`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::{virt::flags, vm_ops::VmFault};
    ///
    /// fn writable(vmf: &VmFault) -> bool {
    ///     vmf.vma().flags() & flags::WRITE != 0
    /// }
    /// ```
    #[inline]
    pub fn flags(&self) -> bindings::vm_flags_t {
        self.0.flags()
    }
}

/// The pages around a fault that its handler may map with it: see [`VmFault::window`].
///
/// # Invariants
///
/// The `pages` pages from user address `address` lie in the VMA of the fault of lifetime `'f`
/// and in one page table; page `fault` of them is the faulting one; `pgoff` is the file page
/// mapped at `address`.
///
/// # Examples
///
/// ```
/// use kernel::mm::vm_ops::VmFault;
///
/// /// Whether the fault can map more than its own page.
/// fn maps_neighbours(vmf: &VmFault) -> bool {
///     vmf.window(16, usize::MAX).pages() > 1
/// }
/// ```
#[derive(Debug)]
pub struct FaultWindow<'f> {
    address: usize,
    pgoff: usize,
    pages: usize,
    fault: usize,
    _fault: PhantomData<fn(&'f ()) -> &'f ()>,
}

impl FaultWindow<'_> {
    /// The first user address of the window.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::VmFault;
    ///
    /// fn starts_at_or_before_the_fault(vmf: &VmFault) -> bool {
    ///     vmf.window(16, usize::MAX).address() <= vmf.address()
    /// }
    /// ```
    pub fn address(&self) -> usize {
        self.address
    }

    /// The page of the file mapped at [`FaultWindow::address`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::VmFault;
    ///
    /// fn first_file_page(vmf: &VmFault) -> usize {
    ///     vmf.window(16, usize::MAX).pgoff()
    /// }
    /// ```
    pub fn pgoff(&self) -> usize {
        self.pgoff
    }

    /// The number of pages in the window, the faulting one included.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::VmFault;
    ///
    /// /// With a window of one page, fault-around is off.
    /// fn single(vmf: &VmFault) -> bool {
    ///     vmf.window(1, usize::MAX).pages() == 1
    /// }
    /// ```
    pub fn pages(&self) -> usize {
        self.pages
    }
}

/// A VMA that is being closed, as [`VmOperations::close`] sees it: the range it covered, the
/// file page it mapped first, and its flags, copied out of it.
///
/// Not a [`VmaRef`]: `close` also runs from `exit_mmap()`, when the process is gone and its `mm`
/// has no users left, so the `&MmWithUser` of `VmaRef::mm` (whose type promises users) would
/// be a lie, and `ARef::from` of it would take a reference on a dying `mm`:
///
/// ```ignore,compile_fail
/// use kernel::{prelude::*, sync::{aref::ARef, Arc, ArcBorrow}};
/// use kernel::mm::vm_ops::{ClosingVma, FaultError, Mapped, VmFault, VmOperations};
///
/// struct KeepsMm;
///
/// #[vtable]
/// impl VmOperations for KeepsMm {
///     type Ptr = Arc<Self>;
///
///     fn close(_this: ArcBorrow<'_, Self>, vma: &ClosingVma) {
///         let _mm = ARef::from(vma.mm()); // error[E0599]
///     }
///
///     fn fault<'f>(_: ArcBorrow<'_, Self>, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
///         Err(FaultError::SigBus)
///     }
/// }
/// ```
///
/// # Examples
///
/// ```
/// use kernel::{mm::{virt::flags, vm_ops::ClosingVma}, page::PAGE_SIZE, prelude::*};
///
/// fn log_close(vma: &ClosingVma) {
///     let pages = (vma.end() - vma.start()) / PAGE_SIZE;
///     let shared = vma.flags() & flags::SHARED != 0;
///     pr_debug!("{pages} pages from file page {} unmapped (shared: {shared})\n", vma.pgoff());
/// }
/// ```
#[derive(Copy, Clone, Debug)]
pub struct ClosingVma {
    start: usize,
    end: usize,
    pgoff: usize,
    flags: bindings::vm_flags_t,
}

impl ClosingVma {
    /// # Safety
    ///
    /// `vma` must be a valid VMA whose range, page offset and flags do not change during the
    /// call.
    unsafe fn from_raw(vma: *const bindings::vm_area_struct) -> Self {
        // SAFETY: The caller guarantees that `vma` is valid and that these fields are stable.
        unsafe {
            Self {
                start: (*vma).__bindgen_anon_1.__bindgen_anon_1.vm_start,
                end: (*vma).__bindgen_anon_1.__bindgen_anon_1.vm_end,
                pgoff: (*vma).vm_pgoff,
                flags: (*vma).__bindgen_anon_2.vm_flags,
            }
        }
    }

    /// The first user address the VMA covered.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::ClosingVma;
    ///
    /// fn started_at(vma: &ClosingVma, addr: usize) -> bool {
    ///     vma.start() == addr
    /// }
    /// ```
    pub fn start(&self) -> usize {
        self.start
    }

    /// The user address just past the VMA.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::ClosingVma;
    ///
    /// fn bytes(vma: &ClosingVma) -> usize {
    ///     vma.end() - vma.start()
    /// }
    /// ```
    pub fn end(&self) -> usize {
        self.end
    }

    /// The page of the file mapped at [`ClosingVma::start`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::vm_ops::ClosingVma;
    ///
    /// fn from_file_start(vma: &ClosingVma) -> bool {
    ///     vma.pgoff() == 0
    /// }
    /// ```
    pub fn pgoff(&self) -> usize {
        self.pgoff
    }

    /// The VMA's flags, a combination of the constants in [`kernel::mm::virt::flags`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::mm::{virt::flags, vm_ops::ClosingVma};
    ///
    /// fn was_shared(vma: &ClosingVma) -> bool {
    ///     vma.flags() & flags::SHARED != 0
    /// }
    /// ```
    pub fn flags(&self) -> bindings::vm_flags_t {
        self.flags
    }
}

/// A pointer type through which every VMA holds its own reference to the shared data of its
/// operations ([`VmOperations::Ptr`]): [`Arc`], or [`ARef`] of a C object with its own reference
/// count.
///
/// A VMA's `vm_private_data` is the pointer's [`ForeignOwnable::into_foreign`] form. The VMA
/// takes its reference when the kernel has made it, with [`VmaPtr::acquire`] (the description
/// that [`VmAreaDesc::set_vm_ops`] filled only borrows the data), takes another for each copy of
/// it (`fork()`, a split, `mremap()`), and drops one as each is closed. The copies keep the
/// original's `vm_private_data`, so every reference to one object must have the same foreign
/// form: a pointer to the object itself, not to an allocation of the pointer's own.
///
/// A [`KBox`] has one owner, so it cannot be the data of a VMA and of its copies:
///
/// ```ignore,compile_fail
/// use kernel::prelude::*;
/// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations};
///
/// struct Boxed;
///
/// #[vtable]
/// impl VmOperations for Boxed {
///     type Ptr = KBox<Self>; // error[E0277]
///
///     fn fault<'f>(_: &Self, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
///         Err(FaultError::SigBus)
///     }
/// }
/// ```
///
/// # Safety
///
/// Implementers guarantee that, for an object `x` that `Self` values point to:
///
/// - [`VmaPtr::acquire`] of a borrow of `x` returns a new reference to `x`, which keeps it
///   alive until it is dropped or given to [`ForeignOwnable::from_foreign`];
/// - [`ForeignOwnable::into_foreign`] returns the same pointer for every reference to `x`, and
///   [`ForeignOwnable::from_foreign`] of that pointer gives back one reference (the one turned
///   into it), so [`ForeignOwnable::borrow`] of it stays valid while any other reference lives.
///
/// # Examples
///
/// ```
/// use kernel::{prelude::*, sync::Arc, types::ForeignOwnable};
/// use kernel::mm::vm_ops::VmaPtr;
///
/// let a = Arc::new(42u32, GFP_KERNEL)?;
/// let b = Arc::acquire(a.as_arc_borrow());
/// let (pa, pb) = (a.into_foreign(), b.into_foreign());
/// assert_eq!(pa, pb);
/// // SAFETY: Each pointer comes from one `into_foreign` above and is given back once.
/// let (a, b) = unsafe { (Arc::<u32>::from_foreign(pa), Arc::<u32>::from_foreign(pb)) };
/// assert_eq!(*a + *b, 84);
/// # Ok::<(), Error>(())
/// ```
pub unsafe trait VmaPtr: ForeignOwnable + Send + Sync + 'static {
    /// A new reference to the object that `this` borrows.
    fn acquire(this: Self::Borrowed<'_>) -> Self;
}

// SAFETY: `Arc::from` takes a new reference on the `ArcInner` that the borrow is of, and keeps
// it alive until dropped. `Arc::into_foreign` returns the pointer to that `ArcInner`, whichever
// reference it is given; `from_foreign` takes one reference back; `borrow` is valid while the
// count is not zero.
unsafe impl<T: Send + Sync + 'static> VmaPtr for Arc<T> {
    #[inline]
    fn acquire(this: ArcBorrow<'_, T>) -> Self {
        Arc::from(this)
    }
}

// SAFETY: `ARef::from` increments the object's own reference count, which keeps it alive until
// dropped. `ARef::into_foreign` returns the pointer to the object itself, whichever reference
// it is given; `from_foreign` takes one reference back; `borrow` is valid while the count is not
// zero.
unsafe impl<T: AlwaysRefCounted + Send + Sync + 'static> VmaPtr for ARef<T> {
    #[inline]
    fn acquire(this: &T) -> Self {
        ARef::from(this)
    }
}

/// The shared data of a VMA with `T`'s operations, as its callbacks get it: for `Ptr` an
/// [`Arc<X>`], an [`ArcBorrow<'a, X>`].
///
/// # Examples
///
/// ```
/// use kernel::{prelude::*, sync::{Arc, ArcBorrow}};
/// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations, VmaData};
///
/// struct Ops(u32);
///
/// #[vtable]
/// impl VmOperations for Ops {
///     type Ptr = Arc<Self>;
///
///     fn fault<'f>(_: ArcBorrow<'_, Self>, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
///         Err(FaultError::SigBus)
///     }
/// }
///
/// /// The same type, under two names.
/// fn borrowed(data: VmaData<'_, Ops>) -> ArcBorrow<'_, Ops> {
///     data
/// }
///
/// let ops = Arc::new(Ops(7), GFP_KERNEL)?;
/// assert_eq!(borrowed(ops.as_arc_borrow()).0, 7);
/// # Ok::<(), Error>(())
/// ```
pub type VmaData<'a, T> = <<T as VmOperations>::Ptr as ForeignOwnable>::Borrowed<'a>;

/// Operations of a VMA, with shared data that every VMA holds a reference to, through a
/// [`VmaPtr`] (`Ptr`, typically `Arc<Self>`).
///
/// The data is `'static`: the VMA keeps its reference until it is closed, however long that is.
///
/// ```ignore,compile_fail
/// use kernel::{prelude::*, sync::{Arc, ArcBorrow}};
/// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations};
///
/// struct Borrowing<'a>(&'a [u8]);
///
/// #[vtable]
/// impl<'a> VmOperations for Borrowing<'a> { // error[E0478], error[E0803]
///     type Ptr = Arc<Self>; // error[E0477]
///
///     fn fault<'f>(_: ArcBorrow<'_, Self>, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
///         Err(FaultError::SigBus)
///     }
/// }
/// ```
///
/// # Examples
///
/// ```
/// use kernel::{page::Page, prelude::*, sync::{atomic::{Atomic, Relaxed}, Arc, ArcBorrow}};
/// use kernel::mm::{virt::VmaRef, vm_ops::{ClosingVma, FaultError, Mapped, VmFault, VmOperations}};
///
/// /// A mapping of one zeroed page, and the number of VMAs that show it.
/// struct ZeroPage {
///     page: Page,
///     vmas: Atomic<u64>,
/// }
///
/// #[vtable]
/// impl VmOperations for ZeroPage {
///     type Ptr = Arc<Self>;
///
///     fn mapped(this: ArcBorrow<'_, Self>, _start: usize, _end: usize, _pgoff: usize) -> Result {
///         this.vmas.add(1, Relaxed);
///         Ok(())
///     }
///
///     fn open(this: ArcBorrow<'_, Self>, _vma: &VmaRef) {
///         this.vmas.add(1, Relaxed);
///     }
///
///     fn close(this: ArcBorrow<'_, Self>, _vma: &ClosingVma) {
///         this.vmas.fetch_sub(1, Relaxed);
///     }
///
///     fn fault<'f>(
///         this: ArcBorrow<'_, Self>,
///         vmf: &'f VmFault,
///     ) -> Result<Mapped<'f>, FaultError> {
///         if vmf.pgoff() != 0 {
///             return Err(FaultError::SigBus);
///         }
///         vmf.insert_page(&this.page)
///     }
/// }
///
/// let zero = Arc::new(
///     ZeroPage { page: Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?, vmas: Atomic::new(0) },
///     GFP_KERNEL,
/// )?;
/// assert_eq!(zero.vmas.load(Relaxed), 0);
/// # Ok::<(), Error>(())
/// ```
#[vtable]
pub trait VmOperations: Sized + 'static {
    /// The pointer type through which every VMA holds the shared data: `Arc<Self>`, say, or
    /// [`ARef`] of a C object.
    type Ptr: VmaPtr;

    /// A VMA with these operations was established by `mmap(2)`, over the user addresses
    /// `start..end`, mapping the file from page `pgoff` on. It holds a reference to `this` from
    /// now on. Not called when the new range was merged into an existing VMA, which already
    /// holds one.
    ///
    /// An error fails the `mmap(2)`: the kernel unmaps the VMA, and [`Self::close`] runs for it
    /// as for any other, so `mapped` has nothing to undo. (When another driver's `mmap` maps
    /// this file as part of its own, through the kernel's compatibility layer, the VMA of a
    /// failed call is freed without `close`, and its reference to `this` is leaked: never freed
    /// early.)
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations};
    ///
    /// /// Mappings of the file's first 16 pages only.
    /// struct Logged;
    ///
    /// #[vtable]
    /// impl VmOperations for Logged {
    ///     type Ptr = Arc<Self>;
    ///
    ///     fn mapped(_: ArcBorrow<'_, Self>, start: usize, end: usize, pgoff: usize) -> Result {
    ///         pr_debug!("{start:#x}..{end:#x} maps the file from page {pgoff}\n");
    ///         if pgoff + (end - start) / kernel::page::PAGE_SIZE > 16 {
    ///             return Err(EINVAL);
    ///         }
    ///         Ok(())
    ///     }
    ///
    ///     fn fault<'f>(_: ArcBorrow<'_, Self>, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
    ///         Err(FaultError::SigBus)
    ///     }
    /// }
    /// ```
    fn mapped(_this: VmaData<'_, Self>, _start: usize, _end: usize, _pgoff: usize) -> Result {
        Ok(())
    }

    /// A VMA with these operations was created as a copy of another one: the child's copy in
    /// `fork()`, a piece of a split area, the destination of `mremap()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmaRef, prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations};
    ///
    /// struct Copied;
    ///
    /// #[vtable]
    /// impl VmOperations for Copied {
    ///     type Ptr = Arc<Self>;
    ///
    ///     fn open(_this: ArcBorrow<'_, Self>, vma: &VmaRef) {
    ///         let (start, end) = (vma.start(), vma.end());
    ///         pr_debug!("a copy at {start:#x}..{end:#x} (fork, split or mremap)\n");
    ///     }
    ///
    ///     fn fault<'f>(_: ArcBorrow<'_, Self>, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
    ///         Err(FaultError::SigBus)
    ///     }
    /// }
    /// ```
    fn open(_this: VmaData<'_, Self>, _vma: &VmaRef) {}

    /// A VMA with these operations is going away (`munmap()`, exit, or the old range of
    /// `mremap()`); `vma` says what it was (see [`ClosingVma`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::mm::vm_ops::{ClosingVma, FaultError, Mapped, VmFault, VmOperations};
    ///
    /// struct Closed;
    ///
    /// #[vtable]
    /// impl VmOperations for Closed {
    ///     type Ptr = Arc<Self>;
    ///
    ///     fn close(_this: ArcBorrow<'_, Self>, vma: &ClosingVma) {
    ///         pr_debug!("{:#x}..{:#x} unmapped\n", vma.start(), vma.end());
    ///     }
    ///
    ///     fn fault<'f>(_: ArcBorrow<'_, Self>, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
    ///         Err(FaultError::SigBus)
    ///     }
    /// }
    /// ```
    fn close(_this: VmaData<'_, Self>, _vma: &ClosingVma) {}

    /// Resolves a fault on an address of the VMA that has no page table entry.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{page::Page, prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::mm::vm_ops::{FaultError, Mapped, VmFault, VmOperations};
    ///
    /// /// Two pages; a fault past them is the process's error.
    /// struct TwoPages([Page; 2]);
    ///
    /// #[vtable]
    /// impl VmOperations for TwoPages {
    ///     type Ptr = Arc<Self>;
    ///
    ///     fn fault<'f>(
    ///         this: ArcBorrow<'_, Self>,
    ///         vmf: &'f VmFault,
    ///     ) -> Result<Mapped<'f>, FaultError> {
    ///         let page = this.0.get(vmf.pgoff()).ok_or(FaultError::SigBus)?;
    ///         vmf.insert_page(page)
    ///     }
    /// }
    /// ```
    fn fault<'f>(this: VmaData<'_, Self>, vmf: &'f VmFault) -> Result<Mapped<'f>, FaultError>;
}

impl<'a, M: ModuleMetadata> VmAreaDesc<'a, M> {
    /// Installs `V`'s operations on the VMA to be made, with `data` as its shared data.
    ///
    /// Only a pointer is recorded here; the VMA takes its own reference to `data` when it is
    /// established, so calling this again simply replaces the operations, and a mapping that
    /// fails after `mmap_prepare` returned leaves nothing behind. `data` must be borrowed for
    /// `'a` (from the file's private data, typically), not from something `mmap_prepare`
    /// drops:
    ///
    /// ```ignore,compile_fail
    /// use kernel::{prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::mm::{
    ///     virt::VmAreaDesc,
    ///     vm_ops::{FaultError, Mapped, VmFault, VmOperations},
    /// };
    ///
    /// struct Ops;
    /// #[vtable]
    /// impl VmOperations for Ops {
    ///     type Ptr = Arc<Self>;
    ///
    ///     fn fault<'f>(_: ArcBorrow<'_, Self>, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
    ///         Err(FaultError::SigBus)
    ///     }
    /// }
    ///
    /// fn prepare<'a>(desc: &mut VmAreaDesc<'a, <Ops as VmOperations>::OwnerModule>) -> Result {
    ///     let ops = Arc::new(Ops, GFP_KERNEL)?;
    ///     desc.set_vm_ops::<Ops>(ops.as_arc_borrow()); // error[E0597]
    ///     Ok(())
    /// }
    /// ```
    ///
    /// `V` is named (`set_vm_ops::<V>`): the operations and the data are different types when
    /// `V::Ptr` is not `Arc<V>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::mm::{
    ///     virt::VmAreaDesc,
    ///     vm_ops::{FaultError, Mapped, VmFault, VmOperations},
    /// };
    ///
    /// struct Ops;
    ///
    /// #[vtable]
    /// impl VmOperations for Ops {
    ///     type Ptr = Arc<Self>;
    ///
    ///     fn fault<'f>(_: ArcBorrow<'_, Self>, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
    ///         Err(FaultError::SigBus)
    ///     }
    /// }
    ///
    /// /// `ops` is borrowed from the file (its private data) for as long as the description.
    /// fn install<'a>(
    ///     desc: &mut VmAreaDesc<'a, <Ops as VmOperations>::OwnerModule>,
    ///     ops: ArcBorrow<'a, Ops>,
    /// ) {
    ///     desc.set_vm_ops::<Ops>(ops);
    /// }
    /// ```
    pub fn set_vm_ops<V>(&mut self, data: VmaData<'a, V>)
    where
        V: VmOperations<OwnerModule = M>,
    {
        // The foreign form of the data, which every reference to it shares (`VmaPtr`'s safety
        // requirements), learnt from a reference taken and dropped again: nothing is kept.
        let foreign = V::Ptr::acquire(data).into_foreign();
        // SAFETY: `foreign` came from `into_foreign` just above, and is given back once.
        drop(unsafe { V::Ptr::from_foreign(foreign) });
        // The kernel copies both fields into the VMA; `VmOpsTable::<V>::mapped` then takes the
        // VMA's reference through `foreign`, which stays valid until then because `data` is
        // borrowed for `'a`, and every reference to it has that foreign form. `mapped` runs for
        // every VMA made from the description, and these two fields are not written again,
        // because no `VmAreaDesc` sets an action or writes them otherwise (type invariants): a
        // failed action would unmap the VMA before `mapped`, and `close` would drop a reference
        // never taken.
        // SAFETY: By the type invariants the description is ours, and valid; see above.
        unsafe {
            (*self.as_ptr()).vm_ops = &VmOpsTable::<V>::VTABLE;
            (*self.as_ptr()).private_data = foreign;
        }
    }
}

/// The `vm_operations_struct` of a [`VmOperations`] type.
struct VmOpsTable<T: VmOperations>(PhantomData<T>);

impl<T: VmOperations> VmOpsTable<T> {
    /// # Safety
    ///
    /// `ptr` must be the `vm_private_data` of a VMA with these operations (the foreign form of
    /// a `T::Ptr`) while some reference to its data lives for at least `'a`.
    #[inline]
    unsafe fn data<'a>(ptr: *mut c_void) -> VmaData<'a, T> {
        // SAFETY: The caller guarantees that `ptr` is the foreign form of a live `T::Ptr`, which
        // any reference to the data keeps valid to borrow (`VmaPtr`'s safety requirements).
        unsafe { T::Ptr::borrow(ptr) }
    }

    /// Takes a reference to the data at `ptr` for a VMA, which keeps it in `vm_private_data`
    /// and drops it in `close`.
    ///
    /// # Safety
    ///
    /// As for [`Self::data`], for the duration of the call.
    unsafe fn take_reference(ptr: *mut c_void) {
        // SAFETY: The caller guarantees that `ptr` may be borrowed during the call.
        let reference = T::Ptr::acquire(unsafe { Self::data(ptr) });
        // Its foreign form is `ptr` again (`VmaPtr`'s safety requirements).
        let _ = reference.into_foreign();
    }

    /// # Safety
    ///
    /// Called by the kernel once for a VMA just established from a description on which
    /// [`VmAreaDesc::set_vm_ops`] installed these operations, before `mmap(2)` returns;
    /// `vm_private_data` points to the VMA's private data.
    unsafe extern "C" fn mapped(
        start: c_ulong,
        end: c_ulong,
        pgoff: c_ulong,
        _file: *const bindings::file,
        vm_private_data: *mut *mut c_void,
    ) -> c_int {
        // SAFETY: The kernel passes a valid pointer to the private data.
        let ptr = unsafe { *vm_private_data };
        // The VMA's own reference, dropped by `close`, even if `T::mapped` fails (the kernel
        // then unmaps the VMA, which closes it). The pointer stays the same.
        // SAFETY: The private data is the foreign pointer `set_vm_ops` recorded, still valid to
        // borrow (`'a` of the description lasts until `mmap(2)` returns).
        unsafe { Self::take_reference(ptr) };
        // SAFETY: The VMA's reference, just taken, lives at least until the VMA is closed.
        match T::mapped(unsafe { Self::data(ptr) }, start, end, pgoff) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `vma` must be a new copy of a VMA with these operations (so its `vm_private_data` is the
    /// original's pointer, for which it holds no reference yet), with the mmap lock held.
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: `vma` is valid; the private data does not change while the mmap lock is held.
        let ptr = unsafe { (*vma).vm_private_data };
        // Take the new VMA's own reference; `close` drops it.
        // SAFETY: The original VMA's reference keeps the data alive during this call.
        unsafe { Self::take_reference(ptr) };
        // SAFETY: The new VMA's reference, just taken, lives at least until it is closed; `vma`
        // is valid and the mmap lock is held.
        T::open(unsafe { Self::data(ptr) }, unsafe { VmaRef::from_raw(vma) });
    }

    /// # Safety
    ///
    /// `vma` must be a VMA with these operations that is going away. (Its `mm` may have no
    /// users left: `exit_mmap()` closes the VMAs of a dead process.)
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        // SAFETY: `vma` is valid; its private data does not change while it is closed.
        let ptr = unsafe { (*vma).vm_private_data };
        // SAFETY: `vma` is valid, and its range, offset and flags do not change while it is
        // closed.
        let closing = unsafe { ClosingVma::from_raw(vma) };
        // SAFETY: The VMA still holds its reference, for the whole call.
        T::close(unsafe { Self::data(ptr) }, &closing);
        // SAFETY: The VMA's reference was turned into `ptr` (in `mapped` or `open`); this takes
        // it back and drops it, once, as the VMA is closed once, after the last borrow above.
        drop(unsafe { T::Ptr::from_foreign(ptr) });
    }

    /// # Safety
    ///
    /// `vmf` must be a valid `struct vm_fault` for a fault in a VMA with these operations.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: The caller passes a valid `vm_fault` for the duration of this call.
        let vmf = unsafe { VmFault::from_raw(vmf) };
        // SAFETY: The VMA has these operations, so its private data is the foreign form of a
        // `T::Ptr`; the VMA holds its reference and is locked during the fault, and the fault
        // takes no new one.
        let this = unsafe { Self::data((*vmf.vma_ref().as_ptr()).vm_private_data) };
        match T::fault(this, vmf) {
            // The handler installed the entry itself; there is no page to hand back.
            Ok(Mapped { .. }) => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
            Err(e) => e.to_vm_fault(),
        }
    }

    // BEGIN out-of-tree fallback
    /// Maps nothing: the page cache's fault-around hook, here only so that a kernel without
    /// `VM_OPS_FAULT_VMA_LOCK` calls [`Self::fault`] under the per-VMA lock (see the module
    /// documentation).
    ///
    /// # Safety
    ///
    /// Called by the kernel's `do_fault_around()`, under `rcu_read_lock()`.
    #[cfg(not(vm_ops_fault_vma_lock))]
    unsafe extern "C" fn map_pages(
        _vmf: *mut bindings::vm_fault,
        _start_pgoff: c_ulong,
        _end_pgoff: c_ulong,
    ) -> bindings::vm_fault_t {
        // Nothing mapped, so the kernel goes on to `fault`.
        0
    }
    // END out-of-tree fallback

    const VTABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        mapped: Some(Self::mapped),
        open: Some(Self::open),
        close: Some(Self::close),
        fault: Some(Self::fault),
        // `fault` needs only the VMA lock (see the module documentation).
        #[cfg(vm_ops_fault_vma_lock)]
        vm_ops_flags: bindings::VM_OPS_FAULT_VMA_LOCK,
        // BEGIN out-of-tree fallback
        #[cfg(not(vm_ops_fault_vma_lock))]
        map_pages: Some(Self::map_pages),
        // END out-of-tree fallback
        ..pin_init::zeroed()
    };
}
