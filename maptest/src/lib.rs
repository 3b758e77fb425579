//! The userspace side of mapdrv: what the driver's buffer must contain, and safe handles on the
//! system calls that map it, shared by the programs that use the driver.
//!
//! - [`contract`]: the bytes the buffer holds ([`Expected`]) and how a difference is reported;
//! - [`mapping`]: a mapping of the device ([`Mapping`]), address space set aside for mappings
//!   at chosen addresses ([`Reservation`]), `mincore(2)`;
//! - [`device`]: the device node and the driver's major number;
//! - [`debugfs`]: the driver's counters ([`Stats`]), its page-table walk and the kernel's
//!   address-space layout, parsed and rendered;
//! - [`procfs`]: the kernel's own view: `/proc/vmstat`, `/proc/meminfo`, `/proc/PID/maps`;
//! - [`process`]: child processes, pipes and watchdogs;
//! - [`errors`]: errno and signal names, one-line reasons;
//! - [`raw`]: system calls with the malformed arguments whose refusal the contract specifies;
//! - [`rng`]: the seeded, replayable random numbers of the stress test and the fuzzer;
//! - [`cli`]: command lines and usage errors; [`text`]: text for a person.
//!
//! The programs: `maptest` (the lesson, run by a person), `mapcheck` (the contract's tests),
//! `mapstress` (stress and fuzzing), `mapbench` (the benchmark) and `insmod` (one
//! `finit_module(2)`).

pub mod cli;
pub mod contract;
pub mod debugfs;
pub mod device;
pub mod errors;
pub mod mapping;
pub mod process;
pub mod procfs;
pub mod raw;
pub mod rng;
pub mod text;

pub use contract::{page_header, Expected, Mismatch, PAGE_SIZE, PATTERN_PERIOD};
pub use debugfs::Stats;
pub use errors::{describe, errno_name, OrFail};
pub use mapping::{buffer_size, MapOptions, Mapping, Reservation};
