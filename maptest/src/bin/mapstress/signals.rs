//! Watchdogs and fatal signals: one RESULT line even when the process is about to die.
//!
//! Each mode arms an `alarm` watchdog; its `SIGALRM` (and, in the fuzzer, a `SIGSEGV` or
//! `SIGBUS` the model failed to foresee) runs [`on_fatal_signal`], which prints the RESULT
//! line, kills the children of `stress` listed in the children table, and exits. Forked
//! children restore the default actions and arm watchdogs of their own ([`child_signals`]);
//! their parent reports how they ended ([`wait_status_problem`]).
//!
//! The handler may only make async-signal-safe calls: no allocation, no lock, no `std` I/O
//! (stdout's lock may be held by the interrupted code). So it builds its message in a fixed
//! buffer and calls `write`, `kill` and `_exit` through `libc` directly, and the handlers are
//! installed with `sigaction`, which neither `rustix` nor the library wrap.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};

use maptest::errors::signal_name;
use maptest::process::{self, Pid, WaitStatus};

use crate::MAX_PROCS;

/// Which mode a fatal signal reports (0: none, 1: stress, 2: fuzz).
static WATCH_MODE: AtomicU8 = AtomicU8::new(0);
static WATCH_SEED: AtomicU64 = AtomicU64::new(0);
static WATCH_STEP: AtomicU64 = AtomicU64::new(0);
static WATCH_SECS: AtomicU64 = AtomicU64::new(0);
/// Children of `stress`, killed when the parent's watchdog fires.
static KIDS: [AtomicI32; MAX_PROCS] = [const { AtomicI32::new(0) }; MAX_PROCS];

/// The mode a watchdog reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    /// `stress`: only `SIGALRM` is handled (a crash of a child is its parent's report).
    Stress,
    /// `fuzz`: `SIGALRM`, `SIGSEGV` and `SIGBUS`, reported with the seed and the step.
    Fuzz,
}

/// Arms the watchdog of `mode` for `seconds` and installs [`on_fatal_signal`]; `seed` is
/// reported by the fuzzer's RESULT line.
pub(crate) fn watch(mode: Watched, seed: u64, seconds: u64) {
    match mode {
        Watched::Stress => {
            WATCH_MODE.store(1, Ordering::Relaxed);
            WATCH_SECS.store(seconds, Ordering::Relaxed);
            install_fatal_handlers(&[libc::SIGALRM]);
        }
        Watched::Fuzz => {
            WATCH_MODE.store(2, Ordering::Relaxed);
            WATCH_SEED.store(seed, Ordering::Relaxed);
            WATCH_SECS.store(seconds, Ordering::Relaxed);
            install_fatal_handlers(&[libc::SIGALRM, libc::SIGSEGV, libc::SIGBUS]);
        }
    }
    process::alarm(seconds as u32);
}

/// The fuzzer's step, for the RESULT line of a fatal signal.
pub(crate) fn set_step(step: u64) {
    WATCH_STEP.store(step, Ordering::Relaxed);
}

/// Records child `pid` of `stress` in slot `slot` of the children table.
pub(crate) fn add_kid(slot: usize, pid: Pid) {
    KIDS[slot].store(pid.as_raw_nonzero().get(), Ordering::Relaxed);
}

/// Forgets the child in slot `slot` (it has been waited for).
pub(crate) fn forget_kid(slot: usize) {
    KIDS[slot].store(0, Ordering::Relaxed);
}

/// How a process ended, from its wait status; `None` if it exited with status 0.
pub(crate) fn wait_status_problem(status: WaitStatus) -> Option<String> {
    let mut s = process::status_problem(status)?;
    if status.terminating_signal() == Some(libc::SIGALRM) {
        s += ": its watchdog fired";
    }
    Some(s)
}

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
    // SAFETY: write, kill and _exit are async-signal-safe; `m.buf` holds `m.len` bytes. They
    // are called through `libc` directly because the typed wrappers (`std::io::stdout`,
    // `maptest::process::exit_now`) take locks or flush buffers the interrupted code may hold.
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
        // SAFETY: `sa` is initialised; the handler only makes async-signal-safe calls. Neither
        // `rustix` nor the library installs signal handlers, hence `libc`.
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Restores the default action of the signals the parent handles (in a forked child, whose
/// death the parent reports) and arms the child's own watchdog.
pub(crate) fn child_signals(alarm_secs: u32) {
    for sig in [libc::SIGALRM, libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: SIG_DFL is always a valid disposition (`signal` has no typed wrapper).
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    WATCH_MODE.store(0, Ordering::Relaxed);
    for k in &KIDS {
        k.store(0, Ordering::Relaxed);
    }
    process::alarm(alarm_secs);
}
