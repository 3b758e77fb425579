//! The fuzzer's process operation: `fork`, and the child's few steps on its copy of the
//! descriptors and mappings.

use maptest::errors::{one_line, OrFail};
use maptest::process::{self, Forked};
use maptest::raw;
use maptest::rng::{derive_seed, Rng};

use super::expect::Expect;
use super::Fuzz;
use crate::signals;

/// A forked child of the fuzzer is killed after this long.
const CHILD_ALARM: u32 = 30;

impl Fuzz<'_> {
    pub(super) fn op_fork(&mut self) -> Result<(), String> {
        let child_seed = derive_seed(self.seed, self.step, 0xf04c);
        // SAFETY: The fuzzer is single-threaded; the child works on its copy of the state and
        // leaves with `_exit`, never returning into the caller.
        let r = match unsafe { process::fork() } {
            Ok(Forked::Child) => self.child(child_seed),
            Ok(Forked::Parent(pid)) => Ok(pid),
            Err(e) => Err(e.raw_os_error().unwrap_or(0)),
        };
        self.judge(
            format!("fork() [child seed {child_seed:#x}]"),
            r.map(|pid| i64::from(pid.as_raw_nonzero().get())),
            &Expect::ok_in(1, i64::from(i32::MAX)),
        )?;
        let Ok(pid) = r else { return Ok(()) };
        self.forks += 1;
        let status = process::wait(pid).or_fail(format!("waitpid {pid}"))?;
        if let Some(problem) = signals::wait_status_problem(status) {
            return Err(format!(
                "the child forked at this step (child seed {child_seed:#x}) {problem}"
            ));
        }
        // The child shared our open files, and so their positions.
        for i in 0..self.fds.len() {
            let fd = self.fds[i].fd;
            let r = raw::lseek(fd, 0, libc::SEEK_CUR);
            self.judge(
                format!("lseek(fd {fd}, 0, SEEK_CUR) after the child"),
                r,
                &Expect::ok_in(0, self.size as i64),
            )?;
            if let Ok(p) = r {
                self.fds[i].pos = p as u64;
            }
        }
        Ok(())
    }

    /// The forked child: a few random operations on its copy of everything, then exit.
    fn child(&mut self, seed: u64) -> ! {
        signals::child_signals(CHILD_ALARM);
        self.in_child = true;
        self.rng = Rng::new(seed);
        // Mappings with MADV_DONTFORK are not in the child.
        self.regions.retain(|r| !r.dontfork);
        let steps = self.rng.range(1, 6);
        for k in 0..steps {
            if let Err(e) = self.one_step() {
                println!(
                    "# child of step {} (child seed {seed:#x}) failed at its operation {k}: {}",
                    self.step,
                    one_line(&e)
                );
                for line in &self.recent {
                    println!("#   child: {line}");
                }
                process::exit_now(1);
            }
        }
        process::exit_now(0)
    }
}
