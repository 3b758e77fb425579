//! maptest: map mapdrv's kernel buffer into this process and read it back.
//!
//! Run `maptest --help` for the options.

use std::fs::{File, OpenOptions};
use std::process::ExitCode;

use maptest::{buffer_size, is_char_device, Expected, MapOptions, Mapping, PAGE_SIZE};

mod layout;
mod maps;
mod walk;

const HELP: &str = "\
maptest: map mapdrv's kernel buffer into this process and read it back

USAGE:
    maptest [OPTIONS] FILE
    maptest walk [--rows N]
    maptest layout
    maptest maps [FILE]
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

struct Args {
    file: String,
    pages: Option<usize>,
    offset: usize,
    private: bool,
    write: bool,
    hexdump: usize,
    maps: bool,
    hold: bool,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        file: String::new(),
        pages: None,
        offset: 0,
        private: false,
        write: false,
        hexdump: 0,
        maps: false,
        hold: false,
        quiet: false,
    };
    let mut file = None;
    let mut it = std::env::args().skip(1);
    let number = |opt: &str, v: Option<String>| -> Result<usize, String> {
        let v = v.ok_or_else(|| format!("{opt} needs a number"))?;
        v.parse().map_err(|_| format!("{opt}: not a number: {v}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--pages" => args.pages = Some(number("--pages", it.next())?),
            "--offset" => args.offset = number("--offset", it.next())?,
            "--private" => args.private = true,
            "--write" => args.write = true,
            "--hexdump" => args.hexdump = number("--hexdump", it.next())?,
            "--maps" => args.maps = true,
            "--hold" => args.hold = true,
            "-q" | "--quiet" => args.quiet = true,
            s if s.starts_with('-') => return Err(format!("unknown option {s} (see --help)")),
            s => {
                if file.replace(s.to_owned()).is_some() {
                    return Err("more than one FILE given (see --help)".into());
                }
            }
        }
    }
    args.file = file.ok_or("no FILE given (see --help)")?;
    Ok(args)
}

fn resident_count(m: &Mapping) -> String {
    match m.resident() {
        Ok(r) => format!(
            "{} of {} pages resident",
            r.iter().filter(|&&x| x).count(),
            r.len()
        ),
        Err(e) => format!("mincore failed: {e}"),
    }
}

fn hexdump(m: &Mapping, start: usize, n: usize) {
    let n = n.min(m.len());
    for row in (0..n).step_by(16) {
        let bytes = m.read_range(row, 16.min(n - row));
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = bytes
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        println!("  {:08x}  {:<47}  |{text}|", start + row, hex.join(" "));
    }
}

fn run(args: Args) -> Result<bool, String> {
    let say = |s: String| {
        if !args.quiet {
            println!("maptest: {s}");
        }
    };
    if !is_char_device(&args.file).map_err(|e| format!("{}: {e}", args.file))? {
        return Err(format!("{}: not a character device", args.file));
    }
    let file: File = OpenOptions::new()
        .read(true)
        .write(args.write)
        .open(&args.file)
        .map_err(|e| format!("open {}: {e}", args.file))?;
    let size = buffer_size(&file).map_err(|e| format!("lseek {}: {e}", args.file))? as usize;
    let total = size / PAGE_SIZE;
    say(format!(
        "opened {}: the driver's buffer is {total} pages ({size} bytes)",
        args.file
    ));

    if args.offset >= total {
        return Err(format!(
            "--offset {} is past the buffer's {total} pages",
            args.offset
        ));
    }
    let pages = args.pages.unwrap_or(total - args.offset);
    let len = pages * PAGE_SIZE;
    let opts = MapOptions {
        write: args.write,
        private: args.private,
        ..Default::default()
    };
    let m = Mapping::new(&file, (args.offset * PAGE_SIZE) as u64, len, opts).map_err(|e| {
        format!(
            "mmap of {pages} pages at page {} of {}: {e}",
            args.offset, args.file
        )
    })?;
    say(format!(
        "mmap({len} bytes, PROT_READ{}, {}, offset {}) = {:#x}",
        if args.write { "|PROT_WRITE" } else { "" },
        if args.private {
            "MAP_PRIVATE"
        } else {
            "MAP_SHARED"
        },
        args.offset * PAGE_SIZE,
        m.addr()
    ));
    say(format!("nothing is mapped yet: {}", resident_count(&m)));
    if args.maps {
        match m.maps_line() {
            Ok(l) => say(format!("/proc/self/maps: {l}")),
            Err(e) => say(format!("/proc/self/maps: {e}")),
        }
    }

    // The first touch: one page fault, one page.
    let first_line: Vec<u8> = (0..80.min(len))
        .map(|i| m.read(i))
        .take_while(|&b| b != b'\n')
        .collect();
    say(format!(
        "first line of the mapping: \"{}\" ({})",
        String::from_utf8_lossy(&first_line),
        resident_count(&m)
    ));

    // Every other page: each first touch faults it in. Checked a page at a time.
    let expected = Expected::new(total);
    let start = args.offset * PAGE_SIZE;
    let verdict = m.verify(&expected, start);
    say(format!(
        "read all {pages} pages through the mapping: {}",
        resident_count(&m)
    ));
    if args.hexdump > 0 {
        say(format!("first {} bytes:", args.hexdump.min(len)));
        if !args.quiet {
            hexdump(&m, args.offset * PAGE_SIZE, args.hexdump);
        }
    }

    if let Err(mis) = verdict {
        eprintln!("maptest: MISMATCH at {mis}");
        return Ok(false);
    }
    say(format!(
        "all {len} bytes match what the driver wrote into its vmalloc buffer"
    ));

    if args.write {
        write_demo(&file, &m, start, args.private, &say)?;
    }
    if args.hold {
        drop(file);
        // Always printed: scripts wait for this line.
        println!(
            "maptest: holding the mapping with {} closed; end standard input to unmap",
            args.file
        );
        std::io::Write::flush(&mut std::io::stdout()).map_err(|e| e.to_string())?;
        std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
            .map_err(|e| format!("stdin: {e}"))?;
        if let Err(mis) = m.verify(&expected, start) {
            eprintln!("maptest: MISMATCH after holding, at {mis}");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes a note through the mapping and shows where it went.
fn write_demo(
    file: &File,
    m: &Mapping,
    start: usize,
    private: bool,
    say: &dyn Fn(String),
) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let note = b"hello from userspace";
    let original = m.read_range(0, note.len());
    for (i, &b) in note.iter().enumerate() {
        m.write(i, b);
    }
    let mut seen = vec![0u8; note.len()];
    file.read_exact_at(&mut seen, start as u64)
        .map_err(|e| format!("pread: {e}"))?;
    let reached = seen == note;
    say(format!(
        "wrote \"{}\" through the mapping; the driver's buffer now reads \"{}\" ({})",
        String::from_utf8_lossy(note),
        String::from_utf8_lossy(&seen).escape_debug(),
        match (private, reached) {
            (false, true) => "MAP_SHARED: the process wrote straight into kernel memory",
            (true, false) => "MAP_PRIVATE: the write went to a private copy of the page",
            (false, false) => "UNEXPECTED: a shared write did not reach the buffer",
            (true, true) => "UNEXPECTED: a private write reached the buffer",
        }
    ));
    if reached {
        file.write_all_at(&original, start as u64)
            .map_err(|e| format!("pwrite: {e}"))?;
    }
    if reached == private {
        return Err("the write did not behave as the mapping's type requires".into());
    }
    Ok(())
}

fn maps_main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let device = match args.as_slice() {
        [] => "/dev/mapdrv",
        [d] if !d.starts_with('-') => d.as_str(),
        _ => {
            eprintln!("maptest: usage: maptest maps [FILE]");
            return ExitCode::from(2);
        }
    };
    match maps::run(device) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("maptest: {e}");
            ExitCode::from(1)
        }
    }
}

/// Reads one of the driver's debugfs files; on failure says why and gives the exit status.
fn read_debugfs(path: &str) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|e| {
        eprintln!("maptest: {path}: {e} (root and a loaded mapdrv needed)");
        ExitCode::from(1)
    })
}

fn layout_main() -> ExitCode {
    if std::env::args().len() > 2 {
        eprintln!("maptest: usage: maptest layout");
        return ExitCode::from(2);
    }
    let text = match read_debugfs(layout::LAYOUT_PATH) {
        Ok(t) => t,
        Err(code) => return code,
    };
    match layout::parse(&text) {
        Ok(l) => {
            print!("{}", l.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("maptest: {}: {e}", layout::LAYOUT_PATH);
            ExitCode::from(1)
        }
    }
}

fn walk_main() -> ExitCode {
    let mut rows = 32;
    let mut it = std::env::args().skip(2);
    while let Some(a) = it.next() {
        match (a.as_str(), it.next().map(|v| v.parse::<usize>())) {
            ("--rows", Some(Ok(n))) => rows = n,
            _ => {
                eprintln!("maptest: usage: maptest walk [--rows N]");
                return ExitCode::from(2);
            }
        }
    }
    let text = match read_debugfs(walk::PAGEWALK_PATH) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let w = match walk::parse(&text) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("maptest: {}: {e}", walk::PAGEWALK_PATH);
            return ExitCode::from(1);
        }
    };
    print!("{}", w.render(rows));
    let mut pfns: Vec<u64> = w.rows.iter().map(|r| r.pfn).collect();
    pfns.sort_unstable();
    pfns.dedup();
    if pfns.len() != w.rows.len() {
        eprintln!("maptest: two pages of the buffer translate to the same frame");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// A field of `/proc/meminfo`, in MiB.
fn meminfo_mib(field: &str) -> Option<usize> {
    Some(meminfo_kib(field)? / 1024)
}

fn meminfo_kib(field: &str) -> Option<usize> {
    meminfo_field(&std::fs::read_to_string("/proc/meminfo").ok()?, field)
}

/// The value, in KiB, of `field` in the text of /proc/meminfo.
fn meminfo_field(text: &str, field: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What `maptest fragment all` leaves free, in MiB: the kernel's watermarks and the free
/// memory of zones that ordinary allocations may not use (ZONE_DMA), with room to spare, so
/// that nothing is reclaimed or killed.
fn fragment_margin_mib() -> Option<usize> {
    Some(24 + meminfo_mib("MemTotal:")? / 16)
}

/// `maptest fragment MIB|all`: see the help text.
fn fragment_main() -> ExitCode {
    let arg = std::env::args().nth(2);
    // --release-after-vmalloc MIB: give everything back once vmalloc'ed memory has grown by
    // MIB (a driver's buffer is allocated), before the rest of its load needs memory.
    let release_after = match (
        std::env::args().nth(3).as_deref(),
        std::env::args().nth(4).map(|v| v.parse::<usize>()),
    ) {
        (None, _) => None,
        (Some("--release-after-vmalloc"), Some(Ok(m))) if m > 0 => Some(m),
        _ => {
            eprintln!("maptest: usage: maptest fragment MIB|all [--release-after-vmalloc MIB]");
            return ExitCode::from(2);
        }
    };
    let mib = match arg.as_deref() {
        // All free memory but a margin the kernel keeps for itself (its watermarks).
        Some("all") => match (meminfo_mib("MemFree:"), fragment_margin_mib()) {
            (Some(free), Some(margin)) if free > margin => free - margin,
            _ => {
                eprintln!("maptest: fragment: too little free memory, or no /proc/meminfo");
                return ExitCode::from(1);
            }
        },
        Some(a) => match a.parse::<usize>() {
            Ok(m) if (1..=4096).contains(&m) => m,
            _ => {
                eprintln!("maptest: fragment needs a size in MiB (1 to 4096) or `all`");
                return ExitCode::from(2);
            }
        },
        None => {
            eprintln!("maptest: fragment needs a size in MiB (1 to 4096) or `all`");
            return ExitCode::from(2);
        }
    };
    let len = mib << 20;
    // SAFETY: A fresh private anonymous mapping; no existing memory is affected.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        eprintln!(
            "maptest: fragment: mmap of {mib} MiB: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::from(1);
    }
    let pages = len / PAGE_SIZE;
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
        if i >= half {
            continue;
        }
        // SAFETY: Page 2i+1 lies inside the mapping made above, which nothing else uses; its
        // contents are not needed.
        let rc = unsafe {
            libc::madvise(
                addr.cast::<u8>().add((2 * i + 1) * PAGE_SIZE).cast(),
                PAGE_SIZE,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            eprintln!(
                "maptest: fragment: madvise: {}",
                std::io::Error::last_os_error()
            );
            return ExitCode::from(1);
        }
    }
    let watcher = release_after.map(|mib| {
        let (addr, len) = (addr as usize, len);
        let base = meminfo_kib("VmallocUsed:").unwrap_or(0);
        std::thread::spawn(move || release_after_vmalloc(addr, len, base, mib))
    });
    println!(
        "fragment: took {} pages, gave back every other one ({}) in a scattered order; \
         holding the rest. ready",
        pages,
        pages / 2
    );
    // Keep the taken pages until told; exiting gives them back.
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    drop(watcher);
    ExitCode::SUCCESS
}

/// Waits until `VmallocUsed` of /proc/meminfo has grown by `mib` MiB from `base` KiB, then
/// prints /proc/buddyinfo and unmaps the fragmenter's memory, `len` bytes at `addr`.
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
fn release_after_vmalloc(addr: usize, len: usize, base: usize, mib: usize) {
    use std::os::unix::fs::FileExt;
    // Poll from another CPU than the fragmenter's (and insmod's) CPU 0, if there is one.
    // SAFETY: `set` is a plain bit set on the stack; sched_setaffinity(0, ...) changes only
    // this thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(1, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
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
            .and_then(|t| meminfo_field(t, "VmallocUsed:"));
        if used.is_some_and(|used| used >= base + (mib << 10)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // What the vmalloc left of the free blocks, before they merge again.
    let n = buddyinfo.read_at(&mut buddy, 0).unwrap_or(0);
    // SAFETY: The mapping was made by fragment_main(), which does not touch it again; it is
    // unmapped once, here.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    println!("fragment: vmalloc'ed memory grew by {mib} MiB; /proc/buddyinfo then:");
    print!("{}", String::from_utf8_lossy(&buddy[..n]));
    println!("fragment: gave all memory back");
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("walk") => return walk_main(),
        Some("layout") => return layout_main(),
        Some("maps") => return maps_main(),
        Some("fragment") => return fragment_main(),
        _ => {}
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("maptest: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("maptest: {e}");
            ExitCode::from(1)
        }
    }
}
