//! The device and its files, from the contract's "at load" and "statistics" paragraphs: the
//! node `/dev/mapdrv` (major, minor, mode, owner), root only; other minors refused with
//! `ENXIO`; the debugfs stats file, root only and consistent with the buffer.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use maptest::debugfs::{PAGEWALK_PATH, STATS_PATH};
use maptest::device::{driver_major, DEV_NODE};
use maptest::{OrFail, Stats};
use rustix::thread::{set_thread_gid, set_thread_groups, set_thread_uid, Gid, Uid};

use crate::children::spawn;
use crate::ctx::Ctx;
use crate::expect::{ensure, expect_counts, expect_errno, Want};
use crate::harness::TestResult;
use crate::nodes::TempNode;

/// The user and group `unprivileged_eacces` becomes.
const NOBODY: u32 = 65534;

/// /dev/mapdrv is a char device, major from /proc/devices, minor 0, mode 0600, owned by root.
pub(crate) fn dev_node(_ctx: &Ctx) -> TestResult {
    let md = fs::metadata(DEV_NODE).or_fail(format!("stat {DEV_NODE}"))?;
    ensure!(
        md.file_type().is_char_device(),
        "{DEV_NODE} is not a character device (st_mode {:o})",
        md.mode()
    );
    let major = driver_major()?;
    let (maj, min) = (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()));
    ensure!(
        (maj, min) == (major, 0),
        "{DEV_NODE} is device {maj}:{min}, expected {major}:0 (major from /proc/devices)"
    );
    let perm = md.mode() & 0o7777;
    ensure!(
        perm == 0o600,
        "{DEV_NODE} has mode {perm:04o}, expected 0600"
    );
    ensure!(
        md.uid() == 0,
        "{DEV_NODE} belongs to uid {}, expected 0 (root)",
        md.uid()
    );
    Ok(())
}

/// An unprivileged process can open neither /dev/mapdrv nor the stats file.
pub(crate) fn unprivileged_eacces(_ctx: &Ctx) -> TestResult {
    spawn(|| {
        // setgroups, then setgid, then setuid. rustix's calls change the credentials of the
        // calling thread only (the kernel's semantics; the C library's wrappers signal every
        // thread to do the same). This child is single-threaded, so those of its one thread
        // are those of the whole process.
        set_thread_groups(&[])
            .and_then(|()| set_thread_gid(Gid::from_raw(NOBODY)))
            .and_then(|()| set_thread_uid(Uid::from_raw(NOBODY)))
            .or_fail(format!("cannot become uid/gid {NOBODY}"))?;
        let who = format!("as uid {NOBODY}");
        expect_errno(
            &format!("open {DEV_NODE} O_RDONLY {who}"),
            File::open(DEV_NODE),
            libc::EACCES,
        )?;
        expect_errno(
            &format!("open {DEV_NODE} O_RDWR {who}"),
            OpenOptions::new().read(true).write(true).open(DEV_NODE),
            libc::EACCES,
        )?;
        expect_errno(
            &format!("reading {STATS_PATH} {who}"),
            fs::read(STATS_PATH),
            libc::EACCES,
        )?;
        // The page walk shows kernel addresses: nothing of it for an unprivileged reader.
        expect_errno(
            &format!("reading {PAGEWALK_PATH} {who}"),
            fs::read(PAGEWALK_PATH),
            libc::EACCES,
        )
    })?
    .wait()
}

/// Opening a node for (MAJOR, 1), a minor the driver does not serve, fails with ENXIO.
pub(crate) fn open_minor_enxio(_ctx: &Ctx) -> TestResult {
    let major = driver_major()?;
    let node = TempNode::create("minor1", major, 1)?;
    let base = Stats::read()?;
    let what = format!("open {} (device {major}:1)", node.0);
    expect_errno(
        &format!("{what} O_RDONLY"),
        File::open(&node.0),
        libc::ENXIO,
    )?;
    expect_errno(
        &format!("{what} O_RDWR"),
        OpenOptions::new().read(true).write(true).open(&node.0),
        libc::ENXIO,
    )?;
    expect_counts("after the failed opens", &base, Want::default().opens(0))
}

/// The stats file exists, is not readable by group or others, parses, and agrees on the size.
pub(crate) fn stats_file(ctx: &Ctx) -> TestResult {
    let md = fs::metadata(STATS_PATH).or_fail(format!("stat {STATS_PATH}"))?;
    ensure!(
        md.file_type().is_file(),
        "{STATS_PATH} is not a regular file"
    );
    let perm = md.mode() & 0o7777;
    ensure!(
        perm & 0o044 == 0,
        "{STATS_PATH} has mode {perm:04o}: readable by group or others"
    );
    let text = fs::read_to_string(STATS_PATH).or_fail(format!("reading {STATS_PATH}"))?;
    let stats =
        Stats::parse(&text).map_err(|e| format!("{STATS_PATH} does not parse ({e}): {text:?}"))?;
    ensure!(
        stats.pages == ctx.pages as u64,
        "{STATS_PATH} says pages: {}, but lseek(SEEK_END) gives {} pages",
        stats.pages,
        ctx.pages
    );
    Ok(())
}
