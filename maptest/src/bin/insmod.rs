//! `insmod FILE [PARAM=VALUE]...`: loads a kernel module with one `finit_module(2)`.
//!
//! The guest's busybox `insmod` retries with `init_module(2)` after any failure of
//! `finit_module(2)`, so a module that refuses to load runs its init, and logs why, twice. This
//! one tries once and reports the kernel's answer as busybox does, with the errno's name (the
//! C library's wording varies): `insmod: can't insert 'FILE': EINVAL: Invalid argument (os error 22)`, exit
//! status 1.

use std::{ffi::CString, fs::File, process::ExitCode};

use maptest::errors::errno_name;

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
    if let Err(e) = rustix::system::finit_module(&file, &params, 0) {
        let e = std::io::Error::from(e);
        let name = errno_name(e.raw_os_error().unwrap_or(0));
        eprintln!("insmod: can't insert '{path}': {name}: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
