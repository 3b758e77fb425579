//! mapcheck: the test suite of mapdrv, run as root in the guest with the module loaded.
//!
//! Every test checks one line of the driver's contract (reads, writes, seeks, mappings, demand
//! paging, the debugfs counters) and prints one TAP-like line: `ok - NAME` or
//! `not ok - NAME: REASON`. Run `mapcheck --help` for the options.
//!
//! # How tests run
//!
//! Each test runs in a child process of its own (`fork`), for three reasons:
//!
//! - The release profile aborts on panic, so `catch_unwind` cannot keep a panicking test from
//!   ending the run; a child can die alone. A panic hook sends the panic message to the runner.
//! - A crash (`SIGSEGV`, `SIGBUS`) or a hang (an `alarm` ends the child) is reported as the
//!   failure of that test only.
//! - Whatever a test maps or opens is gone when its process is gone, so the next test starts
//!   from the same counters.
//!
//! A failing test sends its reason to the runner through a pipe. Tests that need more
//! processes (fork, concurrency) fork again with the same helper ([`spawn`]); the runner kills
//! and reaps whatever a test left behind before the next one starts.
//!
//! The counters of `/sys/kernel/debug/mapdrv/stats` are global, so tests compare them with a
//! baseline read at the start of the test, never with absolute values. Tests that change the
//! buffer write the original bytes back; the runner checks the buffer after each of them (and
//! after every failure) and restores it if needed, so one broken test cannot break the next.

use std::ffi::CString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use maptest::{
    buffer_size, describe, errno_name, mknod_char, page_header, proc_devices_major, signal_name,
    Expected, MapOptions, Mapping, Mismatch, Stats, PAGEWALK_PATH, PAGE_SIZE, STATS_PATH,
};

const HELP: &str = "\
mapcheck: the test suite of the mapdrv driver (run as root, module loaded)

USAGE:
    mapcheck [--device PATH] [--list] [--fault-around] [NAME...]

Runs every test, or only the NAMEs given, one after the other, and prints
`ok - NAME` or `not ok - NAME: REASON` for each. Exits with status 0 if all
passed, 1 if any failed, 2 on a usage error.

OPTIONS:
    --device PATH   the device node to test (default /dev/mapdrv); the
                    dev_node and unprivileged_eacces tests always check
                    /dev/mapdrv itself
    --fault-around  run the fault-around tests instead, for the module loaded
                    with fault_around=16 and at least 64 pages
    --list          print the names of the tests and exit
    -h, --help     print this help
";

/// The node the driver's device class makes devtmpfs create.
const DEV_NODE: &str = "/dev/mapdrv";
/// The driver's name in `/proc/devices`.
const DRIVER_NAME: &str = "mapdrv";
/// A test still running after this long is killed (`SIGALRM`).
const TEST_TIMEOUT_SECS: u32 = 30;
/// How long a process waits for another one (see [`Signal::wait`]).
const WAIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Processes, and threads in each, of `concurrent_faults`.
const PROCESSES: usize = 4;
const THREADS: usize = 4;
/// The user and group `unprivileged_eacces` becomes.
const NOBODY: u32 = 65534;
/// At most this many pages are touched one by one in the demand paging tests (all of them
/// for the default 16-page buffer), so that large buffers stay fast.
const SAMPLE_PAGES: usize = 16;
/// Failure reasons are cut to this many bytes (less than a pipe's minimum capacity, so that a
/// child never blocks writing its reason).
const MAX_REASON: usize = 3000;

/// What a test returns: the reason of a failure, on one line.
type TestResult = Result<(), String>;

/// Returns `Err(format!(...))` from the enclosing function unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

// ---------------------------------------------------------------------------------------------
// The tests, in the order they run.
// ---------------------------------------------------------------------------------------------

/// A test: its name is the name of its function.
struct Test {
    name: &'static str,
    run: fn(&Ctx) -> TestResult,
    /// Whether it writes to the buffer; the runner then checks that the buffer was restored.
    writes: bool,
}

/// Builds the test table from function names; `name: writes` marks a test that writes.
macro_rules! tests {
    ($($name:ident $(: $flag:ident)?),* $(,)?) => {
        &[$(Test { name: stringify!($name), run: $name, writes: tests!(@flag $($flag)?) }),*]
    };
    (@flag writes) => { true };
    (@flag) => { false };
}

// The fault-around tests (`--fault-around`), in a file of their own.
#[path = "mapcheck/fault_around.rs"]
mod fault_around;

const TESTS: &[Test] = tests![
    // The device node, the debugfs file.
    dev_node,
    unprivileged_eacces,
    open_minor_enxio,
    stats_file,
    // read, pread, lseek.
    read_whole,
    read_chunks,
    pread_offsets,
    pread_end,
    llseek_whence,
    llseek_einval,
    // write, pwrite.
    write_pwrite: writes,
    write_short: writes,
    write_enospc: writes,
    write_rdonly_ebadf: writes,
    // mmap and what can be done with a mapping.
    mmap_whole,
    mmap_offset,
    mmap_einval,
    mmap_prot_exec,
    mprotect_exec,
    mmap_write_rdonly,
    mmap_shared_write: writes,
    mmap_private_cow: writes,
    mremap_grow,
    mremap_shrink,
    munmap_partial,
    mmap_outlives_fd,
    fork_shared: writes,
    // Demand paging and the counters.
    madvise_dontneed,
    map_populate,
    demand_paging_mincore,
    demand_paging_faults,
    faults_under_vma_lock,
    counter_opens,
    counter_mappings,
    counter_mappings_fork,
    counter_mappings_split,
    concurrent_faults,
    // Edge cases of every argument.
    boundaries: writes,
];

// ---------------------------------------------------------------------------------------------
// Errors: errno and signal names, one-line reasons.
// ---------------------------------------------------------------------------------------------

/// Turns an `io::Result` into a test result whose error says what was being done.
trait OrFail<T> {
    fn or_fail(self, what: impl fmt::Display) -> Result<T, String>;
}

impl<T> OrFail<T> for io::Result<T> {
    fn or_fail(self, what: impl fmt::Display) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {}", describe(&e)))
    }
}

/// Checks that `result` is the error `want`.
fn expect_errno<T: fmt::Debug>(what: &str, result: io::Result<T>, want: i32) -> TestResult {
    match result {
        Ok(v) => {
            let shown = format!("{v:?}");
            let shown = if shown == "()" {
                String::new()
            } else {
                format!(" ({shown})")
            };
            Err(format!(
                "{what}: expected {}, got success{shown}",
                errno_name(want)
            ))
        }
        Err(e) if e.raw_os_error() == Some(want) => Ok(()),
        Err(e) => Err(format!(
            "{what}: expected {}, got {}",
            errno_name(want),
            describe(&e)
        )),
    }
}

/// Collapses a reason onto one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Compares bytes `got` with `want`, both starting at buffer offset `start`.
fn compare(what: &str, start: usize, got: &[u8], want: &[u8]) -> TestResult {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} bytes, expected {}",
            got.len(),
            want.len()
        ));
    }
    match got.iter().zip(want).position(|(g, w)| g != w) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: {}",
            Mismatch {
                offset: start + i,
                want: want[i],
                got: got[i]
            }
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// The context of a run: the device and what its buffer holds.
// ---------------------------------------------------------------------------------------------

/// Byte offset of page `k`.
fn page(k: usize) -> usize {
    k * PAGE_SIZE
}

/// Where an mmap that should have failed put its mapping (already unmapped again).
struct MappedAt(usize);

impl fmt::Debug for MappedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mapped at {:#x}", self.0)
    }
}

/// Tries an mmap that should fail; if it succeeds, the mapping is unmapped at once.
fn try_map(file: &File, offset: usize, len: usize, opts: MapOptions) -> io::Result<MappedAt> {
    Mapping::new(file, offset as u64, len, opts).map(|m| MappedAt(m.addr()))
}

/// A read-only `MAP_SHARED` mapping, the default.
const RO: MapOptions = MapOptions {
    write: false,
    exec: false,
    private: false,
    populate: false,
};
/// A writable `MAP_SHARED` mapping.
const RW_SHARED: MapOptions = MapOptions { write: true, ..RO };
/// A writable `MAP_PRIVATE` mapping.
const RW_PRIVATE: MapOptions = MapOptions {
    write: true,
    private: true,
    ..RO
};

struct Ctx {
    device: String,
    /// Buffer size in bytes, from `lseek(SEEK_END)`.
    size: usize,
    pages: usize,
    expected: Expected,
}

impl Ctx {
    fn new(device: &str) -> Result<Ctx, String> {
        let file = File::open(device).or_fail(format!("open {device}"))?;
        let size = buffer_size(&file).or_fail(format!("lseek(SEEK_END) on {device}"))?;
        let size = usize::try_from(size).map_err(|_| format!("buffer size {size} is too big"))?;
        ensure!(
            size.is_multiple_of(PAGE_SIZE),
            "buffer size {size} (from lseek SEEK_END) is not a multiple of {PAGE_SIZE}"
        );
        let pages = size / PAGE_SIZE;
        ensure!(
            pages >= 4,
            "the buffer has {pages} pages; mapcheck needs at least 4"
        );
        Ok(Ctx {
            device: device.to_owned(),
            size,
            pages,
            expected: Expected::new(pages),
        })
    }

    /// Opens the device read-only, or read-write.
    fn open(&self, write: bool) -> Result<File, String> {
        let mode = if write { "O_RDWR" } else { "O_RDONLY" };
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(&self.device)
            .or_fail(format!("open {} {mode}", self.device))
    }

    /// Maps `pages` pages of `file` from page `first`.
    fn map(
        &self,
        file: &File,
        first: usize,
        pages: usize,
        opts: MapOptions,
    ) -> Result<Mapping, String> {
        Mapping::new(file, page(first) as u64, page(pages), opts).or_fail(format!(
            "mmap of {pages} pages at page offset {first} ({})",
            opts.describe()
        ))
    }

    /// The expected contents of `len` bytes from buffer offset `off`.
    fn expected_bytes(&self, off: usize, len: usize) -> Vec<u8> {
        (off..off + len).map(|o| self.expected.byte(o)).collect()
    }

    /// Checks every byte of a mapping that begins at buffer offset `start`.
    fn check_mapping(&self, what: &str, m: &Mapping, start: usize) -> TestResult {
        self.expected
            .check(start, &m.to_vec())
            .map_err(|mis| format!("{what}: {mis}"))
    }

    /// Checks the whole buffer as `pread` returns it.
    fn check_file(&self, what: &str, file: &File) -> TestResult {
        let got = pread_exact(file, 0, self.size)?;
        self.expected
            .check(0, &got)
            .map_err(|mis| format!("{what}: pread: {mis}"))
    }

    /// Writes the original bytes of `[off, off + len)` back with `pwrite`.
    fn restore(&self, file: &File, off: usize, len: usize) -> TestResult {
        file.write_all_at(&self.expected_bytes(off, len), off as u64)
            .or_fail(format!("pwrite restoring {len} bytes at {off}"))
    }

    /// Checks the buffer; if it differs from the contract, writes the contract back and
    /// returns the first difference.
    fn repair(&self) -> Result<Option<Mismatch>, String> {
        let file = self.open(true)?;
        let got = pread_exact(&file, 0, self.size)?;
        match self.expected.check(0, &got) {
            Ok(()) => Ok(None),
            Err(mis) => {
                self.restore(&file, 0, self.size)?;
                Ok(Some(mis))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// System call helpers.
// ---------------------------------------------------------------------------------------------

/// `lseek(2)` with any offset and whence (std's `Seek` cannot express `SEEK_SET` with -1).
fn lseek(file: &File, offset: i64, whence: libc::c_int) -> io::Result<i64> {
    // SAFETY: lseek on a descriptor that `file` keeps open; no memory is involved.
    let pos = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if pos < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pos)
    }
}

/// The file position (`lseek(fd, 0, SEEK_CUR)`).
fn position(file: &File) -> Result<i64, String> {
    lseek(file, 0, libc::SEEK_CUR).or_fail("lseek(0, SEEK_CUR)")
}

/// Reads exactly `len` bytes at `off` with `pread`, failing on a premature end of file.
fn pread_exact(file: &File, off: usize, len: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], (off + done) as u64) {
            Ok(0) => {
                return Err(format!(
                    "pread of {len} bytes at {off}: end of file after {done}"
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("pread of {len} bytes at {off}: {}", describe(&e))),
        }
    }
    Ok(buf)
}

/// Whether no mapping covers the page at `addr`: `mincore(2)` fails with `ENOMEM` then.
fn page_unmapped(addr: usize) -> Result<bool, String> {
    // One byte on the stack: no allocation, which might map memory, between an munmap and
    // this check.
    let mut vec = [0u8; 1];
    // SAFETY: mincore only reads page tables, whether or not the range is mapped, and writes
    // one byte per page, here one, into `vec`.
    let ret = unsafe { libc::mincore(addr as *mut libc::c_void, PAGE_SIZE, vec.as_mut_ptr()) };
    if ret == 0 {
        return Ok(false);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOMEM) {
        Ok(true)
    } else {
        Err(format!("mincore at {addr:#x}: {}", describe(&e)))
    }
}

/// Checks which pages of `m` are resident against `want`.
fn expect_resident(what: &str, m: &Mapping, want: &[bool]) -> TestResult {
    let got = m.resident().or_fail(format!("{what}: mincore"))?;
    ensure!(
        got == want,
        "{what}: mincore says resident pages {}, expected {}",
        page_list(&got),
        page_list(want)
    );
    Ok(())
}

/// The indices of the `true` flags as ranges: `[0-3, 7]`, or `none`.
fn page_list(flags: &[bool]) -> String {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < flags.len() {
        if !flags[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < flags.len() && flags[i + 1] {
            i += 1;
        }
        ranges.push(if start == i {
            format!("{i}")
        } else {
            format!("{start}-{i}")
        });
        i += 1;
    }
    if ranges.is_empty() {
        "none".into()
    } else {
        format!("[{}]", ranges.join(", "))
    }
}

/// The pages the demand paging tests touch one by one, in a scrambled order: all pages (or
/// [`SAMPLE_PAGES`] spread over a large buffer), odd ones downwards, then even ones upwards.
fn touch_order(pages: usize) -> Vec<usize> {
    let sample: Vec<usize> = if pages <= SAMPLE_PAGES {
        (0..pages).collect()
    } else {
        (0..SAMPLE_PAGES)
            .map(|i| i * (pages - 1) / (SAMPLE_PAGES - 1))
            .collect()
    };
    let odd = sample.iter().skip(1).step_by(2).rev();
    let even = sample.iter().step_by(2);
    odd.chain(even).copied().collect()
}

/// Whether the file system holding `path` is mounted `noexec`.
fn is_noexec(path: &str) -> Result<bool, String> {
    let c = CString::new(path).map_err(|_| format!("bad path {path:?}"))?;
    let mut st = MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a C string and `st` is valid for writing one `statvfs`.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(format!(
            "statvfs {path}: {}",
            describe(&io::Error::last_os_error())
        ));
    }
    // SAFETY: statvfs succeeded and filled `st` (which was zeroed before anyway).
    let st = unsafe { st.assume_init() };
    Ok(st.f_flag & libc::ST_NOEXEC != 0)
}

/// A device node this process made with `mknod`, removed on drop.
struct TempNode(String);

impl TempNode {
    fn create(tag: &str, major: u32, minor: u32) -> Result<TempNode, String> {
        let path = format!("/tmp/mapcheck-{}-{tag}", std::process::id());
        let _ = fs::remove_file(&path);
        mknod_char(&path, major, minor, 0o600)
            .or_fail(format!("mknod {path} c {major} {minor}"))?;
        Ok(TempNode(path))
    }
}

impl Drop for TempNode {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A path to the device on a file system that allows `PROT_EXEC`, so that a refusal comes from
/// the driver and not from a `noexec` mount (devtmpfs is `noexec` with CONFIG_DEVTMPFS_SAFE).
struct ExecNode {
    path: String,
    _temp: Option<TempNode>,
}

fn exec_node(ctx: &Ctx) -> Result<ExecNode, String> {
    if !is_noexec(&ctx.device)? {
        return Ok(ExecNode {
            path: ctx.device.clone(),
            _temp: None,
        });
    }
    let rdev = fs::metadata(&ctx.device)
        .or_fail(format!("stat {}", ctx.device))?
        .rdev();
    let node = TempNode::create("exec", libc::major(rdev), libc::minor(rdev))?;
    ensure!(
        !is_noexec(&node.0)?,
        "{} and /tmp are both on noexec mounts: a PROT_EXEC refusal would prove nothing",
        ctx.device
    );
    Ok(ExecNode {
        path: node.0.clone(),
        _temp: Some(node),
    })
}

/// Sets `O_NONBLOCK` on a descriptor.
fn set_nonblocking(fd: RawFd) -> Result<(), String> {
    // SAFETY: fcntl on a descriptor the caller keeps open; no memory is involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: As above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(format!(
            "fcntl O_NONBLOCK: {}",
            describe(&io::Error::last_os_error())
        ));
    }
    Ok(())
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> Result<(File, File), String> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", describe(&io::Error::last_os_error())));
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and nothing else owns them.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

// ---------------------------------------------------------------------------------------------
// Processes: fork a function, learn how it ended.
// ---------------------------------------------------------------------------------------------

/// The write end of this process's reason pipe (-1 in the runner): where a failing child, or
/// the panic hook, sends its reason.
static REASON_FD: AtomicI32 = AtomicI32::new(-1);

/// Sends a failure reason to the parent (or prints it, in the runner).
fn report_reason(reason: &str) {
    let fd = REASON_FD.load(Ordering::Relaxed);
    if fd < 0 {
        eprintln!("mapcheck: {reason}");
        return;
    }
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    // SAFETY: `fd` is the write end of this process's reason pipe, which `child_main` keeps
    // open until the process exits; `ManuallyDrop` keeps this handle from closing it.
    let mut pipe = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let _ = pipe.write_all(&reason.as_bytes()[..end]);
}

/// A forked child running a function.
struct Child {
    pid: libc::pid_t,
    /// Read end of the pipe the child writes its failure reason to.
    reason: File,
}

/// Runs `f` in a forked child; [`Child::wait`] tells how it went.
///
/// Callers must be single-threaded: tests start threads only in processes that fork no more.
fn spawn(f: impl FnOnce() -> TestResult) -> Result<Child, String> {
    let (read_end, write_end) = pipe()?;
    // Nothing buffered may be printed twice.
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SAFETY: The calling process is single-threaded (see above), so the child's copy of it is
    // consistent; the child runs `f` and leaves with `_exit`, never returning into the caller.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(format!("fork: {}", describe(&io::Error::last_os_error()))),
        0 => {
            drop(read_end);
            child_main(f, write_end)
        }
        _ => Ok(Child {
            pid,
            reason: read_end,
        }),
    }
}

/// The child side of [`spawn`].
fn child_main(f: impl FnOnce() -> TestResult, reason: File) -> ! {
    REASON_FD.store(reason.as_raw_fd(), Ordering::Relaxed);
    // With panic = "abort" a panic never comes back here: the hook has sent its message, and
    // the parent sees SIGABRT. With unwinding (debug builds) it is caught here.
    let code = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(why)) => {
            report_reason(&why);
            1
        }
        Err(_) => 2,
    };
    // SAFETY: `_exit` ends the process at once, without running destructors or exit handlers
    // that belong to the parent's copy of the state. `reason` stays open until then.
    unsafe { libc::_exit(code) }
}

impl Child {
    /// Waits for the child to end: `Ok` if `f` returned `Ok`, else why not.
    fn wait(self) -> TestResult {
        let status = loop {
            let mut status = 0;
            // SAFETY: `status` is valid for writing.
            let ret = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if ret == self.pid {
                break status;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(format!("waitpid {}: {}", self.pid, describe(&e)));
            }
        };
        // The child has ended, but its own children may still hold the pipe open: read what
        // is there without waiting for an end of file.
        let mut text = Vec::new();
        if set_nonblocking(self.reason.as_raw_fd()).is_ok() {
            let _ = (&self.reason).read_to_end(&mut text);
        }
        let reason = one_line(&String::from_utf8_lossy(&text));
        if libc::WIFEXITED(status) {
            match libc::WEXITSTATUS(status) {
                0 => Ok(()),
                _ if !reason.is_empty() => Err(reason),
                code => Err(format!("exited with status {code}")),
            }
        } else if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            let mut killed = format!("killed by signal {sig} ({})", signal_name(sig));
            if sig == libc::SIGALRM {
                killed = format!("timed out after {TEST_TIMEOUT_SECS} s ({killed})");
            }
            Err(if reason.is_empty() {
                killed
            } else {
                format!("{reason} ({killed})")
            })
        } else {
            Err(format!("unexpected wait status {status:#x}"))
        }
    }
}

/// A signal between processes: a pipe on which each `post` writes a byte and each `wait`
/// consumes one.
struct Signal {
    read_end: File,
    write_end: File,
}

impl Signal {
    fn new() -> Result<Signal, String> {
        let (read_end, write_end) = pipe()?;
        // Several processes may wait on the same pipe: one that loses the race for a byte
        // must go back to poll, not block in read.
        set_nonblocking(read_end.as_raw_fd())?;
        Ok(Signal {
            read_end,
            write_end,
        })
    }

    /// Posts `n` signals.
    fn post(&self, n: usize) -> TestResult {
        (&self.write_end)
            .write_all(&vec![b'!'; n])
            .or_fail("writing to a pipe")
    }

    /// Waits for `n` signals, at most [`WAIT_TIMEOUT`].
    fn wait(&self, n: usize) -> TestResult {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let mut got = 0;
        let mut buf = [0u8; 64];
        while got < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "timed out after {} s waiting for another process ({got} of {n} signals)",
                    WAIT_TIMEOUT.as_secs()
                ));
            }
            let mut pfd = libc::pollfd {
                fd: self.read_end.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 1000) as libc::c_int;
            // SAFETY: `pfd` is one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("poll: {}", describe(&e)));
                }
                continue;
            }
            let want = (n - got).min(buf.len());
            match (&self.read_end).read(&mut buf[..want]) {
                Ok(k) => got += k,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(format!("reading a pipe: {}", describe(&e))),
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Counters.
// ---------------------------------------------------------------------------------------------

fn read_stats() -> Result<Stats, String> {
    Stats::read().or_fail(format!("reading {STATS_PATH}"))
}

/// Expected changes of the counters since a baseline; `None` is not checked.
#[derive(Clone, Copy, Default)]
struct Want {
    faults: Option<i64>,
    mappings: Option<i64>,
    opens: Option<i64>,
    pages_mapped: Option<i64>,
}

impl Want {
    fn pages_mapped(self, delta: usize) -> Self {
        Want {
            pages_mapped: Some(delta as i64),
            ..self
        }
    }
    fn faults(self, delta: usize) -> Self {
        Want {
            faults: Some(delta as i64),
            ..self
        }
    }
    fn mappings(self, delta: usize) -> Self {
        Want {
            mappings: Some(delta as i64),
            ..self
        }
    }
    fn opens(self, delta: usize) -> Self {
        Want {
            opens: Some(delta as i64),
            ..self
        }
    }
}

/// Reads the counters and checks them against `base` plus the wanted changes.
fn expect_counts(when: &str, base: &Stats, want: Want) -> TestResult {
    let now = read_stats()?;
    let checks = [
        ("faults", base.faults, now.faults, want.faults),
        ("mappings", base.mappings, now.mappings, want.mappings),
        ("opens", base.opens, now.opens, want.opens),
        (
            "pages_mapped",
            base.pages_mapped,
            now.pages_mapped,
            want.pages_mapped,
        ),
    ];
    let bad: Vec<String> = checks
        .iter()
        .filter_map(|&(name, b, n, delta)| {
            let delta = delta?;
            let expected = b as i64 + delta;
            (n as i64 != expected)
                .then(|| format!("{name} is {n}, expected {expected} (baseline {b} {delta:+})"))
        })
        .collect();
    ensure!(bad.is_empty(), "{when}: {}", bad.join(", "));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The device node and the debugfs file.
// ---------------------------------------------------------------------------------------------

/// The major number `/proc/devices` lists for the driver.
fn driver_major() -> Result<u32, String> {
    proc_devices_major(DRIVER_NAME)
        .or_fail("reading /proc/devices")?
        .ok_or_else(|| format!("/proc/devices lists no character device {DRIVER_NAME:?}"))
}

/// /dev/mapdrv is a char device, major from /proc/devices, minor 0, mode 0600, owned by root.
fn dev_node(_ctx: &Ctx) -> TestResult {
    let md = fs::metadata(DEV_NODE).or_fail(format!("stat {DEV_NODE}"))?;
    ensure!(
        md.file_type().is_char_device(),
        "{DEV_NODE} is not a character device (st_mode {:o})",
        md.mode()
    );
    let major = driver_major()?;
    let (maj, min) = (libc::major(md.rdev()), libc::minor(md.rdev()));
    ensure!(
        (maj, min) == (major, 0),
        "{DEV_NODE} is device {maj}:{min}, expected {major}:0 (major from /proc/devices)"
    );
    let perm = md.mode() & 0o7777;
    ensure!(
        perm == 0o600,
        "{DEV_NODE} has mode {perm:04o}, expected 0600"
    );
    ensure!(
        md.uid() == 0,
        "{DEV_NODE} belongs to uid {}, expected 0 (root)",
        md.uid()
    );
    Ok(())
}

/// An unprivileged process can open neither /dev/mapdrv nor the stats file.
fn unprivileged_eacces(_ctx: &Ctx) -> TestResult {
    spawn(|| {
        // SAFETY: setgroups with an empty list reads no memory; setgid and setuid take plain
        // numbers. This child is single-threaded, so the credentials of all its threads change.
        let ok = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setgid(NOBODY) == 0
                && libc::setuid(NOBODY) == 0
        };
        if !ok {
            return Err(format!(
                "cannot become uid/gid {NOBODY}: {}",
                describe(&io::Error::last_os_error())
            ));
        }
        let who = format!("as uid {NOBODY}");
        expect_errno(
            &format!("open {DEV_NODE} O_RDONLY {who}"),
            File::open(DEV_NODE),
            libc::EACCES,
        )?;
        expect_errno(
            &format!("open {DEV_NODE} O_RDWR {who}"),
            OpenOptions::new().read(true).write(true).open(DEV_NODE),
            libc::EACCES,
        )?;
        expect_errno(
            &format!("reading {STATS_PATH} {who}"),
            fs::read(STATS_PATH),
            libc::EACCES,
        )?;
        // The page walk shows kernel addresses: nothing of it for an unprivileged reader.
        expect_errno(
            &format!("reading {PAGEWALK_PATH} {who}"),
            fs::read(PAGEWALK_PATH),
            libc::EACCES,
        )
    })?
    .wait()
}

/// Opening a node for (MAJOR, 1), a minor the driver does not serve, fails with ENXIO.
fn open_minor_enxio(_ctx: &Ctx) -> TestResult {
    let major = driver_major()?;
    let node = TempNode::create("minor1", major, 1)?;
    let base = read_stats()?;
    let what = format!("open {} (device {major}:1)", node.0);
    expect_errno(
        &format!("{what} O_RDONLY"),
        File::open(&node.0),
        libc::ENXIO,
    )?;
    expect_errno(
        &format!("{what} O_RDWR"),
        OpenOptions::new().read(true).write(true).open(&node.0),
        libc::ENXIO,
    )?;
    expect_counts("after the failed opens", &base, Want::default().opens(0))
}

/// The stats file exists, is not readable by group or others, parses, and agrees on the size.
fn stats_file(ctx: &Ctx) -> TestResult {
    let md = fs::metadata(STATS_PATH).or_fail(format!("stat {STATS_PATH}"))?;
    ensure!(
        md.file_type().is_file(),
        "{STATS_PATH} is not a regular file"
    );
    let perm = md.mode() & 0o7777;
    ensure!(
        perm & 0o044 == 0,
        "{STATS_PATH} has mode {perm:04o}: readable by group or others"
    );
    let text = fs::read_to_string(STATS_PATH).or_fail(format!("reading {STATS_PATH}"))?;
    let stats =
        Stats::parse(&text).map_err(|e| format!("{STATS_PATH} does not parse ({e}): {text:?}"))?;
    ensure!(
        stats.pages == ctx.pages as u64,
        "{STATS_PATH} says pages: {}, but lseek(SEEK_END) gives {} pages",
        stats.pages,
        ctx.pages
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// read, pread, lseek.
// ---------------------------------------------------------------------------------------------

/// read(2) with a buffer larger than the device returns the whole buffer, then 0.
fn read_whole(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let mut buf = vec![0u8; ctx.size + PAGE_SIZE];
    let mut total = 0;
    loop {
        let n = (&f)
            .read(&mut buf[total..])
            .or_fail(format!("read at position {total}"))?;
        if n == 0 {
            break;
        }
        total += n;
        ensure!(
            total <= ctx.size,
            "read(2) returned {total} bytes, more than the {} of the buffer",
            ctx.size
        );
    }
    ensure!(
        total == ctx.size,
        "read(2) reached the end after {total} bytes, expected {}",
        ctx.size
    );
    ctx.expected
        .check(0, &buf[..total])
        .map_err(|mis| format!("read(2): {mis}"))?;
    let n = (&f).read(&mut buf).or_fail("read at the end")?;
    ensure!(n == 0, "read(2) at the end returned {n}, expected 0");
    let pos = position(&f)?;
    ensure!(
        pos == ctx.size as i64,
        "file position after reading it all is {pos}, expected {}",
        ctx.size
    );
    Ok(())
}

/// read(2) in 1000-byte pieces (crossing page boundaries) returns the buffer in order.
fn read_chunks(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let mut buf = [0u8; 1000];
    let mut pos = 0;
    loop {
        let n = (&f)
            .read(&mut buf)
            .or_fail(format!("read(1000) at position {pos}"))?;
        if n == 0 {
            break;
        }
        ensure!(
            pos + n <= ctx.size,
            "read(2) went past the end: {} bytes",
            pos + n
        );
        ctx.expected
            .check(pos, &buf[..n])
            .map_err(|mis| format!("read(1000) at {pos}: {mis}"))?;
        pos += n;
    }
    ensure!(
        pos == ctx.size,
        "read(2) reached the end after {pos} bytes, expected {}",
        ctx.size
    );
    Ok(())
}

/// pread at various offsets returns those bytes and leaves the file position alone.
fn pread_offsets(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let last = ctx.pages - 1;
    let cases = [
        (0, 64),
        (1, 10),
        (PAGE_SIZE - 7, 20),
        (page(1), page_header(1, ctx.pages).len() + 8),
        (page(last), 64),
        (ctx.size / 2 + 123, 300),
        (ctx.size - 1, 1),
    ];
    for (off, len) in cases {
        let got = pread_exact(&f, off, len)?;
        ctx.expected
            .check(off, &got)
            .map_err(|mis| format!("pread({len}) at {off}: {mis}"))?;
    }
    let pos = position(&f)?;
    ensure!(pos == 0, "pread moved the file position to {pos}");
    Ok(())
}

/// pread at or past the end returns 0; one that crosses the end is short.
fn pread_end(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let size = ctx.size as u64;
    let mut buf = [0u8; 100];
    for off in [
        size,
        size + 1,
        size + PAGE_SIZE as u64,
        2 * size,
        size + (1 << 40),
    ] {
        let n = f
            .read_at(&mut buf[..16], off)
            .or_fail(format!("pread(16) at {off}"))?;
        ensure!(
            n == 0,
            "pread(16) at {off} (buffer of {size} bytes) returned {n}, expected 0"
        );
    }
    let off = ctx.size - 10;
    let n = f
        .read_at(&mut buf, off as u64)
        .or_fail(format!("pread(100) at {off}"))?;
    ensure!(
        n == 10,
        "pread(100) at {off}, 10 bytes before the end, returned {n}, expected 10"
    );
    ctx.expected
        .check(off, &buf[..n])
        .map_err(|mis| format!("pread(100) at {off}: {mis}"))?;
    lseek(&f, 0, libc::SEEK_END).or_fail("lseek(0, SEEK_END)")?;
    let n = (&f).read(&mut buf).or_fail("read at the end")?;
    ensure!(
        n == 0,
        "read(2) after lseek(0, SEEK_END) returned {n}, expected 0"
    );
    Ok(())
}

/// SEEK_SET, SEEK_CUR and SEEK_END move the position, and reads follow it.
fn llseek_whence(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let size = ctx.size as i64;
    let page = PAGE_SIZE as i64;
    let seek = |off: i64, whence: libc::c_int, name: &str, want: i64| -> TestResult {
        let got = lseek(&f, off, whence).or_fail(format!("lseek({off}, {name})"))?;
        ensure!(
            got == want,
            "lseek({off}, {name}) returned {got}, expected {want}"
        );
        Ok(())
    };
    let read_at_pos = |pos: usize, len: usize| -> TestResult {
        let mut buf = vec![0u8; len];
        let n = (&f)
            .read(&mut buf)
            .or_fail(format!("read({len}) at position {pos}"))?;
        ensure!(n == len, "read({len}) at position {pos} returned {n}");
        ctx.expected
            .check(pos, &buf)
            .map_err(|mis| format!("read after lseek: {mis}"))
    };
    seek(100, libc::SEEK_SET, "SEEK_SET", 100)?;
    read_at_pos(100, 10)?;
    seek(0, libc::SEEK_CUR, "SEEK_CUR", 110)?;
    seek(-10, libc::SEEK_CUR, "SEEK_CUR", 100)?;
    seek(page, libc::SEEK_CUR, "SEEK_CUR", 100 + page)?;
    read_at_pos(100 + PAGE_SIZE, 5)?;
    seek(0, libc::SEEK_END, "SEEK_END", size)?;
    seek(-page, libc::SEEK_END, "SEEK_END", size - page)?;
    read_at_pos(
        ctx.size - PAGE_SIZE,
        page_header(ctx.pages - 1, ctx.pages).len(),
    )?;
    seek(size, libc::SEEK_SET, "SEEK_SET", size)?;
    seek(-size, libc::SEEK_CUR, "SEEK_CUR", 0)?;
    seek(0, libc::SEEK_SET, "SEEK_SET", 0)
}

/// A seek to before 0 or past the end fails with EINVAL and leaves the position alone.
fn llseek_einval(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let size = ctx.size as i64;
    let start = 200;
    lseek(&f, start, libc::SEEK_SET).or_fail("lseek(200, SEEK_SET)")?;
    let cases = [
        (-1, libc::SEEK_SET, "SEEK_SET"),
        (size + 1, libc::SEEK_SET, "SEEK_SET"),
        (size * 2, libc::SEEK_SET, "SEEK_SET"),
        (-(start + 1), libc::SEEK_CUR, "SEEK_CUR"),
        (size - start + 1, libc::SEEK_CUR, "SEEK_CUR"),
        (1, libc::SEEK_END, "SEEK_END"),
        (-(size + 1), libc::SEEK_END, "SEEK_END"),
    ];
    for (off, whence, name) in cases {
        expect_errno(
            &format!("lseek({off}, {name}) at position {start} of {size}"),
            lseek(&f, off, whence),
            libc::EINVAL,
        )?;
        let pos = position(&f)?;
        ensure!(
            pos == start,
            "the failed lseek({off}, {name}) moved the position from {start} to {pos}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// write, pwrite.
// ---------------------------------------------------------------------------------------------

/// The expected bytes at `off`, inverted: certainly different from the contract.
fn inverted(ctx: &Ctx, off: usize, len: usize) -> Vec<u8> {
    ctx.expected_bytes(off, len).iter().map(|b| !b).collect()
}

/// pwrite and write change exactly the bytes written, at the right place.
fn write_pwrite(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    // pwrite across the boundary of pages 0 and 1.
    let off = PAGE_SIZE - 8;
    let data = inverted(ctx, off, 16);
    let n = f
        .write_at(&data, off as u64)
        .or_fail(format!("pwrite(16) at {off}"))?;
    ensure!(n == 16, "pwrite(16) at {off} returned {n}");
    let mut want = ctx.expected_bytes(off - 8, 32);
    want[8..24].copy_from_slice(&data);
    compare(
        "pread after pwrite",
        off - 8,
        &pread_exact(&f, off - 8, 32)?,
        &want,
    )?;

    // write(2) at the file position, which it advances.
    let pos = page(2) + 100;
    lseek(&f, pos as i64, libc::SEEK_SET).or_fail(format!("lseek({pos}, SEEK_SET)"))?;
    let data2 = inverted(ctx, pos, 10);
    let n = (&f)
        .write(&data2)
        .or_fail(format!("write(10) at position {pos}"))?;
    ensure!(n == 10, "write(10) at position {pos} returned {n}");
    let now = position(&f)?;
    ensure!(
        now == (pos + 10) as i64,
        "write(10) at {pos} left the position at {now}, expected {}",
        pos + 10
    );
    compare("pread after write", pos, &pread_exact(&f, pos, 10)?, &data2)?;

    ctx.restore(&f, off, 16)?;
    ctx.restore(&f, pos, 10)?;
    ctx.check_file("after restoring", &f)
}

/// A write that crosses the end is shortened to the bytes before the end.
fn write_short(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    let off = ctx.size - 10;
    let data: Vec<u8> = (0..100u8).map(|i| 0xa5 ^ i).collect();
    let n = f
        .write_at(&data, off as u64)
        .or_fail(format!("pwrite(100) at {off}"))?;
    ensure!(
        n == 10,
        "pwrite(100) at {off}, 10 bytes before the end, returned {n}, expected 10"
    );
    compare(
        "pread after the short pwrite",
        off,
        &pread_exact(&f, off, 10)?,
        &data[..10],
    )?;

    let pos = ctx.size - 5;
    lseek(&f, pos as i64, libc::SEEK_SET).or_fail(format!("lseek({pos}, SEEK_SET)"))?;
    let n = (&f)
        .write(&data[..20])
        .or_fail(format!("write(20) at position {pos}"))?;
    ensure!(
        n == 5,
        "write(20) at position {pos}, 5 bytes before the end, returned {n}, expected 5"
    );
    let now = position(&f)?;
    ensure!(
        now == ctx.size as i64,
        "the short write left the position at {now}, expected {}",
        ctx.size
    );
    compare(
        "pread after the short write",
        pos,
        &pread_exact(&f, pos, 5)?,
        &data[..5],
    )?;

    ctx.restore(&f, off, 10)?;
    ctx.check_file("after restoring", &f)
}

/// A write at or past the end fails with ENOSPC and changes nothing.
fn write_enospc(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    let size = ctx.size as u64;
    for off in [size, size + 1, size + PAGE_SIZE as u64, 2 * size] {
        expect_errno(
            &format!("pwrite(8) at {off} (buffer of {size} bytes)"),
            f.write_at(&[0x5a; 8], off),
            libc::ENOSPC,
        )?;
    }
    lseek(&f, 0, libc::SEEK_END).or_fail("lseek(0, SEEK_END)")?;
    expect_errno(
        &format!("write(8) at position {size} (the end)"),
        (&f).write(&[0x5a; 8]),
        libc::ENOSPC,
    )?;
    let pos = position(&f)?;
    ensure!(
        pos == size as i64,
        "the failed write moved the position to {pos}"
    );
    ctx.check_file("after the failed writes", &f)
}

/// write and pwrite on an O_RDONLY descriptor fail with EBADF.
fn write_rdonly_ebadf(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    expect_errno(
        "write(8) on an O_RDONLY fd",
        (&f).write(&[0x5a; 8]),
        libc::EBADF,
    )?;
    expect_errno(
        "pwrite(8) at 100 on an O_RDONLY fd",
        f.write_at(&[0x5a; 8], 100),
        libc::EBADF,
    )?;
    ctx.check_file("after the failed writes", &f)
}

// ---------------------------------------------------------------------------------------------
// mmap.
// ---------------------------------------------------------------------------------------------

/// A shared and a private mapping of the whole buffer show its contents.
fn mmap_whole(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    ctx.check_mapping("MAP_SHARED mapping of the whole buffer", &m, 0)?;
    let p = ctx.map(
        &f,
        0,
        ctx.pages,
        MapOptions {
            private: true,
            ..RO
        },
    )?;
    ctx.check_mapping("MAP_PRIVATE mapping of the whole buffer", &p, 0)
}

/// A mapping at a page offset inside the buffer maps from that page.
fn mmap_offset(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let pages = ctx.pages;
    let mut firsts = vec![1, pages / 2, pages - 1];
    firsts.dedup();
    for first in firsts {
        let m = ctx.map(&f, first, pages - first, RO)?;
        let header = page_header(first, pages);
        let got = m.read_range(0, header.len());
        ensure!(
            got == header.as_bytes(),
            "mapping at page offset {first} begins with {:?}, expected {header:?}",
            String::from_utf8_lossy(&got)
        );
        ctx.check_mapping(&format!("mapping at page offset {first}"), &m, page(first))?;
    }
    let first = pages - 2;
    let m = ctx.map(&f, first, 1, RO)?;
    ctx.check_mapping(
        &format!("one-page mapping at page offset {first}"),
        &m,
        page(first),
    )
}

/// A mapping that does not fit in the buffer fails with EINVAL.
fn mmap_einval(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let pages = ctx.pages;
    let cases = [
        (0, pages + 1, "one page longer than the buffer"),
        (pages, 1, "offset at the end"),
        (pages - 1, 2, "last page and one more"),
        (pages + 1, 1, "offset past the end"),
    ];
    for opts in [
        RO,
        MapOptions {
            private: true,
            ..RO
        },
    ] {
        for (first, len, why) in cases {
            expect_errno(
                &format!(
                    "mmap of {len} pages at page offset {first} of {pages} ({why}; {})",
                    opts.describe()
                ),
                try_map(&f, page(first), page(len), opts),
                libc::EINVAL,
            )?;
        }
    }
    Ok(())
}

/// PROT_EXEC is refused with EPERM.
fn mmap_prot_exec(ctx: &Ctx) -> TestResult {
    let node = exec_node(ctx)?;
    let ro = File::open(&node.path).or_fail(format!("open {} O_RDONLY", node.path))?;
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&node.path)
        .or_fail(format!("open {} O_RDWR", node.path))?;
    let cases = [
        (&ro, MapOptions { exec: true, ..RO }),
        (
            &ro,
            MapOptions {
                exec: true,
                private: true,
                ..RO
            },
        ),
        (
            &rw,
            MapOptions {
                exec: true,
                ..RW_SHARED
            },
        ),
    ];
    for (file, opts) in cases {
        expect_errno(
            &format!("mmap ({}) of {}", opts.describe(), node.path),
            try_map(file, 0, ctx.size, opts),
            libc::EPERM,
        )?;
    }
    Ok(())
}

/// A read-only mapping cannot be made executable later: mprotect fails with EACCES.
fn mprotect_exec(ctx: &Ctx) -> TestResult {
    let node = exec_node(ctx)?;
    let f = File::open(&node.path).or_fail(format!("open {} O_RDONLY", node.path))?;
    for opts in [
        RO,
        MapOptions {
            private: true,
            ..RO
        },
    ] {
        let kind = if opts.private {
            "MAP_PRIVATE"
        } else {
            "MAP_SHARED"
        };
        let m = ctx.map(&f, 0, ctx.pages, opts)?;
        m.read(0);
        expect_errno(
            &format!("mprotect(PROT_READ|PROT_EXEC) of a read-only {kind} mapping"),
            m.mprotect(libc::PROT_READ | libc::PROT_EXEC),
            libc::EACCES,
        )?;
        let line = m
            .maps_line()
            .or_fail("finding the mapping in /proc/self/maps")?;
        let perms = line.split_whitespace().nth(1).unwrap_or("");
        ensure!(
            !perms.contains('x'),
            "after the failed mprotect the mapping is {perms:?}: {line}"
        );
        ctx.check_mapping(&format!("{kind} mapping after the failed mprotect"), &m, 0)?;
    }
    Ok(())
}

/// A writable MAP_SHARED mapping of an O_RDONLY descriptor is refused with EACCES, at mmap
/// time and at mprotect time.
fn mmap_write_rdonly(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    expect_errno(
        "mmap (PROT_READ|PROT_WRITE, MAP_SHARED) of an O_RDONLY fd",
        try_map(&f, 0, ctx.size, RW_SHARED),
        libc::EACCES,
    )?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    expect_errno(
        "mprotect(PROT_READ|PROT_WRITE) of a MAP_SHARED mapping of an O_RDONLY fd",
        m.mprotect(libc::PROT_READ | libc::PROT_WRITE),
        libc::EACCES,
    )
}

/// Offsets the mapping write tests write to: a touched page, a page header, an untouched page.
fn write_offsets(ctx: &Ctx) -> [usize; 3] {
    [100, page(1), page(ctx.pages - 1) + 200]
}

/// Writes through a MAP_SHARED mapping reach the buffer: pread and another mapping see them.
fn mmap_shared_write(ctx: &Ctx) -> TestResult {
    let rw = ctx.open(true)?;
    let ro = ctx.open(false)?;
    let a = ctx.map(&rw, 0, ctx.pages, RW_SHARED)?;
    let b = ctx.map(&ro, 0, ctx.pages, RO)?;
    // Page 0 of `b` is mapped before the writes, the others after.
    b.read(0);
    let mut want = ctx.expected_bytes(0, ctx.size);
    for off in write_offsets(ctx) {
        want[off] = !want[off];
        a.write(off, want[off]);
    }
    compare("the written mapping", 0, &a.to_vec(), &want)?;
    compare(
        "pread after writes through MAP_SHARED",
        0,
        &pread_exact(&rw, 0, ctx.size)?,
        &want,
    )?;
    compare(
        "another MAP_SHARED mapping (another open)",
        0,
        &b.to_vec(),
        &want,
    )?;
    // Writing the original bytes back with pwrite shows in both mappings.
    for off in write_offsets(ctx) {
        ctx.restore(&rw, off, 1)?;
    }
    ctx.check_mapping("the written mapping after pwrite restored it", &a, 0)?;
    ctx.check_mapping("the other mapping after pwrite restored it", &b, 0)?;
    ctx.check_file("after restoring", &rw)
}

/// Writes through a MAP_PRIVATE mapping stay in that mapping.
fn mmap_private_cow(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let p = ctx.map(&f, 0, ctx.pages, RW_PRIVATE)?;
    let shared = ctx.map(&f, 0, ctx.pages, RO)?;
    let p2 = ctx.map(&f, 0, ctx.pages, RW_PRIVATE)?;
    // Page 0 is mapped (read-only) before it is written; the last page is not.
    p.read(0);
    shared.read(0);
    p2.read(0);
    let mut want = ctx.expected_bytes(0, ctx.size);
    for off in write_offsets(ctx) {
        want[off] = !want[off];
        p.write(off, want[off]);
    }
    compare("the MAP_PRIVATE mapping written to", 0, &p.to_vec(), &want)?;
    ctx.check_file("after writes through MAP_PRIVATE", &f)?;
    ctx.check_mapping(
        "MAP_SHARED mapping after writes through MAP_PRIVATE",
        &shared,
        0,
    )?;
    ctx.check_mapping(
        "another MAP_PRIVATE mapping after writes through the first",
        &p2,
        0,
    )?;

    // A write through the second private mapping does not show in the first.
    let off = write_offsets(ctx)[0];
    let other = ctx.expected.byte(off) ^ 0x0f;
    p2.write(off, other);
    let got = p.read(off);
    ensure!(
        got == want[off],
        "a MAP_PRIVATE write of {other:#04x} at {off} changed another MAP_PRIVATE mapping: read {got:#04x}, expected {:#04x}",
        want[off]
    );
    ctx.check_mapping(
        "MAP_SHARED mapping after writes through two MAP_PRIVATE mappings",
        &shared,
        0,
    )?;
    ctx.check_file("after writes through two MAP_PRIVATE mappings", &f)?;

    // MADV_DONTNEED drops the private copies: the buffer shows through again.
    p.madvise(0, ctx.size, libc::MADV_DONTNEED)
        .or_fail("madvise(MADV_DONTNEED)")?;
    ctx.check_mapping(
        "MAP_PRIVATE mapping after MADV_DONTNEED dropped its copies",
        &p,
        0,
    )
}

/// Checks that growing `m` in place to `new_len` fails; a failure other than EFAULT is noted
/// on stderr.
fn expect_no_growth(m: &mut Mapping, new_len: usize, what: &str) -> TestResult {
    let old = m.len();
    // EFAULT is the kernel's answer for a VM_DONTEXPAND area, checked before anything that
    // could refuse the growth for other reasons (room, limits): it shows the driver forbade it.
    expect_errno(
        &format!("mremap from {old} to {new_len} bytes ({what})"),
        m.remap(new_len),
        libc::EFAULT,
    )
}

/// The mapping cannot grow with mremap, not even into free space inside the buffer.
fn mremap_grow(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let mut m = ctx.map(&f, 0, ctx.pages, RO)?;
    m.read(0);
    // Free the last page, so that growing back has room and only the driver can refuse it.
    m.unmap_tail(PAGE_SIZE).or_fail("munmap of the last page")?;
    let after = m.addr() + m.len();
    ensure!(
        page_unmapped(after)?,
        "the page after the mapping is mapped again after munmap"
    );
    expect_no_growth(&mut m, ctx.size, "by one page, into the free page after it")?;
    expect_no_growth(&mut m, ctx.size + PAGE_SIZE, "past the end of the buffer")?;

    // Nor by moving it.
    let (addr, len) = (m.addr(), m.len());
    // SAFETY: On failure nothing changes. On success the mapping has moved: the old range,
    // which `m` owns, is gone, so `m` is forgotten below and the new range unmapped.
    let moved = unsafe {
        libc::mremap(
            addr as *mut libc::c_void,
            len,
            len + PAGE_SIZE,
            libc::MREMAP_MAYMOVE,
        )
    };
    if moved != libc::MAP_FAILED {
        // SAFETY: `moved` is the moved mapping, which no handle owns.
        unsafe { libc::munmap(moved, len + PAGE_SIZE) };
        std::mem::forget(m);
        return Err(format!(
            "mremap(MREMAP_MAYMOVE) from {len} to {} bytes succeeded",
            len + PAGE_SIZE
        ));
    }
    let err = io::Error::last_os_error();
    ensure!(
        err.raw_os_error() == Some(libc::EFAULT),
        "mremap(MREMAP_MAYMOVE) from {len} to {} bytes: expected EFAULT, got {}",
        len + PAGE_SIZE,
        describe(&err)
    );
    ensure!(
        m.len() == ctx.size - PAGE_SIZE,
        "the mapping is now {} bytes",
        m.len()
    );
    ctx.check_mapping("mapping after the failed mremap calls", &m, 0)
}

/// Shrinking with mremap works, keeps the bytes, and frees the rest of the range.
fn mremap_shrink(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let base = read_stats()?;
    let mut m = ctx.map(&f, 0, ctx.pages, RO)?;
    m.read(0);
    let keep = ctx.pages / 2;
    m.remap(page(keep))
        .or_fail(format!("mremap from {} to {keep} pages", ctx.pages))?;
    for k in keep..ctx.pages {
        ensure!(
            page_unmapped(m.addr() + page(k))?,
            "page {k} is still mapped after mremap shrank the mapping to {keep} pages"
        );
    }
    // Pages 1.. were never touched: they fault in now, after the shrink.
    ctx.check_mapping("mapping shrunk by mremap", &m, 0)?;
    expect_counts(
        "after shrinking with mremap",
        &base,
        Want::default().mappings(1),
    )?;

    // The same with a mapping at a page offset.
    let mut o = ctx.map(&f, 1, ctx.pages - 1, RO)?;
    o.remap(PAGE_SIZE)
        .or_fail(format!("mremap from {} to 1 page", ctx.pages - 1))?;
    ctx.check_mapping("mapping at page offset 1 shrunk to one page", &o, page(1))
}

/// munmap of the end or of the middle of a mapping leaves the rest correct.
fn munmap_partial(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let mut m = ctx.map(&f, 0, ctx.pages, RO)?;
    for k in (0..ctx.pages).step_by(2) {
        m.read(page(k));
    }
    m.unmap_tail(PAGE_SIZE).or_fail("munmap of the last page")?;
    ensure!(
        page_unmapped(m.addr() + m.len())?,
        "the last page is still mapped after munmap"
    );
    ctx.check_mapping("mapping after munmap of its last page", &m, 0)?;

    // Punch a hole at page 1: `m` keeps page 0, `tail` pages 2...
    let mut tail = m.split_off(page(2));
    m.unmap_tail(PAGE_SIZE).or_fail("munmap of page 1")?;
    ensure!(
        page_unmapped(m.addr() + page(1))?,
        "page 1 is still mapped after munmap"
    );
    ctx.check_mapping("page 0, before the hole", &m, 0)?;
    ctx.check_mapping("pages after the hole", &tail, page(2))?;
    if tail.len() > PAGE_SIZE {
        tail.unmap_tail(PAGE_SIZE)
            .or_fail("munmap of the last page after the hole")?;
        ctx.check_mapping("pages after the hole, shortened", &tail, page(2))?;
    }
    Ok(())
}

/// A mapping keeps working, and counting, after its descriptor is closed.
fn mmap_outlives_fd(ctx: &Ctx) -> TestResult {
    let base = read_stats()?;
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    m.read(0);
    drop(f);
    // The mapping holds the open file: it is released only with the mapping.
    expect_counts(
        "after closing the fd of a live mapping",
        &base,
        Want::default().mappings(1).opens(1),
    )?;
    ctx.check_mapping("mapping whose fd was closed", &m, 0)?;
    drop(m);
    expect_counts(
        "after unmapping it",
        &base,
        Want::default().mappings(0).opens(0),
    )
}

/// A child sees the parent's mapping, and the parent sees the child's shared writes.
fn fork_shared(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    let m = ctx.map(&f, 0, ctx.pages, RW_SHARED)?;
    for k in 0..ctx.pages / 2 {
        m.read(page(k));
    }
    // One page the parent has mapped, one it has not.
    let offs = [100, page(ctx.pages - 1) + 200];
    let values = offs.map(|o| !ctx.expected.byte(o));
    spawn(|| {
        ctx.check_mapping("the child's copy of the mapping", &m, 0)?;
        for (o, v) in offs.iter().zip(values) {
            m.write(*o, v);
        }
        Ok(())
    })?
    .wait()
    .map_err(|e| format!("child: {e}"))?;
    for (o, v) in offs.iter().zip(values) {
        let got = m.read(*o);
        ensure!(
            got == v,
            "the child wrote {v:#04x} at {o} through MAP_SHARED; the parent's mapping reads {got:#04x}"
        );
        let got = pread_exact(&f, *o, 1)?[0];
        ensure!(
            got == v,
            "the child wrote {v:#04x} at {o} through MAP_SHARED; pread reads {got:#04x}"
        );
    }
    for o in offs {
        ctx.restore(&f, o, 1)?;
    }
    ctx.check_mapping("the parent's mapping after restoring", &m, 0)?;
    ctx.check_file("after restoring", &f)
}

// ---------------------------------------------------------------------------------------------
// Demand paging.
// ---------------------------------------------------------------------------------------------

/// MADV_DONTNEED unmaps pages; touching them again faults them in again, once each.
fn madvise_dontneed(ctx: &Ctx) -> TestResult {
    let pages = ctx.pages;
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, pages, RO)?;
    ctx.check_mapping("before MADV_DONTNEED", &m, 0)?;
    expect_resident("after reading every page", &m, &vec![true; pages])?;

    let base = read_stats()?;
    m.madvise(0, ctx.size, libc::MADV_DONTNEED)
        .or_fail("madvise(MADV_DONTNEED) of the mapping")?;
    expect_resident(
        "after MADV_DONTNEED of the whole mapping",
        &m,
        &vec![false; pages],
    )?;
    expect_counts("after MADV_DONTNEED", &base, Want::default().faults(0))?;

    let retouch = [0, pages / 2, pages - 1];
    let mut want = vec![false; pages];
    for k in retouch {
        let off = page(k) + 5;
        let got = m.read(off);
        let exp = ctx.expected.byte(off);
        ensure!(
            got == exp,
            "re-read after MADV_DONTNEED at {off}: {got:#04x}, expected {exp:#04x}"
        );
        want[k] = true;
    }
    expect_resident("after re-touching pages 0, n/2 and n-1", &m, &want)?;
    expect_counts(
        "after re-touching 3 pages",
        &base,
        Want::default().faults(3),
    )?;
    ctx.check_mapping("after MADV_DONTNEED and re-reading", &m, 0)?;
    expect_counts(
        "after re-reading every page",
        &base,
        Want::default().faults(pages),
    )?;

    // A single page in the middle.
    let base = read_stats()?;
    m.madvise(page(1), PAGE_SIZE, libc::MADV_DONTNEED)
        .or_fail("madvise(MADV_DONTNEED) of page 1")?;
    let mut want = vec![true; pages];
    want[1] = false;
    expect_resident("after MADV_DONTNEED of page 1", &m, &want)?;
    ctx.check_mapping("after MADV_DONTNEED of page 1 and re-reading", &m, 0)?;
    expect_resident("after re-reading page 1", &m, &vec![true; pages])?;
    expect_counts("after re-reading page 1", &base, Want::default().faults(1))
}

/// MAP_POPULATE maps every page at mmap time.
fn map_populate(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let base = read_stats()?;
    let m = ctx.map(
        &f,
        0,
        ctx.pages,
        MapOptions {
            populate: true,
            ..RO
        },
    )?;
    expect_resident("right after mmap(MAP_POPULATE)", &m, &vec![true; ctx.pages])?;
    expect_counts(
        "after mmap(MAP_POPULATE)",
        &base,
        Want::default().faults(ctx.pages),
    )?;
    ctx.check_mapping("MAP_POPULATE mapping", &m, 0)?;
    expect_counts(
        "after reading the populated mapping",
        &base,
        Want::default().faults(ctx.pages),
    )
}

/// A fresh mapping has no page; touching page k maps exactly page k.
fn demand_paging_mincore(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    let mut want = vec![false; ctx.pages];
    expect_resident("fresh mapping, before any access", &m, &want)?;
    for k in touch_order(ctx.pages) {
        let off = page(k) + 1;
        let got = m.read(off);
        let exp = ctx.expected.byte(off);
        ensure!(
            got == exp,
            "first touch of page {k}, offset {off}: {got:#04x}, expected {exp:#04x}"
        );
        want[k] = true;
        expect_resident(&format!("after touching page {k}"), &m, &want)?;
    }
    // Pages mapped in one mapping are not mapped in a new one.
    let m2 = ctx.map(&f, 1, ctx.pages - 1, RO)?;
    expect_resident(
        "a second fresh mapping of the same pages",
        &m2,
        &vec![false; ctx.pages - 1],
    )
}

/// mmap faults nothing; each first touch of a page counts one fault, and maps one page,
/// later touches none.
fn demand_paging_faults(ctx: &Ctx) -> TestResult {
    let f = ctx.open(false)?;
    let base = read_stats()?;
    ensure!(
        base.fault_around == 1,
        "the module maps {} pages per fault; these tests need fault_around=1",
        base.fault_around
    );
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    expect_counts(
        "right after mmap",
        &base,
        Want::default().faults(0).pages_mapped(0),
    )?;
    for (i, k) in touch_order(ctx.pages).into_iter().enumerate() {
        m.read(page(k) + 3);
        expect_counts(
            &format!("after the first touch of page {k}"),
            &base,
            Want::default().faults(i + 1).pages_mapped(i + 1),
        )?;
        m.read(page(k) + PAGE_SIZE - 1);
        m.read(page(k) + 3);
        expect_counts(
            &format!("after touching page {k} again"),
            &base,
            Want::default().faults(i + 1).pages_mapped(i + 1),
        )?;
    }
    Ok(())
}

/// A `/proc/vmstat` counter.
fn vmstat(name: &str) -> Result<Option<u64>, String> {
    let text = fs::read_to_string("/proc/vmstat").or_fail("reading /proc/vmstat")?;
    Ok(text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok())?
    }))
}

/// The faults are served under the per-VMA lock: none is refused there and retried under
/// `mmap_lock` (the driver's VMA operations have `map_pages`, see rust/vm_ops.rs).
fn faults_under_vma_lock(ctx: &Ctx) -> TestResult {
    let (Some(retry0), Some(ok0)) = (vmstat("vma_lock_retry")?, vmstat("vma_lock_success")?) else {
        eprintln!("faults_under_vma_lock: skipped, the kernel has no CONFIG_PER_VMA_LOCK_STATS");
        return Ok(());
    };
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    for k in 0..ctx.pages {
        m.read(page(k));
    }
    let retry = vmstat("vma_lock_retry")?.unwrap_or(0) - retry0;
    let ok = vmstat("vma_lock_success")?.unwrap_or(0) - ok0;
    ensure!(
        retry == 0,
        "{retry} of {} first touches were refused under the VMA lock and retried under mmap_lock",
        ctx.pages
    );
    ensure!(
        ok >= ctx.pages as u64,
        "only {ok} faults were served under the VMA lock, for {} first touches",
        ctx.pages
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Counters.
// ---------------------------------------------------------------------------------------------

/// `opens` counts open files: +1 per open, none for dup, -1 when the last fd is closed.
fn counter_opens(ctx: &Ctx) -> TestResult {
    let base = read_stats()?;
    let opens = |n| Want::default().opens(n).mappings(0);
    let a = ctx.open(false)?;
    expect_counts("after one open", &base, opens(1))?;
    let b = ctx.open(true)?;
    expect_counts("after a second open", &base, opens(2))?;
    let a2 = a.try_clone().or_fail("dup")?;
    expect_counts(
        "after dup of the first fd (same open file)",
        &base,
        opens(2),
    )?;
    drop(a);
    expect_counts(
        "after closing the first fd (its dup still open)",
        &base,
        opens(2),
    )?;
    drop(a2);
    expect_counts("after closing the dup too", &base, opens(1))?;
    drop(b);
    expect_counts("after closing everything", &base, opens(0))
}

/// `mappings` counts live mappings: +1 per mmap, nothing for a failed one, -1 per munmap.
fn counter_mappings(ctx: &Ctx) -> TestResult {
    let base = read_stats()?;
    let f = ctx.open(false)?;
    let counts = |m| Want::default().mappings(m).opens(1);
    expect_counts("after open", &base, counts(0))?;
    let a = ctx.map(&f, 0, ctx.pages, RO)?;
    expect_counts("after one mmap", &base, counts(1))?;
    let b = ctx.map(&f, 1, 1, RO)?;
    expect_counts("after a second mmap", &base, counts(2))?;
    a.read(0);
    b.read(0);
    expect_counts("after touching both", &base, counts(2))?;
    expect_errno(
        "mmap at the end of the buffer",
        try_map(&f, ctx.size, PAGE_SIZE, RO),
        libc::EINVAL,
    )?;
    let exec = try_map(&f, 0, ctx.size, MapOptions { exec: true, ..RO });
    ensure!(exec.is_err(), "mmap with PROT_EXEC succeeded");
    expect_counts("after two failed mmap calls", &base, counts(2))?;
    drop(a);
    expect_counts("after unmapping the first", &base, counts(1))?;
    drop(b);
    expect_counts("after unmapping both", &base, counts(0))?;
    drop(f);
    expect_counts("after close", &base, Want::default().mappings(0).opens(0))
}

/// A forked child's copy of a mapping counts as a mapping; fork opens nothing.
fn counter_mappings_fork(ctx: &Ctx) -> TestResult {
    let base = read_stats()?;
    let f = ctx.open(false)?;
    let m = ctx.map(&f, 0, ctx.pages, RO)?;
    m.read(0);
    expect_counts("after mmap", &base, Want::default().mappings(1).opens(1))?;
    let (ready, go) = (Signal::new()?, Signal::new()?);
    let child = spawn(|| {
        ready.post(1)?;
        go.wait(1)
    })?;
    let check = ready.wait(1).and_then(|()| {
        expect_counts(
            "with a forked child alive",
            &base,
            Want::default().mappings(2).opens(1),
        )
    });
    let _ = go.post(1);
    let waited = child.wait().map_err(|e| format!("child: {e}"));
    check?;
    waited?;
    expect_counts(
        "after the child exited",
        &base,
        Want::default().mappings(1).opens(1),
    )?;
    drop(m);
    drop(f);
    expect_counts(
        "after munmap and close",
        &base,
        Want::default().mappings(0).opens(0),
    )
}

/// munmap in the middle splits a mapping in two; at the end nothing is left.
fn counter_mappings_split(ctx: &Ctx) -> TestResult {
    let base = read_stats()?;
    let f = ctx.open(false)?;
    let mut head = ctx.map(&f, 0, ctx.pages, RO)?;
    expect_counts("after mmap", &base, Want::default().mappings(1))?;
    let mut tail = head.split_off(page(2));
    head.unmap_tail(PAGE_SIZE).or_fail("munmap of page 1")?;
    expect_counts(
        "after munmap of a page in the middle",
        &base,
        Want::default().mappings(2),
    )?;
    // Pages 2..n; at least two of them since the buffer has at least 4 pages.
    tail.unmap_tail(PAGE_SIZE)
        .or_fail("munmap of the last page")?;
    expect_counts(
        "after munmap of the last page as well",
        &base,
        Want::default().mappings(2),
    )?;
    head.read(0);
    tail.read(0);
    drop(head);
    expect_counts(
        "after unmapping the first piece",
        &base,
        Want::default().mappings(1),
    )?;
    drop(tail);
    drop(f);
    expect_counts(
        "after unmapping everything",
        &base,
        Want::default().mappings(0).opens(0),
    )
}

// ---------------------------------------------------------------------------------------------
// Concurrency.
// ---------------------------------------------------------------------------------------------

/// The order in which thread `t` touches the pages: ascending or descending, each thread
/// from another place, so that threads cross and race on the same pages.
fn thread_order(pages: usize, t: usize) -> Vec<usize> {
    let start = (t / 2) * pages / 2;
    let mut order: Vec<usize> = (0..pages).map(|i| (start + i) % pages).collect();
    if t % 2 == 1 {
        order.reverse();
    }
    order
}

/// One thread: touch every page as soon as all threads are ready, then check a share of the
/// bytes (thread `t` checks pages t, t + THREADS, ...).
fn toucher(ctx: &Ctx, m: &Mapping, barrier: &Barrier, t: usize) -> TestResult {
    let order = thread_order(ctx.pages, t);
    barrier.wait();
    for k in order {
        let off = page(k);
        let got = m.read(off);
        let exp = ctx.expected.byte(off);
        ensure!(
            got == exp,
            "thread {t}: first byte of page {k}: {got:#04x}, expected {exp:#04x}"
        );
    }
    for k in (t..ctx.pages).step_by(THREADS) {
        ctx.expected
            .check(page(k), &m.read_range(page(k), PAGE_SIZE))
            .map_err(|mis| format!("thread {t}: {mis}"))?;
    }
    Ok(())
}

/// One process of `concurrent_faults`: open and map, say so, wait for the start, race.
fn worker(ctx: &Ctx, ready: &Signal, go: &Signal) -> TestResult {
    let setup = ctx.open(false).and_then(|f| {
        let m = ctx.map(&f, 0, ctx.pages, RO)?;
        Ok((f, m))
    });
    // Say so even on failure, so that the parent does not wait for nothing.
    ready.post(1)?;
    let (_file, m) = setup?;
    go.wait(1)?;
    let barrier = Barrier::new(THREADS);
    let results: Vec<TestResult> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (m, barrier) = (&m, &barrier);
                s.spawn(move || toucher(ctx, m, barrier, t))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    });
    results.into_iter().collect::<TestResult>()?;
    expect_resident("after all threads ran", &m, &vec![true; ctx.pages])
}

/// Several processes, each with its own mapping and several threads touching all pages at
/// once: the data is right, and each process faults each page exactly once.
fn concurrent_faults(ctx: &Ctx) -> TestResult {
    let base = read_stats()?;
    let (ready, go) = (Signal::new()?, Signal::new()?);
    let mut workers = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..PROCESSES {
        match spawn(|| worker(ctx, &ready, &go)) {
            Ok(child) => workers.push(child),
            Err(e) => {
                errors.push(e);
                break;
            }
        }
    }
    // Every process has opened and mapped; none has touched a page yet.
    let n = workers.len();
    let setup = if errors.is_empty() {
        ready.wait(n).and_then(|()| {
            expect_counts(
                &format!("with {n} processes mapped and waiting"),
                &base,
                Want::default().faults(0).mappings(n).opens(n),
            )
        })
    } else {
        Ok(())
    };
    // Start them (even if the check failed, so that they end).
    let _ = go.post(n);
    for (p, child) in workers.into_iter().enumerate() {
        if let Err(e) = child.wait() {
            errors.push(format!("process {p}: {e}"));
        }
    }
    setup?;
    ensure!(errors.is_empty(), "{}", errors.join("; "));
    expect_counts(
        &format!(
            "after {PROCESSES} processes x {THREADS} threads touched all {} pages",
            ctx.pages
        ),
        &base,
        Want::default()
            .faults(PROCESSES * ctx.pages)
            .mappings(0)
            .opens(0),
    )
}

// ---------------------------------------------------------------------------------------------
// The runner.
// ---------------------------------------------------------------------------------------------

struct Args {
    device: String,
    list: bool,
    fault_around: bool,
    names: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        device: DEV_NODE.to_owned(),
        list: false,
        fault_around: false,
        names: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--list" => args.list = true,
            "--fault-around" => args.fault_around = true,
            "--device" => args.device = it.next().ok_or("--device needs a path")?,
            s if s.starts_with("--device=") => args.device = s["--device=".len()..].to_owned(),
            s if s.starts_with('-') => return Err(format!("unknown option {s} (see --help)")),
            s => {
                if !TESTS.iter().chain(fault_around::TESTS).any(|t| t.name == s) {
                    return Err(format!("no test named {s:?} (see --list)"));
                }
                args.names.push(s.to_owned());
            }
        }
    }
    Ok(args)
}

/// Kills whatever the test left running in its process group and reaps it (as a subreaper,
/// the runner inherits the test's orphans), so that the next test starts clean.
fn reap_leftovers(pgid: libc::pid_t) {
    // SAFETY: kill touches no memory; the group is the one the test's child created.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    loop {
        let mut status = 0;
        // SAFETY: `status` is valid for writing.
        let ret = unsafe { libc::waitpid(-1, &mut status, 0) };
        if ret < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break; // ECHILD: nothing left.
        }
    }
}

/// Runs one test in a child process, then makes sure the buffer is as the contract says.
fn run_test(test: &Test, ctx: &Ctx) -> TestResult {
    let child = spawn(|| {
        // A process group of its own, so that the runner can end whatever the test leaves
        // behind, and a time limit.
        // SAFETY: setpgid and alarm take plain numbers and touch no memory.
        unsafe {
            libc::setpgid(0, 0);
            libc::alarm(TEST_TIMEOUT_SECS);
        }
        (test.run)(ctx)
    })?;
    // SAFETY: As above; also done here so that the group exists whoever runs first.
    unsafe { libc::setpgid(child.pid, child.pid) };
    let pid = child.pid;
    let result = child.wait();
    reap_leftovers(pid);
    if !test.writes && result.is_ok() {
        return result;
    }
    match (ctx.repair(), result) {
        (Ok(None), result) => result,
        (Ok(Some(mis)), Ok(())) => Err(format!(
            "left the buffer changed ({mis}); mapcheck restored it"
        )),
        (Ok(Some(mis)), Err(why)) => Err(format!(
            "{why}; the buffer was left changed ({mis}) and was restored"
        )),
        (Err(e), Ok(())) => Err(format!("checking the buffer afterwards: {e}")),
        (Err(e), Err(why)) => Err(format!("{why}; checking the buffer afterwards: {e}")),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("mapcheck: {e}");
            return ExitCode::from(2);
        }
    };
    let tests = if args.fault_around {
        fault_around::TESTS
    } else {
        TESTS
    };
    if args.list {
        for t in tests {
            println!("{}", t.name);
        }
        return ExitCode::SUCCESS;
    }

    // Panics (in test children) go to the runner as the failure reason.
    panic::set_hook(Box::new(|info| report_reason(&format!("{info}"))));
    // Orphans of a test become our children, so that `reap_leftovers` can wait for them.
    // SAFETY: PR_SET_CHILD_SUBREAPER only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };

    let ctx = Ctx::new(&args.device);
    let selected = tests
        .iter()
        .filter(|t| args.names.is_empty() || args.names.iter().any(|n| n == t.name));
    let mut failed = 0;
    for test in selected {
        let result = match &ctx {
            Ok(ctx) => run_test(test, ctx),
            Err(e) => Err(format!("setup: {e}")),
        };
        match result {
            Ok(()) => println!("ok - {}", test.name),
            Err(why) => {
                failed += 1;
                println!("not ok - {}: {}", test.name, one_line(&why));
            }
        }
        let _ = io::stdout().flush();
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Boundaries.
// ---------------------------------------------------------------------------------------------

/// Raw `mmap(2)` with any length and offset, for lengths no `Mapping` could hold.
fn raw_mmap(file: &File, len: usize, prot: libc::c_int, offset: libc::off_t) -> io::Result<()> {
    // SAFETY: A new mapping at an address of the kernel's choice aliases nothing; it is unmapped
    // at once if it succeeds.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `p` is the mapping just made, `len` bytes long.
    unsafe { libc::munmap(p, len) };
    Ok(())
}

/// Raw `pread(2)`/`pwrite(2)` with any offset, negative ones included.
fn raw_pread(file: &File, buf: &mut [u8], off: i64) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::pread(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), off) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn raw_pwrite(file: &File, buf: &[u8], off: i64) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    let n = unsafe { libc::pwrite(file.as_raw_fd(), buf.as_ptr().cast(), buf.len(), off) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// mmap lengths 0, size+1 and 2^63, offsets at and past the end and unaligned; negative and
/// huge file positions; writes of 0 bytes and of more than the buffer.
fn boundaries(ctx: &Ctx) -> TestResult {
    let f = ctx.open(true)?;
    let size = ctx.size;
    let r = libc::PROT_READ;
    expect_errno("mmap of length 0", raw_mmap(&f, 0, r, 0), libc::EINVAL)?;
    expect_errno(
        "mmap of size+1 bytes",
        raw_mmap(&f, size + 1, r, 0),
        libc::EINVAL,
    )?;
    // 2^63 bytes cannot fit in the address space: the kernel says ENOMEM before asking us.
    match raw_mmap(&f, 1 << 63, r, 0) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::EINVAL)) => {}
        other => {
            return Err(format!(
                "mmap of 2^63 bytes: expected ENOMEM or EINVAL, got {other:?}"
            ))
        }
    }
    expect_errno(
        "mmap of one page at offset size",
        raw_mmap(&f, PAGE_SIZE, r, size as i64),
        libc::EINVAL,
    )?;
    expect_errno(
        "mmap of one page at offset size+4096",
        raw_mmap(&f, PAGE_SIZE, r, (size + PAGE_SIZE) as i64),
        libc::EINVAL,
    )?;
    expect_errno(
        "mmap at an unaligned offset",
        raw_mmap(&f, PAGE_SIZE, r, 1),
        libc::EINVAL,
    )?;
    // The largest page offset the kernel accepts must still be refused by the driver.
    match raw_mmap(&f, PAGE_SIZE, r, i64::MAX & !(PAGE_SIZE as i64 - 1)) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOVERFLOW)) => {}
        other => {
            return Err(format!(
                "mmap at a huge offset: expected EINVAL or EOVERFLOW, got {other:?}"
            ))
        }
    }

    let mut buf = [0u8; 8];
    expect_errno(
        "pread at offset -1",
        raw_pread(&f, &mut buf, -1),
        libc::EINVAL,
    )?;
    expect_errno(
        "pwrite at offset -1",
        raw_pwrite(&f, &buf, -1),
        libc::EINVAL,
    )?;
    let n = raw_pread(&f, &mut buf, i64::MAX - 8).or_fail("pread near i64::MAX")?;
    ensure!(n == 0, "pread near i64::MAX returned {n}, expected 0");
    expect_errno(
        "pwrite near i64::MAX",
        raw_pwrite(&f, &buf, i64::MAX - 8),
        libc::ENOSPC,
    )?;
    expect_errno("lseek to -1", lseek(&f, -1, libc::SEEK_SET), libc::EINVAL)?;
    expect_errno(
        "lseek to i64::MAX",
        lseek(&f, i64::MAX, libc::SEEK_SET),
        libc::EINVAL,
    )?;
    expect_errno(
        "lseek by i64::MIN from the end",
        lseek(&f, i64::MIN, libc::SEEK_END),
        libc::EINVAL,
    )?;

    // A write of nothing writes nothing, anywhere, even past the end.
    for off in [0, size as i64, (size + PAGE_SIZE) as i64] {
        let n = raw_pwrite(&f, &[], off).or_fail(format!("pwrite of 0 bytes at {off}"))?;
        ensure!(n == 0, "pwrite of 0 bytes at {off} returned {n}");
    }
    // A write of more than the buffer fills it to the end and stops there.
    let all = ctx.expected_bytes(0, size);
    let mut more = all.clone();
    more.extend_from_slice(&[0xA5; 3 * PAGE_SIZE]);
    let n = raw_pwrite(&f, &more, 0).or_fail("pwrite of size + 3 pages at 0")?;
    ensure!(
        n == size,
        "pwrite of {} bytes at 0 returned {n}, expected the size {size}",
        more.len()
    );
    ctx.check_file("after a write longer than the buffer", &f)
}
