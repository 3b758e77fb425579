//! `stress`: processes × threads racing mappings, touches, `pread`/`pwrite` and `lseek` on the
//! device; afterwards the whole buffer and the driver's counters are checked.
//!
//! The parent forks one process per `--procs` (each reports `ok OPS` or `fail REASON` through a
//! pipe), waits for them all, then checks. The threads' operations are in [`ops`].

mod ops;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use maptest::errors::{describe, one_line, OrFail};
use maptest::process::{self, Forked, Pid};
use maptest::rng::{derive_seed, Rng};
use maptest::{MapOptions, Mapping, Stats};

use crate::contents::{check_counters, open_contents, verify_device, Contents};
use crate::signals::{self, Watched};
use crate::{StressOpts, PAGE, WATCHDOG_SLACK};

/// What every process and thread of `stress` shares.
struct StressCtx<'a> {
    dev: &'a str,
    c: &'a Contents,
    seed: u64,
    deadline: Instant,
    threads: usize,
}

/// Runs `stress`: the summary for the RESULT line, or why it failed.
pub(crate) fn run(dev: &str, o: &StressOpts) -> Result<String, String> {
    println!("# seed: {}", o.seed);
    let c = open_contents(dev)?;
    println!(
        "# {dev}: {} pages ({} bytes); {} processes x {} threads for {} s",
        c.pages, c.size, o.procs, o.threads, o.seconds
    );
    let base = Stats::read()?;
    println!(
        "# baseline: faults {} mappings {} opens {}",
        base.faults, base.mappings, base.opens
    );

    signals::watch(Watched::Stress, o.seed, o.seconds + WATCHDOG_SLACK);

    let start = Instant::now();
    let ctx = StressCtx {
        dev,
        c: &c,
        seed: o.seed,
        deadline: start + Duration::from_secs(o.seconds),
        threads: o.threads,
    };
    let mut kids: Vec<(Pid, File)> = Vec::new();
    let mut errors = Vec::new();
    for p in 0..o.procs {
        let (read_end, write_end) = process::pipe().or_fail("pipe2")?;
        // SAFETY: This process is single-threaded (threads run only in the children), so the
        // child's copy of it is consistent; the child never returns from `stress_child`.
        match unsafe { process::fork() } {
            Err(e) => {
                errors.push(format!("fork of process {p}: {}", describe(&e)));
                break;
            }
            Ok(Forked::Child) => {
                drop(read_end);
                stress_child(&ctx, p, write_end)
            }
            Ok(Forked::Parent(pid)) => {
                signals::add_kid(p, pid);
                drop(write_end);
                kids.push((pid, read_end));
            }
        }
    }

    let mut ops = 0u64;
    for (p, (pid, mut pipe)) in kids.into_iter().enumerate() {
        let status = process::wait(pid).or_fail(format!("waitpid {pid}"));
        signals::forget_kid(p);
        let mut report = String::new();
        let _ = pipe.read_to_string(&mut report);
        let report = report.trim().to_owned();
        match status {
            Err(e) => errors.push(format!("process {p}: {e}")),
            Ok(status) => {
                if let Some(rest) = report.strip_prefix("fail ") {
                    errors.push(format!("process {p}: {rest}"));
                } else if let Some(problem) = signals::wait_status_problem(status) {
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
    let now = Stats::read()?;
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
    signals::child_signals(
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
    process::exit_now(code)
}

fn stress_process(ctx: &StressCtx, p: usize) -> Result<u64, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(ctx.dev)
        .or_fail(format!("open {} O_RDWR", ctx.dev))?;
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
    .or_fail("mmap of the shared window")?;
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
                        ops::io_thread(ctx, file, &mut rng, stop)
                    } else {
                        ops::map_thread(ctx, file, common, &mut rng, stop)
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
