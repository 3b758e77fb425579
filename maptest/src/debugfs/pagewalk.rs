//! The driver's `pagewalk` file: parsed, and rendered for a person (`maptest walk`).

use std::collections::HashMap;
use std::fmt::Write as _;

use super::hex;
use crate::text::wrap;

/// One entry read at one level: `pte[237]=0x80000000008d0163(P,W,NX,G)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelEntry {
    pub index: u32,
    pub raw: u64,
    pub flags: String,
}

/// One line of the walk: a page of the buffer and how its address translates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub page: usize,
    pub vaddr: u64,
    /// `pgd`, `p4d`, `pud`, `pmd`, `pte`: `None` for a level folded away (P4D with 4-level
    /// paging).
    pub levels: HashMap<String, Option<LevelEntry>>,
    pub pfn: u64,
    pub phys: u64,
    pub page_struct: u64,
    pub direct_map: u64,
    /// The node and zone of the frame (`None`: the driver could not tell).
    pub node: Option<u32>,
    pub zone: Option<String>,
}

/// How the kernel gets from a frame number to its `struct page` and its direct-map address
/// (the header line `# memmap: ...`): `vmemmap + pfn * struct_page_size`, and
/// `page_offset + (phys - phys_offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemMap {
    pub vmemmap: u64,
    pub struct_page_size: u64,
    pub phys_offset: u64,
    pub page_offset: u64,
}

impl MemMap {
    /// `pfn_to_page()`: the address of the `struct page` of frame `pfn`.
    pub fn page_struct(&self, pfn: u64) -> u64 {
        self.vmemmap
            .wrapping_add(pfn.wrapping_mul(self.struct_page_size))
    }

    /// `__va()`: the direct-map address of physical address `phys`.
    pub fn direct_map(&self, phys: u64) -> u64 {
        self.page_offset
            .wrapping_add(phys.wrapping_sub(self.phys_offset))
    }
}

/// The whole file: the paging mode named in the header, the memory map, and the rows.
#[derive(Debug, Clone)]
pub struct PageWalk {
    pub mode: String,
    pub mem_map: Option<MemMap>,
    pub rows: Vec<Row>,
}

fn parse_mem_map(line: &str) -> Result<MemMap, String> {
    let fields: HashMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|t| t.split_once('='))
        .collect();
    let get = |k: &str| {
        fields
            .get(k)
            .copied()
            .ok_or_else(|| format!("no {k}= in {line:?}"))
    };
    Ok(MemMap {
        vmemmap: hex(get("vmemmap")?)?,
        struct_page_size: get("struct_page_size")?
            .parse()
            .map_err(|_| format!("bad struct_page_size in {line:?}"))?,
        phys_offset: hex(get("phys_offset")?)?,
        page_offset: hex(get("page_offset")?)?,
    })
}

pub const LEVELS: [&str; 5] = ["pgd", "p4d", "pud", "pmd", "pte"];

fn parse_level(value: &str) -> Result<LevelEntry, String> {
    // `[237]=0x80000000008d0163(P,W,NX,G)`
    let bad = || format!("bad entry: {value}");
    let rest = value.strip_prefix('[').ok_or_else(bad)?;
    let (index, rest) = rest.split_once("]=").ok_or_else(bad)?;
    let (raw, flags) = rest.split_once('(').ok_or_else(bad)?;
    let flags = flags.strip_suffix(')').ok_or_else(bad)?;
    Ok(LevelEntry {
        index: index.parse().map_err(|_| bad())?,
        raw: hex(raw)?,
        flags: flags.to_owned(),
    })
}

fn parse_row(line: &str) -> Result<Row, String> {
    let mut levels = HashMap::new();
    let mut fields = HashMap::new();
    for tok in line.split_whitespace() {
        if let Some(level) = LEVELS.iter().find(|l| tok.starts_with(*l)) {
            let rest = &tok[level.len()..];
            let entry = if rest == "=folded" {
                None
            } else {
                Some(parse_level(rest)?)
            };
            levels.insert(level.to_string(), entry);
        } else if let Some((k, v)) = tok.split_once('=') {
            fields.insert(k, v);
        } else {
            return Err(format!("bad token {tok:?} in {line:?}"));
        }
    }
    if let Some(err) = fields.get("error") {
        return Err(format!("the driver could not walk a page: {err}"));
    }
    let get = |k: &str| {
        fields
            .get(k)
            .copied()
            .ok_or_else(|| format!("no {k}= in {line:?}"))
    };
    for l in LEVELS {
        if !levels.contains_key(l) {
            return Err(format!("no {l} in {line:?}"));
        }
    }
    Ok(Row {
        page: get("page")?
            .parse()
            .map_err(|_| format!("bad page in {line:?}"))?,
        vaddr: hex(get("vaddr")?)?,
        levels,
        pfn: hex(get("pfn")?)?,
        phys: hex(get("phys")?)?,
        page_struct: hex(get("struct_page")?)?,
        direct_map: hex(get("directmap")?)?,
        node: get("node")?.parse().ok(),
        zone: Some(get("zone")?).filter(|z| *z != "?").map(str::to_owned),
    })
}

/// Parses the driver's `pagewalk` file.
pub fn parse(text: &str) -> Result<PageWalk, String> {
    let mut mode = None;
    let mut mem_map = None;
    let mut rows = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# mapdrv page walk: ") {
            mode = Some(h.to_owned());
        } else if let Some(m) = line.strip_prefix("# memmap: ") {
            mem_map = Some(parse_mem_map(m)?);
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            rows.push(parse_row(line)?);
        }
    }
    Ok(PageWalk {
        mode: mode.ok_or("no header line")?,
        mem_map,
        rows,
    })
}

impl PageWalk {
    /// How many neighbouring pages (virtually consecutive) are not in consecutive frames.
    pub fn breaks(&self) -> usize {
        self.rows
            .windows(2)
            .filter(|w| w[1].pfn != w[0].pfn + 1)
            .count()
    }

    /// Consecutive runs of frames, i.e. physically contiguous pieces of the buffer.
    pub fn runs(&self) -> usize {
        if self.rows.is_empty() {
            0
        } else {
            self.breaks() + 1
        }
    }

    /// Pages per zone, in the order the zones first appear: `[("DMA32", 30000), ...]`.
    pub fn zones(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for row in &self.rows {
            let zone = row.zone.clone().unwrap_or_else(|| "?".to_owned());
            match counts.iter_mut().find(|(z, _)| *z == zone) {
                Some((_, n)) => *n += 1,
                None => counts.push((zone, 1)),
            }
        }
        counts
    }

    /// Renders the table and the explanation for a person; at most `max_rows` rows.
    pub fn render(&self, max_rows: usize) -> String {
        let mut out = String::new();
        let five = self
            .rows
            .first()
            .is_some_and(|r| r.levels.get("p4d").is_some_and(|e| e.is_some()));
        let _ = writeln!(out, "Page walk of mapdrv's buffer: {}", self.mode);
        let _ = writeln!(out);
        let arm64 = self.mode.starts_with("arm64");
        let (root, flags) = if arm64 {
            (
                "On arm64 the walk starts at the table in TTBR1_EL1, the kernel's \
                 swapper_pg_dir (TTBR0_EL1 holds the process's own tables); TCR_EL1 gives the \
                 page size and the address size, hence the number of levels.",
                "Descriptor flags: V valid; TABLE, BLOCK (a huge page) or PAGE; AF accessed; \
                 RW or RO; USER reachable from user mode; SH=IS inner shareable; NORMAL the \
                 memory type (AttrIndx, an index into MAIR_EL1); G global (nG clear); CONT \
                 the contiguous hint; DBM dirty bit modifier (Linux's writable bit); DIRTY \
                 Linux's software dirty bit; PXN and UXN never executed by the kernel or by \
                 user mode (PXNT, UXNT in a table: nothing below it is).",
            )
        } else {
            (
                "On x86_64 the walk starts at the table in CR3.",
                "Flags: P present, W writable, U user (the upper levels allow it, the PTE \
                 decides), NX not executable, G global.",
            )
        };
        let explanation = format!(
            "Each row is one 4 KiB page of the driver's vmalloc buffer. The kernel finds the \
             page behind a virtual address the way the MMU does: 9 bits of the address at a \
             time index one table per level, from the top table (PGD) through {}the PUD and \
             the PMD down to the PTE, whose entry holds the page frame number (pfn): the \
             page's physical address divided by 4096. {root} The driver's fault handler has \
             the kernel do this walk (vmalloc_to_page()) for each page a process first \
             touches; these rows were walked by hand, level by level, and checked against \
             it. {flags} The direct map is the kernel's linear map of all RAM: the same \
             physical page at a second kernel address. The zone is the part of physical \
             memory the frame is in.",
            if five { "the P4D, " } else { "" }
        );
        out.push_str(&wrap(&explanation, 78));
        let _ = writeln!(out);
        let mut header = format!("{:>5}  {:<18}", "page", "virtual address");
        for l in LEVELS {
            if l == "p4d" && !five {
                continue;
            }
            let _ = write!(header, "  {:>4}", l.to_uppercase());
        }
        // As wide as the widest flags shown (arm64 names many).
        let fw = self
            .rows
            .iter()
            .take(max_rows)
            .filter_map(|r| r.levels.get("pte").and_then(|e| e.as_ref()))
            .map(|e| e.flags.len())
            .max()
            .unwrap_or(0)
            .max(12);
        let _ = write!(
            header,
            "  {:<fw$}  {:>10}  {:<14}  {:<18}  zone",
            "PTE flags", "pfn", "physical", "direct map"
        );
        let _ = writeln!(out, "{header}");
        for row in self.rows.iter().take(max_rows) {
            let mut line = format!("{:>5}  {:<#18x}", row.page, row.vaddr);
            for l in LEVELS {
                match row.levels.get(l) {
                    Some(Some(e)) => {
                        let _ = write!(line, "  {:>4}", e.index);
                    }
                    _ if l == "p4d" && !five => {}
                    _ => line.push_str("     -"),
                }
            }
            let flags = row
                .levels
                .get("pte")
                .and_then(|e| e.as_ref())
                .map(|e| e.flags.as_str())
                .unwrap_or("");
            let _ = write!(
                line,
                "  {:<fw$}  {:>#10x}  {:<#14x}  {:<#18x}  {}",
                flags,
                row.pfn,
                row.phys,
                row.direct_map,
                row.zone.as_deref().unwrap_or("?")
            );
            let _ = writeln!(out, "{line}");
        }
        if self.rows.len() > max_rows {
            let _ = writeln!(
                out,
                "  ... {} more pages (maptest walk --rows N shows more)",
                self.rows.len() - max_rows
            );
        }
        let n = self.rows.len();
        let _ = writeln!(out);
        let summary = format!(
            "Summary: {n} virtually consecutive pages ({} bytes at {:#x}) sit in {} physically \
             contiguous run(s) of frames: {} of the {} steps from one page to the next go \
             somewhere else than the next frame.",
            n * 4096,
            self.rows.first().map_or(0, |r| r.vaddr),
            self.runs(),
            self.breaks(),
            n.saturating_sub(1)
        );
        out.push_str(&wrap(&summary, 78));
        let zones: Vec<String> = self
            .zones()
            .iter()
            .map(|(z, n)| format!("{n} in {z}"))
            .collect();
        let node = match self.rows.first().and_then(|r| r.node) {
            Some(n) => format!("node {n}"),
            None => "an unknown node".to_owned(),
        };
        out.push_str(&wrap(&format!("Zones ({node}): {}.", zones.join(", ")), 78));
        let moral = if self.breaks() == 0 {
            "This time the buffer fits in one free block of neighbouring frames (common on a \
             freshly booted machine: vmalloc asks the page allocator for the largest free \
             blocks first); vmalloc does not promise it. It takes whatever blocks and single \
             pages the allocator has, from anywhere, and only the page tables make the range \
             contiguous. kmalloc, by contrast, must find physically contiguous memory."
        } else {
            "vmalloc promises only virtual contiguity: it takes the largest free blocks the \
             page allocator has, then single pages, wherever they are, and the page tables \
             stitch them into one range of addresses. kmalloc, by contrast, must find \
             physically contiguous memory."
        };
        out.push_str(&wrap(moral, 78));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# mapdrv page walk: x86_64, 5-level paging (PGD -> P4D -> PUD -> PMD -> PTE)
# pages: 3
# memmap: vmemmap=0xffd4000000000000 struct_page_size=64 phys_offset=0x0 page_offset=0xff11000000000000
page=0 vaddr=0xffa00000000ed000 pgd[416]=0x0000000000100067(P,W,U) p4d[0]=0x000000000014f067(P,W,U) pud[0]=0x0000000000150067(P,W,U) pmd[0]=0x0000000000151067(P,W,U) pte[237]=0x80000000008d0163(P,W,NX,G) pfn=0x8d0 phys=0x8d0000 struct_page=0xffd4000000023400 directmap=0xff110000008d0000 node=0 zone=DMA32
page=1 vaddr=0xffa00000000ee000 pgd[416]=0x0000000000100067(P,W,U) p4d[0]=0x000000000014f067(P,W,U) pud[0]=0x0000000000150067(P,W,U) pmd[0]=0x0000000000151067(P,W,U) pte[238]=0x80000000008d1163(P,W,NX,G) pfn=0x8d1 phys=0x8d1000 struct_page=0xffd4000000023440 directmap=0xff110000008d1000 node=0 zone=DMA32
page=2 vaddr=0xffa00000000ef000 pgd[416]=0x0000000000100067(P,W,U) p4d[0]=0x000000000014f067(P,W,U) pud[0]=0x0000000000150067(P,W,U) pmd[0]=0x0000000000151067(P,W,U) pte[239]=0x8000000000a00163(P,W,NX,G) pfn=0xa00 phys=0xa00000 struct_page=0xffd4000000028000 directmap=0xff11000000a00000 node=0 zone=Normal
";

    #[test]
    fn parses_and_counts_breaks() {
        let w = parse(SAMPLE).unwrap();
        assert_eq!(w.rows.len(), 3);
        assert!(w.mode.contains("5-level"));
        assert_eq!(w.rows[2].pfn, 0xa00);
        assert_eq!(w.rows[0].levels["pte"].as_ref().unwrap().index, 237);
        assert_eq!(w.rows[0].levels["pte"].as_ref().unwrap().flags, "P,W,NX,G");
        assert_eq!(w.breaks(), 1);
        assert_eq!(w.runs(), 2);
        assert_eq!(w.rows[0].node, Some(0));
        assert_eq!(
            w.zones(),
            vec![("DMA32".to_owned(), 2), ("Normal".to_owned(), 1)]
        );
        let text = w.render(10);
        assert!(text.contains("3 virtually consecutive pages"));
        assert!(text.contains("Zones (node 0): 2 in DMA32, 1 in Normal."));
        assert!(
            text.contains("2 physically\ncontiguous run(s)")
                || text.contains("2 physically contiguous run(s)")
        );
        assert!(text
            .lines()
            .all(|l| l.len() <= 78 || l.starts_with(" ") || l.starts_with("Page walk")));
    }

    #[test]
    fn mem_map_arithmetic() {
        let w = parse(SAMPLE).unwrap();
        let m = w.mem_map.unwrap();
        assert_eq!(m.struct_page_size, 64);
        for r in &w.rows {
            assert_eq!(m.page_struct(r.pfn), r.page_struct);
            assert_eq!(m.direct_map(r.phys), r.direct_map);
        }
        // Without the line (an older driver), no memory map; a broken one is an error.
        let old: String = SAMPLE
            .lines()
            .filter(|l| !l.starts_with("# memmap"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse(&old).unwrap().mem_map, None);
        assert!(parse(&SAMPLE.replace("struct_page_size=64", "struct_page_size=x")).is_err());
    }

    #[test]
    fn folded_p4d() {
        let line = SAMPLE
            .lines()
            .nth(3)
            .unwrap()
            .replace("p4d[0]=0x000000000014f067(P,W,U)", "p4d=folded");
        let w = parse(&format!("# mapdrv page walk: x86_64, 4-level\n{line}\n")).unwrap();
        assert_eq!(w.rows[0].levels["p4d"], None);
        assert!(!w.render(5).contains("P4D "));
    }

    #[test]
    fn arm64_rows() {
        let text = "# mapdrv page walk: arm64, 4-level paging (PGD -> PUD -> PMD -> PTE; P4D folded), 4 KiB pages, 48-bit addresses
# pages: 1
page=0 vaddr=0xffff8000806bd000 pgd[256]=0x1000000040721003(V,TABLE,UXNT) p4d=folded pud[2]=0x1000000040722003(V,TABLE,UXNT) pmd[3]=0x1000000040831403(V,TABLE,UXNT) pte[189]=0x00e8000041130703(V,PAGE,AF,RW,SH=IS,NORMAL,G,DBM,DIRTY,PXN,UXN) pfn=0x41130 phys=0x41130000 struct_page=0xfffffdffc0044c00 directmap=0xffff000001130000 node=0 zone=Normal
";
        let w = parse(text).unwrap();
        let pte = w.rows[0].levels["pte"].as_ref().unwrap();
        assert_eq!(pte.index, 189);
        assert_eq!(pte.flags, "V,PAGE,AF,RW,SH=IS,NORMAL,G,DBM,DIRTY,PXN,UXN");
        assert_eq!(w.rows[0].levels["p4d"], None);
        let shown = w.render(10);
        assert!(shown.contains("TTBR1_EL1"), "{shown}");
        assert!(
            shown.contains("V,PAGE,AF,RW,SH=IS,NORMAL,G,DBM,DIRTY,PXN,UXN  "),
            "{shown}"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("page=0 vaddr=zz").is_err());
        assert!(parse("# mapdrv page walk: x\npage=0 error=NotPresent\n").is_err());
    }
}
