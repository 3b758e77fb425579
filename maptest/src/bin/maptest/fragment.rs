//! `maptest fragment MIB|all [--release-after-vmalloc MIB]`: fragment free memory on purpose,
//! so that a vmalloc made meanwhile gets frames from all over memory (see the help text).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use maptest::procfs::{meminfo_field, meminfo_kib};
use maptest::{MapOptions, Mapping, OrFail, PAGE_SIZE};
use rustix::mm::{mlock_with, Advice, MlockFlags};
use rustix::thread::{sched_setaffinity, CpuSet};

/// What `maptest fragment all` leaves free, in MiB: the kernel's watermarks and the free
/// memory of zones that ordinary allocations may not use (ZONE_DMA), with room to spare, so
/// that nothing is reclaimed or killed.
fn margin_mib() -> Option<u64> {
    Some(24 + meminfo_kib("MemTotal")? / 1024 / 16)
}

/// How much to take: `MIB` or `all`.
pub enum Size {
    Mib(usize),
    All,
}

/// Takes the memory, gives every other page back in a scattered order, and holds the rest
/// until standard input ends (or, with `release_after`, until vmalloc'ed memory has grown by
/// that many MiB).
pub fn run(size: Size, release_after: Option<usize>) -> Result<(), String> {
    let mib = match size {
        Size::Mib(mib) => mib,
        // All free memory but a margin the kernel keeps for itself (its watermarks).
        Size::All => match (meminfo_kib("MemFree"), margin_mib()) {
            (Some(free), Some(margin)) if free / 1024 > margin => (free / 1024 - margin) as usize,
            _ => return Err("fragment: too little free memory, or no /proc/meminfo".into()),
        },
    };
    let len = mib << 20;
    let opts = MapOptions {
        write: true,
        ..MapOptions::default()
    };
    let taken =
        Mapping::anonymous(len, opts).or_fail(format_args!("fragment: mmap of {mib} MiB"))?;
    let pages = len / PAGE_SIZE;
    // In single pages, not transparent huge pages (a kernel with THP "always", as Debian's,
    // would back the mapping with 2 MiB blocks, and giving back one 4 KiB page of such a block
    // frees nothing until the kernel splits it, later), then all faulted in at once. (A
    // kernel without THP refuses the advice: nothing to avoid there.)
    match taken.madvise(0, len, Advice::LinuxNoHugepage) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {}
        Err(e) => return Err(format!("fragment: madvise(MADV_NOHUGEPAGE): {e}")),
    }
    taken
        .madvise(0, len, Advice::LinuxPopulateWrite)
        .or_fail("fragment: madvise(MADV_POPULATE_WRITE)")?;
    // Give back every other page (the odd ones), in bit-reversed order of their index: the
    // kernel's per-CPU free list is last in, first out, so the next allocations on this CPU
    // get frames that are neither neighbours nor in order.
    let half = pages / 2;
    let bits = half.next_power_of_two().trailing_zeros();
    for k in 0..half.next_power_of_two() {
        let i = if bits == 0 {
            0
        } else {
            k.reverse_bits() >> (usize::BITS - bits)
        };
        if i < half {
            taken
                .madvise((2 * i + 1) * PAGE_SIZE, PAGE_SIZE, Advice::LinuxDontNeed)
                .or_fail("fragment: madvise")?;
        }
    }
    // Put back when this function returns, after the memory is given back (below).
    let _compaction = CompactionHeldOff::new(&taken)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut held = Some(taken);
    let watcher = release_after.map(|mib| {
        let taken = held.take().expect("the memory is still held");
        let base = meminfo_kib("VmallocUsed").unwrap_or(0);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || release_after_vmalloc(taken, base, mib as u64, &stop))
    });
    println!(
        "fragment: took {} pages, gave back every other one ({}) in a scattered order; \
         holding the rest. ready",
        pages,
        pages / 2
    );
    // Keep the taken pages until told; then give them back, here or in the watcher (told to
    // stop if the vmalloc never came), before the compaction setting is put back.
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
    drop(held);
    stop.store(true, Ordering::Relaxed);
    if let Some(watcher) = watcher {
        let _ = watcher.join();
    }
    Ok(())
}

/// The settings that keep compaction from undoing the fragmentation while the memory is held,
/// each with the value it is given then: `vm.compact_unevictable_allowed` first (its presence
/// says the kernel has compaction), then the three that wake the compaction daemon, kcompactd.
const COMPACTION_OFF: [(&str, &str); 4] = [
    // Compaction leaves locked pages where they are.
    ("/proc/sys/vm/compact_unevictable_allowed", "0"),
    // No periodic compaction: kcompactd compacts every half second while the zone's
    // fragmentation score is above a threshold, which the fragmenter makes it.
    ("/proc/sys/vm/compaction_proactiveness", "0"),
    // No compaction for an allocation of a costly order (above 3) that fails because free
    // memory is fragmented: the vmalloc's first tries are for the largest blocks (order 10
    // down), and the first failure wakes kcompactd for that order.
    ("/proc/sys/vm/extfrag_threshold", "1000"),
    // No boosted watermarks: an allocation that takes a frame from a block of pages of another
    // mobility (each of the buffer's, unmovable, from the fragmenter's movable blocks) raises
    // them, and kswapd then wakes kcompactd to rebuild whole blocks.
    ("/proc/sys/vm/watermark_boost_factor", "0"),
];

/// Compaction holds off the pages the fragmenter holds while it lives.
///
/// A kernel with compaction (`CONFIG_COMPACTION`: distribution kernels such as Debian's; the
/// project's guest kernels have none) moves pages in use to build free blocks: it would move
/// the held pages together and undo the fragmentation, and, moving other pages (the
/// initramfs's files), build blocks that the vmalloc, which asks for the largest first, takes
/// before the single frames. So the held pages are locked and the settings of
/// [`COMPACTION_OFF`] are in force until they are given back; dropping this puts the old
/// values back. (maptest aborts on a panic, without dropping: a panic here would leave them
/// set, which changes no memory's contents, only how hard the kernel works to rebuild free
/// blocks.)
struct CompactionHeldOff {
    old: Vec<(&'static str, String)>,
}

impl CompactionHeldOff {
    fn new(taken: &Mapping) -> Result<Self, String> {
        let mut held = Self { old: Vec::new() };
        if std::fs::metadata(COMPACTION_OFF[0].0).is_err() {
            return Ok(held);
        }
        // Only the pages present (ONFAULT): those given back stay given back.
        // SAFETY: Locking pages in memory changes no memory's contents; the range is that of
        // `taken`, a mapping of this process.
        unsafe { mlock_with(taken.addr() as *mut _, taken.len(), MlockFlags::ONFAULT) }
            .or_fail("fragment: mlock2(MLOCK_ONFAULT)")?;
        for (path, value) in COMPACTION_OFF {
            let old = std::fs::read_to_string(path).or_fail(format_args!("fragment: {path}"))?;
            // Recorded first: a failed write is put back with the rest.
            held.old.push((path, old));
            std::fs::write(path, value)
                .or_fail(format_args!("fragment: writing {value} to {path}"))?;
        }
        println!(
            "fragment: this kernel compacts memory (it moves pages in use to make free blocks); \
             the held pages are locked, and until they are given back compaction leaves locked \
             pages alone (vm.compact_unevictable_allowed=0) and is not started by the kernel on \
             its own (vm.compaction_proactiveness=0, vm.extfrag_threshold=1000, \
             vm.watermark_boost_factor=0)"
        );
        Ok(held)
    }
}

impl Drop for CompactionHeldOff {
    fn drop(&mut self) {
        for (path, old) in self.old.drain(..).rev() {
            if let Err(e) = std::fs::write(path, old.trim()) {
                eprintln!("maptest: fragment: putting {path} back: {e}");
            }
        }
    }
}

/// Waits until `VmallocUsed` of /proc/meminfo has grown by `mib` MiB from `base` KiB, then
/// prints /proc/buddyinfo and unmaps the fragmenter's memory, `taken`.
///
/// Why: a large vmalloc takes every free block of two pages or more, and with free memory cut
/// into single pages the next allocation of two pages in a row (the rest of the driver's load
/// makes some) finds none. Without compaction (the guest kernels have none) the kernel would
/// call the OOM killer. vmalloc'ed memory is counted once all its pages are in, and the
/// driver then fills its buffer before it allocates anything else, which gives this thread,
/// on another CPU, the time to give the memory back.
///
/// Polling must not need such a block itself: opening a file allocates (a path buffer, and a
/// page-sized buffer for a /proc file's first read, two pages in a row on a KASAN kernel). So
/// both files are opened, and read once, before the vmalloc, and then only read again from
/// the start (`pread`), which reuses the kernel's buffer, into buffers of this thread's own.
fn release_after_vmalloc(taken: Mapping, base: u64, mib: u64, stop: &AtomicBool) {
    // Poll from another CPU than the fragmenter's (and insmod's) CPU 0, if there is one.
    let mut cpus = CpuSet::new();
    cpus.set(1);
    let _ = sched_setaffinity(None, &cpus);
    let (Ok(meminfo), Ok(buddyinfo)) = (File::open("/proc/meminfo"), File::open("/proc/buddyinfo"))
    else {
        eprintln!("maptest: fragment: cannot open /proc/meminfo or /proc/buddyinfo");
        return;
    };
    let mut text = vec![0u8; 16384];
    let mut buddy = vec![0u8; 16384];
    // The first reads allocate the kernel's buffers, while there is memory to spare.
    let _ = buddyinfo.read_at(&mut buddy, 0);
    loop {
        let n = meminfo.read_at(&mut text, 0).unwrap_or(0);
        let used = std::str::from_utf8(&text[..n])
            .ok()
            .and_then(|t| meminfo_field(t, "VmallocUsed"));
        if used.is_some_and(|used| used >= base + (mib << 10)) {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            // Told to stop before the vmalloc came: give the memory back all the same.
            drop(taken);
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // What the vmalloc left of the free blocks, before they merge again.
    let n = buddyinfo.read_at(&mut buddy, 0).unwrap_or(0);
    if let Err(e) = taken.unmap() {
        eprintln!("maptest: fragment: munmap: {e}");
    }
    println!("fragment: vmalloc'ed memory grew by {mib} MiB; /proc/buddyinfo then:");
    print!("{}", String::from_utf8_lossy(&buddy[..n]));
    println!("fragment: gave all memory back");
}
