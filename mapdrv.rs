// SPDX-License-Identifier: GPL-2.0

//! mapdrv: kernel memory, mapped into a process one page at a time.
//!
//! The classic lesson of Linux memory management, in Rust:
//!
//! 1. **Buffer.** At load the driver `vmalloc`s a buffer of `pages` pages and fills it. Its
//!    addresses are contiguous in the kernel's virtual address space, but each page may come
//!    from anywhere in physical memory: the kernel page tables stitch them together.
//! 2. **Pages.** Given an offset in the buffer, the driver finds the `struct page` behind it by
//!    walking those page tables, PGD → P4D → PUD → PMD → PTE (`vmalloc_to_page`).
//! 3. **Device.** A character device named `mapdrv` (its own major in `/proc/devices`, and
//!    `/dev/mapdrv` through a device class) gives userspace a file to open.
//! 4. **Mapping.** `mmap` of that file checks the request and installs the driver's VMA
//!    operations, and maps nothing: a process sees only virtual addresses, and none of them
//!    has a page behind it yet.
//! 5. **Fault.** The first touch of each page of the mapping faults. The fault handler does
//!    step 2 for that page and inserts it into the process's page tables: demand paging.
//!
//! Contents: the byte at offset `off` is `off % 251`, except that page `i` of `n` begins with
//! the text `mapdrv page {i} of {n}\n`. Counters are in `/sys/kernel/debug/mapdrv/stats`.

use kernel::{
    debugfs,
    fmt,
    fs::{File, Kiocb, LocalFile},
    iov::{IovIterDest, IovIterSource},
    mm::virt::VmaNew,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, ArcBorrow,
    },
};

// Abstractions this driver needs that the kernel crate does not have yet, written as they would
// be for `rust/kernel/`, hence `pub`.
#[allow(unreachable_pub)]
#[path = "rust/chrdev.rs"]
mod chrdev;
#[allow(unreachable_pub)]
#[path = "rust/vm_ops.rs"]
mod vm_ops;
#[allow(unreachable_pub)]
#[path = "rust/vmalloc_buffer.rs"]
mod vmalloc_buffer;

use chrdev::{CharDevice, Options, Registration};
use vm_ops::{FaultError, Mapped, VmFault, VmOperations, VmaNewExt};
use vmalloc_buffer::VmallocBuffer;

module! {
    type: MapDrv,
    name: "mapdrv",
    authors: ["The mapdrv authors"],
    description: "Maps a vmalloc'ed kernel buffer into userspace, one page per fault",
    license: "GPL",
    params: {
        pages: u32 {
            default: 16,
            description: "Size of the buffer in 4 KiB pages (1..=262144)",
        },
        major: u32 {
            default: 0,
            description: "Major device number; 0 asks the kernel for a free one",
        },
    },
}

/// The largest buffer, in pages (1 GiB).
const PAGES_MAX: u32 = 262144;

/// The period of the fill pattern: a prime, so that it never lines up with page boundaries.
const PATTERN_PERIOD: usize = 251;

// ---------------------------------------------------------------------------------------------
// 1. The buffer.
// ---------------------------------------------------------------------------------------------

/// Writes the contents every reader of mapdrv expects (see the module documentation).
fn fill(buf: &mut [u8]) {
    let pages = buf.len() / PAGE_SIZE;
    for (off, byte) in buf.iter_mut().enumerate() {
        *byte = (off % PATTERN_PERIOD) as u8;
    }
    for (i, page) in buf.chunks_mut(PAGE_SIZE).enumerate() {
        let mut w = SliceWriter { buf: page, len: 0 };
        // A page is far longer than the header, so this cannot fail.
        let _ = fmt::Write::write_fmt(&mut w, format_args!("mapdrv page {i} of {pages}\n"));
    }
}

/// Formats into the beginning of a byte slice.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.buf.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// What every open file and every mapping shares: the buffer and the counters.
#[pin_data]
struct Shared {
    #[pin]
    buffer: VmallocBuffer,
    stats: Stats,
}

/// Counters shown in debugfs.
struct Stats {
    /// Fault handler calls that mapped a page.
    faults: Atomic<u64>,
    /// Live VMAs.
    mappings: Atomic<u64>,
    /// Open files.
    opens: Atomic<u64>,
}

impl Stats {
    fn show(&self, pages: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pages: {pages}")?;
        writeln!(f, "faults: {}", self.faults.load(Relaxed))?;
        writeln!(f, "mappings: {}", self.mappings.load(Relaxed))?;
        writeln!(f, "opens: {}", self.opens.load(Relaxed))
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The device: open, read, write, seek.
// ---------------------------------------------------------------------------------------------

/// The character device `mapdrv`; every open file shares the one buffer.
struct MapFile;

#[vtable]
impl CharDevice for MapFile {
    type Data = Arc<Shared>;
    type Ptr = Arc<Shared>;

    fn open(shared: &Arc<Shared>, _file: &File, minor: u32) -> Result<Arc<Shared>> {
        // Only minor 0 is registered; the kernel answers ENXIO for the others itself.
        if minor != 0 {
            return Err(ENXIO);
        }
        shared.stats.opens.add(1, Relaxed);
        Ok(shared.clone())
    }

    fn release(shared: Arc<Shared>, _file: &File) {
        shared.stats.opens.fetch_sub(1, Relaxed);
    }

    fn read_iter(mut kiocb: Kiocb<'_, Arc<Shared>>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let shared = kiocb.file();
        let bytes = shared.buffer.lock();
        let Some(src) = usize::try_from(kiocb.ki_pos()).ok().and_then(|pos| bytes.get(pos..))
        else {
            // At or past the end: end of file.
            return Ok(0);
        };
        if src.is_empty() || iov.is_empty() {
            return Ok(0);
        }
        let n = iov.copy_to_iter(src);
        if n == 0 {
            return Err(EFAULT);
        }
        *kiocb.ki_pos_mut() += n as i64;
        Ok(n)
    }

    fn write_iter(mut kiocb: Kiocb<'_, Arc<Shared>>, iov: &mut IovIterSource<'_>) -> Result<usize> {
        if iov.is_empty() {
            return Ok(0);
        }
        let shared = kiocb.file();
        let mut bytes = shared.buffer.lock();
        // A write at or past the end has no room; one that crosses the end is shortened.
        let dst = usize::try_from(kiocb.ki_pos())
            .ok()
            .and_then(|pos| bytes.get_mut(pos..))
            .filter(|dst| !dst.is_empty())
            .ok_or(ENOSPC)?;
        let n = iov.copy_from_iter(dst);
        if n == 0 {
            return Err(EFAULT);
        }
        *kiocb.ki_pos_mut() += n as i64;
        Ok(n)
    }

    fn llseek(shared: ArcBorrow<'_, Shared>, file: &LocalFile, offset: i64, whence: u32) -> Result<i64> {
        let size = i64::try_from(shared.buffer.len()).map_err(|_| EINVAL)?;
        chrdev::fixed_size_llseek(file, offset, whence, size)
    }

    // -----------------------------------------------------------------------------------------
    // 4. The mapping.
    // -----------------------------------------------------------------------------------------

    fn mmap(shared: ArcBorrow<'_, Shared>, _file: &File, vma: &VmaNew) -> Result {
        // Kernel data is never code: refuse PROT_EXEC now and for any later mprotect().
        if vma.executable() {
            return Err(EPERM);
        }
        vma.try_clear_mayexec()?;

        // The requested window, in pages, must lie inside the buffer.
        let first = vma.pgoff();
        let count = (vma.end() - vma.start()) / PAGE_SIZE;
        match first.checked_add(count) {
            Some(end) if end <= shared.buffer.pages() => {}
            _ => return Err(EINVAL),
        }

        // The mapping may shrink but never grow past what was checked above.
        vma.set_dontexpand();
        // Pages are inserted one by one by the fault handler (vm_insert_page).
        vma.set_mixedmap();

        // Nothing is mapped yet: every page waits for its first fault.
        shared.stats.mappings.add(1, Relaxed);
        vma.set_vm_ops(Arc::from(shared));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// 5. The fault handler.
// ---------------------------------------------------------------------------------------------

#[vtable]
impl VmOperations for Shared {
    fn open(this: ArcBorrow<'_, Self>, _vma: &kernel::mm::virt::VmaRef) {
        this.stats.mappings.add(1, Relaxed);
    }

    fn close(this: ArcBorrow<'_, Self>, _vma: &kernel::mm::virt::VmaRef) {
        this.stats.mappings.fetch_sub(1, Relaxed);
    }

    /// Userspace touched a page of the mapping for the first time (or again after
    /// `MADV_DONTNEED`): find that page of the buffer through the kernel page tables (step 2)
    /// and map exactly that page at the faulting address.
    fn fault(this: ArcBorrow<'_, Self>, vmf: &VmFault) -> Result<Mapped, FaultError> {
        // `pgoff` counts from the start of the buffer: the mapping's offset plus the page's
        // index in the mapping. `mmap` checked the range, but a fault past the end (after a
        // shrinking mremap(), say) must still not reach beyond the buffer.
        let page = this.buffer.page(vmf.pgoff()).ok_or(FaultError::SigBus)?;
        let mapped = vmf.insert_page(&page)?;
        if mapped.was_new() {
            this.stats.faults.add(1, Relaxed);
        }
        Ok(mapped)
    }
}

// ---------------------------------------------------------------------------------------------
// The module: load and unload.
// ---------------------------------------------------------------------------------------------

struct MapDrv {
    // Dropped in this order: the device first, so that nothing new can open it.
    dev: Registration<MapFile>,
    _stats: Pin<KBox<debugfs::File<Arc<Shared>>>>,
    _debugfs: debugfs::Dir,
}

impl kernel::Module for MapDrv {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let npages = module_parameters::pages.value();
        let major = module_parameters::major.value();
        if !(1..=PAGES_MAX).contains(&npages) {
            pr_err!("pages={npages} out of range 1..={PAGES_MAX}\n");
            return Err(EINVAL);
        }
        if major > chrdev::MAJOR_MAX {
            pr_err!("major={major} out of range 0..={}\n", chrdev::MAJOR_MAX);
            return Err(EINVAL);
        }
        let npages = npages as usize;

        // 1. The buffer: virtually contiguous, physically scattered.
        let buffer = match VmallocBuffer::new(npages, GFP_KERNEL | __GFP_NOWARN, fill) {
            Ok(buffer) => buffer,
            Err(e) => {
                pr_err!("cannot vmalloc {} bytes for pages={npages}\n", npages * PAGE_SIZE);
                return Err(e);
            }
        };
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                buffer <- buffer,
                stats: Stats {
                    faults: Atomic::new(0),
                    mappings: Atomic::new(0),
                    opens: Atomic::new(0),
                },
            }? Error),
            GFP_KERNEL,
        )?;

        let debugfs = debugfs::Dir::new(c"mapdrv");
        let stats = KBox::pin_init(
            debugfs.read_callback_file(c"stats", shared.clone(), &|s: &Arc<Shared>, f| {
                s.stats.show(s.buffer.pages(), f)
            }),
            GFP_KERNEL,
        )?;

        // 3. The device; from here on userspace can open it.
        let opts = Options { name: c"mapdrv", major, mode: 0o600 };
        let dev = match Registration::<MapFile>::register(opts, shared) {
            Ok(dev) => dev,
            Err(e) if e == EBUSY => {
                pr_err!("major {major} is already in use\n");
                return Err(e);
            }
            Err(e) => {
                pr_err!("cannot register the char device: {e:?}\n");
                return Err(e);
            }
        };

        pr_info!(
            "{npages} pages ({} bytes) of vmalloc memory, major {}\n",
            npages * PAGE_SIZE,
            dev.major()
        );
        Ok(MapDrv { dev, _stats: stats, _debugfs: debugfs })
    }
}

impl Drop for MapDrv {
    fn drop(&mut self) {
        pr_info!("unloaded (major {})\n", self.dev.major());
    }
}
