// SPDX-License-Identifier: GPL-2.0

//! The description of a mapping about to be made, as a file's `f_op->mmap_prepare()` hook is
//! given it: [`VmAreaDesc`].
//!
//! In the kernel crate this is part of `kernel::mm::virt`, beside `VmaNew` (what `f_op->mmap()`
//! is given), some of whose flag methods it has: patch 5 of the series appends what follows the
//! marker below to `rust/kernel/mm/virt.rs` (`scripts/gen-patches`). The module always builds
//! its own copy, as a module of its own, on a kernel with the series too.

use core::marker::PhantomData;
use kernel::{
    bindings,
    error::{code::EINVAL, Result},
    mm::virt::{flags, vm_flags_t},
    types::Opaque,
    ModuleMetadata,
};

// In the kernel crate, what follows is the end of rust/kernel/mm/virt.rs.

/// A mapping about to be made: the kernel's `struct vm_area_desc`, as given to a file's
/// `f_op->mmap_prepare()` hook, which may refuse the mapping or adjust it before any VMA exists.
///
/// It is to `f_op->mmap_prepare()` what [`VmaNew`] is to `f_op->mmap()`. Those of its flag
/// methods that `VmaNew` has too (`writable`, `executable`, `try_clear_mayexec`,
/// `set_dontexpand`, `set_mixedmap`) have `VmaNew`'s names, meaning and flags ([`flags`]): `VM_*`
/// flags are the first word of the description's `vma_flags_t`.
///
/// `M` is the module that owns the file's operations, and `'a` the lifetime of data the file
/// holds (its private data), which the kernel keeps alive until `mmap(2)` returns: what a hook
/// installs on the VMA to come (its operations, `kernel::mm::vm_ops`) must be that module's code
/// and may borrow that data.
///
/// # Invariants
///
/// - `inner` is the `vm_area_desc` of an `mmap_prepare` call that lasts as long as the
///   `&mut VmAreaDesc`, and nothing else accesses it meanwhile.
/// - `mmap(2)` holds a reference on the file being mapped until it returns, after the kernel has
///   called `vm_ops->mapped` of a VMA made from this description, and data borrowed for `'a`
///   stays valid until then.
/// - The file's operations belong to module `M`.
/// - Through a `VmAreaDesc`, nothing sets the description's `action` (it stays
///   `MMAP_NOTHING`), nor changes its `vm_file`, nor writes its `vm_ops` and `private_data`
///   other than `VmAreaDesc::set_vm_ops` (in `kernel::mm::vm_ops`). That relies on them: a
///   failed action would unmap the VMA without calling `vm_ops->mapped`, which takes the VMA's
///   reference that `close` drops, and the file is what keeps module `M`, whose code the
///   operations are, loaded.
///
/// # Examples
///
/// ```
/// use kernel::{mm::virt::VmAreaDesc, prelude::*, ModuleMetadata};
///
/// /// Checks a request for `pages` pages of a device that maps its pages read-only, for a fault
/// /// handler to insert.
/// fn prepare<M: ModuleMetadata>(desc: &mut VmAreaDesc<'_, M>, pages: usize) -> Result {
///     if desc.writable() {
///         return Err(EACCES);
///     }
///     desc.try_clear_mayexec()?;
///     match desc.pgoff().checked_add(desc.pages()) {
///         Some(end) if end <= pages => {}
///         _ => return Err(EINVAL),
///     }
///     desc.set_dontexpand();
///     desc.set_mixedmap();
///     Ok(())
/// }
/// ```
#[repr(transparent)]
pub struct VmAreaDesc<'a, M> {
    inner: Opaque<bindings::vm_area_desc>,
    _data: PhantomData<fn(&'a ()) -> &'a ()>,
    _module: PhantomData<M>,
}

impl<'a, M: ModuleMetadata> VmAreaDesc<'a, M> {
    /// Wraps the description given to an `mmap_prepare` hook.
    ///
    /// For the `mmap_prepare` of a device abstraction's file operations (a misc device's, a char
    /// device's).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{bindings, ffi::c_int, mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// /// The `mmap_prepare` of a file whose operations belong to module `M`, and whose
    /// /// private data lives as long as the file.
    /// ///
    /// /// # Safety
    /// ///
    /// /// `desc` must be the description given to that hook.
    /// unsafe extern "C" fn mmap_prepare<M: ModuleMetadata>(
    ///     desc: *mut bindings::vm_area_desc,
    /// ) -> c_int {
    ///     // SAFETY: The description of this call, of a file of module `M`; `mmap(2)` holds the
    ///     // file, and so what it owns, until it returns.
    ///     let desc = unsafe { VmAreaDesc::<M>::from_raw(desc) };
    ///     match desc.try_clear_mayexec() {
    ///         Ok(()) => 0,
    ///         Err(e) => e.to_errno(),
    ///     }
    /// }
    /// ```
    ///
    /// # Safety
    ///
    /// `ptr` must be the `vm_area_desc` of an `f_op->mmap_prepare()` call that lasts at least as
    /// long as the returned reference, with nothing else accessing it meanwhile; the file being
    /// mapped must have file operations owned by module `M`; and data borrowed for `'a` must stay
    /// valid until `mmap(2)` returns.
    #[inline]
    pub unsafe fn from_raw<'b>(ptr: *mut bindings::vm_area_desc) -> &'b mut Self {
        // SAFETY: `Self` is transparent over `vm_area_desc`; the caller guarantees the rest of
        // the type invariants.
        unsafe { &mut *ptr.cast() }
    }

    /// Returns a raw pointer to the description. Writes through it must keep the type
    /// invariants; it is not public for that reason.
    #[inline]
    pub(crate) fn as_ptr(&self) -> *mut bindings::vm_area_desc {
        self.inner.get()
    }

    /// The first user address of the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// fn starts_at_zero<M: ModuleMetadata>(desc: &VmAreaDesc<'_, M>) -> bool {
    ///     desc.start() == 0
    /// }
    /// ```
    #[inline]
    pub fn start(&self) -> usize {
        // SAFETY: By the type invariants the description is valid, and `start` is not written.
        unsafe { (*self.as_ptr()).start }
    }

    /// The user address just past the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// fn bytes<M: ModuleMetadata>(desc: &VmAreaDesc<'_, M>) -> usize {
    ///     desc.end() - desc.start()
    /// }
    /// ```
    #[inline]
    pub fn end(&self) -> usize {
        // SAFETY: By the type invariants the description is valid, and `end` is not written.
        unsafe { (*self.as_ptr()).end }
    }

    /// The size of the mapping in pages.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// fn at_most_one_page<M: ModuleMetadata>(desc: &VmAreaDesc<'_, M>) -> kernel::error::Result {
    ///     if desc.pages() > 1 {
    ///         return Err(kernel::error::code::EINVAL);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    #[inline]
    pub fn pages(&self) -> usize {
        (self.end() - self.start()) >> bindings::PAGE_SHIFT
    }

    /// The offset in the file, in pages, at which the mapping begins (the `mmap` offset).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// /// Whether the mapping begins at the start of the file (an `mmap` offset of 0).
    /// fn from_start<M: ModuleMetadata>(desc: &VmAreaDesc<'_, M>) -> bool {
    ///     desc.pgoff() == 0
    /// }
    /// ```
    #[inline]
    pub fn pgoff(&self) -> usize {
        // SAFETY: By the type invariants the description is valid and only we access it.
        unsafe { (*self.as_ptr()).pgoff }
    }

    /// The flags of the mapping to come, as `VmaRef::flags` gives a VMA's.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::{flags, VmAreaDesc}, ModuleMetadata};
    ///
    /// fn readable<M: ModuleMetadata>(desc: &VmAreaDesc<'_, M>) -> bool {
    ///     desc.flags() & flags::READ != 0
    /// }
    /// ```
    #[inline]
    pub fn flags(&self) -> vm_flags_t {
        // SAFETY: By the type invariants the description is valid and only we access it. The
        // first word of the `vma_flags_t` bitmap holds the `VM_*` flags.
        unsafe { (*self.as_ptr()).vma_flags.__vma_flags[0] }
    }

    /// Sets the flags `set` and clears the flags `unset`.
    ///
    /// # Safety
    ///
    /// This must not be used to set the flags to an invalid value.
    #[inline]
    unsafe fn update_flags(&mut self, set: vm_flags_t, unset: vm_flags_t) {
        let flags = (self.flags() | set) & !unset;
        // SAFETY: By the type invariants the description is valid and only we access it; the
        // kernel applies the flags to the VMA it makes from it. The caller promises that this
        // does not set the flags to an invalid value.
        unsafe { (*self.as_ptr()).vma_flags.__vma_flags[0] = flags };
    }

    /// Returns whether `VM_SHARED` is set: userspace maps this as shared (`MAP_SHARED`), and its
    /// writes reach the file.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// /// A device whose pages only make sense shared refuses `MAP_PRIVATE`.
    /// fn shared_only<M: ModuleMetadata>(desc: &VmAreaDesc<'_, M>) -> kernel::error::Result {
    ///     if !desc.shared() {
    ///         return Err(kernel::error::code::EINVAL);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    #[inline]
    pub fn shared(&self) -> bool {
        (self.flags() & flags::SHARED) != 0
    }

    /// Returns whether `VM_WRITE` is set: userspace maps this writable (`PROT_WRITE`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// /// A read-only device refuses `PROT_WRITE`.
    /// fn read_only<M: ModuleMetadata>(desc: &VmAreaDesc<'_, M>) -> kernel::error::Result {
    ///     if desc.writable() {
    ///         return Err(kernel::error::code::EACCES);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    #[inline]
    pub fn writable(&self) -> bool {
        (self.flags() & flags::WRITE) != 0
    }

    /// Returns whether `VM_EXEC` is set: userspace maps this executable (`PROT_EXEC`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// /// Data is never code.
    /// fn no_exec<M: ModuleMetadata>(desc: &VmAreaDesc<'_, M>) -> kernel::error::Result {
    ///     if desc.executable() {
    ///         return Err(kernel::error::code::EPERM);
    ///     }
    ///     Ok(())
    /// }
    /// ```
    #[inline]
    pub fn executable(&self) -> bool {
        (self.flags() & flags::EXEC) != 0
    }

    /// Try to clear the `VM_MAYEXEC` flag, failing if `VM_EXEC` is set.
    ///
    /// Without it, `mprotect(PROT_EXEC)` fails on the mapping. Irreversible: once `VM_MAYEXEC`
    /// has been cleared, it can never be set again.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// /// Refuses `PROT_EXEC`, now (`EINVAL`) and for any later `mprotect()`.
    /// fn never_exec<M: ModuleMetadata>(desc: &mut VmAreaDesc<'_, M>) -> kernel::error::Result {
    ///     desc.try_clear_mayexec()
    /// }
    /// ```
    #[inline]
    pub fn try_clear_mayexec(&mut self) -> Result {
        if self.executable() {
            return Err(EINVAL);
        }
        // SAFETY: Clearing `VM_MAYEXEC` is okay when `VM_EXEC` is not set.
        unsafe { self.update_flags(0, flags::MAYEXEC) };
        Ok(())
    }

    /// Set the `VM_DONTEXPAND` flag: `mremap()` cannot grow the mapping past what
    /// `mmap_prepare` checked.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// fn fixed_size<M: ModuleMetadata>(desc: &mut VmAreaDesc<'_, M>) {
    ///     desc.set_dontexpand();
    /// }
    /// ```
    #[inline]
    pub fn set_dontexpand(&mut self) {
        // SAFETY: Setting the VM_DONTEXPAND flag is always okay.
        unsafe { self.update_flags(flags::DONTEXPAND, 0) };
    }

    /// Set the `VM_MIXEDMAP` flag: the VMA may hold both `struct page` and pure PFN pages, and
    /// pages can be inserted into it on a fault (`vm_insert_page()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{mm::virt::VmAreaDesc, ModuleMetadata};
    ///
    /// fn pages_by_fault<M: ModuleMetadata>(desc: &mut VmAreaDesc<'_, M>) {
    ///     desc.set_mixedmap();
    /// }
    /// ```
    #[inline]
    pub fn set_mixedmap(&mut self) {
        // SAFETY: We don't provide a way to set `VM_PFNMAP`, so this cannot put the flags in an
        // invalid state.
        unsafe { self.update_flags(flags::MIXEDMAP, 0) };
    }
}
