//! Errors as the tests report them: errno and signal names, and one-line reasons.
//!
//! Every failure the programs print is one line saying what was being done and why it failed,
//! with the errno's symbolic name (`EINVAL`) rather than the C library's wording, which varies.

use std::fmt::Display;
use std::io;

/// The symbolic name of an errno value (`EINVAL`), or `errno N`.
pub fn errno_name(n: i32) -> String {
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EHWPOISON => "EHWPOISON",
        _ => return format!("errno {n}"),
    };
    name.to_owned()
}

/// An I/O error as its errno name, or its text if it carries no errno.
pub fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n),
        None => e.to_string(),
    }
}

/// The name of a signal number (`SIGSEGV`), or `?`.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => "?",
    }
}

/// Collapses a text onto one line (a reason that came through a pipe, a kernel message).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Adds what was being done to an error, making it a one-line reason.
///
/// ```
/// use maptest::errors::OrFail;
///
/// let r: std::io::Result<()> = Err(std::io::Error::from_raw_os_error(libc::ENXIO));
/// assert_eq!(r.or_fail("open /dev/mapdrv"), Err("open /dev/mapdrv: ENXIO".to_owned()));
/// ```
pub trait OrFail<T> {
    /// `what: ERRNO` on error.
    fn or_fail(self, what: impl Display) -> Result<T, String>;
}

impl<T> OrFail<T> for io::Result<T> {
    fn or_fail(self, what: impl Display) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {}", describe(&e)))
    }
}

impl<T> OrFail<T> for Result<T, rustix::io::Errno> {
    fn or_fail(self, what: impl Display) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {}", errno_name(e.raw_os_error())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(errno_name(libc::EINVAL), "EINVAL");
        assert_eq!(errno_name(4095), "errno 4095");
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(one_line("a\n  b\tc\n"), "a b c");
        let r: Result<(), _> = Err(rustix::io::Errno::NOMEM);
        assert_eq!(r.or_fail("mmap").unwrap_err(), "mmap: ENOMEM");
    }
}
