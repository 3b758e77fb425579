//! `insmod FILE [PARAM=VALUE]...`: loads a kernel module with one `finit_module(2)`.
//!
//! The guest's busybox `insmod` retries with `init_module(2)` after any failure of
//! `finit_module(2)`, so a module that refuses to load runs its init, and logs why, twice. This
//! one tries once and reports the kernel's answer as busybox does, with the errno's name (the
//! C library's wording varies): `insmod: can't insert 'FILE': EINVAL: Invalid argument (os error 22)`, exit
//! status 1.

use std::{ffi::CString, fs::File, os::fd::AsRawFd, process::ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().filter(|p| !p.starts_with('-')) else {
        eprintln!("usage: insmod FILE [PARAM=VALUE]...");
        return ExitCode::from(2);
    };
    let params = args.collect::<Vec<_>>().join(" ");
    let Ok(params) = CString::new(params) else {
        eprintln!("insmod: a parameter holds a NUL byte");
        return ExitCode::from(2);
    };
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("insmod: can't open '{path}': {e}");
            return ExitCode::from(1);
        }
    };
    // SAFETY: `finit_module(fd, params, flags)` reads the open file and the NUL-terminated
    // parameter string, both valid for the duration of the call; no libc wrapper exists.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let name = maptest::errno_name(e.raw_os_error().unwrap_or(0));
        eprintln!("insmod: can't insert '{path}': {name}: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
