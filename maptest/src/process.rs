//! Processes: forking a child, waiting for it and telling how it ended, pipes between them,
//! watchdogs.
//!
//! The tests run each case, and each stress worker, in a process of its own, so that a crash,
//! a signal or a hang of one is reported as that one's failure. Waiting, pipes and file flags
//! go through `rustix`; `fork`, `alarm` and `_exit`, which `rustix` does not offer as plain
//! calls, go through `libc` here and nowhere else.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
use rustix::io::Errno;
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{waitpid, WaitOptions};
pub use rustix::process::{Pid, WaitStatus};

use crate::errors::signal_name;

/// Which side of a [`fork`] this process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The new process.
    Child,
    /// The calling process; the child's pid.
    Parent(Pid),
}

/// `fork(2)`, after flushing the standard streams (nothing buffered may be printed twice).
///
/// # Safety
///
/// The calling process must be single-threaded: the child gets a copy of one thread only, and
/// any lock another thread held (the allocator's, stdout's) would stay locked in it forever.
/// The child must leave with [`exit_now`], never by returning into code that also runs in the
/// parent (destructors and exit handlers belong to the parent's copy of the state).
pub unsafe fn fork() -> io::Result<Forked> {
    flush_stdio();
    // SAFETY: The caller guarantees the conditions above.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(
            Pid::from_raw(pid).expect("fork returned a positive pid"),
        )),
    }
}

/// Waits for child `pid` to end (retrying on `EINTR`) and returns its status.
pub fn wait(pid: Pid) -> io::Result<WaitStatus> {
    loop {
        match waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return Ok(status),
            Ok(None) => continue,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// How a process ended, in words; `None` if it exited with status 0.
pub fn status_problem(status: WaitStatus) -> Option<String> {
    problem(
        status.exit_status(),
        status.terminating_signal(),
        status.as_raw(),
    )
}

fn problem(exit: Option<i32>, signal: Option<i32>, raw: i32) -> Option<String> {
    match (exit, signal) {
        (Some(0), _) => None,
        (Some(code), _) => Some(format!("exited with status {code}")),
        (None, Some(sig)) => Some(format!("killed by signal {sig} ({})", signal_name(sig))),
        (None, None) => Some(format!("unexpected wait status {raw:#x}")),
    }
}

/// Flushes standard output and standard error.
pub fn flush_stdio() {
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
}

/// Ends the process at once with `code`, after flushing the standard streams, without
/// destructors or exit handlers: how a forked child leaves.
pub fn exit_now(code: i32) -> ! {
    flush_stdio();
    // SAFETY: `_exit` ends the process and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// Arms (or with 0 disarms) this process's `SIGALRM` watchdog, in seconds; returns the seconds
/// that were left on the previous one.
pub fn alarm(seconds: u32) -> u32 {
    // SAFETY: alarm takes no pointer and cannot fail.
    unsafe { libc::alarm(seconds) }
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> io::Result<(File, File)> {
    let (read_end, write_end) = pipe_with(PipeFlags::CLOEXEC)?;
    Ok((File::from(read_end), File::from(write_end)))
}

/// Sets `O_NONBLOCK` on a descriptor.
pub fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = fcntl_getfl(&fd)?;
    Ok(fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn problems() {
        assert_eq!(problem(Some(0), None, 0), None);
        assert_eq!(
            problem(Some(3), None, 0x300).unwrap(),
            "exited with status 3"
        );
        assert_eq!(
            problem(None, Some(11), 11).unwrap(),
            "killed by signal 11 (SIGSEGV)"
        );
    }

    #[test]
    fn nonblocking_pipe() {
        let (mut r, w) = pipe().unwrap();
        set_nonblocking(&r).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            r.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(w);
        assert_eq!(r.read(&mut buf).unwrap(), 0);
    }
}
