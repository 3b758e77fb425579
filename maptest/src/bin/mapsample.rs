//! mapsample: checks the kernel's Rust sample of a misc device that maps a vmalloc buffer on
//! page faults (`samples/rust/rust_misc_vmalloc.rs`, added by the series in `patches/` and built
//! into the debug guest kernel), as a process sees it.
//!
//!     mapsample [DEVICE]     (default /dev/rust-misc-vmalloc)
//!
//! The sample gives each open file a buffer of 16 pages, every byte of page `i` being `i`, and
//! maps a page only when it is first touched. mapsample prints a line `ok: ...` per property
//! it checks, and exits with status 1 and `mapsample: ...` on stderr at the first that does not
//! hold (2: usage error).

use std::fs::{File, OpenOptions};
use std::process::ExitCode;

use maptest::mapping::{MapOptions, Mapping};
use maptest::{OrFail, PAGE_SIZE};
use rustix::mm::MprotectFlags;

/// The sample's buffer, in pages.
const PAGES: usize = 16;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/dev/rust-misc-vmalloc".into());
    if path.starts_with('-') || args.next().is_some() {
        eprintln!("usage: mapsample [DEVICE]");
        return ExitCode::from(2);
    }
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mapsample: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open(path: &str) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .or_fail(format_args!("open {path}"))
}

fn shared(write: bool) -> MapOptions {
    MapOptions {
        write,
        ..MapOptions::default()
    }
}

/// The pages of `map` that are mapped, as a string of `#` (mapped) and `.` (not).
fn resident(map: &Mapping) -> Result<String, String> {
    let pages = map.resident().or_fail("mincore")?;
    Ok(pages.iter().map(|&r| if r { '#' } else { '.' }).collect())
}

fn run(path: &str) -> Result<(), String> {
    let file = open(path)?;
    let map = Mapping::new(&file, 0, PAGES * PAGE_SIZE, shared(false))
        .or_fail(format_args!("mmap of {PAGES} pages of {path}"))?;

    // Nothing is mapped before it is touched; a touch maps that page alone.
    let none = ".".repeat(PAGES);
    let seen = resident(&map)?;
    if seen != none {
        return Err(format!("pages mapped before any touch: {seen}"));
    }
    let first = map.read(5 * PAGE_SIZE);
    let seen = resident(&map)?;
    let want: String = (0..PAGES).map(|i| if i == 5 { '#' } else { '.' }).collect();
    if seen != want {
        return Err(format!(
            "after touching page 5, mapped: {seen} (expected {want})"
        ));
    }
    println!("ok: no page mapped until touched; touching page 5 mapped it alone ({seen})");

    // Every byte of page i is i.
    if first != 5 {
        return Err(format!("page 5 begins with {first}, expected 5"));
    }
    for off in 0..PAGES * PAGE_SIZE {
        let (got, want) = (map.read(off), (off / PAGE_SIZE) as u8);
        if got != want {
            return Err(format!(
                "byte {off} (page {}) is {got}, expected {want}",
                off / PAGE_SIZE
            ));
        }
    }
    println!("ok: all {PAGES} pages read back through the mapping, every byte of page i being i");

    // A window of the buffer, from a page offset.
    let window = Mapping::new(&file, 3 * PAGE_SIZE as u64, 2 * PAGE_SIZE, shared(false))
        .or_fail("mmap of pages 3 and 4")?;
    if (window.read(0), window.read(2 * PAGE_SIZE - 1)) != (3, 4) {
        return Err("a mapping from page 3 does not show pages 3 and 4".into());
    }
    println!("ok: a mapping from page 3 shows pages 3 and 4");

    // Refused: past the buffer (EINVAL), executable (EPERM), made executable later (EACCES).
    let refused =
        |what: &str, offset: u64, pages: usize, opts: MapOptions, errno: i32| match Mapping::new(
            &file,
            offset,
            pages * PAGE_SIZE,
            opts,
        ) {
            Ok(_) => Err(format!("{what}: mmap succeeded")),
            Err(e) if e.raw_os_error() == Some(errno) => Ok(()),
            Err(e) => Err(format!("{what}: {e}, expected errno {errno}")),
        };
    refused("17 pages", 0, PAGES + 1, shared(false), libc::EINVAL)?;
    refused(
        "page 16",
        (PAGES * PAGE_SIZE) as u64,
        1,
        shared(false),
        libc::EINVAL,
    )?;
    let exec = MapOptions {
        exec: true,
        ..MapOptions::default()
    };
    refused("PROT_EXEC", 0, 1, exec, libc::EPERM)?;
    match map.mprotect(MprotectFlags::READ | MprotectFlags::EXEC) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
        other => return Err(format!("mprotect(PROT_EXEC): {other:?}, expected EACCES")),
    }
    // Grown by mremap() past its pages: EFAULT, the kernel's answer for a VM_DONTEXPAND area,
    // checked before anything that depends on the address space around it.
    let mut short = Mapping::new(&file, 0, PAGE_SIZE, shared(false)).or_fail("mmap of page 0")?;
    match short.remap(2 * PAGE_SIZE) {
        Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {}
        other => return Err(format!("mremap to 2 pages: {other:?}, expected EFAULT")),
    }
    println!(
        "ok: refused: a mapping past the buffer (EINVAL), PROT_EXEC (EPERM), mprotect to \
         PROT_EXEC (EACCES), mremap to grow (EFAULT)"
    );

    // Each open file has a buffer of its own; its mappings share it.
    let writer = Mapping::new(&file, 0, PAGE_SIZE, shared(true)).or_fail("mmap, writable")?;
    writer.write(7, 0xaa);
    if map.read(7) != 0xaa {
        return Err("a write through one mapping is not seen by another of the same file".into());
    }
    let other = open(path)?;
    let theirs =
        Mapping::new(&other, 0, PAGE_SIZE, shared(false)).or_fail("mmap of a second open")?;
    if theirs.read(7) != 0 {
        return Err("another open file's buffer shows this one's write".into());
    }
    println!("ok: mappings of one open file share its buffer; another open file has its own");

    // A mapping keeps the buffer after the file is closed: pages not touched before close()
    // are faulted in after it, from the same buffer.
    let late = Mapping::new(&file, 0, PAGES * PAGE_SIZE, shared(false)).or_fail("mmap")?;
    drop((file, window, writer, short, map));
    let seen = resident(&late)?;
    if seen != none {
        return Err(format!(
            "pages of a new mapping mapped before any touch: {seen}"
        ));
    }
    if late.read(7) != 0xaa || late.read(PAGES * PAGE_SIZE - 1) != (PAGES - 1) as u8 {
        return Err("after close(), a mapping no longer shows the buffer".into());
    }
    println!("ok: after close() and the other mappings' munmap(), a mapping faults the buffer in");
    Ok(())
}
