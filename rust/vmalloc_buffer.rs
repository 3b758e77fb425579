// SPDX-License-Identifier: GPL-2.0

//! A fixed-size byte buffer in vmalloc memory, whose pages can be mapped to userspace.
//!
//! `vmalloc` hands out memory that is contiguous in the kernel's virtual address space but made
//! of single pages taken from anywhere in physical memory; the kernel page tables stitch them
//! together. [`VmallocBuffer::page`] goes the other way: from an offset in the buffer to the
//! `struct page` behind it, by walking those page tables (`vmalloc_to_page`).
//!
//! Once the buffer is shared, userspace may map its pages and write them at any time, so no Rust
//! reference to its bytes ever exists after [`VmallocBuffer::new`]: a `&[u8]` over memory that
//! another thread writes is undefined behaviour in Rust. The kernel's own readers and writers
//! copy through raw pointers, in C (`_copy_to_iter()`, `_copy_from_iter()`), as upstream's
//! `Page::read_raw` and Binder do, under a lock that orders them among themselves
//! ([`VmallocBuffer::lock`], whose guard offers copies, never the bytes or their container).
//! Looking up a page takes no lock and never touches the bytes, so a page fault can be served
//! while a `read()` or `write()` holds the lock, even one whose user buffer is a mapping of this
//! very buffer.

use crate::pagewalk::{self, PteRun, Translation, WalkError};
use core::ptr::NonNull;
use kernel::{
    alloc::Flags,
    iov::{IovIterDest, IovIterSource},
    new_mutex,
    page::{BorrowedPage, PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Release},
        Mutex, MutexGuard,
    },
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

/// A vmalloc'ed buffer of whole pages.
///
/// # Invariants
///
/// `base` is the start of the allocation of `_vec`, which holds `pages * PAGE_SIZE` bytes and is
/// never reallocated, so `base` stays valid as long as `self`. No reference to those bytes exists
/// once [`VmallocBuffer::new`] has returned: they are read and written only through raw pointers,
/// by the kernel's own readers and writers under `lock`, and by userspace through mappings of
/// their pages at any time.
///
/// If `walk_checked` is `true`, [`pagewalk::walk`] found, for every page of the buffer, the
/// `struct page` that `vmalloc_to_page()` returns.
#[pin_data]
pub struct VmallocBuffer {
    /// Orders the kernel's own copies in and out of the bytes ([`VmallocBuffer::lock`]).
    #[pin]
    lock: Mutex<()>,
    /// Owns the allocation; never dereferenced (no method of it that makes a slice is called).
    _vec: VVec<u8>,
    base: NonNull<u8>,
    pages: usize,
    walk_checked: Atomic<bool>,
}

// SAFETY: `base` points into `_vec`, which may be freed from any thread; the bytes are only ever
// copied through raw pointers, and the kernel's own copies are ordered by the mutex.
unsafe impl Send for VmallocBuffer {}
// SAFETY: `&VmallocBuffer` reaches the bytes only through raw-pointer copies under the mutex;
// page lookups are read-only and do not touch the bytes.
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
        // The only borrow of the bytes there ever is: nothing else can reach them yet.
        fill(&mut vec);
        // `as_mut_ptr` makes no reference to the bytes.
        let base = NonNull::new(vec.as_mut_ptr()).ok_or(ENOMEM)?;
        // INVARIANT: `base` is the start of `vec`'s allocation of `pages` pages, which nothing
        // resizes, and the borrow `fill` had has ended.
        Ok(try_pin_init!(Self {
            lock <- new_mutex!(()),
            _vec: vec,
            base,
            pages,
            walk_checked: Atomic::new(false),
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

    /// Locks the bytes for the kernel's own reading or writing of them, which the guard does
    /// by copying ([`Bytes`]). Userspace may still write them through a mapping meanwhile.
    ///
    /// There is no way to borrow the bytes, nor the container that holds them:
    ///
    /// ```ignore,compile_fail
    /// use crate::vmalloc_buffer::VmallocBuffer;
    ///
    /// fn borrow(buffer: &VmallocBuffer) -> u8 {
    ///     let bytes: &[u8] = &buffer.lock(); // error[E0308]
    ///     bytes[0]
    /// }
    /// ```
    ///
    /// ```ignore,compile_fail
    /// use crate::vmalloc_buffer::VmallocBuffer;
    ///
    /// /// Would leave each buffer's `base` pointing into the other's allocation.
    /// fn swap(a: &VmallocBuffer, b: &VmallocBuffer) {
    ///     core::mem::swap(&mut *a.lock(), &mut *b.lock()); // error[E0614]
    /// }
    /// ```
    pub fn lock(&self) -> Bytes<'_> {
        Bytes {
            buffer: self,
            _guard: self.lock.lock(),
        }
    }

    // ANCHOR: page
    /// The page that holds bytes `index * PAGE_SIZE ..` of the buffer, found through the kernel
    /// page tables, or `None` past the end.
    #[inline]
    pub fn page(&self, index: usize) -> Option<BorrowedPage<'_>> {
        if index >= self.pages {
            return None;
        }
        // SAFETY: `index < pages`, so the offset stays inside the allocation (type invariants),
        // and `index << PAGE_SHIFT` (`index * PAGE_SIZE`, which cannot overflow for a page of an
        // allocation: no check needed on the fault path) is that offset.
        let ptr = unsafe { self.base.add(index << PAGE_SHIFT) };
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
    // ANCHOR_END: page

    /// The pages of the buffer from page `index` to the end, in order, looked up with one walk
    /// per page table: see [`Pages`].
    pub fn pages_from(&self, index: usize) -> Pages<'_> {
        // INVARIANT: An empty run, so the next page is `start + i`, page `index`.
        Pages {
            buffer: self,
            fast: self.walk_checked.load(Acquire),
            start: index,
            i: 0,
            run: PteRun::empty(),
        }
    }

    /// The page table entries of pages `index..` (`index` below `pages`), to the end of their
    /// page table or of the buffer; an empty run if the walk fails. Once per page table at
    /// most, so not inlined into the loops of [`Pages`]' users.
    #[inline(never)]
    fn run_at(&self, index: usize) -> PteRun<'_> {
        let Some(addr) = self.page_addr(index) else {
            return PteRun::empty();
        };
        // SAFETY: Page `index` is a page of the buffer, which `'_` borrows: it stays mapped as
        // long as the run is used.
        match unsafe { pagewalk::pte_run(addr) } {
            Ok(run) => run.shortened(self.pages - index),
            Err(_) => PteRun::empty(),
        }
    }

    /// The kernel virtual address of page `index`, or `None` past the end.
    pub fn page_addr(&self, index: usize) -> Option<usize> {
        // As in `page`: below `pages`, the shift cannot overflow.
        (index < self.pages).then(|| self.base.as_ptr() as usize + (index << PAGE_SHIFT))
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
        let _bytes = self.lock();
        let via_vmalloc = self.page_addr(index).ok_or(WalkCheckError::PageDiffers)?;
        // SAFETY: The walk and `vmalloc_to_page()` agree that this direct-map address is the
        // start of the same page frame as `via_vmalloc`, a page of our live allocation; the
        // direct map covers all of RAM, so `PAGE_SIZE` bytes from both are mapped and readable.
        // C compares them: no Rust reference to bytes userspace may be writing. Holding the lock
        // keeps the kernel's own writers away; a user's write would be seen through both.
        let differ = unsafe {
            kernel::bindings::memcmp(
                via_vmalloc as *const core::ffi::c_void,
                t.direct_map_addr() as *const core::ffi::c_void,
                PAGE_SIZE,
            )
        };
        if differ != 0 {
            return Err(WalkCheckError::BytesDiffer);
        }
        Ok(t)
    }

    /// Checks the walk of every page with [`VmallocBuffer::check_walk`], and returns the first
    /// page that fails and why. Once every page passed, [`Pages`] reads the buffer's page
    /// table entries itself.
    pub fn check_walks(&self) -> Result<(), (usize, WalkCheckError)> {
        for i in 0..self.pages {
            self.check_walk(i).map_err(|e| (i, e))?;
        }
        // INVARIANT: Every page's walk found the page `vmalloc_to_page()` returns.
        self.walk_checked.store(true, Release);
        Ok(())
    }
}

/// The bytes of a [`VmallocBuffer`], locked for the kernel's own reading or writing: made by
/// [`VmallocBuffer::lock`].
///
/// It copies bytes between the buffer and an I/O vector through raw pointers, in C, and offers
/// no reference to them: userspace may write them through a mapping at any time, even while the
/// lock is held (and the I/O vector may itself be such a mapping).
///
/// # Invariants
///
/// `_guard` holds the buffer's lock.
pub struct Bytes<'a> {
    buffer: &'a VmallocBuffer,
    _guard: MutexGuard<'a, ()>,
}

impl Bytes<'_> {
    /// The size of the buffer in bytes.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// The bytes from `pos` to the end, as a raw pointer and a length; `None` at or past the end.
    fn tail(&self, pos: usize) -> Option<(*mut u8, usize)> {
        let len = self.len().checked_sub(pos).filter(|&n| n > 0)?;
        // SAFETY: `pos < len()`, so the offset stays inside the allocation (type invariants of
        // `VmallocBuffer`).
        Some((unsafe { self.buffer.base.as_ptr().add(pos) }, len))
    }

    /// Copies the bytes from `pos` on into `iov`, as many as it takes; returns how many, 0 at or
    /// past the end (or if the first byte could not be copied: a fault on the user's buffer).
    pub fn copy_to_iter(&self, pos: usize, iov: &mut IovIterDest<'_>) -> usize {
        let Some((src, len)) = self.tail(pos) else {
            return 0;
        };
        // SAFETY: `src` is valid for reading `len` bytes (inside the live allocation); C copies
        // them, so no Rust reference to them is made. `iov` is a valid destination iterator.
        unsafe { kernel::bindings::_copy_to_iter(src.cast(), len, iov.as_raw()) }
    }

    /// Copies from `iov` into the bytes from `pos` on, as many as there are and fit; returns how
    /// many, 0 at or past the end (or if the first byte could not be copied).
    pub fn copy_from_iter(&mut self, pos: usize, iov: &mut IovIterSource<'_>) -> usize {
        let Some((dst, len)) = self.tail(pos) else {
            return 0;
        };
        // SAFETY: `dst` is valid for writing `len` bytes (inside the live allocation); C copies
        // into them, so no Rust reference to them is made, and the lock keeps the kernel's other
        // copies away. `iov` is a valid source iterator.
        unsafe { kernel::bindings::_copy_from_iter(dst.cast(), len, iov.as_raw()) }
    }
}

/// The pages of a [`VmallocBuffer`] from one page to the end, in order, found walking the kernel
/// page tables once per page table, not once per page: made by [`VmallocBuffer::pages_from`].
///
/// [`VmallocBuffer::page`] walks from the root, PGD to PTE, for every page. Consecutive pages
/// of the buffer have consecutive PTEs in the same page table (512 of them per table with 4 KiB
/// pages), so once the iterator has walked down to the PTE table of one page, the pages after
/// it in the same table cost one read each ([`pagewalk::pte_run`]). A fault that maps a whole
/// window of pages (fault-around) walks once or twice instead of once per page.
///
/// It does so only for a buffer whose walks were all checked against the kernel
/// ([`VmallocBuffer::check_walks`]); otherwise, and wherever the explicit walk is not
/// implemented, it uses `vmalloc_to_page()` for every page.
///
/// # Invariants
///
/// If `fast` is `true`, the buffer's `walk_checked` was `true`. The next page is page
/// `start + i`, and `i` is at most the run's length. `run` holds the page table entries of
/// buffer pages `start..`, as far as the end of their page table or of the buffer, whichever
/// comes first, and is empty unless `fast` is `true`.
///
/// # Examples
///
/// ```
/// use crate::vmalloc_buffer::VmallocBuffer;
///
/// let buffer = KBox::pin_init(VmallocBuffer::new(32, GFP_KERNEL, |_| {})?, GFP_KERNEL)?;
/// // Without the check, the iterator asks vmalloc_to_page() for each page; with it, it reads
/// // the page table entries itself. The pages are the same.
/// let before = buffer.page(7).map(|p| p.as_ptr());
/// if buffer.check_walks().is_ok() {
///     let mut pages = buffer.pages_from(7);
///     assert_eq!(pages.next().map(|p| p.as_ptr()), before);
///     assert_eq!(pages.count(), 32 - 8);
/// }
/// # Ok::<(), Error>(())
/// ```
pub struct Pages<'a> {
    buffer: &'a VmallocBuffer,
    fast: bool,
    start: usize,
    i: usize,
    run: PteRun<'a>,
}

impl<'a> Iterator for Pages<'a> {
    type Item = BorrowedPage<'a>;

    #[inline]
    fn next(&mut self) -> Option<BorrowedPage<'a>> {
        let i = self.i;
        // Within the run: one read of a page table entry. (`page_ptr` is `None` past the run's
        // end, and for an entry that is not present, which a live vmalloc page's never is.)
        if let Some(page) = self.run.page_ptr(i) {
            // `i` is below the run's length.
            self.i = i + 1;
            let page = NonNull::new(page as *mut kernel::bindings::page)?;
            // SAFETY: The run is not empty, so `fast` is set, and the explicit walk of every
            // page of the buffer found the `struct page` that `vmalloc_to_page()` returns (type
            // invariants); the kernel does not change the page table entries of a live vmalloc
            // allocation, so this entry, page `start + i`'s, still maps that page. It is a page
            // of the allocation, which lives as long as `'a`.
            return Some(unsafe { BorrowedPage::from_raw(page) });
        }
        // Past the run: the next page is `start + i`, and `start + i <= pages` (type
        // invariants; only `pages_from` sets `start` beyond, with `i == 0`).
        let index = self.start.saturating_add(i);
        if index >= self.buffer.pages {
            return None;
        }
        if self.fast {
            // INVARIANT: `fast` is set; the run starts with page `index`'s entry.
            self.run = self.buffer.run_at(index);
            self.start = index;
            self.i = 0;
            if let Some(page) = self.run.page_ptr(0) {
                self.i = 1;
                let page = NonNull::new(page as *mut kernel::bindings::page)?;
                // SAFETY: As above: `fast` is set, and this is page `index`'s entry.
                return Some(unsafe { BorrowedPage::from_raw(page) });
            }
        }
        // INVARIANT: An empty run, so the next page is `index + 1` (at most `pages`).
        self.run = PteRun::empty();
        self.start = index + 1;
        self.i = 0;
        self.buffer.page(index)
    }
}
