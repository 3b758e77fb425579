//! mapcheck: the test suite of mapdrv, run as root in the guest with the module loaded.
//!
//! Every test checks one line of the driver's contract (reads, writes, seeks, mappings, demand
//! paging, the debugfs counters) and prints one TAP-like line: `ok - NAME` or
//! `not ok - NAME: REASON`. Run `mapcheck --help` for the options.
//!
//! # How tests run
//!
//! Each test runs in a child process of its own (`fork`), for three reasons:
//!
//! - The release profile aborts on panic, so `catch_unwind` cannot keep a panicking test from
//!   ending the run; a child can die alone. A panic hook sends the panic message to the runner.
//! - A crash (`SIGSEGV`, `SIGBUS`) or a hang (an `alarm` ends the child) is reported as the
//!   failure of that test only.
//! - Whatever a test maps or opens is gone when its process is gone, so the next test starts
//!   from the same counters.
//!
//! A failing test sends its reason to the runner through a pipe. Tests that need more
//! processes (fork, concurrency) fork again with the same helper ([`spawn`](children::spawn)); the runner kills
//! and reaps whatever a test left behind before the next one starts.
//!
//! The counters of `/sys/kernel/debug/mapdrv/stats` are global, so tests compare them with a
//! baseline read at the start of the test, never with absolute values. Tests that change the
//! buffer write the original bytes back; the runner checks the buffer after each of them (and
//! after every failure) and restores it if needed, so one broken test cannot break the next.
//!
//! # Where things are
//!
//! - [`harness`]: the tables of tests and the runner; [`children`]: forked children, their
//!   failure reasons, signals between processes; [`ctx`]: the device under test and what its
//!   buffer holds; [`expect`]: the checks tests are made of; [`nodes`]: device nodes made by
//!   the tests.
//! - The tests, by part of the contract (docs/contract.md): [`device`] (the node, the minors,
//!   the stats file), [`file_ops`] (read, write, lseek), [`mmap`] (what mmap accepts and what
//!   a mapping shows), [`mmap_lifetime`] (mremap, munmap, close, fork), [`paging`] (demand
//!   paging), [`counters`], [`concurrency`], [`boundaries`] and [`fault_around`].

use std::process::ExitCode;

use maptest::cli::{Arg, Cli, ValueExt};
use maptest::device::DEV_NODE;

mod boundaries;
mod children;
mod concurrency;
mod counters;
mod ctx;
mod device;
mod expect;
mod fault_around;
mod file_ops;
mod harness;
mod mmap;
mod mmap_lifetime;
mod nodes;
mod paging;

const HELP: &str = "\
mapcheck: the test suite of the mapdrv driver (run as root, module loaded)

USAGE:
    mapcheck [--device PATH] [--list] [--fault-around] [NAME...]

Runs every test, or only the NAMEs given, one after the other, and prints
`ok - NAME` or `not ok - NAME: REASON` for each. Exits with status 0 if all
passed, 1 if any failed, 2 on a usage error.

OPTIONS:
    --device PATH   the device node to test (default /dev/mapdrv); the
                    dev_node and unprivileged_eacces tests always check
                    /dev/mapdrv itself
    --fault-around  run the fault-around tests instead, for the module loaded
                    with fault_around=16 and at least 64 pages
    --list          print the names of the tests and exit
    -h, --help     print this help
";

/// What the command line asks for.
struct Args {
    device: String,
    list: bool,
    fault_around: bool,
    names: Vec<String>,
}

/// Parses the command line; `None` if it asked for the help, which has been printed.
fn parse_args(cli: &mut Cli) -> Result<Option<Args>, String> {
    let mut args = Args {
        device: DEV_NODE.to_owned(),
        list: false,
        fault_around: false,
        names: Vec::new(),
    };
    while let Some(arg) = cli.next()? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => {
                print!("{HELP}");
                return Ok(None);
            }
            Arg::Long("list") => args.list = true,
            Arg::Long("fault-around") => args.fault_around = true,
            Arg::Long("device") => args.device = cli.string("--device")?,
            Arg::Value(name) => {
                let name = name.string().map_err(|e| e.to_string())?;
                let mut known = harness::TESTS.iter().chain(harness::FAULT_AROUND_TESTS);
                if !known.any(|t| t.name == name) {
                    return Err(format!("no test named {name:?}; --list shows the names"));
                }
                args.names.push(name);
            }
            other => return Err(Cli::unexpected(other)),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    let mut cli = Cli::from_env("mapcheck", 0);
    let args = match parse_args(&mut cli) {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => return cli.usage_error(e),
    };
    let tests = if args.fault_around {
        harness::FAULT_AROUND_TESTS
    } else {
        harness::TESTS
    };
    if args.list {
        for t in tests {
            println!("{}", t.name);
        }
        return ExitCode::SUCCESS;
    }
    harness::run(tests, &args.names, &args.device)
}
