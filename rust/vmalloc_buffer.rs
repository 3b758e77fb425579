// SPDX-License-Identifier: GPL-2.0

//! A fixed-size byte buffer in vmalloc memory, whose pages can be mapped to userspace.
//!
//! `vmalloc` hands out memory that is contiguous in the kernel's virtual address space but made
//! of single pages taken from anywhere in physical memory; the kernel page tables stitch them
//! together. [`VmallocBuffer::page`] goes the other way: from an offset in the buffer to the
//! `struct page` behind it, by walking those page tables (`vmalloc_to_page`).
//!
//! The bytes are behind a lock for the kernel's own readers and writers ([`VmallocBuffer::lock`]).
//! Looking up a page takes no lock and never touches the bytes, so a page fault can be served
//! while a `read()` or `write()` holds the lock, even one whose user buffer is a mapping of this
//! very buffer.

use crate::pagewalk::{self, Translation, WalkError};
use core::ptr::NonNull;
use kernel::{
    alloc::Flags,
    new_mutex,
    page::{BorrowedPage, PAGE_SIZE},
    prelude::*,
    sync::{Mutex, MutexGuard},
};

/// The number of pages the kernel estimates it can hand out now without swapping (the
/// `MemAvailable` of `/proc/meminfo`).
///
/// A caller about to make a large allocation can refuse it up front: the Rust allocation
/// flags offer no `__GFP_RETRY_MAYFAIL`, so a `GFP_KERNEL` allocation beyond what is available
/// would wake the OOM killer before it fails.
pub fn available_pages() -> usize {
    // SAFETY: `si_mem_available()` only reads global memory counters.
    let pages = unsafe { kernel::bindings::si_mem_available() };
    usize::try_from(pages).unwrap_or(0)
}

/// How the explicit page-table walk of a page disagreed with the kernel.
#[derive(Copy, Clone, Debug)]
pub enum WalkCheckError {
    /// The walk failed (or has no implementation on this architecture).
    Walk(WalkError),
    /// The walk found another `struct page` than `vmalloc_to_page()`, or a huge page.
    PageDiffers,
    /// The page's bytes read through the direct map differ from those read through vmalloc.
    BytesDiffer,
}

/// The bytes of a [`VmallocBuffer`], as a slice that cannot grow or shrink.
pub struct Bytes(VVec<u8>);

impl core::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl core::ops::DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// A vmalloc'ed buffer of whole pages.
///
/// # Invariants
///
/// `base` is the start of the allocation of `bytes`, which holds `pages * PAGE_SIZE` bytes and is
/// never reallocated (only a slice of it is ever handed out), so `base` stays valid as long as
/// `self`.
#[pin_data]
pub struct VmallocBuffer {
    #[pin]
    bytes: Mutex<Bytes>,
    base: NonNull<u8>,
    pages: usize,
}

// SAFETY: `base` is only used to look up pages of the allocation, which is owned by `self` and
// may be freed from any thread; the bytes themselves are behind the mutex.
unsafe impl Send for VmallocBuffer {}
// SAFETY: `&VmallocBuffer` gives access to the bytes only through the mutex; page lookups are
// read-only and do not touch the bytes.
unsafe impl Sync for VmallocBuffer {}

impl VmallocBuffer {
    /// Allocates a zeroed buffer of `pages` pages with `vmalloc`, and lets `fill` write its
    /// initial contents.
    pub fn new(
        pages: usize,
        flags: Flags,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<impl PinInit<Self, Error>> {
        let len = pages.checked_mul(PAGE_SIZE).ok_or(ENOMEM)?;
        let mut vec = VVec::from_elem(0u8, len, flags)?;
        fill(&mut vec);
        let base = NonNull::new(vec.as_mut_ptr()).ok_or(ENOMEM)?;
        // INVARIANT: `base` is the start of `vec`'s allocation of `pages` pages, which `Bytes`
        // never resizes.
        Ok(try_pin_init!(Self {
            bytes <- new_mutex!(Bytes(vec)),
            base,
            pages,
        }? Error))
    }

    /// The size of the buffer in pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The size of the buffer in bytes.
    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    /// Locks the bytes for reading or writing them.
    pub fn lock(&self) -> MutexGuard<'_, Bytes> {
        self.bytes.lock()
    }

    /// The page that holds bytes `index * PAGE_SIZE ..` of the buffer, found through the kernel
    /// page tables, or `None` past the end.
    #[inline]
    pub fn page(&self, index: usize) -> Option<BorrowedPage<'_>> {
        if index >= self.pages {
            return None;
        }
        // SAFETY: `index < pages`, so the offset stays inside the allocation (type invariants).
        let ptr = unsafe { self.base.add(index * PAGE_SIZE) };
        // The kernel's walk of its own page tables, PGD to PTE, for a vmalloc address. (What
        // `Vmalloc::to_page` does, called directly: one call less on the fault's hot path.)
        // SAFETY: `ptr` points into a live vmalloc allocation, whose page tables stay in place
        // while it lives.
        let page = unsafe { kernel::bindings::vmalloc_to_page(ptr.as_ptr().cast()) };
        let page = NonNull::new(page)?;
        // SAFETY: `page` is the `struct page` behind `ptr`, a page of the allocation, which
        // lives as long as `self` and so as long as the returned page borrows it.
        Some(unsafe { BorrowedPage::from_raw(page) })
    }

    /// The kernel virtual address of page `index`, or `None` past the end.
    pub fn page_addr(&self, index: usize) -> Option<usize> {
        (index < self.pages).then(|| self.base.as_ptr() as usize + index * PAGE_SIZE)
    }

    /// Translates page `index` by walking the kernel page tables by hand, or `None` past the
    /// end.
    pub fn walk(&self, index: usize) -> Option<Result<Translation, WalkError>> {
        let addr = self.page_addr(index)?;
        // SAFETY: The page is part of our allocation, which stays mapped while `self` lives.
        Some(unsafe { pagewalk::walk(addr) })
    }

    /// Walks page `index` by hand and checks the result against the kernel: the walk must
    /// find the `struct page` that `vmalloc_to_page()` returns, and the page read through its
    /// direct-map address must hold the same bytes as read through the buffer.
    pub fn check_walk(&self, index: usize) -> Result<Translation, WalkCheckError> {
        let t = self
            .walk(index)
            .ok_or(WalkCheckError::Walk(WalkError::Unsupported))?;
        let t = t.map_err(WalkCheckError::Walk)?;
        let page = self
            .page(index)
            .ok_or(WalkCheckError::Walk(WalkError::Unsupported))?;
        if t.page_ptr() != page.as_ptr() as usize || t.page_size != PAGE_SIZE as u64 {
            return Err(WalkCheckError::PageDiffers);
        }
        let bytes = self.lock();
        let via_vmalloc = &bytes[index * PAGE_SIZE..(index + 1) * PAGE_SIZE];
        // SAFETY: The walk and `vmalloc_to_page()` agree that this direct-map address is the
        // start of the same page frame, a page of our live allocation; the direct map covers all
        // of RAM, so `PAGE_SIZE` bytes from there are mapped and readable. Holding the lock
        // keeps the kernel's own writers away.
        let via_direct_map =
            unsafe { core::slice::from_raw_parts(t.direct_map_addr() as *const u8, PAGE_SIZE) };
        if via_vmalloc != via_direct_map {
            return Err(WalkCheckError::BytesDiffer);
        }
        Ok(t)
    }
}
