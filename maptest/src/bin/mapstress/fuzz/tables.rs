//! The fuzzer's constants and name tables: address limits, and the `PROT_`, `MADV_`, `SEEK_`
//! and ioctl values it sends, with their names for the calls it prints.

use crate::PAGE;

/// The highest user address `access_ok()` accepts on x86-64 (`USER_PTR_MAX`, which is
/// `TASK_SIZE_MAX`) with 4-level paging, and with 5-level paging (LA57).
pub(super) const USER_MAX_4L: u64 = (1 << 47) - PAGE;
pub(super) const USER_MAX_5L: u64 = (1 << 56) - PAGE;

/// The most `read`/`write` transfer in one call (`MAX_RW_COUNT`, `INT_MAX & PAGE_MASK`).
pub(super) const MAX_RW_COUNT: u64 = 0x7fff_f000;

/// An address in the kernel half: never a user address, whatever the paging mode.
pub(super) const KERNEL_ADDR: u64 = 0xffff_8880_0000_0000;

/// Below this, nothing is mapped in a process that does not ask for it (`mmap_min_addr` is at
/// most this); checked at start-up against `/proc/self/maps`.
pub(super) const LOW_LIMIT: u64 = 0x10000;

/// A mapping this long may find no room in the 47-bit address space: `ENOMEM` is then the
/// kernel's answer before the driver is asked.
pub(super) const NO_ROOM_LEN: u64 = 1 << 40;

pub(super) const fn page_align(len: u64) -> u64 {
    len.wrapping_add(PAGE - 1) & !(PAGE - 1)
}

/// A length or an offset for a printed call: decimal if small, hexadecimal otherwise.
pub(super) fn hex(v: u64) -> String {
    if v < 4096 {
        format!("{v}")
    } else {
        format!("{v:#x}")
    }
}

pub(super) const PROT_SEM: i32 = 0x8;
pub(super) const PROT_RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

pub(super) fn prot_name(prot: i32) -> String {
    if prot == 0 {
        return "PROT_NONE".into();
    }
    let mut parts = Vec::new();
    let mut rest = prot;
    for (bit, name) in [
        (libc::PROT_READ, "PROT_READ"),
        (libc::PROT_WRITE, "PROT_WRITE"),
        (libc::PROT_EXEC, "PROT_EXEC"),
        (PROT_SEM, "PROT_SEM"),
        (libc::PROT_GROWSDOWN, "PROT_GROWSDOWN"),
        (libc::PROT_GROWSUP, "PROT_GROWSUP"),
    ] {
        if prot & bit != 0 {
            parts.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

// madvise advice values (include/uapi/asm-generic/mman-common.h).
pub(super) const MADV_NORMAL: i32 = 0;
pub(super) const MADV_RANDOM: i32 = 1;
pub(super) const MADV_SEQUENTIAL: i32 = 2;
pub(super) const MADV_WILLNEED: i32 = 3;
pub(super) const MADV_DONTNEED: i32 = 4;
pub(super) const MADV_FREE: i32 = 8;
pub(super) const MADV_REMOVE: i32 = 9;
pub(super) const MADV_DONTFORK: i32 = 10;
pub(super) const MADV_DOFORK: i32 = 11;
pub(super) const MADV_MERGEABLE: i32 = 12;
pub(super) const MADV_UNMERGEABLE: i32 = 13;
pub(super) const MADV_HUGEPAGE: i32 = 14;
pub(super) const MADV_NOHUGEPAGE: i32 = 15;
pub(super) const MADV_DONTDUMP: i32 = 16;
pub(super) const MADV_DODUMP: i32 = 17;
pub(super) const MADV_WIPEONFORK: i32 = 18;
pub(super) const MADV_KEEPONFORK: i32 = 19;
pub(super) const MADV_COLD: i32 = 20;
pub(super) const MADV_PAGEOUT: i32 = 21;
pub(super) const MADV_POPULATE_READ: i32 = 22;
pub(super) const MADV_POPULATE_WRITE: i32 = 23;
pub(super) const MADV_DONTNEED_LOCKED: i32 = 24;
pub(super) const MADV_COLLAPSE: i32 = 25;
/// Never sent: with CONFIG_MEMORY_FAILURE they poison or offline the page (root may).
const MADV_HWPOISON: i32 = 100;
const MADV_SOFT_OFFLINE: i32 = 101;
pub(super) const MADV_GUARD_INSTALL: i32 = 102;
pub(super) const MADV_GUARD_REMOVE: i32 = 103;

/// The advice values the fuzzer sends besides the common ones (all valid values but
/// MADV_HWPOISON and MADV_SOFT_OFFLINE).
pub(super) const KNOWN_ADVICE: &[i32] = &[
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MADV_DONTNEED,
    MADV_FREE,
    MADV_REMOVE,
    MADV_DONTFORK,
    MADV_DOFORK,
    MADV_MERGEABLE,
    MADV_UNMERGEABLE,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_DONTDUMP,
    MADV_DODUMP,
    MADV_WIPEONFORK,
    MADV_KEEPONFORK,
    MADV_COLD,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_DONTNEED_LOCKED,
    MADV_COLLAPSE,
    MADV_GUARD_INSTALL,
    MADV_GUARD_REMOVE,
];

pub(super) fn advice_name(a: i32) -> String {
    let name = match a {
        MADV_NORMAL => "MADV_NORMAL",
        MADV_RANDOM => "MADV_RANDOM",
        MADV_SEQUENTIAL => "MADV_SEQUENTIAL",
        MADV_WILLNEED => "MADV_WILLNEED",
        MADV_DONTNEED => "MADV_DONTNEED",
        MADV_FREE => "MADV_FREE",
        MADV_REMOVE => "MADV_REMOVE",
        MADV_DONTFORK => "MADV_DONTFORK",
        MADV_DOFORK => "MADV_DOFORK",
        MADV_MERGEABLE => "MADV_MERGEABLE",
        MADV_UNMERGEABLE => "MADV_UNMERGEABLE",
        MADV_HUGEPAGE => "MADV_HUGEPAGE",
        MADV_NOHUGEPAGE => "MADV_NOHUGEPAGE",
        MADV_DONTDUMP => "MADV_DONTDUMP",
        MADV_DODUMP => "MADV_DODUMP",
        MADV_WIPEONFORK => "MADV_WIPEONFORK",
        MADV_KEEPONFORK => "MADV_KEEPONFORK",
        MADV_COLD => "MADV_COLD",
        MADV_PAGEOUT => "MADV_PAGEOUT",
        MADV_POPULATE_READ => "MADV_POPULATE_READ",
        MADV_POPULATE_WRITE => "MADV_POPULATE_WRITE",
        MADV_DONTNEED_LOCKED => "MADV_DONTNEED_LOCKED",
        MADV_COLLAPSE => "MADV_COLLAPSE",
        MADV_GUARD_INSTALL => "MADV_GUARD_INSTALL",
        MADV_GUARD_REMOVE => "MADV_GUARD_REMOVE",
        _ => return format!("advice {a}"),
    };
    name.into()
}

/// Advice values that exist only with CONFIG_KSM (MERGEABLE, UNMERGEABLE) or
/// CONFIG_TRANSPARENT_HUGEPAGE (HUGEPAGE, NOHUGEPAGE, COLLAPSE): without them the value itself is
/// invalid, and madvise() fails with EINVAL before it looks at the range.
pub(super) const CONFIG_ADVICE: &[i32] = &[
    MADV_MERGEABLE,
    MADV_UNMERGEABLE,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_COLLAPSE,
];

pub(super) fn is_valid_advice(a: i32) -> bool {
    KNOWN_ADVICE.contains(&a) || a == MADV_HWPOISON || a == MADV_SOFT_OFFLINE
}

/// The name of an `lseek` whence, for the printed call.
pub(super) fn whence_name(whence: u32) -> String {
    match whence {
        0 => "SEEK_SET".to_owned(),
        1 => "SEEK_CUR".to_owned(),
        2 => "SEEK_END".to_owned(),
        3 => "SEEK_DATA".to_owned(),
        4 => "SEEK_HOLE".to_owned(),
        w => format!("whence {w:#x}"),
    }
}

/// ioctl commands the VFS handles itself before the driver sees them (`do_vfs_ioctl()`), so
/// that they may succeed (or write through the argument): never sent. FIONREAD and FIOQSIZE
/// reach the driver for a character device and are sent.
pub(super) const VFS_IOCTLS: &[u32] = &[
    0x5451,      // FIOCLEX
    0x5450,      // FIONCLEX
    0x5421,      // FIONBIO
    0x5452,      // FIOASYNC
    0xc004_5877, // FIFREEZE
    0xc004_5878, // FITHAW
    0xc020_660b, // FS_IOC_FIEMAP
    2,           // FIGETBSZ
    0x4004_9409, // FICLONE
    0x4020_940d, // FICLONERANGE
    0xc018_9436, // FIDEDUPERANGE
    0x8008_6601, // FS_IOC_GETFLAGS
    0x4008_6602, // FS_IOC_SETFLAGS
    0x801c_581f, // FS_IOC_FSGETXATTR
    0x401c_5820, // FS_IOC_FSSETXATTR
    0x8011_1500, // FS_IOC_GETFSUUID
    0x8081_1501, // FS_IOC_GETFSSYSFSPATH
];

/// Commands worth sending on purpose (all must be ENOTTY from the driver).
pub(super) const SOME_IOCTLS: &[u32] = &[
    0,
    1,
    0x5401,      // TCGETS
    0x5413,      // TIOCGWINSZ
    0x541b,      // FIONREAD (VFS passes it on for non-regular files)
    0x5460,      // FIOQSIZE (ENOTTY for a character device)
    0x8008_1272, // BLKGETSIZE64
    0x1260,      // BLKGETSIZE
    0xffff_ffff,
    0x8000_6d00, // _IOR('m', 0, 0)
    0xc008_6d01, // _IOWR('m', 1, 8)
];
