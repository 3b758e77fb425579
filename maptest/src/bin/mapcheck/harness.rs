//! The runner: the tables of tests, in the order they run, and how one test runs: in a child
//! process of its own with a time limit, after which whatever it left running is ended and
//! the buffer is checked (and repaired).

use std::io::{self, Write};
use std::process::ExitCode;

use maptest::errors::one_line;
use maptest::process::{alarm, Pid};
use rustix::io::Errno;
use rustix::process::{
    getpid, kill_process_group, set_child_subreaper, setpgid, wait, WaitOptions,
};

use crate::children::{send_panics_to_runner, spawn};
use crate::ctx::Ctx;
use crate::{
    boundaries, concurrency, counters, device, fault_around, file_ops, mmap, mmap_lifetime, paging,
};

/// A test still running after this long is killed (`SIGALRM`).
pub(crate) const TEST_TIMEOUT_SECS: u32 = 30;

/// What a test returns: the reason of a failure, on one line.
pub(crate) type TestResult = Result<(), String>;

/// How [`skipped`] marks the reason of a test that could not run.
const SKIP: &str = "SKIP: ";

/// The result of a test that cannot run in this kernel (it lacks a debug feature the test
/// needs): reported as `ok - NAME # SKIP WHY`, which counts as skipped, not passed.
pub(crate) fn skipped(why: impl std::fmt::Display) -> TestResult {
    Err(format!("{SKIP}{why}"))
}

/// A test: its name is the name of its function.
pub(crate) struct Test {
    pub(crate) name: &'static str,
    run: fn(&Ctx) -> TestResult,
    /// Whether it writes to the buffer; the runner then checks that the buffer was restored.
    writes: bool,
}

/// Builds a test table from `module::function` paths; `name: writes` marks a test that writes.
macro_rules! tests {
    (@flag writes) => { true };
    (@flag) => { false };
    ($($module:ident :: $name:ident $(: $flag:ident)?),* $(,)?) => {
        &[$(Test {
            name: stringify!($name),
            run: $module::$name,
            writes: tests!(@flag $($flag)?),
        }),*]
    };
}

/// The tests, in the order they run.
pub(crate) const TESTS: &[Test] = tests![
    // The device node, the debugfs file.
    device::dev_node,
    device::unprivileged_eacces,
    device::open_minor_enxio,
    device::stats_file,
    // read, pread, lseek.
    file_ops::read_whole,
    file_ops::read_chunks,
    file_ops::pread_offsets,
    file_ops::pread_end,
    file_ops::llseek_whence,
    file_ops::llseek_einval,
    // write, pwrite.
    file_ops::write_pwrite: writes,
    file_ops::write_short: writes,
    file_ops::write_enospc: writes,
    file_ops::write_rdonly_ebadf: writes,
    // mmap and what can be done with a mapping.
    mmap::mmap_whole,
    mmap::mmap_offset,
    mmap::mmap_einval,
    mmap::mmap_prot_exec,
    mmap::mprotect_exec,
    mmap::mmap_write_rdonly,
    mmap::mmap_shared_write: writes,
    mmap::mmap_private_cow: writes,
    mmap_lifetime::mremap_grow,
    mmap_lifetime::mremap_shrink,
    mmap_lifetime::munmap_partial,
    mmap_lifetime::mmap_outlives_fd,
    mmap_lifetime::fork_shared: writes,
    // Demand paging and the counters.
    paging::madvise_dontneed,
    paging::map_populate,
    paging::demand_paging_mincore,
    paging::demand_paging_faults,
    paging::faults_under_vma_lock,
    paging::fault_enomem_tried_again,
    counters::counter_opens,
    counters::counter_mappings,
    counters::counter_mappings_fork,
    counters::counter_mappings_split,
    concurrency::concurrent_faults,
    // Edge cases of every argument.
    boundaries::boundaries: writes,
];

/// The fault-around tests (`--fault-around`), for the module loaded with `fault_around=16`.
pub(crate) const FAULT_AROUND_TESTS: &[Test] = tests![
    fault_around::fault_around_aligned_block,
    fault_around::fault_around_vma_edges,
    fault_around::fault_around_page_table_edge,
    fault_around::fault_around_partly_mapped,
    fault_around::fault_around_private_write: writes,
    fault_around::fault_around_shared_write: writes,
    fault_around::fault_around_populate,
];

/// Runs the `tests` named in `names` (all of them if it is empty) on `device`, printing one
/// line for each; exit status 0 if all passed, 1 otherwise.
pub(crate) fn run(tests: &[Test], names: &[String], device: &str) -> ExitCode {
    send_panics_to_runner();
    // Orphans of a test become our children, so that `reap_leftovers` can wait for them.
    // (rustix takes a pid for the flag: any nonzero value sets it.)
    let _ = set_child_subreaper(Some(getpid()));

    let ctx = Ctx::new(device);
    let selected = tests
        .iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name));
    let mut failed = 0;
    for test in selected {
        let result = match &ctx {
            Ok(ctx) => run_test(test, ctx),
            Err(e) => Err(format!("setup: {e}")),
        };
        match result {
            Ok(()) => println!("ok - {}", test.name),
            Err(why) if why.starts_with(SKIP) => {
                println!("ok - {} # SKIP {}", test.name, one_line(&why[SKIP.len()..]));
            }
            Err(why) => {
                failed += 1;
                println!("not ok - {}: {}", test.name, one_line(&why));
            }
        }
        let _ = io::stdout().flush();
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs one test in a child process, then makes sure the buffer is as the contract says.
fn run_test(test: &Test, ctx: &Ctx) -> TestResult {
    let child = spawn(|| {
        // A process group of its own, so that the runner can end whatever the test leaves
        // behind, and a time limit.
        let _ = setpgid(None, None);
        alarm(TEST_TIMEOUT_SECS);
        (test.run)(ctx)
    })?;
    // Also done here so that the group exists whoever runs first.
    let _ = setpgid(Some(child.pid), Some(child.pid));
    let pid = child.pid;
    let result = child.wait();
    reap_leftovers(pid);
    if !test.writes && result.is_ok() {
        return result;
    }
    match (ctx.repair(), result) {
        (Ok(None), result) => result,
        (Ok(Some(mis)), Ok(())) => Err(format!(
            "left the buffer changed ({mis}); mapcheck restored it"
        )),
        (Ok(Some(mis)), Err(why)) => Err(format!(
            "{why}; the buffer was left changed ({mis}) and was restored"
        )),
        (Err(e), Ok(())) => Err(format!("checking the buffer afterwards: {e}")),
        (Err(e), Err(why)) => Err(format!("{why}; checking the buffer afterwards: {e}")),
    }
}

/// Kills whatever the test left running in its process group and reaps it (as a subreaper,
/// the runner inherits the test's orphans), so that the next test starts clean.
fn reap_leftovers(pgid: Pid) {
    let _ = kill_process_group(pgid, rustix::process::Signal::KILL);
    // Until ECHILD: nothing left.
    while let Ok(_) | Err(Errno::INTR) = wait(WaitOptions::empty()) {}
}
