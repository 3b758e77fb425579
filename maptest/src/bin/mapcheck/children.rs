//! Child processes: a function run in a forked child, whose failure reason (or panic message)
//! comes back to the parent through a pipe, and [`Signal`]s between processes.

use std::fs::File;
use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use maptest::errors::{describe, one_line};
use maptest::process::{self, exit_now, fork, set_nonblocking, Forked, Pid};
use maptest::OrFail;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use crate::harness::{TestResult, TEST_TIMEOUT_SECS};

/// How long a process waits for another one (see [`Signal::wait`]).
const WAIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Failure reasons are cut to this many bytes (less than a pipe's minimum capacity, so that a
/// child never blocks writing its reason).
const MAX_REASON: usize = 3000;

/// The write end of this process's reason pipe (`None` in the runner): where a failing child,
/// or the panic hook, sends its reason.
static REASON: Mutex<Option<File>> = Mutex::new(None);

/// Makes panics (in test children) send their message to the runner as the failure reason.
pub(crate) fn send_panics_to_runner() {
    panic::set_hook(Box::new(|info| report_reason(&format!("{info}"))));
}

/// Sends a failure reason to the parent (or prints it, in the runner).
fn report_reason(reason: &str) {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut pipe = REASON.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pipe) = pipe.as_mut() {
        let _ = pipe.write_all(&reason.as_bytes()[..end]);
        return;
    }
    drop(pipe);
    eprintln!("mapcheck: {reason}");
}

/// A forked child running a function.
pub(crate) struct Child {
    pub(crate) pid: Pid,
    /// Read end of the pipe the child writes its failure reason to.
    reason: File,
}

/// Runs `f` in a forked child; [`Child::wait`] tells how it went.
///
/// Callers must be single-threaded: tests start threads only in processes that fork no more.
pub(crate) fn spawn(f: impl FnOnce() -> TestResult) -> Result<Child, String> {
    let (read_end, write_end) = process::pipe().or_fail("pipe2")?;
    // SAFETY: The calling process is single-threaded (see above), so the child's copy of it is
    // consistent; the child runs `f` and leaves with `exit_now`, never returning into the
    // caller.
    match unsafe { fork() }.or_fail("fork")? {
        Forked::Child => {
            drop(read_end);
            child_main(f, write_end)
        }
        Forked::Parent(pid) => Ok(Child {
            pid,
            reason: read_end,
        }),
    }
}

/// The child side of [`spawn`].
fn child_main(f: impl FnOnce() -> TestResult, reason: File) -> ! {
    // This replaces (and closes) the parent's reason pipe, inherited by a child that a test
    // forked: its own failures go to its own parent.
    *REASON.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
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
    // `exit_now` ends the process at once, without running destructors or exit handlers that
    // belong to the parent's copy of the state. The reason pipe stays open until then.
    exit_now(code)
}

impl Child {
    /// Waits for the child to end: `Ok` if `f` returned `Ok`, else why not.
    pub(crate) fn wait(self) -> TestResult {
        let status = process::wait(self.pid).or_fail(format!("waitpid {}", self.pid))?;
        // The child has ended, but its own children may still hold the pipe open: read what
        // is there without waiting for an end of file.
        let mut text = Vec::new();
        if set_nonblocking(&self.reason).is_ok() {
            let _ = (&self.reason).read_to_end(&mut text);
        }
        let reason = one_line(&String::from_utf8_lossy(&text));
        let Some(mut problem) = process::status_problem(status) else {
            return Ok(());
        };
        if status.terminating_signal() == Some(libc::SIGALRM) {
            problem = format!("timed out after {TEST_TIMEOUT_SECS} s ({problem})");
        }
        Err(match (reason.is_empty(), status.exit_status()) {
            (true, _) => problem,
            // A test that failed says why, and exits with status 1.
            (false, Some(_)) => reason,
            (false, None) => format!("{reason} ({problem})"),
        })
    }
}

/// A signal between processes: a pipe on which each `post` writes a byte and each `wait`
/// consumes one.
pub(crate) struct Signal {
    read_end: File,
    write_end: File,
}

impl Signal {
    pub(crate) fn new() -> Result<Signal, String> {
        let (read_end, write_end) = process::pipe().or_fail("pipe2")?;
        // Several processes may wait on the same pipe: one that loses the race for a byte
        // must go back to poll, not block in read.
        set_nonblocking(&read_end).or_fail("fcntl O_NONBLOCK")?;
        Ok(Signal {
            read_end,
            write_end,
        })
    }

    /// Posts `n` signals.
    pub(crate) fn post(&self, n: usize) -> TestResult {
        (&self.write_end)
            .write_all(&vec![b'!'; n])
            .or_fail("writing to a pipe")
    }

    /// Waits for `n` signals, at most [`WAIT_TIMEOUT`].
    pub(crate) fn wait(&self, n: usize) -> TestResult {
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
            let slice = left.clamp(Duration::from_millis(1), Duration::from_secs(1));
            let timeout = Timespec {
                tv_sec: slice.as_secs() as i64,
                tv_nsec: slice.subsec_nanos().into(),
            };
            let mut fds = [PollFd::new(&self.read_end, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Err(Errno::INTR) => continue,
                polled => polled.or_fail("poll")?,
            };
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
