//! mapbench: small benchmarks of mapdrv's mappings, run in the guest.
//!
//! Each subcommand prints one line `NAME VALUE` on stdout (VALUE with three decimals), the
//! median of `--rounds` measurements; diagnostics go to stderr.
//!
//! - `touch`: the cost of the *first touch* of each page of a fresh mapping, in ns per page.
//!   The first access to a page faults, and the kernel (anonymous memory, tmpfs) or the driver
//!   (`/dev/mapdrv`) maps a page, so this is the cost of a page fault. A first *read* of
//!   anonymous memory maps the shared zero page, the cheapest fault the kernel has: a good
//!   floor to compare the driver's fault handler with. `--populate` and `--eager` time the
//!   `mmap` too, for mappings that are filled at `mmap` time (MAP_POPULATE, or a driver that
//!   maps everything up front); `--threads` shows how faults scale on one mapping.
//! - `read`: read bandwidth (GB/s) of memory that is already mapped, so that no fault happens
//!   while timing: the driver's buffer against anonymous memory. Once the pages are mapped,
//!   the driver is out of the way and both should run at memory speed.
//! - `syscall-read`: bandwidth (GB/s) of `pread(2)` into a user buffer, to compare `read()` of
//!   the device with `read()` of a tmpfs file of the same size (made by `make-file`).
//! - `make-file`: creates the regular file `syscall-read` and `touch` compare the device with.
//!
//! Exit status: 0 success, 1 failure (`mapbench: WHAT: ERROR` on stderr), 2 usage error.

use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use maptest::{buffer_size, cvt, describe, PAGE_SIZE};

const USAGE: &str = "\
USAGE:
    mapbench touch --name NAME --file PATH|anon --pages N [--offset-pages K] [--rounds R]
                   [--populate] [--eager] [--write] [--threads T] [--nohugepage] [--retries]
    mapbench read --name NAME --file PATH|anon --pages N [--rounds R]
    mapbench syscall-read --name NAME --file PATH --bytes B [--chunk C] [--rounds R]
    mapbench make-file --file PATH --bytes B
";

const HELP: &str = "
Prints `NAME VALUE`, the median of R rounds (default 7), each on a fresh mapping.
touch: ns per page of the first touch of N pages mapped from page K (--write: by writing;
  --populate: MAP_POPULATE, and the mmap is timed; --eager: the mmap is timed; --threads:
  T threads touch disjoint parts). Anonymous memory always gets MADV_NOHUGEPAGE.
  --retries: also prints `NAME_vma_lock_retries N`, the faults of the timed touches (all
  rounds) that the kernel refused under the per-VMA lock and redid under mmap_lock
  (vma_lock_retry of /proc/vmstat, CONFIG_PER_VMA_LOCK_STATS).
read: GB/s of summing N pages that are already mapped.
syscall-read: GB/s of pread() of B bytes in C-byte chunks (default 1 MiB).
make-file: creates a file of B bytes of a nonzero pattern; prints `made PATH B`.
";

/// One MiB: the default `--chunk`, and what `make-file` writes at a time.
const MIB: usize = 1 << 20;

/// Errors are one line: what failed, then why.
type Result<T> = std::result::Result<T, String>;

/// Adds what failed to an I/O error.
trait Context<T> {
    fn ctx(self, what: impl Display) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {}", describe(&e)))
    }
}

/// The options of all subcommands (each subcommand accepts only its own, see [`parse`]).
#[derive(Default)]
struct Opts {
    cmd: String,
    name: String,
    file: String,
    pages: usize,
    offset_pages: usize,
    rounds: usize,
    threads: usize,
    bytes: usize,
    chunk: usize,
    populate: bool,
    eager: bool,
    write: bool,
    retries: bool,
}

impl Opts {
    /// `--file anon` means anonymous memory (for `touch` and `read`).
    fn anon(&self) -> bool {
        self.file == "anon"
    }
}

/// Parses the arguments after the program name: `None` for `--help`, and an error that is a
/// one-line usage problem.
fn parse(args: &[String]) -> Result<Option<Opts>> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err("no subcommand given".into());
    };
    // Per subcommand: the options that take a value, the flags, and the required options.
    let (values, flags, required) = match cmd.as_str() {
        "-h" | "--help" => return Ok(None),
        "touch" => (
            "--name --file --pages --offset-pages --rounds --threads",
            "--populate --eager --write --nohugepage --retries",
            "--name --file --pages",
        ),
        "read" => (
            "--name --file --pages --rounds",
            "",
            "--name --file --pages",
        ),
        "syscall-read" => (
            "--name --file --bytes --chunk --rounds",
            "",
            "--name --file --bytes",
        ),
        "make-file" => ("--file --bytes", "", "--file --bytes"),
        other => return Err(format!("unknown subcommand {other:?}")),
    };
    let has = |list: &str, arg: &str| list.split_whitespace().any(|x| x == arg);
    let mut o = Opts {
        cmd: cmd.clone(),
        rounds: 7,
        threads: 1,
        chunk: MIB,
        ..Opts::default()
    };
    let mut seen = Vec::new();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let arg = arg.as_str();
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        } else if has(flags, arg) {
            match arg {
                "--populate" => o.populate = true,
                "--eager" => o.eager = true,
                "--write" => o.write = true,
                "--retries" => o.retries = true,
                _ => {} // --nohugepage: always on for anonymous memory.
            }
        } else if has(values, arg) {
            let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
            // A number; only --offset-pages may be 0.
            let num = || match v.parse::<usize>() {
                Ok(n) if n > 0 || arg == "--offset-pages" => Ok(n),
                Ok(_) => Err(format!("{arg} must be positive")),
                Err(_) => Err(format!("{arg} needs a number, not {v:?}")),
            };
            match arg {
                "--name" => o.name = v.clone(),
                "--file" => o.file = v.clone(),
                "--pages" => o.pages = num()?,
                "--offset-pages" => o.offset_pages = num()?,
                "--rounds" => o.rounds = num()?,
                "--threads" => o.threads = num()?,
                "--bytes" => o.bytes = num()?,
                _ => o.chunk = num()?, // --chunk
            }
        } else {
            return Err(format!("unknown option {arg:?} for {cmd}"));
        }
        seen.push(arg);
    }
    if let Some(missing) = required.split_whitespace().find(|r| !seen.contains(r)) {
        return Err(format!("{cmd} needs {missing}"));
    }
    let end = o.pages.checked_add(o.offset_pages);
    if end.and_then(|p| p.checked_mul(PAGE_SIZE)).is_none() {
        return Err("--pages or --offset-pages too large".into());
    }
    if o.threads > o.pages.max(1) {
        return Err("--threads must not exceed --pages".into());
    }
    Ok(Some(o))
}

/// Opens `path` to map `len` bytes from `offset`: read-write, or read-only if writing is not
/// allowed. Checks that the file is that long, as touching a page past its end would kill the
/// program with SIGBUS instead of reporting an error.
fn open(path: &str, offset: usize, len: usize) -> Result<File> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => File::open(path),
        r => r,
    }
    .ctx(format_args!("open {path}"))?;
    // lseek(SEEK_END): a device's st_size is 0.
    let size = buffer_size(&file).ctx(format_args!("size of {path}"))?;
    if size < (offset + len) as u64 {
        return Err(format!(
            "{path}: {size} bytes, too short for {len} from {offset}"
        ));
    }
    Ok(file)
}

/// A mapping made for one measurement. Unlike [`maptest::Mapping`] it can be anonymous, and
/// it hands out its raw address, so that the timed loops have no bounds checks.
struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: The mapping is plain memory, accessed only through volatile accesses and (in `read`)
// a shared slice while nobody writes it; sharing the handle between threads is fine.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes of `file` (MAP_SHARED, from byte `offset`), or anonymous memory
    /// (MAP_PRIVATE) if `file` is `None`; `flags` are added (MAP_POPULATE).
    fn map(file: Option<&File>, len: usize, offset: usize, prot: i32, flags: i32) -> Result<Self> {
        let (fd, share) = match file {
            Some(f) => (f.as_raw_fd(), libc::MAP_SHARED),
            None => (-1, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS),
        };
        let offset = libc::off_t::try_from(offset).map_err(|_| "mmap offset too large")?;
        // SAFETY: A new mapping at an address of the kernel's choice aliases no Rust object.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags | share, fd, offset) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).ctx("mmap");
        }
        let ptr = NonNull::new(ptr.cast()).ok_or("mmap: returned address 0")?;
        Ok(Region { ptr, len })
    }

    /// Asks for small pages only: a huge page would turn 512 faults into one.
    fn no_huge_pages(&self) -> Result<()> {
        let (ptr, len) = (self.ptr.as_ptr().cast(), self.len);
        // SAFETY: The range is exactly our mapping; the advice does not change its contents.
        match cvt(unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) }).map(drop) {
            // EINVAL: a kernel without transparent huge pages, where there is nothing to avoid.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            r => r.ctx("madvise(MADV_NOHUGEPAGE)"),
        }
    }

    /// Unmaps the region, reporting a failure (dropping it would ignore one).
    fn unmap(self) -> Result<()> {
        // SAFETY: We own the mapping and no references into it exist; `forget` below keeps
        // `drop` from unmapping it again.
        let r = cvt(unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) }).map(drop);
        std::mem::forget(self);
        r.ctx("munmap")
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: As in `unmap` (this runs only on early returns, where errors are moot).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Touches one byte in each of `pages` in ascending order: reads it, or with `write` writes it.
fn touch(r: &Region, pages: Range<usize>, write: bool) -> u64 {
    let mut sink = 0u64;
    for p in pages {
        debug_assert!((p + 1) * PAGE_SIZE <= r.len);
        // SAFETY: Page `p` lies inside the mapping, which `r` keeps mapped; the access is
        // volatile (no Rust reference), and a write happens only if the mapping is writable.
        unsafe {
            let byte = r.ptr.as_ptr().add(p * PAGE_SIZE);
            if write {
                byte.write_volatile(1);
            } else {
                sink = sink.wrapping_add(u64::from(byte.read_volatile()));
            }
        }
    }
    black_box(sink)
}

/// Times touching all `pages` of `r` with `threads` threads, each on a contiguous part.
fn timed_touch(r: &Region, pages: usize, threads: usize, write: bool) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        touch(r, 0..pages, write);
        return start.elapsed();
    }
    // The workers and this thread meet at the barrier, so all start together; spawning them
    // is not timed.
    let barrier = Barrier::new(threads + 1);
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let part = t * pages / threads..(t + 1) * pages / threads;
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    touch(r, part, write)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for w in workers {
            w.join().expect("a touching thread panicked");
        }
        start.elapsed()
    })
}

/// One round of `touch`: ns per page of a first touch (plus the mmap with --populate/--eager),
/// and the VMA-lock retries during the touches (with --retries).
fn touch_round(o: &Opts) -> Result<(f64, u64)> {
    let (len, offset) = (o.pages * PAGE_SIZE, o.offset_pages * PAGE_SIZE);
    let file = if o.anon() {
        None
    } else {
        Some(open(&o.file, offset, len)?)
    };
    let mut prot = libc::PROT_READ;
    if o.write {
        prot |= libc::PROT_WRITE;
    }
    let flags = if o.populate { libc::MAP_POPULATE } else { 0 };
    let start = Instant::now();
    let region = Region::map(file.as_ref(), len, offset, prot, flags)?;
    // By default only the touches are timed; --populate and --eager add the mmap.
    let mut timed = Duration::ZERO;
    if o.populate || o.eager {
        timed = start.elapsed();
    }
    if o.anon() {
        region.no_huge_pages()?;
    }
    let retries = if o.retries { vma_lock_retries()? } else { 0 };
    timed += timed_touch(&region, o.pages, o.threads, o.write);
    let retries = if o.retries {
        vma_lock_retries()? - retries
    } else {
        0
    };
    region.unmap()?;
    Ok((timed.as_nanos() as f64 / o.pages as f64, retries))
}

/// `vma_lock_retry` of `/proc/vmstat`: faults refused under the per-VMA lock and retried
/// under `mmap_lock`, by all processes since boot.
fn vma_lock_retries() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/vmstat").ctx("reading /proc/vmstat")?;
    text.lines()
        .find_map(|l| l.strip_prefix("vma_lock_retry ")?.trim().parse().ok())
        .ok_or_else(|| "/proc/vmstat has no vma_lock_retry (CONFIG_PER_VMA_LOCK_STATS)".into())
}

/// `touch`: ns per page of first touches, each round on a fresh mapping.
fn touch_bench(o: &Opts) -> Result<Vec<f64>> {
    if o.anon() && o.populate {
        // MAP_POPULATE faults the pages in before madvise() could be called: turn transparent
        // huge pages off for the whole process instead (EINVAL: a kernel without THP).
        // SAFETY: prctl with plain integer arguments touches no memory of ours.
        match cvt(unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) }).map(drop) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            r => r.ctx("prctl(PR_SET_THP_DISABLE)")?,
        }
    }
    let rounds = (0..o.rounds)
        .map(|_| touch_round(o))
        .collect::<Result<Vec<_>>>()?;
    if o.retries {
        let retries: u64 = rounds.iter().map(|r| r.1).sum();
        println!("{}_vma_lock_retries {retries}", o.name);
    }
    Ok(rounds.into_iter().map(|r| r.0).collect())
}

/// Sums the region as u64 words: one load of every word.
fn sum_words(r: &Region) -> u64 {
    // `black_box` hides where the words are, so the sum cannot be carried over between rounds.
    let ptr = black_box(r.ptr.as_ptr()).cast::<u64>();
    // SAFETY: The mapping is page-aligned (so u64-aligned), `len` is a multiple of 8, and it
    // stays mapped while `r` lives; nothing writes it while the slice lives (this process only
    // reads, and the benchmark runs alone).
    let words = unsafe { std::slice::from_raw_parts(ptr, r.len / 8) };
    words.iter().fold(0u64, |sum, &w| sum.wrapping_add(w))
}

/// `read`: GB/s of summing N pages mapped (and faulted in) once, before all rounds.
fn read_bench(o: &Opts) -> Result<Vec<f64>> {
    let len = o.pages * PAGE_SIZE;
    let region = if o.anon() {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let region = Region::map(None, len, 0, prot, 0)?;
        region.no_huge_pages()?;
        // SAFETY: The whole range is our writable mapping, with no Rust references into it.
        // Nonzero bytes: real pages, not the shared zero page, back the memory.
        unsafe { region.ptr.as_ptr().write_bytes(0x5a, len) };
        region
    } else {
        Region::map(Some(&open(&o.file, 0, len)?), len, 0, libc::PROT_READ, 0)?
    };
    touch(&region, 0..o.pages, false);
    let rounds = (0..o.rounds)
        .map(|_| {
            let start = Instant::now();
            black_box(sum_words(&region));
            len as f64 / start.elapsed().as_nanos().max(1) as f64
        })
        .collect();
    region.unmap()?;
    Ok(rounds)
}

/// `syscall-read`: GB/s of pread() of B bytes in C-byte chunks into one buffer.
fn syscall_read_bench(o: &Opts) -> Result<Vec<f64>> {
    let file = File::open(&o.file).ctx(format_args!("open {}", o.file))?;
    // Nonzero, so the buffer is written (and faulted in) now, not during the first round.
    let mut buf = vec![1u8; o.chunk];
    let mut rounds = Vec::with_capacity(o.rounds);
    for _ in 0..o.rounds {
        let start = Instant::now();
        let mut done = 0;
        while done < o.bytes {
            let want = o.chunk.min(o.bytes - done);
            let what = || format!("pread {} at {done}", o.file);
            match file.read_at(&mut buf[..want], done as u64) {
                Ok(0) => return Err(format!("{}: unexpected end of file", what())),
                Ok(n) => done += n, // A short read: go on from where it ended.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).ctx(what()),
            }
        }
        let ns = start.elapsed().as_nanos().max(1);
        black_box(&buf);
        rounds.push(o.bytes as f64 / ns as f64);
    }
    Ok(rounds)
}

/// `make-file`: a file of exactly B bytes of a nonzero pattern, written in 1 MiB chunks.
fn make_file(o: &Opts) -> Result<()> {
    let path = &o.file;
    let mut file = File::create(path).ctx(format_args!("create {path}"))?;
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8 + 1).collect();
    let mut left = o.bytes;
    while left > 0 {
        let n = left.min(MIB);
        file.write_all(&chunk[..n])
            .ctx(format_args!("write {path}"))?;
        left -= n;
    }
    file.sync_all().ctx(format_args!("fsync {path}"))?;
    println!("made {path} {}", o.bytes);
    Ok(())
}

/// The median: the middle figure, or the mean of the middle two for an even count.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (v[(n - 1) / 2] + v[n / 2]) / 2.0
}

/// Prints the rounds on stderr and `NAME MEDIAN` on stdout.
fn report(name: &str, rounds: Vec<f64>) {
    let all: Vec<String> = rounds.iter().map(|r| format!("{r:.3}")).collect();
    eprintln!("# {name}: rounds {}", all.join(" "));
    println!("{name} {:.3}", median(rounds));
}

fn run(o: &Opts) -> Result<()> {
    match o.cmd.as_str() {
        "touch" => report(&o.name, touch_bench(o)?),
        "read" => report(&o.name, read_bench(o)?),
        "syscall-read" => report(&o.name, syscall_read_bench(o)?),
        _ => make_file(o)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{USAGE}{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprint!("mapbench: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("mapbench: {why}");
            ExitCode::from(1)
        }
    }
}
