//! `maptest maps`: a process's view of memory, its own `/proc/self/maps` annotated.
//!
//! Every line of `/proc/self/maps` is a VMA: a range of virtual addresses, its permissions
//! (`r`, `w`, `x`, and `s` shared or `p` private), the offset in the file it maps, and the
//! file (or `[heap]`, `[stack]`, `[vdso]`, ... or nothing for anonymous memory). This program
//! places in those lines things it knows the address of: its code, its data, the heap that
//! `brk`/`sbrk` grows, a small and a large `malloc`, a variable on its stack, and two
//! mappings of mapdrv's device, one shared and one private.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use maptest::procfs::parse_maps;
use maptest::text::wrap;
use maptest::{MapOptions, Mapping, Reservation, PAGE_SIZE};

/// Initialised data: lands in the executable's writable (`rw-p`) segment.
static DATA: AtomicU64 = AtomicU64::new(0x6d61_7064_7276);

/// A note on the line that holds `addr`.
struct Note {
    addr: u64,
    text: String,
}

/// The address a mapping gets when it asks for one at 2^50 (`mmap` with such a hint): above
/// 47 bits (x86_64) or 48 bits (arm64) only where the kernel gives processes more address bits.
fn probe_top() -> Option<u64> {
    Reservation::near(1 << 50, PAGE_SIZE)
        .ok()
        .map(|r| r.addr() as u64)
}

/// Where user space ends on x86_64, where it depends on the paging mode: 47 bits of address
/// (4-level paging; the stack just under it), or, with 5-level paging, 56 bits for a process
/// that asks for an address above 47 bits (`top`: what `mmap()` gave for such a hint).
#[cfg(target_arch = "x86_64")]
fn top_of_user_space(top: Option<u64>) -> String {
    let here = match top {
        Some(t) if t >= 1 << 47 => format!(
            "asked for an address above 47 bits, mmap() gave {t:#x}: this machine has 5-level \
             paging, and a process that asks can use 56 bits of address (up to \
             0x00ffffffffffffff); the kernel's half starts at 0xff00000000000000."
        ),
        Some(t) => format!(
            "asked for an address above 47 bits, mmap() gave {t:#x}: with 4-level paging user \
             space ends there; the kernel's half starts at 0xffff800000000000."
        ),
        None => "mmap() with a hint above 47 bits failed.".to_owned(),
    };
    format!(
        "The top of user space: mappings get addresses below 0x00007ffffffff000 (47 bits; the \
         stack sits just under it) unless they ask for more. Here, {here}"
    )
}

/// Where user space ends on arm64: 48 bits of address with 4 KiB pages and 4-level paging
/// (the stack just under 0x0001000000000000), or 52 bits, with a kernel built for them, for
/// a process that asks for an address above 48 bits (`top`: what `mmap()` gave for such a
/// hint).
#[cfg(target_arch = "aarch64")]
fn top_of_user_space(top: Option<u64>) -> String {
    let here = match top {
        Some(t) if t >= 1 << 48 => format!(
            "asked for an address above 48 bits, mmap() gave {t:#x}: this kernel has 52-bit \
             addresses, and a process that asks can use them."
        ),
        Some(t) => format!(
            "asked for an address above 48 bits, mmap() gave {t:#x}: with 48-bit addresses \
             user space ends there; the kernel's half starts at 0xffff000000000000."
        ),
        None => "mmap() with a hint above 48 bits failed.".to_owned(),
    };
    format!(
        "The top of user space: mappings get addresses below 0x0001000000000000 (48 bits; the \
         stack sits just under it) unless they ask for more and the kernel has 52-bit \
         addresses. Here, {here}"
    )
}

/// Makes the mappings and allocations, reads `/proc/self/maps`, and renders it annotated.
pub fn run(device: &str) -> Result<String, String> {
    let mut notes = Vec::new();
    notes.push(Note {
        addr: run as *const () as u64,
        text: "code: this function, maptest's run()".to_owned(),
    });
    DATA.fetch_add(1, Ordering::Relaxed);
    notes.push(Note {
        addr: &DATA as *const AtomicU64 as u64,
        text: "data: an initialised global variable".to_owned(),
    });
    // The brk heap: the program break moved up by one page, with the brk system call itself
    // (musl's sbrk() refuses to move it, to stay out of its allocator's way; the allocator
    // keeps only its bookkeeping there, and may move the break back later: the page is only
    // looked at, never used).
    // SAFETY: brk(0) only reports the break; brk(end) maps the page between, which nothing
    // else uses. No Rust object lives there. (No typed wrapper: rustix offers brk only to C
    // library implementations, and musl's sbrk refuses, see above.)
    let old = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    // SAFETY: As above.
    let new = unsafe { libc::syscall(libc::SYS_brk, old + PAGE_SIZE as u64) } as u64;
    if new == old + PAGE_SIZE as u64 {
        notes.push(Note {
            addr: old,
            text: "heap: a page added by the brk system call, which moves the program break"
                .to_owned(),
        });
    }
    let small = black_box(Box::new([1u8; 100]));
    notes.push(Note {
        addr: small.as_ptr() as u64,
        text: "malloc(100): musl's allocator takes small blocks from areas it maps itself \
               (glibc's would use the heap)"
            .to_owned(),
    });
    let big = black_box(vec![2u8; 4 << 20]);
    notes.push(Note {
        addr: big.as_ptr() as u64,
        text: "malloc(4 MiB): a large block gets an anonymous mmap of its own (the kernel \
               merges neighbouring anonymous mappings into one line)"
            .to_owned(),
    });
    let local = black_box(0u64);
    notes.push(Note {
        addr: &local as *const u64 as u64,
        text: "stack: a local variable of this function".to_owned(),
    });
    // Two mappings of the driver's buffer: shared (its own frames) and private (copy-on-write).
    let file = OpenOptions::new()
        .read(true)
        .open(device)
        .map_err(|e| format!("open {device}: {e}"))?;
    let shared = Mapping::new(&file, 0, 2 * PAGE_SIZE, MapOptions::default())
        .map_err(|e| format!("mmap of {device}: {e}"))?;
    let private = Mapping::new(
        &file,
        2 * PAGE_SIZE as u64,
        PAGE_SIZE,
        MapOptions {
            private: true,
            ..MapOptions::default()
        },
    )
    .map_err(|e| format!("mmap of {device}: {e}"))?;
    notes.push(Note {
        addr: shared.addr() as u64,
        text: "mapdrv, MAP_SHARED, pages 0-1 of the buffer (offset 0): the `s` flag".to_owned(),
    });
    notes.push(Note {
        addr: private.addr() as u64,
        text: format!(
            "mapdrv, MAP_PRIVATE, page 2 of the buffer (offset {:x}): the `p` flag",
            2 * PAGE_SIZE
        ),
    });
    let maps =
        std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
    let lines = parse_maps(&maps)?;
    let top = probe_top();
    drop((shared, private, small, big));

    let mut out = String::new();
    out.push_str(&wrap(
        "This process's memory as the kernel sees it (/proc/self/maps): one line per \
         mapping (VMA), low addresses first: its range, permissions (r w x, and s shared or p \
         private), the offset in the file it maps, and the file. Under a line, `^` marks what \
         maptest put there.",
        78,
    ));
    let _ = writeln!(out);
    for l in &lines {
        let _ = writeln!(out, "{}", l.text);
        let mut here: Vec<&Note> = notes
            .iter()
            .filter(|n| (l.start..l.end).contains(&n.addr))
            .collect();
        here.sort_by_key(|n| n.addr);
        for n in here {
            let _ = writeln!(out, "    ^ {:#x}  {}", n.addr, n.text);
        }
        let what = match l.path.as_str() {
            "[vdso]" => Some("the vDSO: kernel code mapped into every process, for system calls such as clock_gettime() that need no switch into the kernel"),
            "[vvar]" | "[vvar_vclock]" => Some("vvar: data the kernel shares with the vDSO (the clock)"),
            "[vsyscall]" => Some("vsyscall: the vDSO's fixed-address ancestor"),
            _ => None,
        };
        if let Some(w) = what {
            let _ = writeln!(out, "    ^ {w}");
        }
    }
    for n in &notes {
        if !lines.iter().any(|l| (l.start..l.end).contains(&n.addr)) {
            let _ = writeln!(out, "    (in no mapping: {} at {:#x})", n.text, n.addr);
        }
    }
    let _ = writeln!(out);
    out.push_str(&wrap(
        &format!(
            "{} The 32-bit x86 of the classic lesson split 4 GiB as 3 GiB for the process and \
             1 GiB for the kernel.",
            top_of_user_space(top)
        ),
        78,
    ));
    Ok(out)
}
