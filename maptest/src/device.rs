//! The device: its node, and the major number the kernel gave the driver.
//!
//! mapdrv registers a character device named `mapdrv`; its major number is listed in
//! `/proc/devices`, and any node with that major and minor 0 opens it
//! (`mknod mapfile c MAJOR 0`). The guest's `/dev/mapdrv` is such a node.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileTypeExt;

use rustix::fs::{makedev, mknodat, FileType, Mode, CWD};
use rustix::io::Errno;

use crate::errors::errno_name;

/// The device node the guest makes for the driver.
pub const DEV_NODE: &str = "/dev/mapdrv";

/// The name the driver registers its char device under (in `/proc/devices`).
pub const DRIVER_NAME: &str = "mapdrv";

/// Whether `path` is a character device (not a regular file someone created by mistake).
pub fn is_char_device(path: &str) -> io::Result<bool> {
    Ok(std::fs::metadata(path)?.file_type().is_char_device())
}

/// `mknod(2)` of a character device node with permissions `mode`.
pub fn mknod_char(path: &str, major: u32, minor: u32, mode: u32) -> io::Result<()> {
    Ok(mknodat(
        CWD,
        path,
        FileType::CharacterDevice,
        Mode::from_bits_truncate(mode),
        makedev(major, minor),
    )?)
}

/// The major number `/proc/devices` lists for the character device `name`.
pub fn proc_devices_major(name: &str) -> io::Result<Option<u32>> {
    Ok(parse_proc_devices(
        &std::fs::read_to_string("/proc/devices")?,
        name,
    ))
}

/// The major number of character device `name` in the text of `/proc/devices`.
fn parse_proc_devices(text: &str, name: &str) -> Option<u32> {
    let mut in_char = false;
    for line in text.lines() {
        if line.starts_with("Character devices:") {
            in_char = true;
            continue;
        }
        if line.starts_with("Block devices:") {
            in_char = false;
        }
        if in_char {
            let mut it = line.split_whitespace();
            if let (Some(num), Some(n)) = (it.next(), it.next()) {
                if n == name {
                    return num.parse().ok();
                }
            }
        }
    }
    None
}

/// `pread(2)` of exactly `buf.len()` bytes of the device at `off` (retried after short reads
/// and `EINTR`); an early end of file is an error. The error is a one-line reason.
pub fn pread_exact(file: &File, buf: &mut [u8], off: u64) -> Result<(), String> {
    let mut done = 0;
    while done < buf.len() {
        let at = off + done as u64;
        match rustix::io::pread(file, &mut buf[done..], at) {
            Ok(0) => {
                return Err(format!(
                    "pread at {at}: end of file {} bytes early",
                    buf.len() - done
                ))
            }
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => {
                return Err(format!(
                    "pread of {} bytes at {at}: {}",
                    buf.len() - done,
                    errno_name(e.raw_os_error())
                ))
            }
        }
    }
    Ok(())
}

/// The major number the kernel gave mapdrv; the error is a one-line reason.
pub fn driver_major() -> Result<u32, String> {
    proc_devices_major(DRIVER_NAME)
        .map_err(|e| format!("reading /proc/devices: {}", crate::errors::describe(&e)))?
        .ok_or_else(|| format!("/proc/devices lists no character device {DRIVER_NAME:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_char_major() {
        let text = "Character devices:\n  1 mem\n248 mapdrv\n\nBlock devices:\n  7 mapdrv\n";
        assert_eq!(parse_proc_devices(text, "mapdrv"), Some(248));
        assert_eq!(parse_proc_devices(text, "loop"), None);
    }
}
