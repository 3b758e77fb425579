//! `maptest frames [--pages N] [FILE]`: the process's side of the mapping. The frames behind
//! this process's addresses, from its own page tables (`/proc/self/pagemap`), side by side
//! with the frames behind the driver's buffer, from the driver's walk of the kernel's page
//! tables: the same frames, mapped twice. Then copy-on-write and `fork`, by frame numbers.

use std::fs::OpenOptions;

use maptest::debugfs::{self, pagewalk, PAGEWALK_PATH};
use maptest::device::pread_exact;
use maptest::process::{exit_now, fork, status_problem, wait, Forked};
use maptest::procfs::{pagemap, PagemapEntry};
use maptest::{MapOptions, Mapping, OrFail, PAGE_SIZE};

/// A frame number as the walk's output shows it.
fn pfn(e: &PagemapEntry) -> String {
    if e.present {
        format!("{:#x}", e.pfn)
    } else {
        "(none)".to_owned()
    }
}

/// The pagemap entries of the pages of `m`.
fn entries(m: &Mapping) -> Result<Vec<PagemapEntry>, String> {
    let e = pagemap(m.addr(), m.len() / PAGE_SIZE).or_fail("reading /proc/self/pagemap")?;
    if e.iter().any(|e| e.present && e.pfn == 0) {
        return Err(
            "/proc/self/pagemap shows no frame numbers: run as root (CAP_SYS_ADMIN)".into(),
        );
    }
    Ok(e)
}

/// Shows the frames and checks what the lesson says of them; `Err` with the first claim that
/// does not hold.
pub fn run(file: &str, pages: usize) -> Result<(), String> {
    let walk = pagewalk::parse(&debugfs::read(PAGEWALK_PATH)?)
        .map_err(|e| format!("{PAGEWALK_PATH}: {e}"))?;
    let pages = pages.min(walk.rows.len());
    if pages < 2 {
        return Err(format!(
            "the buffer has {} pages; frames needs 2",
            walk.rows.len()
        ));
    }
    let kernel: Vec<u64> = walk.rows.iter().take(pages).map(|r| r.pfn).collect();
    let f = OpenOptions::new()
        .read(true)
        .open(file)
        .or_fail(format_args!("opening {file}"))?;
    let len = pages * PAGE_SIZE;

    println!(
        "The frames behind this process's addresses, from its own page tables\n\
         (/proc/self/pagemap), and behind the driver's buffer, from the driver's walk\n\
         of the kernel's page tables ({PAGEWALK_PATH}).\n"
    );

    // A shared mapping: each page, once touched, is the buffer's own frame.
    let shared = Mapping::new(&f, 0, len, MapOptions::default()).or_fail("mmap MAP_SHARED")?;
    let before = entries(&shared)?;
    shared.touch(0..pages, false);
    let after = entries(&shared)?;
    println!("A shared mapping (MAP_SHARED) of {pages} pages, before and after each is read once:");
    println!(" page  user address      before  process's pfn  kernel walk's pfn");
    for p in 0..pages {
        let same = after[p].present && after[p].pfn == kernel[p];
        println!(
            "{p:5}  {:#16x}  {:>6}  {:>13}  {:>17}  {}",
            shared.addr() + p * PAGE_SIZE,
            pfn(&before[p]),
            pfn(&after[p]),
            format!("{:#x}", kernel[p]),
            if same { "the same frame" } else { "DIFFERENT" }
        );
        if before[p].present {
            return Err(format!("page {p} was mapped before it was touched"));
        }
        if !same {
            return Err(format!(
                "page {p}: the process's pfn {} is not the kernel walk's {:#x}",
                pfn(&after[p]),
                kernel[p]
            ));
        }
    }
    println!(
        "One frame, two addresses: the kernel's (vmalloc) and this process's. Nothing\n\
         was mapped before the first touch: each read faulted, and the fault handler\n\
         mapped the buffer's own frame.\n"
    );

    // A private mapping: reading maps the buffer's frame; writing copies the page first.
    let private = Mapping::new(
        &f,
        0,
        len,
        MapOptions {
            write: true,
            private: true,
            ..MapOptions::default()
        },
    )
    .or_fail("mmap MAP_PRIVATE")?;
    private.touch(0..pages, false);
    let read = entries(&private)?;
    let old = private.read(0);
    private.write(0, old ^ 0xff);
    let written = entries(&private)?;
    let mut first = [0u8; 1];
    pread_exact(&f, &mut first, 0)?;
    println!("A private mapping (MAP_PRIVATE): every page read, then page 0 written:");
    println!(" page  after the reads  after the write  kernel walk's pfn");
    for p in 0..pages {
        println!(
            "{p:5}  {:>15}  {:>15}  {:>17}  {}",
            pfn(&read[p]),
            pfn(&written[p]),
            format!("{:#x}", kernel[p]),
            if p == 0 {
                "copied on write: a new frame"
            } else {
                "not written: the buffer's frame"
            }
        );
        if !read[p].present || read[p].pfn != kernel[p] {
            return Err(format!(
                "private page {p}: read, it is not the buffer's frame"
            ));
        }
    }
    if !written[0].present || written[0].pfn == kernel[0] || written[0].file_or_shared {
        return Err("private page 0: written, it is not a new anonymous frame".into());
    }
    if written[1..] != read[1..] {
        return Err("writing page 0 of the private mapping moved another page".into());
    }
    if first[0] != old {
        return Err("the write to the private mapping reached the driver's buffer".into());
    }
    println!(
        "The write faulted once more: the kernel copied the page into a new frame of\n\
         anonymous memory, this process's alone, and mapped that instead. The buffer\n\
         keeps its frame and its byte (read back with pread: {old:#04x}).\n"
    );

    // fork: the child gets copies of the page tables, so the same frames.
    let parent_shared = after;
    // SAFETY: maptest is single-threaded here, and the child leaves with exit_now.
    match unsafe { fork() }.or_fail("fork")? {
        Forked::Child => {
            let code = match child(&shared, &private, &parent_shared, &written) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("maptest: frames: in the child: {e}");
                    1
                }
            };
            exit_now(code)
        }
        Forked::Parent(pid) => {
            let status = wait(pid).or_fail("waiting for the child")?;
            if let Some(problem) = status_problem(status) {
                return Err(format!("the child {problem}"));
            }
        }
    }
    Ok(())
}

/// In the child after `fork`: its own page tables, read before it touches anything.
fn child(
    shared: &Mapping,
    private: &Mapping,
    parent_shared: &[PagemapEntry],
    parent_private: &[PagemapEntry],
) -> Result<(), String> {
    let s = entries(shared)?;
    let p = entries(private)?;
    println!("After fork(), the child's page tables, before it touches anything:");
    println!(" page  shared mapping  private mapping");
    for i in 0..s.len() {
        println!("{i:5}  {:>14}  {:>15}", pfn(&s[i]), pfn(&p[i]));
    }
    let same = |a: &[PagemapEntry], b: &[PagemapEntry]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| x.present && y.present && x.pfn == y.pfn)
    };
    if !same(&s, parent_shared) {
        return Err("the child's shared mapping is not the parent's frames".into());
    }
    if !same(&p, parent_private) {
        return Err("the child's private mapping is not the parent's frames".into());
    }
    println!(
        "The same frames as the parent's, without a fault: fork copied the entries of\n\
         the page tables (for a VM_MIXEDMAP mapping the kernel copies them rather than\n\
         leave them to faults: vma_needs_copy() in mm/memory.c). Page 0 of the private\n\
         mapping is the parent's copy, now shared by both until one of them writes to\n\
         it, which copies it again."
    );
    Ok(())
}
