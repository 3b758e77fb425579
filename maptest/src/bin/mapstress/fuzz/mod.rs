//! `fuzz`: a seeded, replayable random sequence of system calls on the device, each result
//! checked against the set the contract allows.
//!
//! - [`expect`]: the model of expected results ([`Expect`] and the `*_expect`
//!   functions), with the constants and name tables of [`tables`];
//! - [`model`]: the model of the fuzzer's descriptors and mappings, and of what each mapped
//!   page must hold;
//! - [`generator`]: the weighted choice of the next call and the choosers of its arguments;
//! - the operations, by family: [`map_ops`] (mmap, munmap, mremap, mprotect, madvise, msync,
//!   touching pages), [`io_ops`] (open, close, read, write, pread, pwrite, lseek, ioctl),
//!   [`fork`] (a child that runs a few steps of its own).
//!
//! This module holds the fuzzer's state, the judging and counting of each result, and the
//! run: the steps, the periodic checks of the buffer, the final checks.

pub(crate) mod expect;
mod fork;
mod generator;
mod io_ops;
mod map_ops;
mod model;
mod tables;

use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::fs::File;
use std::time::{Duration, Instant};

use maptest::errors::{errno_name, one_line, OrFail};
use maptest::procfs::parse_maps;
use maptest::raw::{self, SysResult};
use maptest::rng::Rng;
use maptest::Stats;

use self::expect::{show, Expect};
use self::model::{PoolFd, Region};
use self::tables::{hex, LOW_LIMIT};
use crate::contents::{check_counters, open_contents, verify_fd, Contents};
use crate::signals::{self, Watched};
use crate::{FuzzOpts, PAGE, WATCHDOG_SLACK};

/// The largest transfer made to or from an ordinary (heap) buffer.
const HEAP_LIMIT: u64 = 4 << 20;

/// How many of the last calls a failure report shows.
const RECENT: usize = 24;

pub(crate) struct Fuzz<'a> {
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
        let si = rustix::system::sysinfo();
        let totalram = (si.totalram as u64).saturating_mul(u64::from(si.mem_unit.max(1)));
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let low_ok = match parse_maps(&maps) {
            Ok(lines) => !lines.is_empty() && lines.iter().all(|l| l.start >= LOW_LIMIT),
            Err(_) => false,
        };
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
            let res = unsafe { raw::munmap(r.addr, r.len()) };
            self.judge(call, res, &Expect::ok(0))?;
        }
        while let Some(f) = self.fds.pop() {
            // SAFETY: The pool owns the descriptor and forgets it.
            let res = unsafe { raw::close(f.fd) };
            self.judge(format!("close(fd {})", f.fd), res, &Expect::ok(0))?;
        }
        Ok(())
    }
}

/// Runs `fuzz`: the summary for the RESULT line, or why it failed.
pub(crate) fn run(dev: &str, o: &FuzzOpts) -> Result<String, String> {
    println!("# seed: {}", o.seed);
    signals::watch(Watched::Fuzz, o.seed, o.seconds + WATCHDOG_SLACK);

    let c = open_contents(dev)?;
    let base = Stats::read()?;
    println!(
        "# {dev}: {} pages ({} bytes); up to {} iterations or {} s",
        c.pages, c.size, o.iterations, o.seconds
    );
    let mut fz = Fuzz::new(dev, &c, o.seed, o.trace)?;
    if !fz.low_ok {
        println!("# note: something is mapped below {LOW_LIMIT:#x}; low addresses are not used");
    }
    let checker = File::open(dev).or_fail(format!("open {dev}"))?;
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
        signals::set_step(step);
        let mut r = fz.one_step();
        if r.is_ok() && step % 1000 == 999 {
            r = verify_fd(&checker, &c, 0, c.size.min(1 << 20))
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
    signals::set_step(done);
    fz.finish()
        .map_err(|e| format!("seed={} at the end: {e}", o.seed))?;
    verify_fd(&checker, &c, 0, c.size).map_err(|e| format!("seed={} at the end: {e}", o.seed))?;
    drop(checker);
    println!("# the whole buffer matches the contract (pread)");
    fz.print_tally();
    let now = Stats::read()?;
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
