//! The driver's `layout` file: the kernel's virtual address space and where each kind of kernel
//! memory lives in it; parsed, and rendered for a person (`maptest layout`).

use std::fmt::Write as _;

use super::hex;
use crate::text::{human, wrap};

/// A region of the kernel's address space: `region NAME start=0x.. end=0x.. size=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub start: u64,
    pub end: u64,
}

/// A live allocation: `alloc WHAT virt=0x.. size=N [ksize=N] phys=0x..|none [direct_map_check=ok]
/// region=NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alloc {
    pub what: String,
    pub virt: u64,
    pub size: u64,
    pub ksize: Option<u64>,
    pub phys: Option<u64>,
    pub direct_map_check: Option<bool>,
    pub region: String,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub mode: String,
    pub regions: Vec<Region>,
    pub allocs: Vec<Alloc>,
}

/// Parses the driver's `layout` file.
pub fn parse(text: &str) -> Result<Layout, String> {
    let mut mode = None;
    let mut regions = Vec::new();
    let mut allocs = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# mapdrv layout: ") {
            mode = Some(h.to_owned());
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(kind), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let fields: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("no {k}= in {line:?}"))
        };
        let num = |k: &str| -> Result<u64, String> {
            get(k)?.parse().map_err(|_| format!("bad {k} in {line:?}"))
        };
        match kind {
            "region" => regions.push(Region {
                name: name.to_owned(),
                start: hex(get("start")?)?,
                end: hex(get("end")?)?,
            }),
            "alloc" => allocs.push(Alloc {
                what: name.to_owned(),
                virt: hex(get("virt")?)?,
                size: num("size")?,
                ksize: get("ksize").ok().map(|_| num("ksize")).transpose()?,
                phys: match get("phys")? {
                    "none" => None,
                    p => Some(hex(p)?),
                },
                direct_map_check: get("direct_map_check").ok().map(|v| v == "ok"),
                region: get("region")?.to_owned(),
            }),
            _ => return Err(format!("bad line {line:?}")),
        }
    }
    Ok(Layout {
        mode: mode.ok_or("no header line (or not available on this architecture)")?,
        regions,
        allocs,
    })
}

/// What each region is, for the table.
fn region_text(name: &str, start: u64) -> String {
    match name {
        "direct_map" => {
            format!("direct map: all of RAM, linearly (physical = virtual - {start:#x})")
        }
        "vmalloc" => "vmalloc: mapped page by page; only the page tables say where".to_owned(),
        "vmemmap" => "vmemmap: the struct page of every page frame".to_owned(),
        "kernel_image" => "kernel image: the kernel's code and data".to_owned(),
        "modules" => "modules: the code and data of loaded modules".to_owned(),
        other => other.to_owned(),
    }
}

/// What each allocation is, for the table.
fn alloc_text(a: &Alloc) -> String {
    match a.what.as_str() {
        "get_free_page" => "__get_free_page(GFP_KERNEL)".to_owned(),
        "kmalloc" => match a.ksize {
            Some(k) => format!("kmalloc({}), {k} bytes really", a.size),
            None => format!("kmalloc({})", a.size),
        },
        "vmalloc" => format!("vmalloc({})", a.size),
        "mapdrv_buffer" => format!("mapdrv's buffer, {} bytes", a.size),
        "module_function" => "a function of mapdrv".to_owned(),
        "kernel_function" => "a function of the kernel (printk)".to_owned(),
        "stack_variable" => "a variable on the kernel stack".to_owned(),
        other => other.to_owned(),
    }
}

impl Layout {
    /// Renders the regions in address order, each allocation under the region it is in, and
    /// the explanation.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&wrap(
            &format!(
                "The kernel's virtual address space on this machine ({}), in address order, \
                 and where each kind of kernel memory lives:",
                self.mode
            ),
            78,
        ));
        let _ = writeln!(out);
        let mut regions = self.regions.clone();
        regions.sort_by_key(|r| r.start);
        let _ = writeln!(
            out,
            "  {:<18}  {:<18}  {:>9}  region",
            "start", "end", "size"
        );
        for r in &regions {
            let _ = writeln!(
                out,
                "  {:<#18x}  {:<#18x}  {:>9}  {}",
                r.start,
                r.end,
                human(r.end - r.start),
                region_text(&r.name, r.start)
            );
            let mut inside: Vec<&Alloc> =
                self.allocs.iter().filter(|a| a.region == r.name).collect();
            inside.sort_by_key(|a| a.virt);
            for a in inside {
                let phys = a
                    .phys
                    .map_or("no page".to_owned(), |p| format!("phys {p:#x}"));
                let check = match a.direct_map_check {
                    Some(true) => ", = virtual - base",
                    Some(false) => ", NOT virtual - base",
                    None => "",
                };
                let _ = writeln!(
                    out,
                    "      {:<#18x}  {} ({phys}{check})",
                    a.virt,
                    alloc_text(a)
                );
            }
        }
        for a in self.allocs.iter().filter(|a| a.region == "none") {
            let _ = writeln!(
                out,
                "  outside every region: {} at {:#x}",
                alloc_text(a),
                a.virt
            );
        }
        let _ = writeln!(out);
        out.push_str(&wrap(
            "__get_free_page() and kmalloc() hand out memory from the direct map, where all of \
             RAM is mapped in one piece: the physical address is the virtual one minus the \
             region's start, so no page table changes, and what kmalloc() returns is \
             physically contiguous (the slab allocator rounds 100 bytes up to its next size). \
             vmalloc() and the kernel stacks get addresses in the vmalloc region, each page \
             mapped on its own to whatever frame the page allocator gave: only the page tables \
             relate the two, which is why the driver walks them. The same frame can have two \
             kernel addresses: its vmalloc one and its direct-map one (maptest walk shows \
             both).",
            78,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# mapdrv layout: x86_64, 5-level paging
region direct_map start=0xff11000000000000 end=0xff1100003ffe0000 size=1073610752
region vmalloc start=0xffa0000000000000 end=0xffd2000000000000 size=14073748835532800
alloc kmalloc virt=0xff1100000059b480 size=100 ksize=128 phys=0x59b480 direct_map_check=ok region=direct_map
alloc vmalloc virt=0xffa00000001bf000 size=1000000 phys=0x780000 region=vmalloc
";

    #[test]
    fn parses_and_renders() {
        let l = parse(SAMPLE).unwrap();
        assert_eq!(l.regions.len(), 2);
        assert_eq!(l.allocs[0].ksize, Some(128));
        assert_eq!(l.allocs[0].direct_map_check, Some(true));
        assert_eq!(l.allocs[1].direct_map_check, None);
        let text = l.render();
        assert!(text.contains("kmalloc(100), 128 bytes really"));
        assert!(text.contains("12.5 PiB"));
        assert_eq!(human(4096), "4.0 KiB");
        assert!(parse("region x start=zz").is_err());
    }
}
