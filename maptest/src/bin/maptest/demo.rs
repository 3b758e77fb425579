//! `maptest FILE`: map the driver's buffer, watch each page arrive on its first touch, and
//! check every byte against the contract.

use std::fs::{File, OpenOptions};

use maptest::device::is_char_device;
use maptest::{buffer_size, Expected, MapOptions, Mapping, PAGE_SIZE};

/// The options of the default command (see the help text).
#[derive(Default)]
pub struct Args {
    pub file: String,
    pub pages: Option<usize>,
    pub offset: usize,
    pub private: bool,
    pub write: bool,
    pub hexdump: usize,
    pub maps: bool,
    pub hold: bool,
    pub quiet: bool,
}

fn resident_count(m: &Mapping) -> String {
    match m.resident() {
        Ok(r) => format!(
            "{} of {} pages resident",
            r.iter().filter(|&&x| x).count(),
            r.len()
        ),
        Err(e) => format!("mincore failed: {e}"),
    }
}

fn hexdump(m: &Mapping, start: usize, n: usize) {
    let n = n.min(m.len());
    for row in (0..n).step_by(16) {
        let bytes = m.read_range(row, 16.min(n - row));
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = bytes
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        println!("  {:08x}  {:<47}  |{text}|", start + row, hex.join(" "));
    }
}

/// Maps the device, shows the faults happen, and checks every byte: `Ok(false)` on a
/// mismatch.
pub fn run(args: Args) -> Result<bool, String> {
    let say = |s: String| {
        if !args.quiet {
            println!("maptest: {s}");
        }
    };
    if !is_char_device(&args.file).map_err(|e| format!("{}: {e}", args.file))? {
        return Err(format!("{}: not a character device", args.file));
    }
    let file: File = OpenOptions::new()
        .read(true)
        .write(args.write)
        .open(&args.file)
        .map_err(|e| format!("open {}: {e}", args.file))?;
    let size = buffer_size(&file).map_err(|e| format!("lseek {}: {e}", args.file))? as usize;
    let total = size / PAGE_SIZE;
    say(format!(
        "opened {}: the driver's buffer is {total} pages ({size} bytes)",
        args.file
    ));

    if args.offset >= total {
        return Err(format!(
            "--offset {} is past the buffer's {total} pages",
            args.offset
        ));
    }
    let pages = args.pages.unwrap_or(total - args.offset);
    let len = pages * PAGE_SIZE;
    let opts = MapOptions {
        write: args.write,
        private: args.private,
        ..Default::default()
    };
    let m = Mapping::new(&file, (args.offset * PAGE_SIZE) as u64, len, opts).map_err(|e| {
        format!(
            "mmap of {pages} pages at page {} of {}: {e}",
            args.offset, args.file
        )
    })?;
    say(format!(
        "mmap({len} bytes, PROT_READ{}, {}, offset {}) = {:#x}",
        if args.write { "|PROT_WRITE" } else { "" },
        if args.private {
            "MAP_PRIVATE"
        } else {
            "MAP_SHARED"
        },
        args.offset * PAGE_SIZE,
        m.addr()
    ));
    say(format!("nothing is mapped yet: {}", resident_count(&m)));
    if args.maps {
        match m.maps_line() {
            Ok(l) => say(format!("/proc/self/maps: {l}")),
            Err(e) => say(format!("/proc/self/maps: {e}")),
        }
    }

    // The first touch: one page fault, one page.
    let first_line: Vec<u8> = (0..80.min(len))
        .map(|i| m.read(i))
        .take_while(|&b| b != b'\n')
        .collect();
    say(format!(
        "first line of the mapping: \"{}\" ({})",
        String::from_utf8_lossy(&first_line),
        resident_count(&m)
    ));

    // Every other page: each first touch faults it in. Checked a page at a time.
    let expected = Expected::new(total);
    let start = args.offset * PAGE_SIZE;
    let verdict = m.verify(&expected, start);
    say(format!(
        "read all {pages} pages through the mapping: {}",
        resident_count(&m)
    ));
    if args.hexdump > 0 {
        say(format!("first {} bytes:", args.hexdump.min(len)));
        if !args.quiet {
            hexdump(&m, args.offset * PAGE_SIZE, args.hexdump);
        }
    }

    if let Err(mis) = verdict {
        eprintln!("maptest: MISMATCH at {mis}");
        return Ok(false);
    }
    say(format!(
        "all {len} bytes match what the driver wrote into its vmalloc buffer"
    ));

    if args.write {
        write_demo(&file, &m, start, args.private, &say)?;
    }
    if args.hold {
        drop(file);
        // Always printed: scripts wait for this line.
        println!(
            "maptest: holding the mapping with {} closed; end standard input to unmap",
            args.file
        );
        std::io::Write::flush(&mut std::io::stdout()).map_err(|e| e.to_string())?;
        std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
            .map_err(|e| format!("stdin: {e}"))?;
        if let Err(mis) = m.verify(&expected, start) {
            eprintln!("maptest: MISMATCH after holding, at {mis}");
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes a note through the mapping and shows where it went.
fn write_demo(
    file: &File,
    m: &Mapping,
    start: usize,
    private: bool,
    say: &dyn Fn(String),
) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let note = b"hello from userspace";
    let original = m.read_range(0, note.len());
    for (i, &b) in note.iter().enumerate() {
        m.write(i, b);
    }
    let mut seen = vec![0u8; note.len()];
    file.read_exact_at(&mut seen, start as u64)
        .map_err(|e| format!("pread: {e}"))?;
    let reached = seen == note;
    say(format!(
        "wrote \"{}\" through the mapping; the driver's buffer now reads \"{}\" ({})",
        String::from_utf8_lossy(note),
        String::from_utf8_lossy(&seen).escape_debug(),
        match (private, reached) {
            (false, true) => "MAP_SHARED: the process wrote straight into kernel memory",
            (true, false) => "MAP_PRIVATE: the write went to a private copy of the page",
            (false, false) => "UNEXPECTED: a shared write did not reach the buffer",
            (true, true) => "UNEXPECTED: a private write reached the buffer",
        }
    ));
    if reached {
        file.write_all_at(&original, start as u64)
            .map_err(|e| format!("pwrite: {e}"))?;
    }
    if reached == private {
        return Err("the write did not behave as the mapping's type requires".into());
    }
    Ok(())
}
