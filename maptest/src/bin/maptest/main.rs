//! maptest: map mapdrv's kernel buffer into this process and read it back; and the lesson's
//! other views of memory (`walk`, `page`, `layout`, `maps`, `frames`, `fragment`).
//!
//! Run `maptest --help` for the commands and options.

use std::process::ExitCode;

use maptest::cli::{usage_error, Arg, Cli, ValueExt};
use maptest::debugfs::{self, layout, pagewalk, LAYOUT_PATH, PAGEWALK_PATH};
use maptest::device::DEV_NODE;

mod demo;
mod fragment;
mod frames;
mod maps;
mod page;

const HELP: &str = "\
maptest: map mapdrv's kernel buffer into this process and read it back

USAGE:
    maptest [OPTIONS] FILE
    maptest walk [--rows N]
    maptest page [N]
    maptest layout
    maptest maps [FILE]
    maptest frames [--pages N] [FILE]
    maptest fragment MIB|all [--release-after-vmalloc MIB]

FILE is the mapdrv device node: /dev/mapdrv, or a node made with
`mknod mapfile c MAJOR 0` (MAJOR from /proc/devices).

maptest opens FILE, maps the buffer with mmap(2), and reads it through the
mapping. Nothing is mapped at first: each page's first touch faults, and the
driver's fault handler finds the kernel page behind it by walking the kernel
page tables and maps exactly that page. maptest shows this happening (with
mincore(2)), prints the first line of the first mapped page, and checks every
byte against what the driver wrote: byte `off` is `off % 251`, except that
page i of n begins with \"mapdrv page i of n\\n\". It exits with status 1 and
the first differing offset if anything differs.

`maptest walk` shows how the driver's buffer translates, page by page:
the indices of the PGD, P4D, PUD, PMD and PTE entries the kernel's page-table
walk goes through, the page frame each page lands in, and how scattered the
frames are. It reads /sys/kernel/debug/mapdrv/pagewalk, so it needs root and
the module loaded; --rows N shows N rows (default 32).

`maptest page [N]` shows page N (default 0) of the driver's buffer under each
of its names: its vmalloc address, its page frame number, its physical
address, its struct page in the kernel's vmemmap array and its address in the
direct map, with the arithmetic that links them, read from the same file as
`maptest walk`. Exits with status 1 if the figures do not follow it.

`maptest layout` shows the kernel's virtual address space on this machine: its
regions (the direct map of all RAM, vmalloc, the struct page array, the kernel
image, the modules), in address order, and where a live allocation of each
kind lies in them (__get_free_page, kmalloc(100), vmalloc(1000000), the
driver's buffer, code, a stack variable), with its physical address. It reads
/sys/kernel/debug/mapdrv/layout: root and the module loaded.

`maptest maps [FILE]` shows this process's own memory, /proc/self/maps, with
what maptest knows the address of placed in it: its code and data, the heap,
a small and a large malloc, a stack variable, and a shared and a private
mapping of FILE (default /dev/mapdrv); and where user space ends here.

`maptest frames [--pages N] [FILE]` shows the process's side of the mapping:
the frame behind each of its addresses, from its own page tables
(/proc/self/pagemap, root only), beside the frame the driver's walk of the
kernel's page tables found for the same page of the buffer: the same frame,
for a shared mapping, once the page is touched. Then a private mapping,
whose first page written is copied into a new frame while the buffer keeps
its own (copy-on-write), and after fork() the child's frames. N pages
(default 4) of FILE (default /dev/mapdrv); the module must be loaded. Exits
with status 1 if any of that does not hold.

`maptest fragment MIB|all` fragments free memory on purpose: it takes MIB MiB
of anonymous memory (`all`: all free memory but a margin of 24 MiB and 1/16 of
RAM), gives every
other page back to the kernel in a scattered order, prints a line ending in
`ready` and keeps the rest until standard input reaches end of file. Free
memory is then single frames with a taken frame between each two. vmalloc
asks for the largest free blocks first; once the margin's are used up, a
vmalloc made meanwhile on the same CPU (run both under `taskset 1`) gets
single frames from all over memory, which `maptest walk` then shows. With
--release-after-vmalloc MIB it gives all its memory back as soon as vmalloc'ed
memory has grown by MIB: after a large vmalloc no free block of two pages or
more is left, and without it the rest of the driver's load could meet the
OOM killer.

OPTIONS:
    --pages N      map N pages instead of the whole buffer
    --offset P     map from page P of the buffer (mmap offset P*4096)
    --private      MAP_PRIVATE instead of MAP_SHARED
    --write        write a note into the mapping, show whether the driver's
                   buffer (read back with pread) sees it, then restore it;
                   needs FILE to be writable
    --hexdump N    print the first N bytes of the mapping as a hex dump
    --maps         print this mapping's line of /proc/self/maps
    --hold         after checking, close FILE but keep the mapping until
                   standard input reaches end of file (a mapping outlives
                   its file descriptor; `rmmod mapdrv` is refused meanwhile)
    -q, --quiet    print nothing but errors
    -h, --help     print this help
";

/// Prints the help; the exit status of `--help`.
fn help() -> ExitCode {
    print!("{HELP}");
    ExitCode::SUCCESS
}

/// `--help` of a subcommand: the help, and success.
fn show_help() -> Outcome {
    print!("{HELP}");
    Ok(())
}

/// A command's outcome: `Err` with a one-line reason is exit status 1.
type Outcome = Result<(), String>;

/// `maptest [OPTIONS] FILE`.
fn demo_main(mut cli: Cli) -> Result<ExitCode, String> {
    let mut args = demo::Args::default();
    let mut file = None;
    while let Some(arg) = cli.next()? {
        match arg {
            Arg::Long("pages") => args.pages = Some(cli.value("--pages")?),
            Arg::Long("offset") => args.offset = cli.value("--offset")?,
            Arg::Long("private") => args.private = true,
            Arg::Long("write") => args.write = true,
            Arg::Long("hexdump") => args.hexdump = cli.value("--hexdump")?,
            Arg::Long("maps") => args.maps = true,
            Arg::Long("hold") => args.hold = true,
            Arg::Short('q') | Arg::Long("quiet") => args.quiet = true,
            Arg::Short('h') | Arg::Long("help") => return Ok(help()),
            Arg::Value(v) if file.is_none() => file = Some(v.string().map_err(|e| e.to_string())?),
            Arg::Value(_) => return Err("more than one FILE given".into()),
            other => return Err(Cli::unexpected(other)),
        }
    }
    args.file = file.ok_or("no FILE given")?;
    Ok(match demo::run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("maptest: {e}");
            ExitCode::from(1)
        }
    })
}

/// `maptest walk [--rows N]`.
fn walk_main(mut cli: Cli) -> Result<Outcome, String> {
    let mut rows = 32;
    while let Some(arg) = cli.next()? {
        match arg {
            Arg::Long("rows") => rows = cli.value("--rows")?,
            Arg::Short('h') | Arg::Long("help") => return Ok(show_help()),
            other => return Err(Cli::unexpected(other)),
        }
    }
    Ok(show_walk(rows))
}

/// Shows the driver's page walk of its buffer; fails if two pages share a frame.
fn show_walk(rows: usize) -> Outcome {
    let w = pagewalk::parse(&debugfs::read(PAGEWALK_PATH)?)
        .map_err(|e| format!("{PAGEWALK_PATH}: {e}"))?;
    print!("{}", w.render(rows));
    let mut pfns: Vec<u64> = w.rows.iter().map(|r| r.pfn).collect();
    pfns.sort_unstable();
    pfns.dedup();
    if pfns.len() != w.rows.len() {
        return Err("two pages of the buffer translate to the same frame".into());
    }
    Ok(())
}

/// `maptest page [N]`.
fn page_main(mut cli: Cli) -> Result<Outcome, String> {
    let mut n = None;
    while let Some(arg) = cli.next()? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(show_help()),
            Arg::Value(v) if n.is_none() => {
                n = Some(
                    v.to_str()
                        .and_then(|s| s.parse::<usize>().ok())
                        .ok_or("page needs a page number N")?,
                )
            }
            other => return Err(Cli::unexpected(other)),
        }
    }
    Ok(page::run(n.unwrap_or(0)))
}

/// `maptest layout`.
fn layout_main(mut cli: Cli) -> Result<Outcome, String> {
    match cli.next()? {
        Some(Arg::Short('h') | Arg::Long("help")) => return Ok(show_help()),
        Some(arg) => return Err(Cli::unexpected(arg)),
        None => {}
    }
    Ok(show_layout())
}

/// Shows the kernel's address-space layout from the driver's file.
fn show_layout() -> Outcome {
    let l =
        layout::parse(&debugfs::read(LAYOUT_PATH)?).map_err(|e| format!("{LAYOUT_PATH}: {e}"))?;
    print!("{}", l.render());
    Ok(())
}

/// `maptest maps [FILE]`.
fn maps_main(mut cli: Cli) -> Result<Outcome, String> {
    let mut device = None;
    while let Some(arg) = cli.next()? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(show_help()),
            Arg::Value(v) if device.is_none() => {
                device = Some(v.string().map_err(|e| e.to_string())?)
            }
            other => return Err(Cli::unexpected(other)),
        }
    }
    let device = device.unwrap_or_else(|| DEV_NODE.to_owned());
    Ok(maps::run(&device).map(|text| print!("{text}")))
}

/// `maptest frames [--pages N] [FILE]`.
fn frames_main(mut cli: Cli) -> Result<Outcome, String> {
    let mut device = None;
    let mut pages = 4;
    while let Some(arg) = cli.next()? {
        match arg {
            Arg::Long("pages") => pages = cli.value("--pages")?,
            Arg::Short('h') | Arg::Long("help") => return Ok(show_help()),
            Arg::Value(v) if device.is_none() => {
                device = Some(v.string().map_err(|e| e.to_string())?)
            }
            other => return Err(Cli::unexpected(other)),
        }
    }
    if !(2..=64).contains(&pages) {
        return Err("--pages must be 2 to 64".into());
    }
    let device = device.unwrap_or_else(|| DEV_NODE.to_owned());
    Ok(frames::run(&device, pages))
}

/// `maptest fragment MIB|all [--release-after-vmalloc MIB]`.
fn fragment_main(mut cli: Cli) -> Result<Outcome, String> {
    const SIZE: &str = "fragment needs a size in MiB (1 to 4096) or `all`";
    let mut size = None;
    let mut release_after = None;
    while let Some(arg) = cli.next()? {
        match arg {
            Arg::Long("release-after-vmalloc") => {
                let mib: usize = cli.value("--release-after-vmalloc")?;
                if mib == 0 {
                    return Err("--release-after-vmalloc must be positive".into());
                }
                release_after = Some(mib);
            }
            Arg::Short('h') | Arg::Long("help") => return Ok(show_help()),
            Arg::Value(v) if size.is_none() => {
                size = Some(match v.to_str() {
                    Some("all") => fragment::Size::All,
                    Some(n) => match n.parse::<usize>() {
                        Ok(mib) if (1..=4096).contains(&mib) => fragment::Size::Mib(mib),
                        _ => return Err(SIZE.into()),
                    },
                    None => return Err(SIZE.into()),
                });
            }
            other => return Err(Cli::unexpected(other)),
        }
    }
    let size = size.ok_or(SIZE)?;
    Ok(fragment::run(size, release_after))
}

fn main() -> ExitCode {
    let first = std::env::args().nth(1);
    let command: fn(Cli) -> Result<Outcome, String> = match first.as_deref() {
        Some("walk") => walk_main,
        Some("page") => page_main,
        Some("layout") => layout_main,
        Some("maps") => maps_main,
        Some("frames") => frames_main,
        Some("fragment") => fragment_main,
        Some("-h" | "--help") => return help(),
        _ => {
            return match demo_main(Cli::from_env("maptest", 0)) {
                Ok(code) => code,
                Err(e) => usage_error("maptest", e),
            }
        }
    };
    match command(Cli::from_env("maptest", 1)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("maptest: {e}");
            ExitCode::from(1)
        }
        Err(e) => usage_error("maptest", e),
    }
}
