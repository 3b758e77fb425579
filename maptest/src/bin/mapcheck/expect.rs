//! The expectations the tests are made of: a condition, an errno, bytes, the debugfs counters,
//! the resident pages. Each one returns the reason of a failure, on one line.

use std::fmt;
use std::io;

use maptest::errors::{describe, errno_name};
use maptest::{Mapping, Mismatch, OrFail, Stats};

use crate::harness::TestResult;

/// Returns `Err(format!(...))` from the enclosing function unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}
pub(crate) use ensure;

/// Checks that `result` is the error `want`.
pub(crate) fn expect_errno<T: fmt::Debug>(
    what: &str,
    result: io::Result<T>,
    want: i32,
) -> TestResult {
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

/// Compares bytes `got` with `want`, both starting at buffer offset `start`.
pub(crate) fn compare(what: &str, start: usize, got: &[u8], want: &[u8]) -> TestResult {
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

/// Checks which pages of `m` are resident against `want`.
pub(crate) fn expect_resident(what: &str, m: &Mapping, want: &[bool]) -> TestResult {
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

/// Expected changes of the counters since a baseline; `None` is not checked.
#[derive(Clone, Copy, Default)]
pub(crate) struct Want {
    faults: Option<i64>,
    mappings: Option<i64>,
    opens: Option<i64>,
    pages_mapped: Option<i64>,
}

impl Want {
    pub(crate) fn pages_mapped(self, delta: usize) -> Self {
        Want {
            pages_mapped: Some(delta as i64),
            ..self
        }
    }
    pub(crate) fn faults(self, delta: usize) -> Self {
        Want {
            faults: Some(delta as i64),
            ..self
        }
    }
    pub(crate) fn mappings(self, delta: usize) -> Self {
        Want {
            mappings: Some(delta as i64),
            ..self
        }
    }
    pub(crate) fn opens(self, delta: usize) -> Self {
        Want {
            opens: Some(delta as i64),
            ..self
        }
    }
}

/// Reads the counters and checks them against `base` plus the wanted changes.
pub(crate) fn expect_counts(when: &str, base: &Stats, want: Want) -> TestResult {
    let now = Stats::read()?;
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
