//! Faults at the same time, from the contract's "mmap" and "statistics" paragraphs: several
//! processes, each with several threads, fault the same pages at once; every byte is right,
//! and each process faults each page exactly once.

use std::sync::Barrier;
use std::thread;

use maptest::{Mapping, Stats, PAGE_SIZE};

use crate::children::{spawn, Signal};
use crate::ctx::{page, Ctx, RO};
use crate::expect::{ensure, expect_counts, expect_resident, Want};
use crate::harness::TestResult;

/// Processes, and threads in each, of `concurrent_faults`.
const PROCESSES: usize = 4;
const THREADS: usize = 4;

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
pub(crate) fn concurrent_faults(ctx: &Ctx) -> TestResult {
    let base = Stats::read()?;
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
