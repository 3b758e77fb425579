//! Device nodes the tests make for themselves: one for a minor the driver does not serve, and
//! one on a file system that allows `PROT_EXEC`.

use std::fs;
use std::os::unix::fs::MetadataExt;

use maptest::device::mknod_char;
use maptest::OrFail;
use rustix::fs::{major, minor, statvfs, StatVfsMountFlags};

use crate::ctx::Ctx;
use crate::expect::ensure;

/// Whether the file system holding `path` is mounted `noexec`.
fn is_noexec(path: &str) -> Result<bool, String> {
    let st = statvfs(path).or_fail(format!("statvfs {path}"))?;
    Ok(st.f_flag.contains(StatVfsMountFlags::NOEXEC))
}

/// A device node this process made with `mknod`, removed on drop.
pub(crate) struct TempNode(pub(crate) String);

impl TempNode {
    pub(crate) fn create(tag: &str, major: u32, minor: u32) -> Result<TempNode, String> {
        let path = format!("/tmp/mapcheck-{}-{tag}", std::process::id());
        let _ = fs::remove_file(&path);
        mknod_char(&path, major, minor, 0o600)
            .or_fail(format!("mknod {path} c {major} {minor}"))?;
        Ok(TempNode(path))
    }
}

impl Drop for TempNode {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A path to the device on a file system that allows `PROT_EXEC`, so that a refusal comes from
/// the driver and not from a `noexec` mount (devtmpfs is `noexec` with CONFIG_DEVTMPFS_SAFE).
pub(crate) struct ExecNode {
    pub(crate) path: String,
    _temp: Option<TempNode>,
}

pub(crate) fn exec_node(ctx: &Ctx) -> Result<ExecNode, String> {
    if !is_noexec(&ctx.device)? {
        return Ok(ExecNode {
            path: ctx.device.clone(),
            _temp: None,
        });
    }
    let rdev = fs::metadata(&ctx.device)
        .or_fail(format!("stat {}", ctx.device))?
        .rdev();
    let node = TempNode::create("exec", major(rdev), minor(rdev))?;
    ensure!(
        !is_noexec(&node.0)?,
        "{} and /tmp are both on noexec mounts: a PROT_EXEC refusal would prove nothing",
        ctx.device
    );
    Ok(ExecNode {
        path: node.0.clone(),
        _temp: Some(node),
    })
}
