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
//!   the arguments (see [`Fuzz::mmap_expect`] and its siblings). Mapped pages must always hold
//!   what the model of the fuzzer says.
//!
//! The fuzzer only ever writes the contract's bytes into the buffer (through `write`,
//! `pwrite`, shared mappings, and `read` into a shared mapping of the very bytes being read),
//! so the buffer always matches [`Expected`]; private mappings hold whatever the fuzzer wrote
//! into them, which it tracks page by page.
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
//!   (see [`Fuzz::advice_expect`]); KSM/THP advice may be invalid (EINVAL) for the kernel.
//! - ioctl: commands the VFS handles itself (FIOCLEX, FIGETBSZ, ...) are never sent.
//!
//! Output: progress lines starting with `# `, then one summary line, `RESULT: MODE ok ...` or
//! `RESULT: MODE FAIL REASON`. Exit status 0 on success, 1 on failure, 2 on a usage error.
//! Everything is bounded: iterations, wall-clock time, and `alarm` watchdogs in every process.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libc::{c_int, c_long, c_void};
use maptest::{
    buffer_size, describe, errno_name, signal_name, Expected, MapOptions, Mapping, Mismatch, Stats,
    PAGE_SIZE, STATS_PATH,
};

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

/// The node the driver's device class makes devtmpfs create.
const DEV_NODE: &str = "/dev/mapdrv";

const PAGE: u64 = PAGE_SIZE as u64;

/// The highest user address `access_ok()` accepts on x86-64 (`USER_PTR_MAX`, which is
/// `TASK_SIZE_MAX`) with 4-level paging, and with 5-level paging (LA57).
const USER_MAX_4L: u64 = (1 << 47) - PAGE;
const USER_MAX_5L: u64 = (1 << 56) - PAGE;

/// The most `read`/`write` transfer in one call (`MAX_RW_COUNT`, `INT_MAX & PAGE_MASK`).
const MAX_RW_COUNT: u64 = 0x7fff_f000;

/// An address in the kernel half: never a user address, whatever the paging mode.
const KERNEL_ADDR: u64 = 0xffff_8880_0000_0000;

/// Below this, nothing is mapped in a process that does not ask for it (`mmap_min_addr` is at
/// most this); checked at start-up against `/proc/self/maps`.
const LOW_LIMIT: u64 = 0x10000;

/// A mapping this long may find no room in the 47-bit address space: `ENOMEM` is then the
/// kernel's answer before the driver is asked.
const NO_ROOM_LEN: u64 = 1 << 40;

/// `Expected` bytes kept in memory for fast comparison and as `write` sources.
const IMAGE_MAX: usize = 8 << 20;

/// The largest transfer made to or from an ordinary (heap) buffer.
const HEAP_LIMIT: u64 = 4 << 20;

/// The most processes and threads `stress` runs.
const MAX_PROCS: usize = 64;
const MAX_THREADS: usize = 64;

/// Extra time the watchdogs allow past `--seconds`.
const WATCHDOG_SLACK: u64 = 90;
/// A forked child of the fuzzer is killed after this long.
const CHILD_ALARM: u32 = 30;

// ---------------------------------------------------------------------------------------------
// Errors: errno and signal names, one-line reasons.
// ---------------------------------------------------------------------------------------------

/// How a process ended, from its wait status; `None` if it exited with status 0.
fn wait_status_problem(status: c_int) -> Option<String> {
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => None,
            code => Some(format!("exited with status {code}")),
        }
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let mut s = format!("killed by signal {sig} ({})", signal_name(sig));
        if sig == libc::SIGALRM {
            s += ": its watchdog fired";
        }
        Some(s)
    } else {
        Some(format!("unexpected wait status {status:#x}"))
    }
}

/// Collapses a reason onto one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// A small seeded PRNG (splitmix64): reproducible runs without a random-number crate.
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `0..n` (`n > 0`), as an index.
    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// A number in `lo..=hi` (`lo <= hi`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        match (hi - lo).checked_add(1) {
            Some(n) => lo + self.below(n),
            None => self.next_u64(),
        }
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// An index into `weights`, chosen with probability proportional to its weight.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }
}

/// A seed derived from `seed` and two numbers (a process, a thread, a step).
fn derive_seed(seed: u64, a: u64, b: u64) -> u64 {
    let mut r = Rng::new(seed ^ a.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ b.rotate_left(29));
    r.next_u64();
    r.next_u64()
}

/// A seed from the clock, for runs without `--seed`.
fn seed_from_time() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    derive_seed(now.as_nanos() as u64, u64::from(std::process::id()), 0)
}

// ---------------------------------------------------------------------------------------------
// The contract's contents, with a fast in-memory copy.
// ---------------------------------------------------------------------------------------------

struct Contents {
    expected: Expected,
    size: u64,
    pages: u64,
    /// The expected bytes of `[0, min(size, IMAGE_MAX))`.
    image: Vec<u8>,
}

impl Contents {
    fn new(pages: usize) -> Contents {
        let expected = Expected::new(pages);
        let size = expected.len();
        let image = (0..size.min(IMAGE_MAX)).map(|o| expected.byte(o)).collect();
        Contents {
            expected,
            size: size as u64,
            pages: pages as u64,
            image,
        }
    }

    fn byte(&self, off: u64) -> u8 {
        match self.image.get(off as usize) {
            Some(&b) => b,
            None => self.expected.byte(off as usize),
        }
    }

    /// The expected bytes of `[off, off + len)`, which must lie inside the buffer.
    fn slice(&self, off: u64, len: u64) -> Cow<'_, [u8]> {
        let (o, l) = (off as usize, len as usize);
        match self.image.get(o..o + l) {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned((o..o + l).map(|x| self.expected.byte(x)).collect()),
        }
    }

    /// Compares `data`, the buffer from offset `off` on, with the contract.
    fn check(&self, off: u64, data: &[u8]) -> Result<(), Mismatch> {
        let (o, l) = (off as usize, data.len());
        if self.image.get(o..o + l) == Some(data) {
            return Ok(());
        }
        self.expected.check(o, data)
    }
}

/// Opens the device and learns the size of its buffer.
fn open_contents(dev: &str) -> Result<Contents, String> {
    let f = File::open(dev).map_err(|e| format!("open {dev}: {}", describe(&e)))?;
    let size =
        buffer_size(&f).map_err(|e| format!("lseek(SEEK_END) on {dev}: {}", describe(&e)))?;
    if size == 0 || size % PAGE != 0 {
        return Err(format!(
            "buffer size {size} (from lseek SEEK_END) is not a positive multiple of {PAGE}"
        ));
    }
    let pages =
        usize::try_from(size / PAGE).map_err(|_| format!("buffer size {size} is too big"))?;
    Ok(Contents::new(pages))
}

/// `pread` of exactly `buf.len()` bytes at `off`.
fn pread_exact(fd: RawFd, buf: &mut [u8], off: u64) -> Result<(), String> {
    let mut done = 0;
    while done < buf.len() {
        let at = off + done as u64;
        // SAFETY: The destination is the unfilled part of `buf`, valid for writing.
        let n = unsafe {
            libc::pread(
                fd,
                buf[done..].as_mut_ptr().cast(),
                buf.len() - done,
                at as libc::off_t,
            )
        };
        match n {
            0 => {
                return Err(format!(
                    "pread at {at}: end of file {} bytes early",
                    buf.len() - done
                ))
            }
            n if n < 0 => {
                let e = errno();
                if e != libc::EINTR {
                    return Err(format!(
                        "pread of {} bytes at {at}: {}",
                        buf.len() - done,
                        errno_name(e)
                    ));
                }
            }
            n => done += n as usize,
        }
    }
    Ok(())
}

/// Reads the whole buffer through a new descriptor and compares it with the contract.
fn verify_device(dev: &str, c: &Contents) -> Result<(), String> {
    let f = File::open(dev).map_err(|e| format!("open {dev}: {}", describe(&e)))?;
    verify_fd(f.as_raw_fd(), c, 0, c.size)
}

/// Compares `[off, off + len)` of the buffer, read with `pread` on `fd`, with the contract.
fn verify_fd(fd: RawFd, c: &Contents, off: u64, len: u64) -> Result<(), String> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; len.min(CHUNK) as usize];
    let mut at = off;
    while at < off + len {
        let n = (off + len - at).min(CHUNK) as usize;
        pread_exact(fd, &mut buf[..n], at)?;
        c.check(at, &buf[..n])
            .map_err(|m| format!("pread of the buffer: {m}"))?;
        at += n as u64;
    }
    Ok(())
}

fn read_stats() -> Result<Stats, String> {
    Stats::read().map_err(|e| format!("reading {STATS_PATH}: {}", describe(&e)))
}

/// Compares the live-object counters with a baseline.
fn check_counters(when: &str, base: &Stats, now: &Stats) -> Result<(), String> {
    let mut bad = Vec::new();
    if now.mappings != base.mappings {
        bad.push(format!(
            "mappings is {}, baseline {}",
            now.mappings, base.mappings
        ));
    }
    if now.opens != base.opens {
        bad.push(format!("opens is {}, baseline {}", now.opens, base.opens));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{when}: {}", bad.join(", ")))
    }
}

/// A pipe: (read end, write end).
fn pipe() -> Result<(File, File), String> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", errno_name(errno())));
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and nothing else owns them.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Waits for `pid`, retrying on EINTR; returns its wait status.
fn wait_for(pid: libc::pid_t) -> Result<c_int, String> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is valid for writing.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(format!("waitpid {pid}: {}", errno_name(e)));
        }
    }
}

fn flush_all() {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
}

/// Ends the process at once, without destructors or exit handlers (for forked children).
fn exit_now(code: c_int) -> ! {
    flush_all();
    // SAFETY: `_exit` ends the process; nothing of the parent's state is touched.
    unsafe { libc::_exit(code) }
}

// ---------------------------------------------------------------------------------------------
// Watchdogs and fatal signals: one RESULT line even when the process is about to die.
// ---------------------------------------------------------------------------------------------

/// Which mode a fatal signal reports (0: none, 1: stress, 2: fuzz).
static WATCH_MODE: AtomicU8 = AtomicU8::new(0);
static WATCH_SEED: AtomicU64 = AtomicU64::new(0);
static WATCH_STEP: AtomicU64 = AtomicU64::new(0);
static WATCH_SECS: AtomicU64 = AtomicU64::new(0);
/// Children of `stress`, killed when the parent's watchdog fires.
static KIDS: [AtomicI32; MAX_PROCS] = [const { AtomicI32::new(0) }; MAX_PROCS];

/// A message built without allocating, for signal handlers.
struct SigMsg {
    buf: [u8; 400],
    len: usize,
}

impl SigMsg {
    fn s(&mut self, s: &str) {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn num(&mut self, mut v: u64, base: u64) {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b"0123456789abcdef"[(v % base) as usize];
            n += 1;
            v /= base;
            if v == 0 {
                break;
            }
        }
        if base == 16 {
            self.s("0x");
        }
        while n > 0 {
            n -= 1;
            let d = [digits[n]];
            // The digits are ASCII.
            self.s(std::str::from_utf8(&d).unwrap_or("?"));
        }
    }
}

/// Handler of SIGALRM (the watchdog), SIGSEGV and SIGBUS: prints the RESULT line, kills the
/// children of `stress`, and exits. Only async-signal-safe calls.
extern "C" fn on_fatal_signal(sig: c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    let mode = WATCH_MODE.load(Ordering::Relaxed);
    let mut m = SigMsg {
        buf: [0; 400],
        len: 0,
    };
    m.s("\nRESULT: ");
    m.s(if mode == 1 { "stress" } else { "fuzz" });
    m.s(" FAIL ");
    if sig == libc::SIGALRM {
        m.s("watchdog: still running ");
        m.num(WATCH_SECS.load(Ordering::Relaxed), 10);
        m.s(" s after the start");
    } else {
        m.s("killed by ");
        m.s(signal_name(sig));
        if !info.is_null() {
            m.s(" at address ");
            // SAFETY: The kernel passes a valid siginfo to an SA_SIGINFO handler; for SIGSEGV
            // and SIGBUS it holds the faulting address.
            m.num(unsafe { (*info).si_addr() } as u64, 16);
        }
    }
    if mode == 2 {
        m.s(" at step ");
        m.num(WATCH_STEP.load(Ordering::Relaxed), 10);
        m.s(" seed=");
        m.num(WATCH_SEED.load(Ordering::Relaxed), 10);
    }
    m.s("\n");
    // SAFETY: write, kill and _exit are async-signal-safe; `m.buf` holds `m.len` bytes.
    unsafe {
        libc::write(1, m.buf.as_ptr().cast(), m.len);
        for k in &KIDS {
            let pid = k.load(Ordering::Relaxed);
            if pid > 0 {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        libc::_exit(1);
    }
}

/// Installs [`on_fatal_signal`] for `sigs`.
fn install_fatal_handlers(sigs: &[c_int]) {
    for &sig in sigs {
        // SAFETY: An all-zero sigaction is a valid value to fill in.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        let handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) = on_fatal_signal;
        sa.sa_sigaction = handler as libc::sighandler_t;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
        // SAFETY: `sa` is initialised; the handler only makes async-signal-safe calls.
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Restores the default action of the signals the parent handles (in a forked child, whose
/// death the parent reports) and arms the child's own watchdog.
fn child_signals(alarm_secs: u32) {
    for sig in [libc::SIGALRM, libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: SIG_DFL is always a valid disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    WATCH_MODE.store(0, Ordering::Relaxed);
    for k in &KIDS {
        k.store(0, Ordering::Relaxed);
    }
    // SAFETY: alarm takes a plain number.
    unsafe { libc::alarm(alarm_secs) };
}

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

fn parse_u64(opt: &str, v: &str) -> Result<u64, String> {
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| format!("{opt} needs a number, not {v:?}"))
}

fn parse_args() -> Result<Args, String> {
    let mut device = DEV_NODE.to_owned();
    let mut mode: Option<String> = None;
    let mut opts: Vec<(String, Option<String>)> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--device" => {
                device = match inline {
                    Some(v) => v,
                    None => it.next().ok_or("--device needs a path")?,
                }
            }
            "--trace" => opts.push((name, None)),
            "--procs" | "--threads" | "--seconds" | "--seed" | "--iterations" => {
                let v = match inline {
                    Some(v) => v,
                    None => it.next().ok_or(format!("{name} needs a value"))?,
                };
                opts.push((name, Some(v)));
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s} (see --help)")),
            s => {
                if mode.is_some() {
                    return Err(format!("unexpected argument {s:?} (see --help)"));
                }
                mode = Some(s.to_owned());
            }
        }
    }
    let mode = mode.ok_or("no mode given: stress or fuzz (see --help)")?;
    let allowed: &[&str] = match mode.as_str() {
        "stress" => &["--procs", "--threads", "--seconds", "--seed"],
        "fuzz" => &["--iterations", "--seconds", "--seed", "--trace"],
        m => return Err(format!("unknown mode {m:?}: stress or fuzz (see --help)")),
    };
    let mut procs = 8;
    let mut threads = 4;
    let mut seconds = None;
    let mut seed = None;
    let mut iterations = 20000;
    let mut trace = false;
    for (name, value) in opts {
        if !allowed.contains(&name.as_str()) {
            return Err(format!("{name} is not an option of {mode} (see --help)"));
        }
        let v = value.as_deref().unwrap_or("");
        match name.as_str() {
            "--procs" => procs = parse_u64(&name, v)?,
            "--threads" => threads = parse_u64(&name, v)?,
            "--seconds" => seconds = Some(parse_u64(&name, v)?),
            "--seed" => seed = Some(parse_u64(&name, v)?),
            "--iterations" => iterations = parse_u64(&name, v)?,
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
    Ok(Args { device, mode })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mapstress: {e}");
            return ExitCode::from(2);
        }
    };
    let (mode, result) = match &args.mode {
        Mode::Stress(o) => ("stress", run_stress(&args.device, o)),
        Mode::Fuzz(o) => ("fuzz", run_fuzz(&args.device, o)),
    };
    // SAFETY: alarm takes a plain number; 0 cancels the watchdog.
    unsafe { libc::alarm(0) };
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

// ---------------------------------------------------------------------------------------------
// stress
// ---------------------------------------------------------------------------------------------

/// What every process and thread of `stress` shares.
struct StressCtx<'a> {
    dev: &'a str,
    c: &'a Contents,
    seed: u64,
    deadline: Instant,
    threads: usize,
}

fn run_stress(dev: &str, o: &StressOpts) -> Result<String, String> {
    println!("# seed: {}", o.seed);
    let c = open_contents(dev)?;
    println!(
        "# {dev}: {} pages ({} bytes); {} processes x {} threads for {} s",
        c.pages, c.size, o.procs, o.threads, o.seconds
    );
    let base = read_stats()?;
    println!(
        "# baseline: faults {} mappings {} opens {}",
        base.faults, base.mappings, base.opens
    );

    WATCH_MODE.store(1, Ordering::Relaxed);
    WATCH_SECS.store(o.seconds + WATCHDOG_SLACK, Ordering::Relaxed);
    install_fatal_handlers(&[libc::SIGALRM]);
    // SAFETY: alarm takes a plain number.
    unsafe { libc::alarm((o.seconds + WATCHDOG_SLACK) as u32) };

    let start = Instant::now();
    let ctx = StressCtx {
        dev,
        c: &c,
        seed: o.seed,
        deadline: start + Duration::from_secs(o.seconds),
        threads: o.threads,
    };
    let mut kids: Vec<(libc::pid_t, File)> = Vec::new();
    let mut errors = Vec::new();
    for (p, kid) in KIDS.iter().enumerate().take(o.procs) {
        let (read_end, write_end) = pipe()?;
        flush_all();
        // SAFETY: This process is single-threaded (threads run only in the children), so the
        // child's copy of it is consistent; the child never returns from `stress_child`.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => {
                errors.push(format!("fork of process {p}: {}", errno_name(errno())));
                break;
            }
            0 => {
                drop(read_end);
                stress_child(&ctx, p, write_end)
            }
            _ => {
                kid.store(pid, Ordering::Relaxed);
                drop(write_end);
                kids.push((pid, read_end));
            }
        }
    }

    let mut ops = 0u64;
    for (p, (pid, mut pipe)) in kids.into_iter().enumerate() {
        let status = wait_for(pid);
        KIDS[p].store(0, Ordering::Relaxed);
        let mut report = String::new();
        let _ = pipe.read_to_string(&mut report);
        let report = report.trim().to_owned();
        match status {
            Err(e) => errors.push(format!("process {p}: {e}")),
            Ok(status) => {
                if let Some(rest) = report.strip_prefix("fail ") {
                    errors.push(format!("process {p}: {rest}"));
                } else if let Some(problem) = wait_status_problem(status) {
                    errors.push(format!("process {p} {problem}"));
                } else if let Some(n) = report
                    .strip_prefix("ok ")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    ops += n;
                } else {
                    errors.push(format!("process {p} exited without a report ({report:?})"));
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    println!(
        "# all {} processes done after {elapsed:.1} s: {ops} operations",
        o.procs
    );

    verify_device(dev, &c).map_err(|e| format!("after the run: {e}"))?;
    println!("# the whole buffer matches the contract (pread)");
    let now = read_stats()?;
    check_counters("after all processes exited", &base, &now)?;
    let faults = now.faults.saturating_sub(base.faults);
    println!(
        "# counters: faults +{faults}, mappings {} and opens {} back to the baseline",
        now.mappings, now.opens
    );
    if faults == 0 {
        return Err(format!(
            "faults did not grow (still {}) although pages were touched",
            now.faults
        ));
    }
    Ok(format!(
        "procs={} threads={} seconds={} ops={ops} faults={faults}",
        o.procs, o.threads, o.seconds
    ))
}

/// A process of `stress`: runs its threads and writes `ok OPS` or `fail REASON` to `report`.
fn stress_child(ctx: &StressCtx, p: usize, report: File) -> ! {
    child_signals(
        (ctx.deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
            + 60) as u32,
    );
    let result = stress_process(ctx, p);
    let (msg, code) = match result {
        Ok(ops) => (format!("ok {ops}\n"), 0),
        Err(e) => {
            let mut e = one_line(&e);
            e.truncate(3000);
            (format!("fail {e}\n"), 1)
        }
    };
    let _ = (&report).write_all(msg.as_bytes());
    exit_now(code)
}

fn stress_process(ctx: &StressCtx, p: usize) -> Result<u64, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(ctx.dev)
        .map_err(|e| format!("open {} O_RDWR: {}", ctx.dev, describe(&e)))?;
    // One mapping all threads of the process share, touched, written and discarded at once.
    let common_pages = ctx.c.pages.min(64);
    let common = Mapping::new(
        &file,
        0,
        (common_pages * PAGE) as usize,
        MapOptions {
            write: true,
            ..MapOptions::default()
        },
    )
    .map_err(|e| format!("mmap of the shared window: {}", describe(&e)))?;
    let stop = AtomicBool::new(false);
    let results: Vec<Result<u64, String>> = thread::scope(|s| {
        let handles: Vec<_> = (0..ctx.threads)
            .map(|t| {
                let (file, common, stop) = (&file, &common, &stop);
                s.spawn(move || {
                    let io = if ctx.threads == 1 {
                        p % 2 == 1
                    } else {
                        t % 4 == 1
                    };
                    let mut rng = Rng::new(derive_seed(ctx.seed, p as u64, t as u64));
                    let r = if io {
                        io_thread(ctx, file, &mut rng, stop)
                    } else {
                        map_thread(ctx, file, common, &mut rng, stop)
                    };
                    let kind = if io { "pread/pwrite" } else { "mmap" };
                    r.map_err(|e| {
                        stop.store(true, Ordering::Relaxed);
                        format!("thread {t} ({kind}): {e}")
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    });
    let mut ops = 0;
    for r in results {
        ops += r?;
    }
    Ok(ops)
}

/// Checks `len` bytes of `m` from `off` against `want` (the bytes the mapping must show, which
/// hold the buffer from offset `dev_off + off`).
fn check_mapped(
    m: &Mapping,
    off: usize,
    len: usize,
    dev_off: u64,
    want: &[u8],
    what: &str,
) -> Result<(), String> {
    for (i, &w) in want.iter().enumerate().take(len) {
        let got = m.read(off + i);
        if got != w {
            let mis = Mismatch {
                offset: dev_off as usize + off + i,
                want: w,
                got,
            };
            return Err(format!("{what}: {mis}"));
        }
    }
    Ok(())
}

/// A random span inside a page: (offset in the page, length).
fn page_span(rng: &mut Rng) -> (usize, usize) {
    if rng.chance(1, 8) {
        return (0, PAGE_SIZE);
    }
    let off = rng.index(PAGE_SIZE);
    let len = rng.range(1, 64.min((PAGE_SIZE - off) as u64)) as usize;
    (off, len)
}

/// One thread mapping random windows of the buffer.
fn map_thread(
    ctx: &StressCtx,
    file: &File,
    common: &Mapping,
    rng: &mut Rng,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let mut ops = 0;
    let mut iter = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < ctx.deadline {
        iter += 1;
        let r = if rng.chance(1, 4) {
            common_op(ctx, common, rng)
        } else {
            window_op(ctx, file, rng)
        };
        ops += r.map_err(|e| format!("iteration {iter}: {e}"))?;
    }
    Ok(ops)
}

/// Reads, writes (the contract's bytes) or discards pages of the process's shared mapping.
fn common_op(ctx: &StressCtx, m: &Mapping, rng: &mut Rng) -> Result<u64, String> {
    let pages = m.len() / PAGE_SIZE;
    let k = rng.index(pages);
    let (off, len) = page_span(rng);
    let at = k * PAGE_SIZE + off;
    match rng.below(4) {
        0 | 1 => {
            let want = ctx.c.slice(at as u64, len as u64);
            check_mapped(
                m,
                at,
                len,
                0,
                &want,
                "read through the shared MAP_SHARED window",
            )?;
        }
        2 => {
            let want = ctx.c.slice(at as u64, len as u64);
            for (i, &b) in want.iter().enumerate() {
                m.write(at + i, b);
            }
        }
        _ => {
            let n = rng.range(1, (pages - k) as u64) as usize;
            m.madvise(k * PAGE_SIZE, n * PAGE_SIZE, libc::MADV_DONTNEED)
                .map_err(|e| {
                    format!(
                        "madvise(MADV_DONTNEED) of pages {k}..{} of the shared window: {}",
                        k + n,
                        describe(&e)
                    )
                })?;
        }
    }
    Ok(1)
}

/// Maps a random window, touches, writes and discards its pages, unmaps it.
fn window_op(ctx: &StressCtx, file: &File, rng: &mut Rng) -> Result<u64, String> {
    let c = ctx.c;
    let first = rng.below(c.pages);
    let count = rng.range(1, (c.pages - first).min(64));
    let opts = MapOptions {
        write: rng.chance(1, 2),
        exec: false,
        private: rng.chance(1, 4),
        populate: rng.chance(1, 4),
    };
    let dev_off = first * PAGE;
    let what = format!(
        "mapping of pages {first}..{} ({})",
        first + count,
        opts.describe()
    );
    let m = Mapping::new(file, dev_off, (count * PAGE) as usize, opts)
        .map_err(|e| format!("mmap: {what}: {}", describe(&e)))?;
    let mut ops = 1;
    // MAP_PRIVATE pages this thread wrote: their contents.
    let mut shadow: Vec<Option<Vec<u8>>> = vec![None; count as usize];
    let want_at = |shadow: &[Option<Vec<u8>>], k: usize, off: usize, len: usize| -> Vec<u8> {
        match &shadow[k] {
            Some(p) => p[off..off + len].to_vec(),
            None => c
                .slice(dev_off + (k * PAGE_SIZE + off) as u64, len as u64)
                .into_owned(),
        }
    };

    // Reads a random span of a random page through the mapping and checks it.
    let check_random = |rng: &mut Rng, shadow: &[Option<Vec<u8>>], how: &str| {
        let k = rng.index(count as usize);
        let (off, len) = page_span(rng);
        let want = want_at(shadow, k, off, len);
        let at = k * PAGE_SIZE + off;
        check_mapped(&m, at, len, dev_off, &want, &format!("{how} the {what}"))
    };

    for _ in 0..rng.range(1, 4) {
        check_random(rng, &shadow, "read through")?;
        ops += 1;
    }
    if opts.write && !opts.private && rng.chance(1, 2) {
        let k = rng.index(count as usize);
        let (off, len) = page_span(rng);
        let at = k * PAGE_SIZE + off;
        for (i, &b) in c.slice(dev_off + at as u64, len as u64).iter().enumerate() {
            m.write(at + i, b);
        }
        ops += 1;
    }
    if opts.write && opts.private && rng.chance(1, 2) {
        let k = rng.index(count as usize);
        let (off, len) = page_span(rng);
        let at = k * PAGE_SIZE + off;
        let page = shadow[k]
            .get_or_insert_with(|| c.slice(dev_off + (k * PAGE_SIZE) as u64, PAGE).into_owned());
        for i in 0..len {
            let b = rng.next_u64() as u8;
            page[off + i] = b;
            m.write(at + i, b);
        }
        let want = want_at(&shadow, k, off, len);
        check_mapped(
            &m,
            at,
            len,
            dev_off,
            &want,
            &format!("our own writes through the {what}"),
        )?;
        // Copy-on-write: the device itself still holds the contract's bytes.
        let mut got = vec![0u8; len];
        pread_exact(file.as_raw_fd(), &mut got, dev_off + at as u64)?;
        c.check(dev_off + at as u64, &got)
            .map_err(|mis| format!("pread after writes through a MAP_PRIVATE mapping: {mis}"))?;
        ops += 2;
    }
    if rng.chance(1, 3) {
        m.madvise(0, m.len(), libc::MADV_DONTNEED)
            .map_err(|e| format!("madvise(MADV_DONTNEED) of the {what}: {}", describe(&e)))?;
        shadow.iter_mut().for_each(|s| *s = None);
        check_random(rng, &shadow, "re-read after MADV_DONTNEED of")?;
        ops += 2;
    }
    drop(m);
    Ok(ops + 1)
}

/// `pread`/`pwrite`/`read`/`write` as a plain result.
fn io_result(n: isize) -> Result<u64, i32> {
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as u64)
    }
}

fn show_io(r: Result<u64, i32>) -> String {
    match r {
        Ok(n) => format!("{n}"),
        Err(e) => errno_name(e),
    }
}

/// `lseek` as a plain result.
fn lseek_fd(fd: RawFd, off: i64, whence: c_int) -> Result<u64, i32> {
    // SAFETY: lseek touches no memory of ours.
    let r = unsafe { libc::lseek(fd, off, whence) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as u64)
    }
}

/// One thread doing `pread`/`pwrite` on the process's descriptor and `lseek` with
/// `read`/`write` on one of its own.
fn io_thread(
    ctx: &StressCtx,
    file: &File,
    rng: &mut Rng,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let c = ctx.c;
    let size = c.size;
    let own = OpenOptions::new()
        .read(true)
        .write(true)
        .open(ctx.dev)
        .map_err(|e| format!("open {} O_RDWR: {}", ctx.dev, describe(&e)))?;
    let (shared_fd, own_fd) = (file.as_raw_fd(), own.as_raw_fd());
    let mut buf = vec![0u8; 3 * PAGE_SIZE];
    let mut ops = 0u64;
    let mut iter = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < ctx.deadline {
        iter += 1;
        let fail = |what: String| format!("iteration {iter}: {what}");
        let off = rng.below(size + PAGE);
        let len = rng.below(3 * PAGE + 1);
        let n_exp = if off >= size { 0 } else { len.min(size - off) };
        match rng.below(8) {
            0..=2 => {
                // SAFETY: `buf` has room for `len` bytes.
                let r = io_result(unsafe {
                    libc::pread(
                        shared_fd,
                        buf.as_mut_ptr().cast(),
                        len as usize,
                        off as libc::off_t,
                    )
                });
                if r != Ok(n_exp) {
                    return Err(fail(format!(
                        "pread({len}) at {off}: got {}, expected {n_exp}",
                        show_io(r)
                    )));
                }
                c.check(off, &buf[..n_exp as usize])
                    .map_err(|m| fail(format!("pread({len}) at {off}: {m}")))?;
                ops += 1;
            }
            3 | 4 => {
                let len = len.min(2 * PAGE);
                let n_exp = if off >= size { 0 } else { len.min(size - off) };
                let src = c.slice(off.min(size), n_exp);
                let want = if len == 0 {
                    Ok(0)
                } else if off >= size {
                    Err(libc::ENOSPC)
                } else {
                    Ok(n_exp)
                };
                // SAFETY: The kernel reads at most `n_exp` bytes (the room before the end),
                // which `src` holds; with `len` 0 or past the end it reads nothing.
                let r = io_result(unsafe {
                    libc::pwrite(
                        shared_fd,
                        src.as_ptr().cast(),
                        len as usize,
                        off as libc::off_t,
                    )
                });
                if r != want {
                    return Err(fail(format!(
                        "pwrite({len}) of the contract's bytes at {off}: got {}, expected {}",
                        show_io(r),
                        show_io(want)
                    )));
                }
                ops += 1;
            }
            5 => {
                let pos = rng.below(size + 1);
                let r = lseek_fd(own_fd, pos as i64, libc::SEEK_SET);
                if r != Ok(pos) {
                    return Err(fail(format!("lseek({pos}, SEEK_SET): got {}", show_io(r))));
                }
                let n_exp = len.min(size - pos);
                // SAFETY: `buf` has room for `len` bytes.
                let r =
                    io_result(unsafe { libc::read(own_fd, buf.as_mut_ptr().cast(), len as usize) });
                if r != Ok(n_exp) {
                    return Err(fail(format!(
                        "read({len}) at position {pos}: got {}, expected {n_exp}",
                        show_io(r)
                    )));
                }
                c.check(pos, &buf[..n_exp as usize])
                    .map_err(|m| fail(format!("read({len}) at {pos}: {m}")))?;
                let r = lseek_fd(own_fd, 0, libc::SEEK_CUR);
                if r != Ok(pos + n_exp) {
                    return Err(fail(format!(
                        "lseek(0, SEEK_CUR) after read({len}) at {pos}: got {}, expected {}",
                        show_io(r),
                        pos + n_exp
                    )));
                }
                ops += 3;
            }
            6 => {
                let back = rng.below(size + 1);
                let pos = size - back;
                let r = lseek_fd(own_fd, -(back as i64), libc::SEEK_END);
                if r != Ok(pos) {
                    return Err(fail(format!(
                        "lseek(-{back}, SEEK_END): got {}, expected {pos}",
                        show_io(r)
                    )));
                }
                let len = len.min(2 * PAGE);
                let n_exp = len.min(size - pos);
                let src = c.slice(pos, n_exp);
                let want = if len == 0 {
                    Ok(0)
                } else if pos >= size {
                    Err(libc::ENOSPC)
                } else {
                    Ok(n_exp)
                };
                // SAFETY: The kernel reads at most `n_exp` bytes, which `src` holds.
                let r =
                    io_result(unsafe { libc::write(own_fd, src.as_ptr().cast(), len as usize) });
                if r != want {
                    return Err(fail(format!(
                        "write({len}) of the contract's bytes at position {pos}: got {}, expected {}",
                        show_io(r),
                        show_io(want)
                    )));
                }
                let after = pos + r.unwrap_or(0);
                let r = lseek_fd(own_fd, 0, libc::SEEK_CUR);
                if r != Ok(after) {
                    return Err(fail(format!(
                        "lseek(0, SEEK_CUR) after the write: got {}, expected {after}",
                        show_io(r)
                    )));
                }
                ops += 3;
            }
            _ => {
                let cases = [
                    (-1, libc::SEEK_SET, "SEEK_SET"),
                    (size as i64 + 1, libc::SEEK_SET, "SEEK_SET"),
                    (1, libc::SEEK_END, "SEEK_END"),
                    (0, 7, "whence 7"),
                ];
                let (o, w, name) = cases[rng.index(cases.len())];
                let r = lseek_fd(own_fd, o, w);
                if r != Err(libc::EINVAL) {
                    return Err(fail(format!(
                        "lseek({o}, {name}): got {}, expected EINVAL",
                        show_io(r)
                    )));
                }
                // SAFETY: A negative offset is refused before any memory is touched; `buf` is
                // valid for 16 bytes anyway.
                let r =
                    io_result(unsafe { libc::pread(shared_fd, buf.as_mut_ptr().cast(), 16, -1) });
                if r != Err(libc::EINVAL) {
                    return Err(fail(format!(
                        "pread(16) at -1: got {}, expected EINVAL",
                        show_io(r)
                    )));
                }
                ops += 2;
            }
        }
    }
    Ok(ops)
}

// ---------------------------------------------------------------------------------------------
// fuzz: expected results
// ---------------------------------------------------------------------------------------------

/// The result of a raw system call: its return value, or its errno.
type SysResult = Result<i64, i32>;

fn sys_result(r: c_long) -> SysResult {
    if r == -1 {
        Err(errno())
    } else {
        Ok(r)
    }
}

fn show(r: SysResult) -> String {
    match r {
        Ok(v) if v > 0xffff_ffff => format!("{v:#x}"),
        Ok(v) => format!("{v}"),
        Err(e) => errno_name(e),
    }
}

/// The results allowed for one call: success with a value in a range, and errors.
#[derive(Clone, Debug)]
struct Expect {
    ok: Option<(i64, i64)>,
    errs: Vec<i32>,
}

impl Expect {
    fn ok(v: i64) -> Expect {
        Expect {
            ok: Some((v, v)),
            errs: Vec::new(),
        }
    }

    fn ok_in(lo: i64, hi: i64) -> Expect {
        Expect {
            ok: Some((lo, hi)),
            errs: Vec::new(),
        }
    }

    fn err(e: i32) -> Expect {
        Expect {
            ok: None,
            errs: vec![e],
        }
    }

    /// Also allows the error `e`.
    fn or(mut self, e: i32) -> Expect {
        if !self.errs.contains(&e) {
            self.errs.push(e);
        }
        self
    }

    /// Also allows success with the value `v` (only where no other success is allowed).
    fn or_ok(mut self, v: i64) -> Expect {
        if self.ok.is_none() {
            self.ok = Some((v, v));
        }
        self
    }

    fn allows(&self, r: SysResult) -> bool {
        match r {
            Ok(v) => self.ok.is_some_and(|(lo, hi)| (lo..=hi).contains(&v)),
            Err(e) => self.errs.contains(&e),
        }
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        match self.ok {
            Some((lo, hi)) if lo == hi => parts.push(format!("success ({})", show(Ok(lo)))),
            Some((lo, hi)) => parts.push(format!("success ({}..={})", show(Ok(lo)), show(Ok(hi)))),
            None => {}
        }
        parts.extend(self.errs.iter().map(|&e| errno_name(e)));
        parts.join(" or ")
    }
}

const fn page_align(len: u64) -> u64 {
    len.wrapping_add(PAGE - 1) & !(PAGE - 1)
}

fn hex(v: u64) -> String {
    if v < 4096 {
        format!("{v}")
    } else {
        format!("{v:#x}")
    }
}

fn prot_name(prot: i32) -> String {
    if prot == 0 {
        return "PROT_NONE".into();
    }
    let mut parts = Vec::new();
    let mut rest = prot;
    for (bit, name) in [
        (libc::PROT_READ, "PROT_READ"),
        (libc::PROT_WRITE, "PROT_WRITE"),
        (libc::PROT_EXEC, "PROT_EXEC"),
        (PROT_SEM, "PROT_SEM"),
        (libc::PROT_GROWSDOWN, "PROT_GROWSDOWN"),
        (libc::PROT_GROWSUP, "PROT_GROWSUP"),
    ] {
        if prot & bit != 0 {
            parts.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

const PROT_SEM: i32 = 0x8;
const PROT_RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

// madvise advice values (include/uapi/asm-generic/mman-common.h).
const MADV_NORMAL: i32 = 0;
const MADV_RANDOM: i32 = 1;
const MADV_SEQUENTIAL: i32 = 2;
const MADV_WILLNEED: i32 = 3;
const MADV_DONTNEED: i32 = 4;
const MADV_FREE: i32 = 8;
const MADV_REMOVE: i32 = 9;
const MADV_DONTFORK: i32 = 10;
const MADV_DOFORK: i32 = 11;
const MADV_MERGEABLE: i32 = 12;
const MADV_UNMERGEABLE: i32 = 13;
const MADV_HUGEPAGE: i32 = 14;
const MADV_NOHUGEPAGE: i32 = 15;
const MADV_DONTDUMP: i32 = 16;
const MADV_DODUMP: i32 = 17;
const MADV_WIPEONFORK: i32 = 18;
const MADV_KEEPONFORK: i32 = 19;
const MADV_COLD: i32 = 20;
const MADV_PAGEOUT: i32 = 21;
const MADV_POPULATE_READ: i32 = 22;
const MADV_POPULATE_WRITE: i32 = 23;
const MADV_DONTNEED_LOCKED: i32 = 24;
const MADV_COLLAPSE: i32 = 25;
/// Never sent: with CONFIG_MEMORY_FAILURE they poison or offline the page (root may).
const MADV_HWPOISON: i32 = 100;
const MADV_SOFT_OFFLINE: i32 = 101;
const MADV_GUARD_INSTALL: i32 = 102;
const MADV_GUARD_REMOVE: i32 = 103;

/// The advice values the fuzzer sends besides the common ones (all valid values but
/// MADV_HWPOISON and MADV_SOFT_OFFLINE).
const KNOWN_ADVICE: &[i32] = &[
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MADV_DONTNEED,
    MADV_FREE,
    MADV_REMOVE,
    MADV_DONTFORK,
    MADV_DOFORK,
    MADV_MERGEABLE,
    MADV_UNMERGEABLE,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_DONTDUMP,
    MADV_DODUMP,
    MADV_WIPEONFORK,
    MADV_KEEPONFORK,
    MADV_COLD,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_DONTNEED_LOCKED,
    MADV_COLLAPSE,
    MADV_GUARD_INSTALL,
    MADV_GUARD_REMOVE,
];

fn advice_name(a: i32) -> String {
    let name = match a {
        MADV_NORMAL => "MADV_NORMAL",
        MADV_RANDOM => "MADV_RANDOM",
        MADV_SEQUENTIAL => "MADV_SEQUENTIAL",
        MADV_WILLNEED => "MADV_WILLNEED",
        MADV_DONTNEED => "MADV_DONTNEED",
        MADV_FREE => "MADV_FREE",
        MADV_REMOVE => "MADV_REMOVE",
        MADV_DONTFORK => "MADV_DONTFORK",
        MADV_DOFORK => "MADV_DOFORK",
        MADV_MERGEABLE => "MADV_MERGEABLE",
        MADV_UNMERGEABLE => "MADV_UNMERGEABLE",
        MADV_HUGEPAGE => "MADV_HUGEPAGE",
        MADV_NOHUGEPAGE => "MADV_NOHUGEPAGE",
        MADV_DONTDUMP => "MADV_DONTDUMP",
        MADV_DODUMP => "MADV_DODUMP",
        MADV_WIPEONFORK => "MADV_WIPEONFORK",
        MADV_KEEPONFORK => "MADV_KEEPONFORK",
        MADV_COLD => "MADV_COLD",
        MADV_PAGEOUT => "MADV_PAGEOUT",
        MADV_POPULATE_READ => "MADV_POPULATE_READ",
        MADV_POPULATE_WRITE => "MADV_POPULATE_WRITE",
        MADV_DONTNEED_LOCKED => "MADV_DONTNEED_LOCKED",
        MADV_COLLAPSE => "MADV_COLLAPSE",
        MADV_GUARD_INSTALL => "MADV_GUARD_INSTALL",
        MADV_GUARD_REMOVE => "MADV_GUARD_REMOVE",
        _ => return format!("advice {a}"),
    };
    name.into()
}

/// Advice values that exist only with CONFIG_KSM (MERGEABLE, UNMERGEABLE) or
/// CONFIG_TRANSPARENT_HUGEPAGE (HUGEPAGE, NOHUGEPAGE, COLLAPSE): without them the value itself is
/// invalid, and madvise() fails with EINVAL before it looks at the range.
const CONFIG_ADVICE: &[i32] = &[
    MADV_MERGEABLE,
    MADV_UNMERGEABLE,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_COLLAPSE,
];

fn is_valid_advice(a: i32) -> bool {
    KNOWN_ADVICE.contains(&a) || a == MADV_HWPOISON || a == MADV_SOFT_OFFLINE
}

/// ioctl commands the VFS handles itself before the driver sees them (`do_vfs_ioctl()`), so
/// that they may succeed (or write through the argument): never sent. FIONREAD and FIOQSIZE
/// reach the driver for a character device and are sent.
const VFS_IOCTLS: &[u32] = &[
    0x5451,      // FIOCLEX
    0x5450,      // FIONCLEX
    0x5421,      // FIONBIO
    0x5452,      // FIOASYNC
    0xc004_5877, // FIFREEZE
    0xc004_5878, // FITHAW
    0xc020_660b, // FS_IOC_FIEMAP
    2,           // FIGETBSZ
    0x4004_9409, // FICLONE
    0x4020_940d, // FICLONERANGE
    0xc018_9436, // FIDEDUPERANGE
    0x8008_6601, // FS_IOC_GETFLAGS
    0x4008_6602, // FS_IOC_SETFLAGS
    0x801c_581f, // FS_IOC_FSGETXATTR
    0x401c_5820, // FS_IOC_FSSETXATTR
    0x8011_1500, // FS_IOC_GETFSUUID
    0x8081_1501, // FS_IOC_GETFSSYSFSPATH
];

/// Commands worth sending on purpose (all must be ENOTTY from the driver).
const SOME_IOCTLS: &[u32] = &[
    0,
    1,
    0x5401,      // TCGETS
    0x5413,      // TIOCGWINSZ
    0x541b,      // FIONREAD (VFS passes it on for non-regular files)
    0x5460,      // FIOQSIZE (ENOTTY for a character device)
    0x8008_1272, // BLKGETSIZE64
    0x1260,      // BLKGETSIZE
    0xffff_ffff,
    0x8000_6d00, // _IOR('m', 0, 0)
    0xc008_6d01, // _IOWR('m', 1, 8)
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    Ro,
    Rw,
    Wo,
}

impl Access {
    fn flags(self) -> c_int {
        match self {
            Access::Ro => libc::O_RDONLY,
            Access::Rw => libc::O_RDWR,
            Access::Wo => libc::O_WRONLY,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Access::Ro => "O_RDONLY",
            Access::Rw => "O_RDWR",
            Access::Wo => "O_WRONLY",
        }
    }

    fn read(self) -> bool {
        self != Access::Wo
    }

    fn write(self) -> bool {
        self != Access::Ro
    }
}

/// An open descriptor of the pool.
#[derive(Clone)]
struct PoolFd {
    fd: RawFd,
    access: Access,
    /// The file position (shared with forked children, re-read after each one).
    pos: u64,
}

/// A descriptor argument: one of the pool, or one that is not open.
#[derive(Clone, Copy)]
struct FdArg {
    fd: RawFd,
    access: Option<Access>,
    idx: Option<usize>,
}

impl FdArg {
    fn desc(&self) -> String {
        match self.access {
            Some(a) => format!("fd {} ({})", self.fd, a.name()),
            None => format!("fd {} (not open)", self.fd),
        }
    }
}

/// A mapping of the device the fuzzer made and still has: one `mmap` result, or a piece of one
/// left by a partial `munmap`/`mremap`.
#[derive(Clone)]
struct Region {
    id: u64,
    addr: u64,
    /// Offset in the buffer of the first page.
    dev_off: u64,
    shared: bool,
    /// How the descriptor it was mapped through was opened.
    access: Access,
    /// Per page: `PROT_READ`/`PROT_WRITE` as set by `mmap` and `mprotect`.
    prot: Vec<i32>,
    /// Per page, for MAP_PRIVATE: the contents, once the fuzzer changed them (otherwise the
    /// page shows the buffer, which always holds the contract's bytes).
    shadow: Vec<Option<Box<[u8]>>>,
    /// `MADV_DONTFORK` was applied to (part of) it: forked children do not get it.
    dontfork: bool,
}

impl Region {
    fn pages(&self) -> usize {
        self.prot.len()
    }

    fn len(&self) -> u64 {
        self.pages() as u64 * PAGE
    }

    /// Whether the area has `VM_SHARED`: MAP_SHARED of a descriptor open for writing.
    fn vm_shared(&self) -> bool {
        self.shared && self.access.write()
    }

    fn desc(&self) -> String {
        format!(
            "mapping #{} ({} of an {} fd, buffer pages {}..{}, at {:#x})",
            self.id,
            if self.shared {
                "MAP_SHARED"
            } else {
                "MAP_PRIVATE"
            },
            self.access.name(),
            self.dev_off / PAGE,
            self.dev_off / PAGE + self.pages() as u64,
            self.addr
        )
    }

    /// Bytes from region offset `ro` up to the first page whose protection lacks all of `bits`,
    /// or the end.
    fn prefix_with(&self, ro: u64, bits: i32) -> u64 {
        let mut p = (ro / PAGE) as usize;
        while p < self.pages() && self.prot[p] & bits != 0 {
            p += 1;
        }
        (p as u64 * PAGE).saturating_sub(ro)
    }
}

/// Reads the byte at `addr`.
///
/// # Safety
///
/// `addr` must lie in a page of a live mapping that can be read (the fuzzer's model says so).
unsafe fn peek(addr: u64) -> u8 {
    // SAFETY: The caller guarantees a readable mapped page; volatile, as the kernel and other
    // processes change these bytes behind the compiler's back.
    unsafe { (addr as *const u8).read_volatile() }
}

/// Writes the byte at `addr`.
///
/// # Safety
///
/// `addr` must lie in a page of a live mapping that can be written, which no Rust reference
/// covers.
unsafe fn poke(addr: u64, v: u8) {
    // SAFETY: As for `peek`, for writing.
    unsafe { (addr as *mut u8).write_volatile(v) }
}

/// The kind of a `read`/`write` family call.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rw {
    Read,
    Write,
    Pread,
    Pwrite,
}

impl Rw {
    fn name(self) -> &'static str {
        match self {
            Rw::Read => "read",
            Rw::Write => "write",
            Rw::Pread => "pread",
            Rw::Pwrite => "pwrite",
        }
    }

    fn reads(self) -> bool {
        matches!(self, Rw::Read | Rw::Pread)
    }

    fn positional(self) -> bool {
        matches!(self, Rw::Pread | Rw::Pwrite)
    }
}

/// The user buffer of a `read`/`write` family call.
#[derive(Clone, Copy)]
enum Buf {
    /// Memory of ours large enough for any transfer the kernel can make.
    Heap,
    /// A mapping of the device, laid out so that the transfer either fully succeeds or faults
    /// on its first byte.
    Region { i: usize, ro: u64, fault: bool },
    /// NULL or an unmapped low address: a user address, but no memory behind it.
    Unmapped(u64),
    /// A kernel address: `access_ok()` refuses it.
    Kernel(u64),
}

/// A range argument of `mprotect`/`madvise`/`msync`.
#[derive(Clone, Copy)]
enum Span {
    /// Pages `first..first + pages` of region `i` (the length may be short of the last page by
    /// less than a page).
    In {
        i: usize,
        first: usize,
        pages: usize,
    },
    /// A length of 0 at a page of a region.
    Zero,
    /// An address inside a region that is not page aligned.
    Unaligned,
    /// A range no mapping covers (low addresses or the kernel half).
    Unmapped,
    /// A length whose page rounding or end wraps around: the call fails before any work.
    Overflow,
}

// ---------------------------------------------------------------------------------------------
// fuzz: the state and the operations
// ---------------------------------------------------------------------------------------------

const MAX_FDS: usize = 6;
const MAX_REGIONS: usize = 12;
const RECENT: usize = 24;
/// Descriptor numbers that are never open.
const BAD_FDS: &[RawFd] = &[-1, 1_000_000, 0x3fff_ffff];

struct Fuzz<'a> {
    dev: &'a str,
    cpath: CString,
    c: &'a Contents,
    size: u64,
    pages: u64,
    /// Room for any transfer to an ordinary buffer.
    scratch: Vec<u8>,
    fds: Vec<PoolFd>,
    regions: Vec<Region>,
    next_id: u64,
    rng: Rng,
    seed: u64,
    step: u64,
    calls: u64,
    touches: u64,
    forks: u64,
    in_child: bool,
    trace: bool,
    /// Total RAM: a private writable mapping at least this long may fail the kernel's
    /// overcommit check with ENOMEM.
    totalram: u64,
    /// Whether nothing is mapped below [`LOW_LIMIT`], so that those addresses can be used.
    low_ok: bool,
    recent: VecDeque<String>,
    /// Per call kind: successes and the count of each errno, for the report at the end.
    tally: BTreeMap<String, (u64, BTreeMap<i32, u64>)>,
}

impl<'a> Fuzz<'a> {
    fn new(dev: &'a str, c: &'a Contents, seed: u64, trace: bool) -> Result<Fuzz<'a>, String> {
        let cpath = CString::new(dev).map_err(|_| format!("bad path {dev:?}"))?;
        // SAFETY: An all-zero sysinfo is a valid value for the kernel to fill in.
        let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
        // SAFETY: `si` is valid for writing.
        let totalram = if unsafe { libc::sysinfo(&mut si) } == 0 {
            (si.totalram as u64).saturating_mul(u64::from(si.mem_unit.max(1)))
        } else {
            1 << 30
        };
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let low_ok = !maps.is_empty()
            && maps
                .lines()
                .filter_map(|l| l.split('-').next())
                .filter_map(|a| u64::from_str_radix(a, 16).ok())
                .all(|a| a >= LOW_LIMIT);
        Ok(Fuzz {
            dev,
            cpath,
            c,
            size: c.size,
            pages: c.pages,
            scratch: vec![0u8; (c.size.min(HEAP_LIMIT) + PAGE) as usize],
            fds: Vec::new(),
            regions: Vec::new(),
            next_id: 1,
            rng: Rng::new(seed),
            seed,
            step: 0,
            calls: 0,
            touches: 0,
            forks: 0,
            in_child: false,
            trace,
            totalram,
            low_ok,
            recent: VecDeque::new(),
            tally: BTreeMap::new(),
        })
    }

    /// Checks the result of a call against what is allowed, and records it.
    fn judge(&mut self, call: String, got: SysResult, want: &Expect) -> Result<(), String> {
        self.calls += 1;
        let line = format!("{call} = {}", show(got));
        if self.trace {
            println!("# [{}] {line}", self.step);
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
        let kind = call.split('(').next().unwrap_or("?").to_owned();
        self.count(kind, got);
        if want.allows(got) {
            Ok(())
        } else {
            Err(format!(
                "{call}: got {}, expected {}",
                show(got),
                want.describe()
            ))
        }
    }

    /// Counts a result under `kind`.
    fn count(&mut self, kind: String, got: SysResult) {
        let entry = self.tally.entry(kind).or_default();
        match got {
            Ok(_) => entry.0 += 1,
            Err(e) => *entry.1.entry(e).or_default() += 1,
        }
    }

    /// One line per call kind: how often it succeeded and failed with each errno.
    fn print_tally(&self) {
        for (kind, (ok, errs)) in &self.tally {
            let mut parts = vec![format!("ok {ok}")];
            parts.extend(errs.iter().map(|(&e, n)| format!("{} {n}", errno_name(e))));
            println!("# {kind}: {}", parts.join(", "));
        }
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// The byte the model says region `r` shows at region offset `off`.
    fn model_byte(&self, r: &Region, off: u64) -> u8 {
        match &r.shadow[(off / PAGE) as usize] {
            Some(p) => p[(off % PAGE) as usize],
            None => self.c.byte(r.dev_off + off),
        }
    }

    /// Checks `len` bytes of region `i` from region offset `off` against the model, reading
    /// them through the mapping; every page in the range must be readable.
    fn verify_region(&mut self, i: usize, off: u64, len: u64, what: &str) -> Result<(), String> {
        self.touches += 1;
        let r = &self.regions[i];
        for o in off..off + len {
            debug_assert!(r.prot[(o / PAGE) as usize] & libc::PROT_READ != 0);
            // SAFETY: `o` lies in region `i`, which is mapped, in a page the model says is
            // readable.
            let got = unsafe { peek(r.addr + o) };
            let want = self.model_byte(r, o);
            if got != want {
                let private = if r.shadow[(o / PAGE) as usize].is_some() {
                    " (a MAP_PRIVATE page the fuzzer wrote)"
                } else {
                    ""
                };
                return Err(format!(
                    "{what}: {} at region offset {o:#x}{private}: {}",
                    r.desc(),
                    Mismatch {
                        offset: (r.dev_off + o) as usize,
                        want,
                        got
                    }
                ));
            }
        }
        Ok(())
    }

    /// Sets the model's bytes of region `i` from region offset `off` (MAP_PRIVATE only).
    fn set_private(&mut self, i: usize, off: u64, data: &[u8]) {
        let c = self.c;
        let r = &mut self.regions[i];
        for (k, &b) in data.iter().enumerate() {
            let o = off + k as u64;
            let p = (o / PAGE) as usize;
            let dev_page = r.dev_off + p as u64 * PAGE;
            let page = r.shadow[p]
                .get_or_insert_with(|| c.slice(dev_page, PAGE).into_owned().into_boxed_slice());
            page[(o % PAGE) as usize] = b;
        }
    }

    /// Removes pages `a..b` of region `i` from the model, which the kernel has unmapped.
    fn cut(&mut self, i: usize, a: usize, b: usize) {
        let mut r = self.regions.remove(i);
        let tail_prot = r.prot.split_off(b);
        let tail_shadow = r.shadow.split_off(b);
        if !tail_prot.is_empty() {
            let tail = Region {
                id: self.new_id(),
                addr: r.addr + b as u64 * PAGE,
                dev_off: r.dev_off + b as u64 * PAGE,
                shared: r.shared,
                access: r.access,
                prot: tail_prot,
                shadow: tail_shadow,
                dontfork: r.dontfork,
            };
            self.regions.push(tail);
        }
        r.prot.truncate(a);
        r.shadow.truncate(a);
        if a > 0 {
            self.regions.push(r);
        }
    }

    fn fd_arg(&self, idx: usize) -> FdArg {
        let f = &self.fds[idx];
        FdArg {
            fd: f.fd,
            access: Some(f.access),
            idx: Some(idx),
        }
    }

    /// A descriptor argument: mostly one of the pool, sometimes one that is not open.
    fn pick_fd(&mut self) -> FdArg {
        if self.fds.is_empty() || self.rng.chance(1, 16) {
            let fd = self.rng.pick(BAD_FDS);
            return FdArg {
                fd,
                access: None,
                idx: None,
            };
        }
        let i = self.rng.index(self.fds.len());
        self.fd_arg(i)
    }

    // --- the step -----------------------------------------------------------------------------

    fn one_step(&mut self) -> Result<(), String> {
        // Weights in thousandths.
        const OPS: &[(&str, u32)] = &[
            ("open", 50),
            ("close", 30),
            ("mmap", 120),
            ("munmap", 55),
            ("mremap", 40),
            ("mprotect", 50),
            ("madvise", 80),
            ("msync", 40),
            ("touch", 160),
            ("read", 50),
            ("write", 40),
            ("pread", 70),
            ("pwrite", 60),
            ("lseek", 70),
            ("ioctl", 30),
            ("fork", 3),
        ];
        let weights: Vec<u32> = OPS
            .iter()
            .map(|&(name, w)| {
                if name == "fork" && self.in_child {
                    0
                } else {
                    w
                }
            })
            .collect();
        let op = OPS[self.rng.weighted(&weights)].0;
        let needs_region = matches!(
            op,
            "munmap" | "mremap" | "mprotect" | "madvise" | "msync" | "touch"
        );
        if needs_region && self.regions.is_empty() {
            return self.op_mmap();
        }
        match op {
            "open" => self.op_open(),
            "close" => self.op_close(),
            "mmap" => self.op_mmap(),
            "munmap" => self.op_munmap(),
            "mremap" => self.op_mremap(),
            "mprotect" => self.op_mprotect(),
            "madvise" => self.op_madvise(),
            "msync" => self.op_msync(),
            "touch" => self.op_touch(),
            "read" => self.op_rw(Rw::Read),
            "write" => self.op_rw(Rw::Write),
            "pread" => self.op_rw(Rw::Pread),
            "pwrite" => self.op_rw(Rw::Pwrite),
            "lseek" => self.op_lseek(),
            "ioctl" => self.op_ioctl(),
            _ => self.op_fork(),
        }
    }

    // --- open, close --------------------------------------------------------------------------

    fn op_open(&mut self) -> Result<(), String> {
        if self.fds.len() >= MAX_FDS {
            return self.op_close();
        }
        let access = [Access::Ro, Access::Rw, Access::Wo][self.rng.weighted(&[35, 45, 20])];
        // SAFETY: `cpath` is a valid C string; open touches no other memory of ours.
        let r = sys_result(
            unsafe { libc::open(self.cpath.as_ptr(), access.flags() | libc::O_CLOEXEC) }.into(),
        );
        // Root opens the device with any access mode.
        self.judge(
            format!("open({}, {})", self.dev, access.name()),
            r,
            &Expect::ok_in(0, i64::from(i32::MAX)),
        )?;
        if let Ok(fd) = r {
            self.fds.push(PoolFd {
                fd: fd as RawFd,
                access,
                pos: 0,
            });
        }
        Ok(())
    }

    fn op_close(&mut self) -> Result<(), String> {
        if self.fds.is_empty() || self.rng.chance(1, 10) {
            let fd = self.rng.pick(BAD_FDS);
            // SAFETY: The number is not an open descriptor; close only fails.
            let r = sys_result(unsafe { libc::close(fd) }.into());
            return self.judge(
                format!("close({fd}) (not open)"),
                r,
                &Expect::err(libc::EBADF),
            );
        }
        let i = self.rng.index(self.fds.len());
        let f = self.fds.remove(i);
        // SAFETY: The descriptor belongs to the pool, which forgets it here; no Rust object owns
        // it. Mappings made through it stay valid (they hold the file).
        let r = sys_result(unsafe { libc::close(f.fd) }.into());
        self.judge(
            format!("close(fd {} ({}))", f.fd, f.access.name()),
            r,
            &Expect::ok(0),
        )
    }

    // --- mmap ---------------------------------------------------------------------------------

    /// What `mmap(NULL, len, prot, flags, fd, off)` may return, in the order the kernel checks
    /// (arch/x86/kernel/sys_x86_64.c, mm/mmap.c `do_mmap()`, then the driver).
    fn mmap_expect(&self, fd: &FdArg, len: u64, prot: i32, flags: i32, off: u64) -> Expect {
        // sys_mmap: the offset must be page aligned.
        if !off.is_multiple_of(PAGE) {
            return Expect::err(libc::EINVAL);
        }
        let Some(access) = fd.access else {
            return Expect::err(libc::EBADF);
        };
        if len == 0 {
            return Expect::err(libc::EINVAL);
        }
        let alen = page_align(len);
        // The length rounds up to 0.
        if alen == 0 {
            return Expect::err(libc::ENOMEM);
        }
        let (pgoff, npages) = (off / PAGE, alen / PAGE);
        if pgoff.checked_add(npages).is_none() {
            return Expect::err(libc::EOVERFLOW);
        }
        // Longer than the address space: get_unmapped_area() fails (with 5-level paging too,
        // as a NULL hint keeps to the 47-bit window).
        if alen > USER_MAX_4L {
            return Expect::err(libc::ENOMEM);
        }
        // A very long mapping may find no free range: ENOMEM before anything else.
        let no_room = alen > NO_ROOM_LEN;
        let shared = flags & libc::MAP_TYPE == libc::MAP_SHARED;
        let mut want = if pgoff > (u64::MAX - alen) / PAGE {
            // file_mmap_ok(): the end of the range overflows the file offsets.
            Expect::err(libc::EOVERFLOW)
        } else if (shared && prot & libc::PROT_WRITE != 0 && !access.write()) || !access.read() {
            // Writable MAP_SHARED needs FMODE_WRITE; any mapping needs FMODE_READ.
            Expect::err(libc::EACCES)
        } else {
            // From here on, a private writable mapping is charged against the overcommit limit
            // first (ENOMEM for one longer than RAM), then the driver decides: PROT_EXEC is
            // EPERM (also what the kernel says first on a noexec mount such as devtmpfs), a
            // range outside the buffer EINVAL.
            let mut w = if prot & libc::PROT_EXEC != 0 {
                Expect::err(libc::EPERM)
            } else if pgoff + npages > self.pages {
                Expect::err(libc::EINVAL)
            } else {
                Expect::ok_in(PAGE as i64, USER_MAX_5L as i64)
            };
            if !shared && prot & libc::PROT_WRITE != 0 && alen >= self.totalram {
                w = w.or(libc::ENOMEM);
            }
            w
        };
        if no_room {
            want = want.or(libc::ENOMEM);
        }
        want
    }

    fn pick_map_len(&mut self) -> u64 {
        let (size, pages) = (self.size, self.pages);
        match self.rng.below(12) {
            0 => 0,
            1 => 1,
            2 => PAGE * self.rng.range(1, pages),
            3 => size,
            4 => size + 1,
            5 => size + PAGE,
            6 => 1 << 63,
            7 => u64::MAX,
            8 => u64::MAX - self.rng.below(PAGE - 1),
            9 => self.rng.next_u64(),
            10 => self.rng.range(1, size),
            _ => PAGE * self.rng.range(pages + 1, 4 * pages),
        }
    }

    fn pick_map_off(&mut self) -> u64 {
        let (size, pages) = (self.size, self.pages);
        match self.rng.below(11) {
            0 => 0,
            1 => PAGE * self.rng.below(pages),
            2 => size,
            3 => size + PAGE * self.rng.range(1, 16),
            4 => PAGE * self.rng.below(pages) + self.rng.range(1, PAGE - 1),
            5 => 1 << 62,
            6 => (i64::MAX as u64) & !(PAGE - 1),
            7 => 0u64.wrapping_sub(PAGE),
            8 => self.rng.next_u64() & !(PAGE - 1),
            9 => self.rng.next_u64(),
            _ => 0u64.wrapping_sub(PAGE * self.rng.range(1, pages)),
        }
    }

    fn op_mmap(&mut self) -> Result<(), String> {
        if self.regions.len() >= MAX_REGIONS {
            return self.op_munmap();
        }
        if self.fds.is_empty() {
            return self.op_open();
        }
        let fd = self.pick_fd();
        let (len, off) = if self.rng.chance(3, 5) {
            // A window inside the buffer (the length may end inside its last page).
            let first = self.rng.below(self.pages);
            let count = self.rng.range(1, self.pages - first);
            let short = if self.rng.chance(1, 4) {
                self.rng.below(PAGE)
            } else {
                0
            };
            (count * PAGE - short, first * PAGE)
        } else {
            (self.pick_map_len(), self.pick_map_off())
        };
        let prots = [
            libc::PROT_READ,
            PROT_RW,
            libc::PROT_WRITE,
            libc::PROT_NONE,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::PROT_EXEC,
            PROT_RW | libc::PROT_EXEC,
            libc::PROT_READ | PROT_SEM,
        ];
        let prot = prots[self.rng.weighted(&[40, 25, 5, 5, 5, 3, 3, 4])];
        let mut flags = if self.rng.chance(3, 5) {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        if self.rng.chance(1, 5) {
            flags |= libc::MAP_POPULATE;
        }
        let want = self.mmap_expect(&fd, len, prot, flags, off);
        let flag_name = format!(
            "{}{}",
            if flags & libc::MAP_TYPE == libc::MAP_SHARED {
                "MAP_SHARED"
            } else {
                "MAP_PRIVATE"
            },
            if flags & libc::MAP_POPULATE != 0 {
                "|MAP_POPULATE"
            } else {
                ""
            }
        );
        let call = format!(
            "mmap(NULL, {}, {}, {flag_name}, {}, {})",
            hex(len),
            prot_name(prot),
            fd.desc(),
            hex(off)
        );
        // SAFETY: Without MAP_FIXED the kernel places a new mapping in free address space, so
        // no memory of ours is replaced; a mapping that should not exist is reported.
        let r = sys_result(unsafe {
            libc::syscall(
                libc::SYS_mmap,
                0 as c_long,
                len as c_long,
                prot as c_long,
                flags as c_long,
                fd.fd as c_long,
                off as c_long,
            )
        });
        self.judge(call.clone(), r, &want)?;
        let Ok(addr) = r else { return Ok(()) };
        let (addr, alen) = (addr as u64, page_align(len));
        if addr % PAGE != 0 {
            return Err(format!(
                "{call} returned {addr:#x}, which is not page aligned"
            ));
        }
        if let Some(o) = self
            .regions
            .iter()
            .find(|o| addr < o.addr + o.len() && o.addr < addr + alen)
        {
            return Err(format!(
                "{call} returned {addr:#x}, overlapping the live {}",
                o.desc()
            ));
        }
        let access = fd.access.unwrap_or(Access::Ro);
        let pages = (alen / PAGE) as usize;
        let id = self.new_id();
        self.regions.push(Region {
            id,
            addr,
            dev_off: off,
            shared: flags & libc::MAP_TYPE == libc::MAP_SHARED,
            access,
            prot: vec![prot & PROT_RW; pages],
            shadow: vec![None; pages],
            dontfork: false,
        });
        if self.trace {
            let d = self.regions.last().map(Region::desc).unwrap_or_default();
            println!("# [{}]   is {d}", self.step);
        }
        Ok(())
    }

    // --- munmap, mremap -----------------------------------------------------------------------

    /// A random region: its index, address, size in pages and description.
    fn pick_region(&mut self) -> (usize, u64, usize, String) {
        let i = self.rng.index(self.regions.len());
        let r = &self.regions[i];
        (i, r.addr, r.pages(), r.desc())
    }

    fn op_munmap(&mut self) -> Result<(), String> {
        let (i, addr, n, desc) = self.pick_region();
        let choice = self.rng.below(10);
        let (a, len, want, cut) = match choice {
            0..=4 => (
                addr,
                n as u64 * PAGE - self.rng.below(PAGE),
                Expect::ok(0),
                Some((0, n)),
            ),
            5..=7 if n >= 2 => {
                let first = self.rng.index(n);
                let last = self.rng.range(first as u64 + 1, n as u64) as usize;
                let (first, last) = if first == 0 && last == n {
                    (1, n)
                } else {
                    (first, last)
                };
                let short = if self.rng.chance(1, 4) {
                    self.rng.below(PAGE)
                } else {
                    0
                };
                (
                    addr + first as u64 * PAGE,
                    (last - first) as u64 * PAGE - short,
                    Expect::ok(0),
                    Some((first, last)),
                )
            }
            5..=8 => match self.rng.below(5) {
                0 => (
                    addr + self.rng.range(1, PAGE - 1),
                    PAGE,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                1 => (addr, 0, Expect::err(libc::EINVAL), None),
                2 => (
                    KERNEL_ADDR + PAGE * self.rng.below(256),
                    PAGE,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                3 => (addr, 1 << 63, Expect::err(libc::EINVAL), None),
                _ => (addr, u64::MAX, Expect::err(libc::EINVAL), None),
            },
            _ if self.low_ok => {
                // Nothing is mapped there: success, and nothing happens.
                let p = self.rng.range(1, LOW_LIMIT / PAGE - 1);
                (
                    p * PAGE,
                    PAGE * self.rng.range(1, LOW_LIMIT / PAGE - p),
                    Expect::ok(0),
                    None,
                )
            }
            _ => (addr, 0, Expect::err(libc::EINVAL), None),
        };
        let desc = if (addr..addr + n as u64 * PAGE).contains(&a) {
            desc
        } else {
            "nothing mapped there".to_owned()
        };
        let call = format!("munmap({a:#x}, {}) [{desc}]", hex(len));
        // SAFETY: The range is a region of ours (forgotten below on success), an address range
        // where nothing is mapped, or arguments the kernel refuses before doing anything.
        let r = sys_result(unsafe { libc::syscall(libc::SYS_munmap, a as c_long, len as c_long) });
        self.judge(call, r, &want)?;
        if let (Ok(_), Some((first, last))) = (r, cut) {
            self.cut(i, first, last);
        }
        Ok(())
    }

    fn op_mremap(&mut self) -> Result<(), String> {
        let (i, addr, n, desc) = self.pick_region();
        let old = n as u64 * PAGE;
        let flag = |rng: &mut Rng| {
            if rng.chance(1, 2) {
                0
            } else {
                libc::MREMAP_MAYMOVE
            }
        };
        // (address, old length, new length, flags, expected, pages kept: a..b cut)
        let (a, old_len, new_len, flags, want, cut): (
            u64,
            u64,
            u64,
            i32,
            Expect,
            Option<(usize, usize)>,
        ) = match self.rng.below(10) {
            0..=2 if n >= 2 => {
                let keep = self.rng.range(1, n as u64 - 1);
                let new_len = keep * PAGE - self.rng.below(PAGE);
                (
                    addr,
                    old,
                    new_len,
                    flag(&mut self.rng),
                    Expect::ok(addr as i64),
                    Some((keep as usize, n)),
                )
            }
            3 if n >= 2 => {
                // Shrinking a head of the region unmaps its middle.
                let o = self.rng.range(2, n as u64);
                let keep = self.rng.range(1, o - 1);
                (
                    addr,
                    o * PAGE,
                    keep * PAGE,
                    0,
                    Expect::ok(addr as i64),
                    Some((keep as usize, o as usize)),
                )
            }
            4 => (
                addr,
                old,
                old,
                flag(&mut self.rng),
                Expect::ok(addr as i64),
                None,
            ),
            5 | 6 | 0..=3 => {
                // Growing: VM_DONTEXPAND makes it EFAULT (ENOMEM is the other answer the
                // contract allows), in place or moving.
                let more = PAGE * self.rng.range(1, self.pages);
                let want = Expect::err(libc::EFAULT).or(libc::ENOMEM);
                (addr, old, old + more, flag(&mut self.rng), want, None)
            }
            7 => match self.rng.below(6) {
                0 => (addr, old, 0, 0, Expect::err(libc::EINVAL), None),
                1 => (
                    addr,
                    old,
                    1 << 62,
                    libc::MREMAP_MAYMOVE,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                2 => (
                    addr + self.rng.range(1, PAGE - 1),
                    old,
                    old,
                    0,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                3 => (addr, old, old, 8, Expect::err(libc::EINVAL), None),
                // MREMAP_FIXED needs MREMAP_MAYMOVE.
                4 => (
                    addr,
                    old,
                    old,
                    libc::MREMAP_FIXED,
                    Expect::err(libc::EINVAL),
                    None,
                ),
                // MREMAP_DONTUNMAP is refused for VM_DONTEXPAND areas.
                _ => (
                    addr,
                    old,
                    old,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP,
                    Expect::err(libc::EINVAL),
                    None,
                ),
            },
            _ => {
                // No mapping there: EFAULT, whether shrinking or growing.
                let a = if self.low_ok && self.rng.chance(1, 2) {
                    PAGE * self.rng.range(1, 4)
                } else {
                    KERNEL_ADDR + PAGE * self.rng.below(256)
                };
                let (o, nl) = if self.rng.chance(1, 2) {
                    (2 * PAGE, PAGE)
                } else {
                    (PAGE, 2 * PAGE)
                };
                (a, o, nl, 0, Expect::err(libc::EFAULT), None)
            }
        };
        let desc = if (addr..addr + n as u64 * PAGE).contains(&a) {
            desc
        } else {
            "nothing mapped there".to_owned()
        };
        let call = format!(
            "mremap({a:#x}, {}, {}, {flags:#x}) [{desc}]",
            hex(old_len),
            hex(new_len)
        );
        // SAFETY: The old range is (a head of) a region of ours or unmapped; shrinking unmaps
        // only pages of that region, which the model forgets below; the grows and moves
        // attempted are ones the contract refuses (a success is reported as a failure).
        let r = sys_result(unsafe {
            libc::syscall(
                libc::SYS_mremap,
                a as c_long,
                old_len as c_long,
                new_len as c_long,
                flags as c_long,
                0 as c_long,
            )
        });
        self.judge(call, r, &want)?;
        if let (Ok(_), Some((keep, end))) = (r, cut) {
            self.cut(i, keep, end);
        }
        Ok(())
    }

    // --- mprotect, madvise, msync -------------------------------------------------------------

    /// A range argument, mostly inside a random region.
    fn pick_span(&mut self) -> (u64, u64, Span) {
        let i = self.rng.index(self.regions.len());
        let (addr, n) = (self.regions[i].addr, self.regions[i].pages());
        match self.rng.below(20) {
            0..=13 => {
                let (first, pages) = if self.rng.chance(2, 5) {
                    (0, n)
                } else {
                    let first = self.rng.index(n);
                    (first, self.rng.range(1, (n - first) as u64) as usize)
                };
                let short = if self.rng.chance(1, 4) {
                    self.rng.below(PAGE)
                } else {
                    0
                };
                (
                    addr + first as u64 * PAGE,
                    pages as u64 * PAGE - short,
                    Span::In { i, first, pages },
                )
            }
            14 => (addr + PAGE * self.rng.below(n as u64), 0, Span::Zero),
            15 => (addr + self.rng.range(1, PAGE - 1), PAGE, Span::Unaligned),
            16 | 17 => {
                let a = if self.low_ok && self.rng.chance(1, 2) {
                    PAGE * self.rng.range(1, 8)
                } else {
                    KERNEL_ADDR + PAGE * self.rng.below(256)
                };
                (a, PAGE * self.rng.range(1, 4), Span::Unmapped)
            }
            _ => {
                // The rounded length is 0, or the end wraps around below the start.
                let len = if self.rng.chance(1, 2) {
                    u64::MAX - self.rng.below(PAGE - 1)
                } else {
                    0u64.wrapping_sub(addr)
                        .wrapping_add(PAGE * self.rng.range(1, 16))
                };
                (addr, len, Span::Overflow)
            }
        }
    }

    fn span_desc(&self, span: Span) -> String {
        match span {
            Span::In { i, first, pages } => {
                format!(
                    "pages {first}..{} of {}",
                    first + pages,
                    self.regions[i].desc()
                )
            }
            Span::Zero => "length 0".into(),
            Span::Unaligned => "unaligned address".into(),
            Span::Unmapped => "nothing mapped".into(),
            Span::Overflow => "length wraps around".into(),
        }
    }

    fn op_mprotect(&mut self) -> Result<(), String> {
        let (addr, len, span) = self.pick_span();
        let prots = [
            libc::PROT_NONE,
            libc::PROT_READ,
            libc::PROT_WRITE,
            PROT_RW,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::PROT_EXEC,
            PROT_RW | libc::PROT_EXEC,
            libc::PROT_READ | PROT_SEM,
            PROT_RW | PROT_SEM,
            libc::PROT_READ | 0x10,
            libc::PROT_READ | 0x100,
            libc::PROT_READ | libc::PROT_GROWSDOWN,
            libc::PROT_READ | libc::PROT_GROWSUP,
            libc::PROT_GROWSDOWN | libc::PROT_GROWSUP,
        ];
        let prot = prots[self
            .rng
            .weighted(&[10, 30, 6, 25, 5, 3, 3, 4, 4, 2, 2, 2, 2, 2])];
        let grows = prot & (libc::PROT_GROWSDOWN | libc::PROT_GROWSUP);
        let plain = prot & !grows;
        // mm/mprotect.c do_mprotect_pkey(), in its order.
        let alen = page_align(len);
        let want = if grows == libc::PROT_GROWSDOWN | libc::PROT_GROWSUP || addr % PAGE != 0 {
            Expect::err(libc::EINVAL)
        } else if len == 0 {
            Expect::ok(0)
        } else if addr.wrapping_add(alen) <= addr {
            Expect::err(libc::ENOMEM)
        } else if plain & !(PROT_RW | libc::PROT_EXEC | PROT_SEM) != 0 {
            // arch_validate_prot()
            Expect::err(libc::EINVAL)
        } else if let Span::In { i, .. } = span {
            let r = &self.regions[i];
            if grows != 0 {
                // Our areas grow in neither direction.
                Expect::err(libc::EINVAL)
            } else if plain & libc::PROT_EXEC != 0 {
                // The driver cleared VM_MAYEXEC.
                Expect::err(libc::EACCES)
            } else if plain & libc::PROT_WRITE != 0 && r.shared && !r.access.write() {
                // No VM_MAYWRITE for a shared mapping of a read-only descriptor.
                Expect::err(libc::EACCES)
            } else {
                Expect::ok(0)
            }
        } else {
            // Nothing mapped at the start.
            Expect::err(libc::ENOMEM)
        };
        let call = format!(
            "mprotect({addr:#x}, {}, {}) [{}]",
            hex(len),
            prot_name(prot),
            self.span_desc(span)
        );
        // SAFETY: The range is inside a region of ours (whose protection the model follows),
        // unmapped, or refused before any change.
        let r = sys_result(unsafe {
            libc::syscall(
                libc::SYS_mprotect,
                addr as c_long,
                len as c_long,
                prot as c_long,
            )
        });
        self.judge(call, r, &want)?;
        if let (Ok(_), Span::In { i, first, pages }) = (r, span) {
            for p in &mut self.regions[i].prot[first..first + pages] {
                *p = plain & PROT_RW;
            }
        }
        Ok(())
    }

    /// What madvise of `advice` on pages `first..first + pages` of region `i` may return.
    fn advice_expect(&self, advice: i32, i: usize, first: usize, pages: usize) -> Expect {
        let r = &self.regions[i];
        let prots = &r.prot[first..first + pages];
        match advice {
            MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_WILLNEED | MADV_DONTNEED
            | MADV_DONTNEED_LOCKED | MADV_DONTFORK | MADV_DONTDUMP | MADV_KEEPONFORK
            | MADV_COLD | MADV_PAGEOUT => Expect::ok(0),
            // MADV_FREE is for anonymous memory; DOFORK, DODUMP and guard regions are refused
            // for VM_SPECIAL (VM_MIXEDMAP, VM_DONTEXPAND) areas; WIPEONFORK needs anonymous.
            MADV_FREE | MADV_DOFORK | MADV_DODUMP | MADV_WIPEONFORK | MADV_GUARD_INSTALL
            | MADV_GUARD_REMOVE => Expect::err(libc::EINVAL),
            // Punching a hole: EACCES unless shared and writable, then the VFS answers ENODEV
            // (fallocate on a character device).
            MADV_REMOVE => {
                if r.vm_shared() {
                    Expect::err(libc::ENODEV)
                } else {
                    Expect::err(libc::EACCES)
                }
            }
            // Valid only with CONFIG_KSM / CONFIG_TRANSPARENT_HUGEPAGE; they do nothing to a
            // VM_SPECIAL area then (MADV_COLLAPSE refuses it).
            MADV_MERGEABLE | MADV_UNMERGEABLE | MADV_HUGEPAGE | MADV_NOHUGEPAGE => {
                Expect::err(libc::EINVAL).or_ok(0)
            }
            MADV_COLLAPSE => Expect::err(libc::EINVAL),
            // GUP checks the area's permissions: EINVAL where they lack.
            MADV_POPULATE_READ => {
                if prots.iter().all(|p| p & libc::PROT_READ != 0) {
                    Expect::ok(0)
                } else {
                    Expect::err(libc::EINVAL)
                }
            }
            MADV_POPULATE_WRITE => {
                if prots.iter().all(|p| p & libc::PROT_WRITE != 0) {
                    Expect::ok(0)
                } else {
                    Expect::err(libc::EINVAL)
                }
            }
            _ => Expect::err(libc::EINVAL),
        }
    }

    fn op_madvise(&mut self) -> Result<(), String> {
        let (addr, len, span) = self.pick_span();
        let advice = match self.rng.below(20) {
            0..=5 => MADV_DONTNEED,
            6 | 7 => MADV_WILLNEED,
            8 | 9 => MADV_NORMAL,
            10..=16 => self.rng.pick(KNOWN_ADVICE),
            _ => loop {
                // Values that are no advice (HWPOISON and SOFT_OFFLINE are never sent).
                let a = match self.rng.below(3) {
                    0 => self.rng.range(5, 7) as i32,
                    1 => self.rng.range(26, 300) as i32,
                    _ => self.rng.next_u64() as i32,
                };
                if !is_valid_advice(a) {
                    break a;
                }
            },
        };
        // mm/madvise.c do_madvise(): the advice, then check_input_range(), then the areas.
        let alen = page_align(len);
        let want = if !is_valid_advice(advice)
            || !addr.is_multiple_of(PAGE)
            || (len != 0 && alen == 0)
            || addr.wrapping_add(alen) < addr
        {
            Expect::err(libc::EINVAL)
        } else if len == 0 {
            Expect::ok(0)
        } else {
            match span {
                Span::In { i, first, pages } => self.advice_expect(advice, i, first, pages),
                _ => Expect::err(libc::ENOMEM),
            }
        };
        let want = if CONFIG_ADVICE.contains(&advice) {
            want.or(libc::EINVAL)
        } else {
            want
        };
        let call = format!(
            "madvise({addr:#x}, {}, {}) [{}]",
            hex(len),
            advice_name(advice),
            self.span_desc(span)
        );
        // SAFETY: The range is inside a region of ours, unmapped, or refused before any work;
        // the advice values that could poison pages are never sent. Discarded pages of private
        // regions are forgotten by the model below.
        let r = sys_result(unsafe {
            libc::syscall(
                libc::SYS_madvise,
                addr as c_long,
                len as c_long,
                advice as c_long,
            )
        });
        self.judge(call, r, &want)?;
        if let (Ok(_), Span::In { i, first, pages }) = (r, span) {
            match advice {
                MADV_DONTNEED | MADV_DONTNEED_LOCKED => {
                    for s in &mut self.regions[i].shadow[first..first + pages] {
                        *s = None;
                    }
                }
                MADV_DONTFORK => self.regions[i].dontfork = true,
                _ => {}
            }
        }
        Ok(())
    }

    fn op_msync(&mut self) -> Result<(), String> {
        let (addr, len, span) = self.pick_span();
        let flags = [
            libc::MS_ASYNC,
            libc::MS_SYNC,
            libc::MS_INVALIDATE,
            libc::MS_ASYNC | libc::MS_INVALIDATE,
            libc::MS_SYNC | libc::MS_INVALIDATE,
            0,
            libc::MS_ASYNC | libc::MS_SYNC,
            0x8,
        ][self.rng.weighted(&[20, 20, 10, 10, 10, 5, 5, 5])];
        // mm/msync.c, in its order.
        let alen = page_align(len);
        let end = addr.wrapping_add(alen);
        let want = if flags & !(libc::MS_ASYNC | libc::MS_INVALIDATE | libc::MS_SYNC) != 0
            || addr % PAGE != 0
            || (flags & libc::MS_ASYNC != 0 && flags & libc::MS_SYNC != 0)
        {
            Expect::err(libc::EINVAL)
        } else if end < addr {
            Expect::err(libc::ENOMEM)
        } else if end == addr {
            Expect::ok(0)
        } else {
            match span {
                // MS_SYNC of a VM_SHARED area calls vfs_fsync_range(), and so the driver's
                // fsync, which succeeds: the contract says msync works.
                Span::In { .. } => Expect::ok(0),
                _ => Expect::err(libc::ENOMEM),
            }
        };
        let call = format!(
            "msync({addr:#x}, {}, {flags:#x}) [{}]",
            hex(len),
            self.span_desc(span)
        );
        // SAFETY: msync changes no memory contents; the range is ours, unmapped or refused.
        let r = sys_result(unsafe {
            libc::syscall(
                libc::SYS_msync,
                addr as c_long,
                len as c_long,
                flags as c_long,
            )
        });
        self.judge(call, r, &want)
    }

    // --- touching mapped pages ----------------------------------------------------------------

    fn op_touch(&mut self) -> Result<(), String> {
        let i = self.rng.index(self.regions.len());
        let n = self.regions[i].pages();
        let p = self.rng.index(n);
        let prot = self.regions[i].prot[p];
        let (off, len) = page_span(&mut self.rng);
        let at = p as u64 * PAGE + off as u64;
        let len = len as u64;
        let write =
            prot & libc::PROT_WRITE != 0 && (prot & libc::PROT_READ == 0 || self.rng.chance(1, 2));
        if write {
            let r = &self.regions[i];
            let data: Vec<u8> = if r.shared {
                // Shared: only the contract's bytes.
                self.c.slice(r.dev_off + at, len).into_owned()
            } else {
                (0..len).map(|_| self.rng.next_u64() as u8).collect()
            };
            let base = self.regions[i].addr + at;
            for (k, &b) in data.iter().enumerate() {
                // SAFETY: The byte lies in page `p` of region `i`, which the model says is
                // mapped and writable.
                unsafe { poke(base + k as u64, b) };
            }
            if !self.regions[i].shared {
                self.set_private(i, at, &data);
            }
            self.touches += 1;
            if prot & libc::PROT_READ != 0 {
                self.verify_region(i, at, len, "read back after writing through the mapping")?;
            }
        } else if prot & libc::PROT_READ != 0 {
            self.verify_region(i, at, len, "read through the mapping")?;
        }
        Ok(())
    }

    // --- read, write, pread, pwrite -----------------------------------------------------------

    fn pick_count(&mut self) -> u64 {
        let size = self.size;
        match self.rng.below(14) {
            0 => 0,
            1 => 1,
            2..=5 => self.rng.range(2, 2 * PAGE),
            6 => size,
            7 => size + self.rng.range(1, PAGE),
            8 => MAX_RW_COUNT + 1,
            9 => 1 << 31,
            10 => 1 << self.rng.range(32, 63),
            11 => u64::MAX - self.rng.below(PAGE),
            12 => self
                .rng
                .range(USER_MAX_4L - (1 << 32), USER_MAX_4L + (1 << 32)),
            _ => self.rng.next_u64(),
        }
    }

    fn pick_pos(&mut self) -> i64 {
        let size = self.size as i64;
        match self.rng.below(14) {
            0 => 0,
            1..=4 => self.rng.range(0, size as u64) as i64,
            5 => size,
            6 => size + self.rng.range(1, 2 * PAGE) as i64,
            7 => i64::MAX,
            8 => i64::MAX - self.rng.below(2 * PAGE) as i64,
            9 => -1,
            10 => i64::MIN,
            11 => -(self.rng.range(1, 1 << 40) as i64),
            12 => size - self.rng.range(1, 64) as i64,
            _ => self.rng.next_u64() as i64,
        }
    }

    /// A mapping to `read` into at file position `pos`: (region, offset in it, most bytes to
    /// ask for, whether the first byte faults).
    ///
    /// Into a MAP_SHARED mapping only at the very bytes being read (so the buffer does not
    /// change) or at a page that is not writable (nothing is copied); into a MAP_PRIVATE one
    /// anywhere (the model records what lands there).
    fn pick_region_dest(&mut self, pos: i64) -> Option<(usize, u64, u64, bool)> {
        for _ in 0..4 {
            let i = self.rng.index(self.regions.len());
            let r = &self.regions[i];
            let len = r.len();
            let identity = pos >= r.dev_off as i64 && (pos as u64) < r.dev_off + len;
            let ro = if r.shared && identity && self.rng.chance(3, 4) {
                pos as u64 - r.dev_off
            } else if r.shared {
                let closed: Vec<usize> = (0..r.pages())
                    .filter(|&p| r.prot[p] & libc::PROT_WRITE == 0)
                    .collect();
                if closed.is_empty() {
                    continue;
                }
                let p = closed[self.rng.index(closed.len())];
                p as u64 * PAGE + self.rng.below(PAGE)
            } else {
                self.rng.below(len)
            };
            let k = r.prefix_with(ro, libc::PROT_WRITE);
            if k == 0 {
                return Some((i, ro, len - ro, true));
            }
            if r.shared && r.dev_off + ro != pos as u64 {
                continue;
            }
            return Some((i, ro, k, false));
        }
        None
    }

    /// A mapping to `write` from at file position `pos`: (region, offset, most bytes, whether
    /// the first byte faults). The bytes must be the contract's bytes at `pos`.
    fn pick_region_src(&mut self, pos: i64) -> Option<(usize, u64, u64, bool)> {
        for _ in 0..4 {
            let i = self.rng.index(self.regions.len());
            let r = &self.regions[i];
            let len = r.len();
            if self.rng.chance(1, 4) {
                let closed: Vec<usize> = (0..r.pages()).filter(|&p| r.prot[p] == 0).collect();
                if !closed.is_empty() {
                    let p = closed[self.rng.index(closed.len())];
                    let ro = p as u64 * PAGE + self.rng.below(PAGE);
                    return Some((i, ro, len - ro, true));
                }
            }
            if pos < r.dev_off as i64 || pos as u64 >= r.dev_off + len {
                continue;
            }
            let ro = pos as u64 - r.dev_off;
            // x86 maps write-only pages readable: only PROT_NONE stops the kernel's copy.
            let k = r.prefix_with(ro, PROT_RW);
            if k == 0 {
                return Some((i, ro, len - ro, true));
            }
            // The bytes the model holds must be the contract's (MAP_PRIVATE pages may differ).
            let mut m = 0;
            while m < k {
                let o = ro + m;
                if r.shadow[(o / PAGE) as usize].is_none() {
                    m = (o / PAGE + 1) * PAGE - ro;
                    continue;
                }
                if self.model_byte(r, o) != self.c.byte(r.dev_off + o) {
                    break;
                }
                m += 1;
            }
            let m = m.min(k);
            if m > 0 {
                return Some((i, ro, m, false));
            }
        }
        None
    }

    /// What a `read`/`write` family call may return (fs/read_write.c, then the driver).
    fn rw_expect(&self, kind: Rw, fd: &FdArg, pos: i64, count: u64, ptr: u64, buf: Buf) -> Expect {
        if kind.positional() && pos < 0 {
            return Expect::err(libc::EINVAL);
        }
        let Some(access) = fd.access else {
            return Expect::err(libc::EBADF);
        };
        if (kind.reads() && !access.read()) || (!kind.reads() && !access.write()) {
            return Expect::err(libc::EBADF);
        }
        // access_ok(): the end must not wrap and must be a user address; between the 4-level
        // and the 5-level limit it depends on the paging mode.
        let end = ptr.wrapping_add(count);
        if end < ptr || end > USER_MAX_5L {
            return Expect::err(libc::EFAULT);
        }
        let maybe_efault = end > USER_MAX_4L;
        let want = (|| {
            // rw_verify_area(): the end position must not overflow.
            if kind.positional() && (i128::from(pos) + i128::from(count)) > i128::from(i64::MAX) {
                return Expect::err(libc::EINVAL);
            }
            let count = count.min(MAX_RW_COUNT);
            let pos = pos as u64;
            if kind.reads() {
                if pos >= self.size || count == 0 {
                    return Expect::ok(0);
                }
            } else {
                if count == 0 {
                    return Expect::ok(0);
                }
                if pos >= self.size {
                    return Expect::err(libc::ENOSPC);
                }
            }
            let n = count.min(self.size - pos);
            match buf {
                Buf::Heap | Buf::Region { fault: false, .. } => Expect::ok(n as i64),
                Buf::Unmapped(_) | Buf::Kernel(_) | Buf::Region { fault: true, .. } => {
                    Expect::err(libc::EFAULT)
                }
            }
        })();
        if maybe_efault {
            want.or(libc::EFAULT)
        } else {
            want
        }
    }

    fn op_rw(&mut self, kind: Rw) -> Result<(), String> {
        let fd = self.pick_fd();
        let pos: i64 = if kind.positional() {
            self.pick_pos()
        } else {
            fd.idx.map_or(0, |i| self.fds[i].pos as i64)
        };
        let mut buf = Buf::Heap;
        let mut count = self.pick_count();
        match self.rng.below(20) {
            12..=15 if !self.regions.is_empty() => {
                let picked = if kind.reads() {
                    self.pick_region_dest(pos)
                } else {
                    self.pick_region_src(pos)
                };
                if let Some((i, ro, most, fault)) = picked {
                    buf = Buf::Region { i, ro, fault };
                    count = match self.rng.below(5) {
                        0 => 0,
                        1 | 2 => most,
                        3 => 1.min(most),
                        _ => self.rng.range(0, most),
                    };
                }
            }
            16 => buf = Buf::Unmapped(0),
            17 if self.low_ok => {
                buf = Buf::Unmapped(PAGE * self.rng.range(1, LOW_LIMIT / PAGE - 1))
            }
            18 | 19 => buf = Buf::Kernel(KERNEL_ADDR + self.rng.below(1 << 20)),
            _ => {}
        }
        // The kernel moves at most min(count, size - pos) bytes; an ordinary buffer has room for
        // HEAP_LIMIT of them.
        let room = if pos >= 0 && (pos as u64) < self.size {
            self.size - pos as u64
        } else {
            0
        };
        if matches!(buf, Buf::Heap) && room > HEAP_LIMIT && count.min(MAX_RW_COUNT) > HEAP_LIMIT {
            count = self.rng.range(0, HEAP_LIMIT);
        }
        let moved = count.min(MAX_RW_COUNT).min(room);
        // The source of a write from memory of ours: the contract's bytes at `pos`.
        let src: Cow<'_, [u8]> = if matches!(buf, Buf::Heap) && !kind.reads() && moved > 0 {
            self.c.slice(pos as u64, moved)
        } else {
            Cow::Borrowed(&self.c.image[..0])
        };
        let ptr: u64 = match buf {
            Buf::Heap if kind.reads() => self.scratch.as_mut_ptr() as u64,
            Buf::Heap => src.as_ptr() as u64,
            Buf::Region { i, ro, .. } => self.regions[i].addr + ro,
            Buf::Unmapped(a) | Buf::Kernel(a) => a,
        };
        let want = self.rw_expect(kind, &fd, pos, count, ptr, buf);
        let what = match buf {
            Buf::Heap => "buffer".to_owned(),
            Buf::Region { i, ro, fault } => format!(
                "at offset {ro:#x} of {}{}",
                self.regions[i].desc(),
                if fault { ", not accessible there" } else { "" }
            ),
            Buf::Unmapped(_) => "unmapped user address".to_owned(),
            Buf::Kernel(_) => "kernel address".to_owned(),
        };
        let at = if kind.positional() {
            format!(", {pos}")
        } else {
            String::new()
        };
        let call = format!(
            "{}({}, {ptr:#x}, {}{at}) [{what}, position {pos}]",
            kind.name(),
            fd.desc(),
            hex(count)
        );
        // SAFETY: The kernel writes (read) or reads (write) at most `moved` bytes at `ptr`:
        // `scratch` has room for them and `src` holds them; a device mapping is chosen so that
        // the whole transfer lies in pages of the region that allow it (or none does, and the
        // first byte faults), and what lands in a MAP_PRIVATE page is recorded below; the
        // other addresses have no memory behind them. The buffer only ever receives the
        // contract's bytes.
        let r = sys_result(unsafe {
            match kind {
                Rw::Read => libc::syscall(
                    libc::SYS_read,
                    fd.fd as c_long,
                    ptr as c_long,
                    count as c_long,
                ),
                Rw::Write => libc::syscall(
                    libc::SYS_write,
                    fd.fd as c_long,
                    ptr as c_long,
                    count as c_long,
                ),
                Rw::Pread => libc::syscall(
                    libc::SYS_pread64,
                    fd.fd as c_long,
                    ptr as c_long,
                    count as c_long,
                    pos as c_long,
                ),
                Rw::Pwrite => libc::syscall(
                    libc::SYS_pwrite64,
                    fd.fd as c_long,
                    ptr as c_long,
                    count as c_long,
                    pos as c_long,
                ),
            }
        });
        drop(src);
        self.judge(call.clone(), r, &want)?;
        if matches!(buf, Buf::Region { .. }) {
            self.count(
                format!("{} (a device mapping as the buffer)", kind.name()),
                r,
            );
        }
        let Ok(n) = r else { return Ok(()) };
        let n = n as u64;
        if !kind.positional() {
            if let Some(i) = fd.idx {
                self.fds[i].pos += n;
            }
        }
        if n == 0 || !kind.reads() {
            return Ok(());
        }
        let pos = pos as u64;
        match buf {
            Buf::Heap => {
                let got = &self.scratch[..n as usize];
                self.c
                    .check(pos, got)
                    .map_err(|m| format!("{call}: wrong bytes: {m}"))?;
            }
            Buf::Region { i, ro, .. } => {
                if !self.regions[i].shared {
                    let data = self.c.slice(pos, n).into_owned();
                    self.set_private(i, ro, &data);
                }
                let readable = self.regions[i].prefix_with(ro, libc::PROT_READ);
                let check = n.min(readable).min(512);
                self.verify_region(i, ro, check, &format!("after {call}"))?;
            }
            _ => {}
        }
        Ok(())
    }

    // --- lseek, ioctl -------------------------------------------------------------------------

    fn op_lseek(&mut self) -> Result<(), String> {
        let fd = self.pick_fd();
        let size = self.size as i64;
        let whence: u32 = match self.rng.weighted(&[30, 25, 20, 8, 8, 9]) {
            0 => libc::SEEK_SET as u32,
            1 => libc::SEEK_CUR as u32,
            2 => libc::SEEK_END as u32,
            3 => libc::SEEK_DATA as u32,
            4 => libc::SEEK_HOLE as u32,
            _ => self.rng.pick(&[5, 6, 0xffff, u32::MAX]),
        };
        let off: i64 = match self.rng.below(12) {
            0 => 0,
            1..=3 => self.rng.range(0, 2 * size as u64) as i64 - size,
            4 => size,
            5 => -size,
            6 => size + 1,
            7 => -(size + 1),
            8 => i64::MAX,
            9 => i64::MIN,
            10 => self.rng.range(0, PAGE) as i64 - PAGE as i64 / 2,
            _ => self.rng.next_u64() as i64,
        };
        let pos = fd.idx.map_or(0, |i| self.fds[i].pos as i64);
        let want = if fd.access.is_none() {
            Expect::err(libc::EBADF)
        } else if whence > 4 {
            // ksys_lseek(): beyond SEEK_MAX.
            Expect::err(libc::EINVAL)
        } else if whence <= 2 {
            let base = match whence {
                0 => 0,
                1 => pos,
                _ => size,
            };
            let t = i128::from(base) + i128::from(off);
            if (0..=i128::from(size)).contains(&t) {
                Expect::ok(t as i64)
            } else {
                Expect::err(libc::EINVAL)
            }
        } else {
            // SEEK_DATA/SEEK_HOLE: the contract knows only SET/CUR/END; anything else is EINVAL.
            Expect::err(libc::EINVAL)
        };
        let whence_name = match whence {
            0 => "SEEK_SET".to_owned(),
            1 => "SEEK_CUR".to_owned(),
            2 => "SEEK_END".to_owned(),
            3 => "SEEK_DATA".to_owned(),
            4 => "SEEK_HOLE".to_owned(),
            w => format!("whence {w:#x}"),
        };
        let call = format!(
            "lseek({}, {off}, {whence_name}) [position {pos}]",
            fd.desc()
        );
        // SAFETY: lseek touches no memory of ours.
        let r = sys_result(unsafe {
            libc::syscall(
                libc::SYS_lseek,
                fd.fd as c_long,
                off as c_long,
                whence as c_long,
            )
        });
        self.judge(call, r, &want)?;
        if let (Ok(p), Some(i)) = (r, fd.idx) {
            self.fds[i].pos = p as u64;
        }
        Ok(())
    }

    fn op_ioctl(&mut self) -> Result<(), String> {
        let fd = self.pick_fd();
        let cmd = match self.rng.below(3) {
            0 => self.rng.pick(SOME_IOCTLS),
            _ => loop {
                let c = self.rng.next_u64() as u32;
                if !VFS_IOCTLS.contains(&c) {
                    break c;
                }
            },
        };
        let arg = match self.rng.below(3) {
            0 => 0,
            1 => self.scratch.as_ptr() as u64,
            _ => self.rng.next_u64(),
        };
        let want = if fd.access.is_none() {
            Expect::err(libc::EBADF)
        } else {
            Expect::err(libc::ENOTTY)
        };
        let call = format!("ioctl({}, {cmd:#x}, {arg:#x})", fd.desc());
        // SAFETY: The commands the VFS itself handles (which may use the argument) are never
        // sent; the driver has no ioctl, so nothing reads or writes through `arg`.
        let r = sys_result(unsafe {
            libc::syscall(
                libc::SYS_ioctl,
                fd.fd as c_long,
                cmd as c_long,
                arg as c_long,
            )
        });
        self.judge(call, r, &want)
    }

    // --- fork ---------------------------------------------------------------------------------

    fn op_fork(&mut self) -> Result<(), String> {
        let child_seed = derive_seed(self.seed, self.step, 0xf04c);
        flush_all();
        // SAFETY: The fuzzer is single-threaded; the child works on its copy of the state and
        // leaves with `_exit`, never returning into the caller.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            self.child(child_seed);
        }
        let r = sys_result(pid.into());
        self.judge(
            format!("fork() [child seed {child_seed:#x}]"),
            r,
            &Expect::ok_in(1, i64::from(i32::MAX)),
        )?;
        self.forks += 1;
        let status = wait_for(pid)?;
        if let Some(problem) = wait_status_problem(status) {
            return Err(format!(
                "the child forked at this step (child seed {child_seed:#x}) {problem}"
            ));
        }
        // The child shared our open files, and so their positions.
        for i in 0..self.fds.len() {
            let fd = self.fds[i].fd;
            // SAFETY: lseek touches no memory of ours.
            let r = sys_result(unsafe {
                libc::syscall(
                    libc::SYS_lseek,
                    fd as c_long,
                    0 as c_long,
                    libc::SEEK_CUR as c_long,
                )
            });
            self.judge(
                format!("lseek(fd {fd}, 0, SEEK_CUR) after the child"),
                r,
                &Expect::ok_in(0, self.size as i64),
            )?;
            if let Ok(p) = r {
                self.fds[i].pos = p as u64;
            }
        }
        Ok(())
    }

    /// The forked child: a few random operations on its copy of everything, then exit.
    fn child(&mut self, seed: u64) -> ! {
        child_signals(CHILD_ALARM);
        self.in_child = true;
        self.rng = Rng::new(seed);
        // Mappings with MADV_DONTFORK are not in the child.
        self.regions.retain(|r| !r.dontfork);
        let steps = self.rng.range(1, 6);
        for k in 0..steps {
            if let Err(e) = self.one_step() {
                println!(
                    "# child of step {} (child seed {seed:#x}) failed at its operation {k}: {}",
                    self.step,
                    one_line(&e)
                );
                for line in &self.recent {
                    println!("#   child: {line}");
                }
                exit_now(1);
            }
        }
        exit_now(0)
    }

    // --- the end ------------------------------------------------------------------------------

    /// Checks every readable page of every mapping, unmaps them all and closes every descriptor.
    fn finish(&mut self) -> Result<(), String> {
        for i in 0..self.regions.len() {
            for p in 0..self.regions[i].pages() {
                if self.regions[i].prot[p] & libc::PROT_READ != 0 {
                    self.verify_region(i, p as u64 * PAGE, PAGE, "final check of the mapping")?;
                }
            }
        }
        while let Some(r) = self.regions.pop() {
            let call = format!("munmap({:#x}, {}) [{}]", r.addr, hex(r.len()), r.desc());
            // SAFETY: The region is ours and the model forgets it.
            let res = sys_result(unsafe {
                libc::syscall(libc::SYS_munmap, r.addr as c_long, r.len() as c_long)
            });
            self.judge(call, res, &Expect::ok(0))?;
        }
        while let Some(f) = self.fds.pop() {
            // SAFETY: The pool owns the descriptor and forgets it.
            let res = sys_result(unsafe { libc::close(f.fd) }.into());
            self.judge(format!("close(fd {})", f.fd), res, &Expect::ok(0))?;
        }
        Ok(())
    }
}

fn run_fuzz(dev: &str, o: &FuzzOpts) -> Result<String, String> {
    println!("# seed: {}", o.seed);
    WATCH_MODE.store(2, Ordering::Relaxed);
    WATCH_SEED.store(o.seed, Ordering::Relaxed);
    WATCH_SECS.store(o.seconds + WATCHDOG_SLACK, Ordering::Relaxed);
    install_fatal_handlers(&[libc::SIGALRM, libc::SIGSEGV, libc::SIGBUS]);
    // SAFETY: alarm takes a plain number.
    unsafe { libc::alarm((o.seconds + WATCHDOG_SLACK) as u32) };

    let c = open_contents(dev)?;
    let base = read_stats()?;
    println!(
        "# {dev}: {} pages ({} bytes); up to {} iterations or {} s",
        c.pages, c.size, o.iterations, o.seconds
    );
    let mut fz = Fuzz::new(dev, &c, o.seed, o.trace)?;
    if !fz.low_ok {
        println!("# note: something is mapped below {LOW_LIMIT:#x}; low addresses are not used");
    }
    let checker = File::open(dev).map_err(|e| format!("open {dev}: {}", describe(&e)))?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.seconds);
    let mut done = 0;
    let mut time_limited = false;
    let reproduce = |step: u64| {
        format!(
            "mapstress --device {dev} fuzz --seed {} --iterations {}",
            o.seed,
            step + 1
        )
    };
    for step in 0..o.iterations {
        if Instant::now() >= deadline {
            time_limited = true;
            break;
        }
        fz.step = step;
        WATCH_STEP.store(step, Ordering::Relaxed);
        let mut r = fz.one_step();
        if r.is_ok() && step % 1000 == 999 {
            r = verify_fd(checker.as_raw_fd(), &c, 0, c.size.min(1 << 20))
                .map_err(|e| format!("checkpoint after step {step}: {e}"));
        }
        if let Err(e) = r {
            println!("# FAIL at step {step} of seed {}: {}", o.seed, one_line(&e));
            println!("# the last calls, oldest first:");
            for line in &fz.recent {
                println!("#   {line}");
            }
            println!("# reproduce with: {}", reproduce(step));
            return Err(format!("seed={} step={step}: {e}", o.seed));
        }
        done = step + 1;
        if done % 5000 == 0 {
            println!(
                "# {done} iterations, {} calls, {} descriptors and {} mappings open, {:.1} s",
                fz.calls,
                fz.fds.len(),
                fz.regions.len(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "# {done} iterations, {} calls in {:.1} s",
        fz.calls,
        start.elapsed().as_secs_f64()
    );
    if time_limited {
        println!(
            "# stopped by --seconds {} after {done} of {} iterations",
            o.seconds, o.iterations
        );
    }
    WATCH_STEP.store(done, Ordering::Relaxed);
    fz.finish()
        .map_err(|e| format!("seed={} at the end: {e}", o.seed))?;
    verify_fd(checker.as_raw_fd(), &c, 0, c.size)
        .map_err(|e| format!("seed={} at the end: {e}", o.seed))?;
    drop(checker);
    println!("# the whole buffer matches the contract (pread)");
    fz.print_tally();
    let now = read_stats()?;
    check_counters("after closing and unmapping everything", &base, &now)
        .map_err(|e| format!("seed={}: {e}", o.seed))?;
    println!(
        "# counters back to the baseline (mappings {}, opens {}); faults +{}",
        now.mappings,
        now.opens,
        now.faults.saturating_sub(base.faults)
    );
    Ok(format!(
        "seed={} iterations={done} calls={} touches={} forks={}{}",
        o.seed,
        fz.calls,
        fz.touches,
        fz.forks,
        if time_limited {
            " time_limited=yes"
        } else {
            ""
        }
    ))
}
