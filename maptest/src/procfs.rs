//! Files of `/proc` the tests and the lesson read: `/proc/vmstat`, `/proc/meminfo`,
//! `/proc/PID/maps` and `/proc/PID/pagemap`.

use std::io;

/// A counter of `/proc/vmstat` (`None` if this kernel does not have it).
pub fn vmstat(name: &str) -> io::Result<Option<u64>> {
    Ok(field(&std::fs::read_to_string("/proc/vmstat")?, name))
}

/// The value of `field` in a `/proc/meminfo` text (`field` without the colon), in KiB.
pub fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

/// A field of `/proc/meminfo` (`MemTotal`, `VmallocUsed`, ...), in KiB.
pub fn meminfo_kib(name: &str) -> Option<u64> {
    meminfo_field(&std::fs::read_to_string("/proc/meminfo").ok()?, name)
}

/// The value of `name` in a text of `name value` lines (`/proc/vmstat`).
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok())?
    })
}

/// One line of `/proc/self/maps`.
#[derive(Debug, Clone)]
pub struct MapsLine {
    pub start: u64,
    pub end: u64,
    pub path: String,
    pub text: String,
}

/// Parses the text of `/proc/PID/maps`.
pub fn parse_maps(text: &str) -> Result<Vec<MapsLine>, String> {
    text.lines()
        .map(|l| {
            let bad = || format!("bad maps line {l:?}");
            let mut w = l.split_whitespace();
            let range = w.next();
            // Permissions, offset, device, inode: shown as they are, in `text`.
            let _ = (w.next(), w.next(), w.next(), w.next());
            let path = w.collect::<Vec<_>>().join(" ");
            let (start, end) = range.and_then(|r| r.split_once('-')).ok_or_else(bad)?;
            Ok(MapsLine {
                start: u64::from_str_radix(start, 16).map_err(|_| bad())?,
                end: u64::from_str_radix(end, 16).map_err(|_| bad())?,
                path,
                text: l.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let meminfo = "MemTotal:        2014520 kB\nVmallocUsed:       12345 kB\n";
        assert_eq!(meminfo_field(meminfo, "VmallocUsed"), Some(12345));
        assert_eq!(meminfo_field(meminfo, "Vmalloc"), None);
        assert_eq!(
            field("pgfault 12\nvma_lock_retry 0\n", "vma_lock_retry"),
            Some(0)
        );
        let maps = parse_maps("7f00-7f01 r--s 00000000 00:05 3 /dev/mapdrv\n").unwrap();
        assert_eq!((maps[0].start, maps[0].end), (0x7f00, 0x7f01));
        assert_eq!(maps[0].path, "/dev/mapdrv");
    }
}

/// What `/proc/PID/pagemap` says about one page of a process's address space: its entry in
/// the process's own page tables, as the kernel reports it (one 64-bit word per page;
/// `Documentation/admin-guide/mm/pagemap.rst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagemapEntry {
    /// Bit 63: a page is mapped there.
    pub present: bool,
    /// Bits 0-54 of a present page: its page frame number (the kernel shows 0 to a process
    /// without `CAP_SYS_ADMIN`); 0 here for a page not present (whose bits then hold a swap
    /// entry, or nothing).
    pub pfn: u64,
    /// Bit 56: the page is mapped by this process alone.
    pub exclusive: bool,
    /// Bit 61: a page of a file (or shared anonymous memory), not private anonymous memory.
    pub file_or_shared: bool,
}

impl PagemapEntry {
    /// Decodes one word of `pagemap`.
    pub fn from_word(word: u64) -> PagemapEntry {
        let present = word >> 63 & 1 == 1;
        PagemapEntry {
            present,
            pfn: if present { word & ((1 << 55) - 1) } else { 0 },
            exclusive: word >> 56 & 1 == 1,
            file_or_shared: word >> 61 & 1 == 1,
        }
    }
}

/// The `pagemap` entries of this process for the `pages` pages from address `addr` (page
/// aligned).
pub fn pagemap(addr: usize, pages: usize) -> io::Result<Vec<PagemapEntry>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open("/proc/self/pagemap")?;
    let mut bytes = vec![0u8; pages * 8];
    file.read_exact_at(&mut bytes, (addr / crate::PAGE_SIZE * 8) as u64)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|w| PagemapEntry::from_word(u64::from_ne_bytes(w.try_into().expect("8 bytes"))))
        .collect())
}
