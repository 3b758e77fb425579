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

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use maptest::cli::{Arg, Cli};
use maptest::mapping::{buffer_size, MapOptions, Mapping};
use maptest::{procfs, OrFail, PAGE_SIZE};
use rustix::mm::Advice;

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
fn parse(mut cli: Cli) -> Result<Option<Opts>> {
    let cmd = match cli.next()? {
        Some(Arg::Short('h') | Arg::Long("help")) => return Ok(None),
        Some(Arg::Value(v)) => v.to_string_lossy().into_owned(),
        Some(other) => return Err(Cli::unexpected(other)),
        None => return Err("no subcommand given".into()),
    };
    // Per subcommand: the options that take a value, the flags, and the required options.
    let (values, flags, required) = match cmd.as_str() {
        "touch" => (
            "name file pages offset-pages rounds threads",
            "populate eager write nohugepage retries",
            "name file pages",
        ),
        "read" => ("name file pages rounds", "", "name file pages"),
        "syscall-read" => ("name file bytes chunk rounds", "", "name file bytes"),
        "make-file" => ("file bytes", "", "file bytes"),
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
    while let Some(arg) = cli.next()? {
        let name = match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(None),
            Arg::Long(name) if has(flags, name) || has(values, name) => name.to_owned(),
            Arg::Long(name) => return Err(format!("unknown option --{name} for {cmd}")),
            other => return Err(Cli::unexpected(other)),
        };
        let opt = format!("--{name}");
        if has(flags, &name) {
            match name.as_str() {
                "populate" => o.populate = true,
                "eager" => o.eager = true,
                "write" => o.write = true,
                "retries" => o.retries = true,
                _ => {} // --nohugepage: always on for anonymous memory.
            }
        } else {
            match name.as_str() {
                "name" => o.name = cli.string(&opt)?,
                "file" => o.file = cli.string(&opt)?,
                number => {
                    // A number; only --offset-pages may be 0.
                    let n: usize = cli.value(&opt)?;
                    if n == 0 && number != "offset-pages" {
                        return Err(format!("{opt} must be positive"));
                    }
                    *match number {
                        "pages" => &mut o.pages,
                        "offset-pages" => &mut o.offset_pages,
                        "rounds" => &mut o.rounds,
                        "threads" => &mut o.threads,
                        "bytes" => &mut o.bytes,
                        _ => &mut o.chunk,
                    } = n;
                }
            }
        }
        seen.push(name);
    }
    if let Some(missing) = required
        .split_whitespace()
        .find(|r| !seen.iter().any(|s| s == r))
    {
        return Err(format!("{cmd} needs --{missing}"));
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
    .or_fail(format_args!("open {path}"))?;
    // lseek(SEEK_END): a device's st_size is 0.
    let size = buffer_size(&file).or_fail(format_args!("size of {path}"))?;
    if size < (offset + len) as u64 {
        return Err(format!(
            "{path}: {size} bytes, too short for {len} from {offset}"
        ));
    }
    Ok(file)
}

/// Maps `len` bytes of `file` (MAP_SHARED, from byte `offset`), or anonymous memory if `file` is
/// `None`, with small pages only: a huge page would turn 512 faults into one.
fn map(file: Option<&File>, len: usize, offset: usize, opts: MapOptions) -> Result<Mapping> {
    let Some(file) = file else {
        let m = Mapping::anonymous(len, opts).or_fail("mmap")?;
        return match m.madvise(0, len, Advice::LinuxNoHugepage) {
            // EINVAL: a kernel without transparent huge pages, where there is nothing to avoid.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(m),
            r => r.or_fail("madvise(MADV_NOHUGEPAGE)").map(|()| m),
        };
    };
    Mapping::new(file, offset as u64, len, opts).or_fail("mmap")
}

/// Times touching all `pages` of `r` with `threads` threads, each on a contiguous part.
fn timed_touch(r: &Mapping, pages: usize, threads: usize, write: bool) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        black_box(r.touch(0..pages, write));
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
                    black_box(r.touch(part, write))
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
    let opts = MapOptions {
        write: o.write,
        populate: o.populate,
        ..MapOptions::default()
    };
    let start = Instant::now();
    let region = map(file.as_ref(), len, offset, opts)?;
    // By default only the touches are timed; --populate and --eager add the mmap.
    let mut timed = Duration::ZERO;
    if o.populate || o.eager {
        timed = start.elapsed();
    }
    let retries = if o.retries { vma_lock_retries()? } else { 0 };
    timed += timed_touch(&region, o.pages, o.threads, o.write);
    let retries = if o.retries {
        vma_lock_retries()? - retries
    } else {
        0
    };
    region.unmap().or_fail("munmap")?;
    Ok((timed.as_nanos() as f64 / o.pages as f64, retries))
}

/// `vma_lock_retry` of `/proc/vmstat`: faults refused under the per-VMA lock and retried
/// under `mmap_lock`, by all processes since boot.
fn vma_lock_retries() -> Result<u64> {
    procfs::vmstat("vma_lock_retry")
        .or_fail("reading /proc/vmstat")?
        .ok_or_else(|| "/proc/vmstat has no vma_lock_retry (CONFIG_PER_VMA_LOCK_STATS)".into())
}

/// `touch`: ns per page of first touches, each round on a fresh mapping.
fn touch_bench(o: &Opts) -> Result<Vec<f64>> {
    if o.anon() && o.populate {
        // MAP_POPULATE faults the pages in before madvise() could be called: turn transparent
        // huge pages off for the whole process instead (EINVAL: a kernel without THP).
        // SAFETY: prctl with plain integer arguments touches no memory of ours (rustix has no
        // wrapper for PR_SET_THP_DISABLE).
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        match if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        } {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            r => r.or_fail("prctl(PR_SET_THP_DISABLE)")?,
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

/// Sums the mapping as u64 words: one load of every word.
fn sum_words(m: &Mapping) -> u64 {
    // SAFETY: Nothing writes the mapping while the slice lives: this process only reads it,
    // and the benchmark runs alone in the guest.
    let bytes = unsafe { m.as_slice() };
    // `black_box` hides where the words are, so the sum cannot be carried over between rounds.
    black_box(bytes).chunks_exact(8).fold(0u64, |sum, w| {
        sum.wrapping_add(u64::from_ne_bytes(w.try_into().expect("8 bytes")))
    })
}

/// `read`: GB/s of summing N pages mapped (and faulted in) once, before all rounds.
fn read_bench(o: &Opts) -> Result<Vec<f64>> {
    let len = o.pages * PAGE_SIZE;
    let region = if o.anon() {
        let write = MapOptions {
            write: true,
            ..MapOptions::default()
        };
        let region = map(None, len, 0, write)?;
        // Nonzero bytes: real pages, not the shared zero page, back the memory.
        region.fill(0x5a);
        region
    } else {
        map(Some(&open(&o.file, 0, len)?), len, 0, MapOptions::default())?
    };
    black_box(region.touch(0..o.pages, false));
    let rounds = (0..o.rounds)
        .map(|_| {
            let start = Instant::now();
            black_box(sum_words(&region));
            len as f64 / start.elapsed().as_nanos().max(1) as f64
        })
        .collect();
    region.unmap().or_fail("munmap")?;
    Ok(rounds)
}

/// `syscall-read`: GB/s of pread() of B bytes in C-byte chunks into one buffer.
fn syscall_read_bench(o: &Opts) -> Result<Vec<f64>> {
    let file = File::open(&o.file).or_fail(format_args!("open {}", o.file))?;
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
                Err(e) => return Err(e).or_fail(what()),
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
    let mut file = File::create(path).or_fail(format_args!("create {path}"))?;
    let chunk: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8 + 1).collect();
    let mut left = o.bytes;
    while left > 0 {
        let n = left.min(MIB);
        file.write_all(&chunk[..n])
            .or_fail(format_args!("write {path}"))?;
        left -= n;
    }
    file.sync_all().or_fail(format_args!("fsync {path}"))?;
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
    let cli = Cli::from_env("mapbench", 0);
    let opts = match parse(cli) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{USAGE}{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(why) => return maptest::cli::usage_error("mapbench", why),
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("mapbench: {why}");
            ExitCode::from(1)
        }
    }
}
