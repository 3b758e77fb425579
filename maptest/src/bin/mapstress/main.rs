//! mapstress: stress and fuzz tests of mapdrv, run as root in the guest with the module loaded.
//!
//! Two modes (`mapstress --help` shows the options):
//!
//! - `stress`: several processes, each with several threads, map random windows of the buffer,
//!   touch, write and discard their pages, and race `pread`/`pwrite`/`lseek` against it all for
//!   a few seconds. Every byte seen must be the one the contract says; afterwards the buffer
//!   must be intact and the debugfs counters back where they were.
//! - `fuzz`: one process makes a seeded, reproducible random sequence of system calls on a
//!   small pool of descriptors and mappings of the device, with arguments from the edges of
//!   each argument class (zero, one, the buffer size, just past it, 2^63, unaligned, negative,
//!   a mapping of the device itself as the user buffer, ...). For every call the result must be
//!   success or one of the errors the contract (or, where the kernel's own argument checks come
//!   first, the kernel) documents for that class of arguments; the expected set is derived from
//!   the arguments (see [`Fuzz::mmap_expect`](fuzz::Fuzz::mmap_expect) and its siblings in
//!   [`fuzz::expect`]). Mapped pages must always hold what the model of the fuzzer says.
//!
//! The fuzzer only ever writes the contract's bytes into the buffer (through `write`,
//! `pwrite`, shared mappings, and `read` into a shared mapping of the very bytes being read),
//! so the buffer always matches [`Expected`](maptest::Expected); private mappings hold whatever
//! the fuzzer wrote into them, which it tracks page by page.
//!
//! # What the fuzzer accepts besides the contract
//!
//! The contract's errors, plus exactly these, each where the kernel answers before (or instead
//! of) the driver:
//!
//! - The kernel's own argument checks, in its order: unaligned mmap offset EINVAL before the
//!   descriptor (EBADF); a length rounding to 0 or longer than the address space ENOMEM; an
//!   offset whose end overflows EOVERFLOW; MAP_SHARED|PROT_WRITE without FMODE_WRITE and any
//!   mmap of an O_WRONLY descriptor EACCES; ENOMEM also for a mapping longer than 2^40 (no
//!   room) or a private writable one longer than RAM (overcommit); munmap/mremap/mprotect/
//!   madvise/msync range and flag checks (EINVAL, ENOMEM for unmapped ranges, EFAULT for
//!   mremap of nothing); `pread`/`pwrite` at a negative offset or whose end overflows EINVAL;
//!   `access_ok()` EFAULT, which between the 4-level and 5-level user limits may or may not
//!   fire (the paging mode decides).
//! - msync(MS_SYNC) of a MAP_SHARED mapping: success (the driver's `fsync` has nothing to do).
//! - lseek SEEK_DATA/SEEK_HOLE (or any other whence): EINVAL, as the contract says.
//! - madvise: per advice, what the VM does with a VM_MIXEDMAP|VM_DONTEXPAND file mapping
//!   (see [`Fuzz::advice_expect`](fuzz::Fuzz::advice_expect)); KSM/THP advice may be invalid
//!   (EINVAL) for the kernel.
//! - ioctl: commands the VFS handles itself (FIOCLEX, FIGETBSZ, ...) are never sent.
//!
//! Output: progress lines starting with `# `, then one summary line, `RESULT: MODE ok ...` or
//! `RESULT: MODE FAIL REASON`. Exit status 0 on success, 1 on failure, 2 on a usage error.
//! Everything is bounded: iterations, wall-clock time, and `alarm` watchdogs in every process.
//!
//! # The program's parts
//!
//! - [`signals`]: the watchdogs, the fatal-signal handler that still prints the RESULT line,
//!   and the table of `stress`'s children it kills;
//! - [`contents`]: the contract's bytes held in memory, and the checks both modes make at the
//!   end (the whole buffer read back, the driver's counters);
//! - [`stress`]: the processes and threads of `stress`;
//! - [`fuzz`]: the fuzzer: its model of the expected results, its operations and its
//!   generator of calls.

mod contents;
mod fuzz;
mod signals;
mod stress;

use std::process::ExitCode;

use maptest::cli::{Arg, Cli, ValueExt};
use maptest::device::DEV_NODE;
use maptest::errors::one_line;
use maptest::process;
use maptest::rng::seed_from_time;
use maptest::PAGE_SIZE;

const HELP: &str = "\
mapstress: stress and fuzz tests of the mapdrv driver (run as root, module loaded)

USAGE:
    mapstress [--device PATH] stress [--procs N] [--threads N] [--seconds N] [--seed S]
    mapstress [--device PATH] fuzz [--iterations N] [--seconds N] [--seed S] [--trace]

stress: N processes (default 8), each opening the device and running N threads
  (default 4) for N seconds (default 5): random mmap windows (shared, private,
  populated), page touches checked against the contract, writes of the
  contract's bytes, private copy-on-write writes, MADV_DONTNEED, and concurrent
  pread/pwrite/lseek. Then the buffer and the debugfs counters are checked.

fuzz: a seeded random sequence of system calls (open, close, mmap, munmap,
  mremap, mprotect, madvise, msync, fork, read, write, pread, pwrite, lseek,
  ioctl) with edge-case arguments; every result must be one the contract allows
  for those arguments. Stops after N iterations (default 20000) or N seconds
  (default 60; stopping on time is not a failure). `--seed S` reproduces a run;
  `--trace` prints every call.

Prints progress lines starting with `# ` and ends with one line
`RESULT: MODE ok ...` or `RESULT: MODE FAIL REASON`. Exit status: 0 success,
1 failure, 2 usage error.

OPTIONS:
    --device PATH  the device node (default /dev/mapdrv)
    -h, --help     print this help
";

/// The page size, as a length or an offset in the buffer.
const PAGE: u64 = PAGE_SIZE as u64;

/// The most processes and threads `stress` runs.
const MAX_PROCS: usize = 64;
const MAX_THREADS: usize = 64;

/// Extra time the watchdogs allow past `--seconds`.
const WATCHDOG_SLACK: u64 = 90;

// ---------------------------------------------------------------------------------------------
// Arguments.
// ---------------------------------------------------------------------------------------------

struct StressOpts {
    procs: usize,
    threads: usize,
    seconds: u64,
    seed: u64,
}

struct FuzzOpts {
    iterations: u64,
    seconds: u64,
    seed: u64,
    trace: bool,
}

enum Mode {
    Stress(StressOpts),
    Fuzz(FuzzOpts),
}

struct Args {
    device: String,
    mode: Mode,
}

/// What the command line asks for.
enum Command {
    Help,
    Run(Args),
}

/// A number, decimal or `0x` hexadecimal (seeds are often given in hex).
fn parse_u64(opt: &str, v: &str) -> Result<u64, String> {
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| format!("{opt} needs a number, not {v:?}"))
}

fn parse_args(cli: &mut Cli) -> Result<Command, String> {
    let mut device = DEV_NODE.to_owned();
    let mut mode: Option<String> = None;
    // The mode's options, checked against the mode once it is known.
    let mut opts: Vec<(&str, Option<String>)> = Vec::new();
    while let Some(arg) = cli.next()? {
        let valued = match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Command::Help),
            Arg::Long("device") => {
                device = cli
                    .string("--device")
                    .map_err(|_| "--device needs a path")?;
                continue;
            }
            Arg::Long("trace") => {
                opts.push(("--trace", None));
                continue;
            }
            Arg::Long("procs") => "--procs",
            Arg::Long("threads") => "--threads",
            Arg::Long("seconds") => "--seconds",
            Arg::Long("seed") => "--seed",
            Arg::Long("iterations") => "--iterations",
            Arg::Value(v) if mode.is_none() => {
                mode = Some(v.string().map_err(|e| e.to_string())?);
                continue;
            }
            other => return Err(Cli::unexpected(other)),
        };
        opts.push((valued, Some(cli.string(valued)?)));
    }
    let mode = mode.ok_or("no mode given: stress or fuzz")?;
    let allowed: &[&str] = match mode.as_str() {
        "stress" => &["--procs", "--threads", "--seconds", "--seed"],
        "fuzz" => &["--iterations", "--seconds", "--seed", "--trace"],
        m => return Err(format!("unknown mode {m:?}: stress or fuzz")),
    };
    let mut procs = 8;
    let mut threads = 4;
    let mut seconds = None;
    let mut seed = None;
    let mut iterations = 20000;
    let mut trace = false;
    for (name, value) in opts {
        if !allowed.contains(&name) {
            return Err(format!("{name} is not an option of {mode}"));
        }
        let v = value.as_deref().unwrap_or("");
        match name {
            "--procs" => procs = parse_u64(name, v)?,
            "--threads" => threads = parse_u64(name, v)?,
            "--seconds" => seconds = Some(parse_u64(name, v)?),
            "--seed" => seed = Some(parse_u64(name, v)?),
            "--iterations" => iterations = parse_u64(name, v)?,
            _ => trace = true,
        }
    }
    let seed = seed.unwrap_or_else(seed_from_time);
    let mode = if mode == "stress" {
        let seconds = seconds.unwrap_or(5);
        if !(1..=MAX_PROCS as u64).contains(&procs) {
            return Err(format!("--procs must be 1..={MAX_PROCS}"));
        }
        if !(1..=MAX_THREADS as u64).contains(&threads) {
            return Err(format!("--threads must be 1..={MAX_THREADS}"));
        }
        if !(1..=3600).contains(&seconds) {
            return Err("--seconds must be 1..=3600".into());
        }
        Mode::Stress(StressOpts {
            procs: procs as usize,
            threads: threads as usize,
            seconds,
            seed,
        })
    } else {
        let seconds = seconds.unwrap_or(60);
        if !(1..=86400).contains(&seconds) {
            return Err("--seconds must be 1..=86400".into());
        }
        Mode::Fuzz(FuzzOpts {
            iterations,
            seconds,
            seed,
            trace,
        })
    };
    Ok(Command::Run(Args { device, mode }))
}

fn main() -> ExitCode {
    let mut cli = Cli::from_env("mapstress", 0);
    let args = match parse_args(&mut cli) {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(args)) => args,
        Err(e) => return cli.usage_error(e),
    };
    let (mode, result) = match &args.mode {
        Mode::Stress(o) => ("stress", stress::run(&args.device, o)),
        Mode::Fuzz(o) => ("fuzz", fuzz::run(&args.device, o)),
    };
    // The run is over: no watchdog any more.
    process::alarm(0);
    match result {
        Ok(summary) => {
            println!("RESULT: {mode} ok {summary}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("RESULT: {mode} FAIL {}", one_line(&why));
            ExitCode::from(1)
        }
    }
}
