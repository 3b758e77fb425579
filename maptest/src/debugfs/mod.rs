//! The driver's debugfs files, under `/sys/kernel/debug/mapdrv/`, and their parsers.
//!
//! - `stats`: the driver's counters ([`Stats`]), readable by root;
//! - `pagewalk`: the explicit walk of the kernel page tables for each page of the buffer
//!   ([`pagewalk`]); kernel addresses, so root only;
//! - `layout`: the kernel's address-space regions and one live allocation of each kind
//!   ([`layout`]); root only.

use std::io;

pub mod layout;
pub mod pagewalk;

/// Where mapdrv publishes its counters.
pub const STATS_PATH: &str = "/sys/kernel/debug/mapdrv/stats";

/// Where mapdrv publishes its page-table walk of the buffer (kernel addresses: root only).
pub const PAGEWALK_PATH: &str = "/sys/kernel/debug/mapdrv/pagewalk";

/// Where mapdrv publishes the kernel's address-space layout (kernel addresses: root only).
pub const LAYOUT_PATH: &str = "/sys/kernel/debug/mapdrv/layout";

/// Reads one of the driver's files; the error is a one-line reason that says what is needed.
pub fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{path}: {} (root and a loaded mapdrv needed)",
            crate::errors::describe(&e)
        )
    })
}

/// `0x...` to a number.
pub fn hex(s: &str) -> Result<u64, String> {
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| format!("not hex: {s}"))?;
    u64::from_str_radix(digits, 16).map_err(|_| format!("not hex: {s}"))
}

/// The counters of `/sys/kernel/debug/mapdrv/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub pages: u64,
    /// Fault handler calls that mapped the faulting page.
    pub faults: u64,
    pub mappings: u64,
    pub opens: u64,
    /// Pages the fault handler mapped, neighbours (fault-around) included.
    pub pages_mapped: u64,
    /// The module's `fault_around` parameter: pages per fault.
    pub fault_around: u64,
}

impl Stats {
    /// Reads the driver's counters; the error is a one-line reason.
    pub fn read() -> Result<Stats, String> {
        Self::parse(&read(STATS_PATH)?).map_err(|e| format!("{STATS_PATH}: {e}"))
    }

    pub fn parse(text: &str) -> io::Result<Stats> {
        let mut s = Stats::default();
        let mut seen = 0;
        for line in text.lines() {
            let bad = || {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad stats line {line:?}"),
                )
            };
            let (key, value) = line.split_once(": ").ok_or_else(bad)?;
            let value: u64 = value.trim().parse().map_err(|_| bad())?;
            let slot = match key {
                "pages" => &mut s.pages,
                "faults" => &mut s.faults,
                "mappings" => &mut s.mappings,
                "opens" => &mut s.opens,
                "pages_mapped" => &mut s.pages_mapped,
                "fault_around" => &mut s.fault_around,
                _ => return Err(bad()),
            };
            *slot = value;
            seen += 1;
        }
        if seen != 6 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "stats lacks a key",
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parse() {
        let text =
            "pages: 16\nfaults: 3\nmappings: 1\nopens: 2\npages_mapped: 5\nfault_around: 4\n";
        assert_eq!(
            Stats::parse(text).unwrap(),
            Stats {
                pages: 16,
                faults: 3,
                mappings: 1,
                opens: 2,
                pages_mapped: 5,
                fault_around: 4,
            }
        );
        assert!(Stats::parse("pages: 16\n").is_err());
        assert!(Stats::parse("pages: x\nfaults: 3\nmappings: 1\nopens: 2\n").is_err());
    }
}
