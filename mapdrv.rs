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
//!    operations (in `mmap_prepare`, before the kernel creates the VMA), and maps nothing: a
//!    process sees only virtual addresses, and none of them has a page behind it yet.
//! 5. **Fault.** The first touch of each page of the mapping faults. The fault handler does
//!    step 2 for that page and inserts it into the process's page tables: demand paging. With
//!    `fault_around=N` (a power of two; default 1, pure demand paging) it maps the aligned block
//!    of N pages around the faulting one in the same fault, as the kernel does for files, and
//!    finds them with one walk down to their PTE table instead of one walk per page.
//!
//! Contents: the byte at offset `off` is `off % 251`, except that page `i` of `n` begins with
//! the text `mapdrv page {i} of {n}\n`. Counters are in `/sys/kernel/debug/mapdrv/stats`,
//! step 2 done by hand for every page, level by level, in `/sys/kernel/debug/mapdrv/pagewalk`,
//! and where each kind of kernel memory lives (the direct map, vmalloc, ...) in
//! `/sys/kernel/debug/mapdrv/layout`.

use kernel::{
    debugfs, fmt,
    fs::{File, Kiocb, LocalFile},
    iov::{IovIterDest, IovIterSource},
    mm::virt::VmaRef,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, ArcBorrow,
    },
};

// Abstractions this driver needs that the kernel crate does not have yet, written as they would
// be for `rust/kernel/` (patches/ places them there), hence `pub`, and with methods this driver
// does not call.
#[allow(unreachable_pub, dead_code)]
#[path = "rust/chrdev.rs"]
mod chrdev;
#[allow(unreachable_pub)]
#[path = "rust/layout.rs"]
mod layout;
#[allow(unreachable_pub)]
#[path = "rust/pagewalk.rs"]
mod pagewalk;
#[allow(unreachable_pub, dead_code)]
#[path = "rust/percpu.rs"]
mod percpu;
#[allow(unreachable_pub, dead_code)]
#[path = "rust/vm_ops.rs"]
mod vm_ops;
#[allow(unreachable_pub, dead_code)]
#[path = "rust/vma_desc.rs"]
mod vma_desc;
#[allow(unreachable_pub)]
#[path = "rust/vmalloc_buffer.rs"]
mod vmalloc_buffer;
#[allow(unreachable_pub)]
#[path = "rust/zones.rs"]
mod zones;

use chrdev::{CharDevice, Mode, Options, Registration};
use pagewalk::Level;
use percpu::PerCpuCounter;
use vm_ops::{ClosingVma, FaultError, Mapped, VmFault, VmOperations};
use vma_desc::VmAreaDesc;
use vmalloc_buffer::{VmallocBuffer, WalkCheckError};

module! {
    type: MapDrv,
    name: "mapdrv",
    authors: ["The mapdrv authors"],
    description: "Maps a vmalloc'ed kernel buffer into userspace, one page per fault",
    license: "GPL",
    // ANCHOR: params
    params: {
        pages: u32 {
            default: 16,
            description: "Size of the buffer in 4 KiB pages (1..=262144)",
        },
        major: u32 {
            default: 0,
            description: "Major device number; 0 asks the kernel for a free one",
        },
        fault_around: u32 {
            default: 1,
            description: "Pages mapped per fault: the aligned block around the faulting page (1, 2, 4, ..., 512; 1: only the faulting page)",
        },
    },
    // ANCHOR_END: params
}

/// The largest buffer, in pages (1 GiB).
const PAGES_MAX: u32 = 262144;

/// The largest fault-around window, in pages: one page table's worth.
const FAULT_AROUND_MAX: u32 = 512;

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
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// What every open file and every mapping shares: the buffer, the counters, and the number
/// of pages a fault maps.
#[pin_data]
struct Shared {
    #[pin]
    buffer: VmallocBuffer,
    stats: Stats,
    fault_around: usize,
}

/// Counters shown in debugfs.
struct Stats {
    /// Fault handler calls that mapped the faulting page.
    faults: PerCpuCounter,
    /// Pages the fault handler mapped besides the faulting ones (fault-around): so that a
    /// fault of `fault_around=1` updates one counter, not two. `pages_mapped` in debugfs is
    /// the sum of both.
    neighbours: PerCpuCounter,
    /// Live VMAs.
    mappings: Atomic<u64>,
    /// Open files.
    opens: Atomic<u64>,
}

impl Stats {
    fn new() -> Result<Self> {
        Ok(Stats {
            faults: PerCpuCounter::new()?,
            neighbours: PerCpuCounter::new()?,
            mappings: Atomic::new(0),
            opens: Atomic::new(0),
        })
    }

    fn show(&self, pages: usize, fault_around: usize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pages: {pages}")?;
        writeln!(f, "faults: {}", self.faults.sum())?;
        writeln!(f, "mappings: {}", self.mappings.load(Relaxed))?;
        writeln!(f, "opens: {}", self.opens.load(Relaxed))?;
        let pages_mapped = self.faults.sum() + self.neighbours.sum();
        writeln!(f, "pages_mapped: {pages_mapped}")?;
        writeln!(f, "fault_around: {fault_around}")
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The pages: from a buffer offset to its page, through the kernel page tables.
// ---------------------------------------------------------------------------------------------

/// Walks the page tables by hand for every page of the buffer and checks each result against
/// the kernel's own walk (`vmalloc_to_page()`, which the one-page fault handler uses) and
/// against the bytes seen through the direct map. Once all agree, fault-around reads the
/// buffer's page table entries itself ([`vmalloc_buffer::Pages`]). Logs no addresses.
fn check_page_walks(buffer: &VmallocBuffer) -> Result {
    let Some(mode) = pagewalk::paging_mode() else {
        pr_info!("no explicit page walk on this architecture; vmalloc_to_page() only\n");
        return Ok(());
    };
    if let Err((i, e)) = buffer.check_walks() {
        let why = match e {
            WalkCheckError::Walk(pagewalk::WalkError::NotPresent(e)) => match e.level {
                Level::Pgd => "its PGD entry is not present",
                Level::P4d => "its P4D entry is not present",
                Level::Pud => "its PUD entry is not present",
                Level::Pmd => "its PMD entry is not present",
                Level::Pte => "its PTE is not present",
            },
            WalkCheckError::Walk(pagewalk::WalkError::Unsupported) => "the walk failed",
            WalkCheckError::PageDiffers => "it found another struct page than vmalloc_to_page()",
            WalkCheckError::BytesDiffer => "the direct map shows other bytes",
        };
        pr_err!("page walk of page {i} disagrees with the kernel: {why}\n");
        return Err(EIO);
    }
    pr_info!(
        "page walk: all {} pages agree with vmalloc_to_page(); {mode}\n",
        buffer.pages()
    );
    Ok(())
}

/// The contents of `/sys/kernel/debug/mapdrv/pagewalk`: a header naming the paging mode and
/// giving the arithmetic from a frame number to its `struct page` and direct-map address, then
/// one line per buffer page with each level's index and entry, where the walk led, and the node
/// and zone of the frame.
fn show_page_walks(buffer: &VmallocBuffer, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Some(mode) = pagewalk::paging_mode() else {
        return writeln!(f, "# mapdrv page walk: not available on this architecture");
    };
    writeln!(f, "# mapdrv page walk: {}, {mode}", pagewalk::ARCH)?;
    writeln!(f, "# pages: {}", buffer.pages())?;
    let m = pagewalk::mem_map();
    writeln!(
        f,
        "# memmap: vmemmap={:#x} struct_page_size={} phys_offset={:#x} page_offset={:#x}",
        m.vmemmap, m.struct_page_size, m.phys_offset, m.page_offset
    )?;
    for i in 0..buffer.pages() {
        let (Some(addr), Some(walk)) = (buffer.page_addr(i), buffer.walk(i)) else {
            break;
        };
        write!(f, "page={i} vaddr={addr:#x}")?;
        match walk {
            Ok(t) => {
                for level in Level::ALL {
                    match t.entry(level) {
                        Some(e) => write!(f, " {e}")?,
                        None => write!(f, " {}=folded", level.name())?,
                    }
                }
                // The struct page as the kernel itself finds it (vmalloc_to_page()), so that
                // `maptest page` checks the arithmetic of the memmap line against the kernel.
                let page = buffer.page(i).map_or(0, |p| p.as_ptr() as usize);
                write!(
                    f,
                    " pfn={:#x} phys={:#x} struct_page={page:#x} directmap={:#x}",
                    t.pfn(),
                    t.phys,
                    t.direct_map_addr()
                )?;
                // The node and zone of the frame: which part of physical memory it is in.
                match zones::zone_of_pfn(t.pfn()) {
                    Some(z) => writeln!(f, " node={} zone={}", z.node, z.name)?,
                    None => writeln!(f, " node=? zone=?")?,
                }
            }
            Err(e) => writeln!(f, " error={e:?}")?,
        }
    }
    Ok(())
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
        // The bytes are copied, never borrowed: userspace may be writing them through a mapping.
        let bytes = shared.buffer.lock();
        // At or past the end: end of file.
        let Some(pos) = usize::try_from(kiocb.ki_pos())
            .ok()
            .filter(|&pos| pos < bytes.len())
        else {
            return Ok(0);
        };
        if iov.is_empty() {
            return Ok(0);
        }
        let n = bytes.copy_to_iter(pos, iov);
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
        let pos = usize::try_from(kiocb.ki_pos())
            .ok()
            .filter(|&pos| pos < bytes.len())
            .ok_or(ENOSPC)?;
        let n = bytes.copy_from_iter(pos, iov);
        if n == 0 {
            return Err(EFAULT);
        }
        *kiocb.ki_pos_mut() += n as i64;
        Ok(n)
    }

    fn llseek(
        shared: ArcBorrow<'_, Shared>,
        file: &LocalFile,
        offset: i64,
        whence: u32,
    ) -> Result<i64> {
        let size = i64::try_from(shared.buffer.len()).map_err(|_| EINVAL)?;
        chrdev::fixed_size_llseek(file, offset, whence, size)
    }

    /// The buffer is the data: a write, through `write()` or a shared mapping, is complete
    /// when it returns, and there is nothing further to write back.
    fn fsync(
        _shared: ArcBorrow<'_, Shared>,
        _file: &File,
        _start: i64,
        _end: i64,
        _datasync: bool,
    ) -> Result {
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // 4. The mapping.
    // -----------------------------------------------------------------------------------------

    // ANCHOR: mmap_prepare
    fn mmap_prepare<'a>(
        shared: ArcBorrow<'a, Shared>,
        _file: &'a File,
        desc: &mut VmAreaDesc<'a, Self::OwnerModule>,
    ) -> Result {
        // Kernel data is never code: refuse PROT_EXEC now and for any later mprotect().
        if desc.executable() {
            return Err(EPERM);
        }
        desc.try_clear_mayexec()?;

        // The requested window, in pages, must lie inside the buffer.
        match desc.pgoff().checked_add(desc.pages()) {
            Some(end) if end <= shared.buffer.pages() => {}
            _ => return Err(EINVAL),
        }

        // The mapping may shrink but never grow past what was checked above.
        desc.set_dontexpand();
        // Pages are inserted one by one by the fault handler (vm_insert_page).
        desc.set_mixedmap();

        // Nothing is mapped yet: every page waits for its first fault. The VMA takes its
        // reference to `shared` once the kernel has made it (`VmOperations::mapped`).
        desc.set_vm_ops::<Shared>(shared);
        Ok(())
    }
    // ANCHOR_END: mmap_prepare
}

// ---------------------------------------------------------------------------------------------
// 5. The fault handler.
// ---------------------------------------------------------------------------------------------

#[vtable]
impl VmOperations for Shared {
    type Ptr = Arc<Self>;

    fn mapped(this: ArcBorrow<'_, Self>, _start: usize, _end: usize, _pgoff: usize) -> Result {
        this.stats.mappings.add(1, Relaxed);
        Ok(())
    }

    fn open(this: ArcBorrow<'_, Self>, _vma: &VmaRef) {
        this.stats.mappings.add(1, Relaxed);
    }

    fn close(this: ArcBorrow<'_, Self>, _vma: &ClosingVma) {
        this.stats.mappings.fetch_sub(1, Relaxed);
    }

    // ANCHOR: fault
    /// Userspace touched a page of the mapping for the first time (or again after
    /// `MADV_DONTNEED`): find that page of the buffer through the kernel page tables (step 2)
    /// and map it at the faulting address; with `fault_around` > 1, map the block of pages
    /// around it too.
    #[inline]
    fn fault<'f>(this: ArcBorrow<'_, Self>, vmf: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
        if this.fault_around > 1 {
            return this.fault_around(vmf);
        }
        // `pgoff` counts from the start of the buffer: the mapping's offset plus the page's
        // index in the mapping. `mmap` checked the range, but a fault past the end (after a
        // shrinking mremap(), say) must still not reach beyond the buffer.
        let page = this.buffer.page(vmf.pgoff()).ok_or(FaultError::SigBus)?;
        let mapped = vmf.insert_page(&page)?;
        // Not counted if another thread's fault mapped the page first.
        if mapped.was_new() {
            this.stats.faults.add(1);
        }
        Ok(mapped)
    }
    // ANCHOR_END: fault
}

impl Shared {
    /// The fault handler with `fault_around` > 1: maps the faulting page and the pages of its
    /// aligned block. (Apart, so that the one-page fault above stays small.)
    #[inline(never)]
    fn fault_around<'f>(&self, vmf: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
        // The window stays inside the VMA, its page table and the buffer; for a write to a
        // private mapping it is the faulting page alone.
        let window = vmf.window(self.fault_around, self.buffer.pages());
        // The window's pages, found by walking down to their page table once (twice where the
        // window spans two), then reading one entry per page: no walk from the root per page.
        let pages = self.buffer.pages_from(window.pgoff());
        let mapped = vmf.insert_pages(&window, pages)?;
        // The faulting page, if this fault mapped it, and the neighbours mapped with it.
        let neighbours = mapped.pages() - usize::from(mapped.was_new());
        if mapped.was_new() {
            self.stats.faults.add(1);
        }
        if neighbours > 0 {
            self.stats.neighbours.add(neighbours as u64);
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
    _pagewalk: Pin<KBox<debugfs::File<Arc<Shared>>>>,
    _layout: Pin<KBox<debugfs::File<Arc<Shared>>>>,
    _debugfs: debugfs::Dir,
}

impl kernel::Module for MapDrv {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let npages = module_parameters::pages.value();
        let major = module_parameters::major.value();
        let fault_around = module_parameters::fault_around.value();
        if !(1..=PAGES_MAX).contains(&npages) {
            pr_err!("pages={npages} out of range 1..={PAGES_MAX}\n");
            return Err(EINVAL);
        }
        if !fault_around.is_power_of_two() || fault_around > FAULT_AROUND_MAX {
            pr_err!(
                "fault_around={fault_around} is not a power of two in 1..={FAULT_AROUND_MAX}\n"
            );
            return Err(EINVAL);
        }
        if major > chrdev::MAJOR_MAX {
            pr_err!("major={major} out of range 0..={}\n", chrdev::MAJOR_MAX);
            return Err(EINVAL);
        }
        let npages = npages as usize;

        // 1. The buffer: virtually contiguous, physically scattered. A buffer the machine
        // cannot spare is refused before the allocation could wake the OOM killer.
        let available = vmalloc_buffer::available_pages();
        if npages > available {
            pr_err!(
                "cannot vmalloc {} bytes for pages={npages}: only {} bytes of memory available\n",
                npages * PAGE_SIZE,
                available * PAGE_SIZE
            );
            return Err(ENOMEM);
        }
        // ANCHOR: vmalloc
        let buffer = match VmallocBuffer::new(npages, GFP_KERNEL | __GFP_NOWARN, fill) {
            Ok(buffer) => buffer,
            Err(e) => {
                pr_err!(
                    "cannot vmalloc {} bytes for pages={npages}\n",
                    npages * PAGE_SIZE
                );
                return Err(e);
            }
        };
        // ANCHOR_END: vmalloc
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                buffer <- buffer,
                stats: Stats::new()?,
                fault_around: fault_around as usize,
            }? Error),
            GFP_KERNEL,
        )?;

        // 2. Every page found by hand through the page tables, checked against the kernel.
        check_page_walks(&shared.buffer)?;

        let debugfs = debugfs::Dir::new(c"mapdrv");
        let stats = KBox::pin_init(
            debugfs.read_callback_file(c"stats", shared.clone(), &|s: &Arc<Shared>, f| {
                s.stats.show(s.buffer.pages(), s.fault_around, f)
            }),
            GFP_KERNEL,
        )?;
        let pagewalk = KBox::pin_init(
            debugfs.read_callback_file(c"pagewalk", shared.clone(), &|s: &Arc<Shared>, f| {
                show_page_walks(&s.buffer, f)
            }),
            GFP_KERNEL,
        )?;

        // Where each kind of kernel memory lives, this allocation among them.
        let layout = KBox::pin_init(
            debugfs.read_callback_file(c"layout", shared.clone(), &|s: &Arc<Shared>, f| {
                layout::show(f, (s.buffer.page_addr(0).unwrap_or(0), s.buffer.len()))
            }),
            GFP_KERNEL,
        )?;

        // 3. The device; from here on userspace can open it.
        let opts = Options {
            name: c"mapdrv",
            major,
            mode: Mode::new::<0o600>(),
        };
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

        if !cfg!(vm_ops_fault_vma_lock) {
            // Built for a kernel without the C patch of patches/ (Kbuild).
            pr_info!("no VM_OPS_FAULT_VMA_LOCK: a no-op map_pages keeps faults under VMA lock\n");
        }
        pr_info!(
            "{npages} pages ({} bytes) of vmalloc memory, major {}\n",
            npages * PAGE_SIZE,
            dev.major()
        );
        if fault_around > 1 {
            pr_info!("fault-around: up to {fault_around} pages mapped per fault\n");
        }
        Ok(MapDrv {
            dev,
            _stats: stats,
            _pagewalk: pagewalk,
            _layout: layout,
            _debugfs: debugfs,
        })
    }
}

impl Drop for MapDrv {
    fn drop(&mut self) {
        pr_info!("unloaded (major {})\n", self.dev.major());
    }
}

// ---------------------------------------------------------------------------------------------
// KUnit: the page walker, run when the module loads on a kernel with CONFIG_KUNIT=y.
// ---------------------------------------------------------------------------------------------

#[kunit_tests(mapdrv_pagewalk)]
mod tests {
    use super::*;
    use pagewalk::WalkError;

    /// Fails the calling test with `EIO`, naming the condition, if it does not hold. (A panic
    /// would bring the kernel down; KUnit's own `assert!` exists only inside `#[test]` bodies.)
    macro_rules! check {
        ($cond:expr) => {
            if !$cond {
                pr_err!(
                    "kunit check failed at line {}: {}\n",
                    line!(),
                    stringify!($cond)
                );
                return Err(EIO);
            }
        };
    }

    /// Walks every page of a fresh buffer of `pages` pages and checks each one against
    /// `vmalloc_to_page()` and the direct map.
    fn walk_buffer(pages: usize) -> Result {
        if pagewalk::paging_mode().is_none() {
            return Ok(());
        }
        let buffer = KBox::pin_init(VmallocBuffer::new(pages, GFP_KERNEL, fill)?, GFP_KERNEL)?;
        let mut pfns = KVec::with_capacity(pages, GFP_KERNEL)?;
        for i in 0..pages {
            let t = buffer.check_walk(i).map_err(|_| EIO)?;
            check!(t.page_size == PAGE_SIZE as u64);
            check!(t.phys & (PAGE_SIZE as u64 - 1) == 0);
            let pte = t.entry(Level::Pte).ok_or(EIO)?;
            // A kernel data page: present, writable, not for user mode, never executable.
            check!(pte.present() && pte.writable() && !pte.user() && pte.nx());
            pfns.push(t.pfn(), GFP_KERNEL)?;
        }
        // Distinct pages of the buffer are distinct frames.
        pfns.sort_unstable();
        check!(pfns.windows(2).all(|w| w[0] != w[1]));
        Ok(())
    }

    #[test]
    fn walk_matches_vmalloc_to_page_1_page() -> Result {
        walk_buffer(1)
    }

    #[test]
    fn walk_matches_vmalloc_to_page_16_pages() -> Result {
        walk_buffer(16)
    }

    #[test]
    fn walk_matches_vmalloc_to_page_4096_pages() -> Result {
        walk_buffer(4096)
    }

    /// The pages of `pages_from` are those `vmalloc_to_page()` finds, in order, across page
    /// tables, to the end of the buffer and no further: 1100 pages span three PTE tables (four
    /// if not aligned).
    #[test]
    fn pages_from_match_vmalloc_to_page() -> Result {
        const PAGES: usize = 1100;
        let buffer = KBox::pin_init(VmallocBuffer::new(PAGES, GFP_KERNEL, fill)?, GFP_KERNEL)?;
        let kernels = |i: usize| buffer.page(i).map(|p| p.as_ptr());
        // Every page from `start` on, then the end.
        let same_from = |start: usize| {
            let mut pages = buffer.pages_from(start);
            (start..PAGES).all(|i| pages.next().map(|p| p.as_ptr()) == kernels(i))
                && pages.next().is_none()
        };
        // Before the check, and where there is no explicit walk: vmalloc_to_page() itself.
        check!(same_from(1090));
        if pagewalk::paging_mode().is_none() {
            return Ok(());
        }
        check!(buffer.check_walks().is_ok());
        // From the start, from pages here and there (where the tables end depends on where the
        // buffer starts), from the last page, and from past the end.
        for start in [0, 5, 511, 512, 513, 1023, 1099, PAGES, usize::MAX] {
            check!(same_from(start));
        }
        Ok(())
    }

    #[test]
    fn walk_levels_follow_paging_mode() -> Result {
        let Some(mode) = pagewalk::paging_mode() else {
            return Ok(());
        };
        let buffer = KBox::pin_init(VmallocBuffer::new(1, GFP_KERNEL, fill)?, GFP_KERNEL)?;
        let t = buffer.walk(0).ok_or(EIO)?.map_err(|_| EIO)?;
        check!(t.entries().count() == mode.levels() as usize);
        for level in Level::ALL {
            check!(t.entry(level).is_some() != mode.folded(level));
        }
        // Each index is the level's bits of the address (9 of them with 4 KiB pages).
        let addr = buffer.page_addr(0).ok_or(EIO)? as u64;
        for (level, shift, bits) in mode.walked() {
            check!(t.entry(level).ok_or(EIO)?.index as u64 == (addr >> shift) & ((1 << bits) - 1));
        }
        Ok(())
    }

    /// A `kmalloc`ed object lives in the direct map, which the kernel maps with huge pages where
    /// it can: the walk must resolve them, and land on the object's own physical address.
    #[test]
    fn walk_resolves_direct_map() -> Result {
        if pagewalk::paging_mode().is_none() {
            return Ok(());
        }
        let obj = KBox::new([0u8; 64], GFP_KERNEL)?;
        let addr = core::ptr::from_ref(&*obj) as usize;
        // SAFETY: `obj` keeps `addr` mapped during the walk.
        let t = unsafe { pagewalk::walk(addr) }.map_err(|_| EIO)?;
        check!(t.direct_map_addr() == addr);
        check!(t.page_size == 4096 || t.page_size == 2 << 20 || t.page_size == 1 << 30);
        let last = t.entries().last().ok_or(EIO)?;
        check!(last.huge() == (t.page_size != 4096));
        Ok(())
    }

    /// The page after a vmalloc area is its guard page: nothing is mapped there.
    #[test]
    fn walk_reports_guard_page_not_present() -> Result {
        if pagewalk::paging_mode().is_none() {
            return Ok(());
        }
        let buffer = KBox::pin_init(VmallocBuffer::new(1, GFP_KERNEL, fill)?, GFP_KERNEL)?;
        let guard = buffer.page_addr(0).ok_or(EIO)? + PAGE_SIZE;
        // SAFETY: The guard page belongs to the live vmalloc area of `buffer`; the kernel does
        // not free the page tables of the vmalloc area (x86_64, arm64), so the walk reads only
        // live tables.
        let result = unsafe { pagewalk::walk(guard) };
        check!(matches!(result, Err(WalkError::NotPresent(_))));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// KUnit: the fault-around window, for any input.
// ---------------------------------------------------------------------------------------------

#[kunit_tests(mapdrv_vm_ops)]
mod window_tests {
    use super::*;
    use vm_ops::window_bounds;

    const PTRS: usize = 512;

    /// Checks what `window_bounds` promises for one input; returns the window, or `EIO` naming
    /// the input that broke a promise.
    fn window(
        max: usize,
        address: usize,
        start: usize,
        end: usize,
        pgoff: usize,
        file_pages: usize,
    ) -> Result<(usize, usize, usize)> {
        let (from, pte, to) = window_bounds(max, address, start, end, pgoff, file_pages);
        let before = address.saturating_sub(start) / PAGE_SIZE;
        let after = (end.saturating_sub(address) / PAGE_SIZE).max(1);
        let ok = from <= pte
            && pte < to
            && to <= PTRS
            && pte == (address / PAGE_SIZE) % PTRS
            && pte - from <= before.min(pgoff)
            && to - pte <= after.min(file_pages.saturating_sub(pgoff).max(1))
            && to - from <= max.clamp(1, PTRS);
        if !ok {
            pr_err!(
                "window_bounds({max:#x}, {address:#x}, {start:#x}, {end:#x}, {pgoff:#x}, \
                 {file_pages:#x}) = ({from}, {pte}, {to})\n"
            );
            return Err(EIO);
        }
        Ok((from, pte, to))
    }

    /// The extremes of every input: none may overflow (with `CONFIG_RUST_OVERFLOW_CHECKS`, the
    /// debug kernel's, an overflow is a panic in the fault path), and the window must still hold
    /// the faulting page and stay in its page table, its VMA and the file.
    #[test]
    fn window_extremes_do_not_overflow() -> Result {
        let top = usize::MAX & !(PAGE_SIZE - 1);
        let values = [
            0,
            1,
            2,
            15,
            16,
            17,
            511,
            512,
            513,
            usize::MAX / 2,
            usize::MAX - 1,
            usize::MAX,
        ];
        for &max in &values {
            for &file_pages in &values {
                for &pgoff in &values {
                    // A VMA of the whole address space, one at its very top, one page at 0.
                    window(max, 0, 0, top, pgoff, file_pages)?;
                    window(max, top - PAGE_SIZE, 0, top, pgoff, file_pages)?;
                    window(max, top, top, usize::MAX, pgoff, file_pages)?;
                    window(max, 0, 0, PAGE_SIZE, pgoff, file_pages)?;
                }
            }
        }
        Ok(())
    }

    /// A window in the middle of a large VMA and file is the aligned block of `max` pages, and
    /// a fault-around of `usize::MAX` pages is one page table's worth.
    #[test]
    fn window_is_the_aligned_block() -> Result {
        let start = 0x7f00_0000_0000;
        let end = start + 4096 * PAGE_SIZE;
        let address = start + 1000 * PAGE_SIZE;
        let pte = 1000 % PTRS;
        let (from, _, to) = window(16, address, start, end, 1000, usize::MAX)?;
        if (from, to) != (pte & !15, (pte & !15) + 16) {
            return Err(EIO);
        }
        let (from, _, to) = window(usize::MAX, address, start, end, 1000, usize::MAX)?;
        if (from, to) != (0, PTRS) {
            return Err(EIO);
        }
        // Cut to the file: one page left of it from here, so the window ends after the fault.
        let (_, _, to) = window(16, address, start, end, 1000, 1001)?;
        if to != pte + 1 {
            return Err(EIO);
        }
        Ok(())
    }
}
