//! The driver's `layout` file: the kernel's virtual address space and where each kind of kernel
//! memory lives in it; parsed, and rendered for a person (`maptest layout`).

use std::fmt::Write as _;

use super::hex;
use crate::text::{human, wrap};

/// A region of the kernel's address space: `region NAME start=0x.. end=0x.. size=N [phys=0x..]`,
/// `phys` where the region maps physical memory linearly from that address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    pub start: u64,
    pub end: u64,
    pub phys: Option<u64>,
}

/// A live allocation: `alloc WHAT virt=0x.. size=N [ksize=N] phys=0x..|none [direct_map_check=ok]
/// [image_check=ok] region=NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alloc {
    pub what: String,
    pub virt: u64,
    pub size: u64,
    pub ksize: Option<u64>,
    pub phys: Option<u64>,
    pub direct_map_check: Option<bool>,
    /// For the kernel function: physical = virtual minus the kernel image's offset.
    pub image_check: Option<bool>,
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
                phys: get("phys").ok().map(hex).transpose()?,
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
                image_check: get("image_check").ok().map(|v| v == "ok"),
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
fn region_text(r: &Region) -> String {
    let linear = match r.phys {
        Some(0) => format!(" (physical = virtual - {:#x})", r.start),
        Some(p) => format!(" (physical = virtual - {:#x} + {p:#x})", r.start),
        None => String::new(),
    };
    match r.name.as_str() {
        "direct_map" => format!("direct map: all of RAM, linearly{linear}"),
        "vmalloc" => "vmalloc: mapped page by page; only the page tables say where".to_owned(),
        "vmemmap" => "vmemmap: the struct page of every page frame".to_owned(),
        "kernel_image" => format!("kernel image: the kernel's code and data{linear}"),
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
                region_text(r)
            );
            let mut inside: Vec<&Alloc> =
                self.allocs.iter().filter(|a| a.region == r.name).collect();
            inside.sort_by_key(|a| a.virt);
            for a in inside {
                let phys = a
                    .phys
                    .map_or("no page".to_owned(), |p| format!("phys {p:#x}"));
                let check = match (a.direct_map_check, a.image_check) {
                    (Some(true), _) => ", = virtual - base",
                    (Some(false), _) => ", NOT virtual - base",
                    (_, Some(true)) => ", = virtual - the image's offset",
                    (_, Some(false)) => ", NOT virtual - the image's offset",
                    _ => "",
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
             region's start (plus where RAM begins, on machines whose RAM does not begin at \
             0), so no page table changes, and what kmalloc() returns is \
             physically contiguous (the slab allocator rounds 100 bytes up to its next size). \
             vmalloc() and the kernel stacks get addresses in the vmalloc region, each page \
             mapped on its own to whatever frame the page allocator gave: only the page tables \
             relate the two, which is why the driver walks them. The same frame can have two \
             kernel addresses: its vmalloc one and its direct-map one (maptest walk shows \
             both).",
            78,
        ));
        let image = self.allocs.iter().find(|a| a.what == "kernel_function");
        let image_text = match image.map(|a| a.region.as_str()) {
            Some("kernel_image") => Some(
                "The kernel image has a region of its own, mapped in one piece too, but at an \
                 offset of its own: physical = virtual - __START_KERNEL_map + phys_base, where \
                 the boot loader put the kernel.",
            ),
            Some("vmalloc") => Some(
                "The kernel image has no region of its own here: it is mapped inside the \
                 vmalloc region (at KIMAGE_VADDR, the end of the modules' region, plus the \
                 KASLR offset), in one piece, at an offset of its own: physical = virtual - \
                 kimage_voffset.",
            ),
            _ => None,
        };
        if let Some(text) = image_text {
            let _ = writeln!(out);
            out.push_str(&wrap(text, 78));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# mapdrv layout: x86_64, 5-level paging
region direct_map start=0xff11000000000000 end=0xff1100003ffe0000 size=1073610752 phys=0x0
region vmalloc start=0xffa0000000000000 end=0xffd2000000000000 size=14073748835532800
alloc kmalloc virt=0xff1100000059b480 size=100 ksize=128 phys=0x59b480 direct_map_check=ok region=direct_map
alloc vmalloc virt=0xffa00000001bf000 size=1000000 phys=0x780000 region=vmalloc
";

    const ARM64: &str = "# mapdrv layout: arm64, 4-level paging
region direct_map start=0xffff000000000000 end=0xffff000080000000 size=2147483648 phys=0x40000000
region vmalloc start=0xffff800080000000 end=0xfffffdffbf800000 size=133141644656640
alloc kmalloc virt=0xffff000002a41c80 size=100 ksize=128 phys=0x42a41c80 direct_map_check=ok region=direct_map
alloc kernel_function virt=0xffff8000800f1234 size=0 phys=0x400f1234 image_check=ok region=vmalloc
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

    #[test]
    fn arm64_linear_map_and_image_offset() {
        let l = parse(ARM64).unwrap();
        assert_eq!(l.regions[0].phys, Some(0x4000_0000));
        assert_eq!(l.regions[1].phys, None);
        assert_eq!(l.allocs[1].image_check, Some(true));
        let text = l.render();
        assert!(text.contains("(physical = virtual - 0xffff000000000000 + 0x40000000)"));
        assert!(text.contains("printk) (phys 0x400f1234, = virtual - the image's offset)"));
        assert!(text.contains("kimage_voffset"));
        assert!(!text.contains("__START_KERNEL_map"));
    }
}
