// SPDX-License-Identifier: GPL-2.0

//! VMA operations: a driver's say in what happens when userspace touches its mapping.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h) (`struct vm_operations_struct`,
//! `struct vm_fault`).
//!
//! An `f_ops->mmap()` hook may install operations on the new VMA with
//! [`VmaNewExt::set_vm_ops`]. Nothing is mapped then: the first access of userspace to each page
//! of the area raises a page fault, and the kernel calls [`VmOperations::fault`], which finds the
//! page that backs the faulting address and inserts it with [`VmFault::insert_page`]. This is
//! demand paging, as for any file mapping.
//!
//! The operations get the data passed to `set_vm_ops`, an [`Arc`]: every VMA holds one
//! reference, taken when the VMA is created or duplicated ([`VmOperations::open`]: `fork()`, a
//! partial `munmap()` or `mprotect()` that splits the area, `mremap()`) and dropped when it goes
//! away ([`VmOperations::close`]).
//!
//! # Examples
//!
//! ```
//! use kernel::{alloc::allocator::Vmalloc, prelude::*, sync::{Arc, ArcBorrow}};
//! use crate::vm_ops::{FaultError, Mapped, VmFault, VmOperations};
//!
//! /// One page of vmalloc memory, shown to every process that maps it.
//! struct OnePage(VBox<[u8; kernel::page::PAGE_SIZE]>);
//!
//! #[vtable]
//! impl VmOperations for OnePage {
//!     fn fault(this: ArcBorrow<'_, Self>, vmf: &VmFault) -> Result<Mapped, FaultError> {
//!         if vmf.pgoff() != 0 {
//!             return Err(FaultError::SigBus);
//!         }
//!         let ptr = core::ptr::NonNull::from(&*this.0).cast();
//!         // SAFETY: `ptr` is a vmalloc allocation that lives as long as `this`.
//!         let page = unsafe { Vmalloc::to_page(ptr) };
//!         vmf.insert_page(&page)
//!     }
//! }
//! ```

use kernel::{
    bindings,
    error::code::{EBUSY, ENOMEM},
    mm::virt::{VmaNew, VmaRef},
    page::Page,
    prelude::*,
    sync::{Arc, ArcBorrow},
    types::Opaque,
};

/// Why a fault could not be resolved; userspace sees the corresponding signal.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// The address has no backing (for example past the end of the object): `SIGBUS`.
    SigBus,
    /// Memory for the page tables could not be allocated: the OOM killer is invoked.
    Oom,
}

impl FaultError {
    fn to_vm_fault(self) -> bindings::vm_fault_t {
        match self {
            FaultError::SigBus => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
            FaultError::Oom => bindings::vm_fault_reason_VM_FAULT_OOM,
        }
    }
}

/// Proof that the faulting address is mapped; only [`VmFault::insert_page`] makes one.
///
/// Requiring it as the result of [`VmOperations::fault`] means a handler cannot report success
/// without a page table entry in place, which would make the faulting access fault forever.
#[derive(Debug)]
pub struct Mapped {
    new: bool,
}

impl Mapped {
    /// Whether this fault installed the entry. `false` when another thread's fault on the same
    /// address won the race and installed it first.
    pub fn was_new(&self) -> bool {
        self.new
    }
}

/// A page fault being handled: the kernel's `struct vm_fault`.
///
/// # Invariants
///
/// For the lifetime of a `&VmFault`, `inner` is a valid `struct vm_fault` passed to a
/// `vm_operations_struct::fault` callback, whose VMA is valid and read-locked (mmap or VMA lock).
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

    fn raw(&self) -> &bindings::vm_fault {
        // SAFETY: By the type invariants the `vm_fault` is valid, and the fields read through
        // this reference are not changed during the handler.
        unsafe { &*self.inner.get() }
    }

    /// The area the fault is in.
    pub fn vma(&self) -> &VmaRef {
        // SAFETY: By the type invariants the VMA is valid and read-locked during the handler.
        unsafe { VmaRef::from_raw(self.raw().__bindgen_anon_1.vma) }
    }

    /// The faulting user address, rounded down to its page.
    pub fn address(&self) -> usize {
        self.raw().__bindgen_anon_1.address as usize
    }

    /// The page of the mapped file that the address falls in: the VMA's page offset plus the
    /// page index of the address within the VMA.
    pub fn pgoff(&self) -> usize {
        self.raw().__bindgen_anon_1.pgoff as usize
    }

    /// Maps `page` at the faulting address with the protection of the VMA.
    ///
    /// The VMA takes its own reference on the page (dropped on unmap), so `page` need only stay
    /// valid during the call. The VMA must be a mixed map ([`VmaNew::set_mixedmap`]); otherwise
    /// the fault fails with [`FaultError::SigBus`]. In a private mapping the entry is read-only
    /// and a write then copies the page (copy-on-write): the page itself is never written.
    pub fn insert_page(&self, page: &Page) -> Result<Mapped, FaultError> {
        let Some(vma) = self.vma().as_mixedmap_vma() else {
            return Err(FaultError::SigBus);
        };
        match vma.vm_insert_page(self.address(), page) {
            Ok(()) => Ok(Mapped { new: true }),
            // Another thread's fault on this address got there first; it is mapped.
            Err(e) if e == EBUSY => Ok(Mapped { new: false }),
            Err(e) if e == ENOMEM => Err(FaultError::Oom),
            Err(_) => Err(FaultError::SigBus),
        }
    }
}

/// Operations of a VMA set up by a driver's `mmap`, with shared data of type `Self`.
#[vtable]
pub trait VmOperations: Send + Sync + Sized {
    /// A VMA with these operations was created as a copy of another one: the child's copy in
    /// `fork()`, a piece of a split area, the destination of `mremap()`.
    fn open(_this: ArcBorrow<'_, Self>, _vma: &VmaRef) {}

    /// A VMA with these operations is going away (`munmap()`, exit, or the old range of
    /// `mremap()`).
    fn close(_this: ArcBorrow<'_, Self>, _vma: &VmaRef) {}

    /// Resolves a fault on an address of the VMA that has no page table entry.
    fn fault(this: ArcBorrow<'_, Self>, vmf: &VmFault) -> Result<Mapped, FaultError>;
}

/// Extension of [`VmaNew`] for installing [`VmOperations`].
pub trait VmaNewExt {
    /// Installs `T`'s operations on the VMA, which keeps a reference to `data` until it is
    /// closed.
    ///
    /// Call this last in `mmap`: if `mmap` then fails, the kernel frees the VMA without closing
    /// it, and the reference is leaked.
    fn set_vm_ops<T: VmOperations>(&self, data: Arc<T>);

    /// The offset in the file, in pages, at which the VMA begins (the `mmap` offset).
    fn pgoff(&self) -> usize;
}

impl VmaNewExt for VmaNew {
    fn set_vm_ops<T: VmOperations>(&self, data: Arc<T>) {
        let vma = self.as_ptr();
        // SAFETY: The VMA is undergoing initial setup (type invariant of `VmaNew`), so nothing
        // else reads or writes these fields. `VmOpsTable::<T>` callbacks read `vm_private_data`
        // back as an `Arc<T>` reference, which the VMA now owns.
        unsafe {
            (*vma).vm_private_data = Arc::into_raw(data).cast_mut().cast();
            (*vma).vm_ops = &VmOpsTable::<T>::VTABLE;
        }
    }

    fn pgoff(&self) -> usize {
        // SAFETY: The VMA is undergoing initial setup, so nobody writes `vm_pgoff` concurrently.
        unsafe { (*self.as_ptr()).vm_pgoff as usize }
    }
}

/// The `vm_operations_struct` of a [`VmOperations`] type.
struct VmOpsTable<T: VmOperations>(core::marker::PhantomData<T>);

impl<T: VmOperations> VmOpsTable<T> {
    /// # Safety
    ///
    /// `vma` must have these operations, and so own a reference to an `Arc<T>` in
    /// `vm_private_data`, and be valid and locked for the duration of `'a`.
    unsafe fn data<'a>(vma: *mut bindings::vm_area_struct) -> ArcBorrow<'a, T> {
        // SAFETY: The caller guarantees that `vm_private_data` came from `Arc::into_raw` and that
        // the VMA's reference lives at least as long as `'a`.
        unsafe { ArcBorrow::from_raw((*vma).vm_private_data.cast::<T>()) }
    }

    /// # Safety
    ///
    /// `vma` must be a new copy of a VMA with these operations (so its `vm_private_data` is the
    /// original's pointer, for which it holds no reference yet), with the mmap lock held.
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: The original VMA's reference keeps the `Arc` alive during this call.
        let this = unsafe { Self::data(vma) };
        // Take the new VMA's own reference; `close` drops it.
        core::mem::forget(Arc::from(this));
        // SAFETY: `vma` is valid and the mmap lock is held.
        T::open(this, unsafe { VmaRef::from_raw(vma) });
    }

    /// # Safety
    ///
    /// `vma` must be a VMA with these operations that is going away, with the mmap lock held.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        {
            // SAFETY: The VMA still holds its reference.
            let this = unsafe { Self::data(vma) };
            // SAFETY: `vma` is valid and the mmap lock is held.
            T::close(this, unsafe { VmaRef::from_raw(vma) });
        }
        // SAFETY: The pointer came from `Arc::into_raw` (`set_vm_ops`, or a reference taken in
        // `open`); this drops the VMA's reference, once, as the VMA is closed once.
        drop(unsafe { Arc::<T>::from_raw((*vma).vm_private_data.cast::<T>()) });
    }

    /// # Safety
    ///
    /// `vmf` must be a valid `struct vm_fault` for a fault in a VMA with these operations.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: The caller passes a valid `vm_fault` for the duration of this call.
        let vmf = unsafe { VmFault::from_raw(vmf) };
        // SAFETY: The VMA has these operations and is locked during the fault.
        let this = unsafe { Self::data(vmf.vma().as_ptr()) };
        match T::fault(this, vmf) {
            // The handler installed the entry itself; there is no page to hand back.
            Ok(Mapped { .. }) => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
            Err(e) => e.to_vm_fault(),
        }
    }

    const VTABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        open: Some(Self::open),
        close: Some(Self::close),
        fault: Some(Self::fault),
        ..pin_init::zeroed()
    };
}
