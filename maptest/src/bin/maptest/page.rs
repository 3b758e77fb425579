//! `maptest page [N]`: one page of the driver's buffer under all its names: its address in
//! vmalloc, its frame number, its physical address, its `struct page` in the kernel's
//! `vmemmap` array and its address in the direct map, with the arithmetic that links them.

use maptest::debugfs::{self, pagewalk, PAGEWALK_PATH};
use maptest::PAGE_SIZE;

/// Shows page `n` of the buffer; `Err` if the driver's figures do not follow the arithmetic.
pub fn run(n: usize) -> Result<(), String> {
    let walk = pagewalk::parse(&debugfs::read(PAGEWALK_PATH)?)
        .map_err(|e| format!("{PAGEWALK_PATH}: {e}"))?;
    let m = walk
        .mem_map
        .ok_or_else(|| format!("{PAGEWALK_PATH} has no memmap line (an older mapdrv?)"))?;
    let row = walk.rows.get(n).ok_or_else(|| {
        format!(
            "the buffer has {} pages: there is no page {n}",
            walk.rows.len()
        )
    })?;
    let shift = PAGE_SIZE.trailing_zeros();
    let (pfn, phys) = (row.pfn, row.phys);
    println!("Page {n} of the driver's buffer, under each of its names (from {PAGEWALK_PATH}):\n");
    println!(
        "  vmalloc address    {:#018x}  where the driver reaches it",
        row.vaddr
    );
    println!("  page frame number  {pfn:#18x}  the page walk's answer for that address");
    println!("  physical address   {phys:#18x}  = pfn << {shift}");
    println!(
        "  struct page        {:#018x}  = vmemmap + pfn * {}\n{:39}= {:#x} + {pfn:#x} * {}",
        row.page_struct, m.struct_page_size, "", m.vmemmap, m.struct_page_size
    );
    println!(
        "  direct map         {:#018x}  = page_offset + (physical - phys_offset)\n{:39}= {:#x} + ({phys:#x} - {:#x})",
        row.direct_map, "", m.page_offset, m.phys_offset
    );
    println!(
        "\nEvery frame of memory has a struct page, {} bytes here (its flags, reference count,\n\
         owner: what the kernel knows of the frame), in one array, vmemmap, indexed by frame\n\
         number: pfn_to_page() and page_to_pfn() are an addition and a subtraction. The\n\
         direct map holds all of memory at a constant offset: __va() and __pa() are one\n\
         too. Only the vmalloc address needs the page tables. (The struct page shown is the\n\
         one the kernel's vmalloc_to_page() returns; maptest checks that it is where the\n\
         arithmetic says.)",
        m.struct_page_size
    );
    if phys >> shift != pfn {
        return Err(format!(
            "physical address {phys:#x} is not pfn {pfn:#x} << {shift}"
        ));
    }
    if m.page_struct(pfn) != row.page_struct {
        return Err(format!(
            "struct page {:#x} is not vmemmap + pfn * {} = {:#x}",
            row.page_struct,
            m.struct_page_size,
            m.page_struct(pfn)
        ));
    }
    if m.direct_map(phys) != row.direct_map {
        return Err(format!(
            "direct map address {:#x} is not page_offset + (physical - phys_offset) = {:#x}",
            row.direct_map,
            m.direct_map(phys)
        ));
    }
    Ok(())
}
