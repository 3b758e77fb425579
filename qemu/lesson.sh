#!/bin/sh
# The classic lesson, run by `make run` inside the guest: each command is
# shown before it runs, as a newcomer would type it.
set -e
explain() { echo; for line in "$@"; do echo "# $line"; done; }
# Busybox would run its own insmod, which retries a refused load and so logs
# the reason twice; ours loads once.
insmod() { /bin/insmod "$@"; }
run() { printf '$ %s\n' "$*"; eval "$*"; }

explain "The kernel this guest runs (make run KERNEL=debian boots Debian's own):"
run "uname -r"

explain "A freshly booted machine has long runs of free frames, and Linux 7.3's vmalloc" \
        "asks for the largest free blocks first. Fragment free memory first: take all of" \
        "it but a margin (24 MiB and 1/16 of RAM), give every other page back in a" \
        "scattered order (on CPU 0, where insmod will run), and hold the rest until the" \
        "driver's buffer is allocated."
mkfifo /tmp/fragment
taskset 1 ./maptest fragment all --release-after-vmalloc 128 < /tmp/fragment > /tmp/fragment.out &
exec 3> /tmp/fragment
until grep -q ready /tmp/fragment.out; do sleep 0.1; done
run "cat /tmp/fragment.out"

explain "The page allocator (the buddy allocator) keeps free memory per zone in blocks" \
        "of 2^order pages; /proc/buddyinfo counts the free blocks of order 0 (one page)" \
        "to 10 (4 MiB), one column per order. Now, before loading the driver:"
run "cat /proc/buddyinfo | tee /tmp/buddyinfo.before"

explain "Load the driver with a 128 MiB buffer, more than the margin's large blocks. It" \
        "vmallocs it (virtually contiguous, physically scattered pages), fills it, and" \
        "registers a character device."
run taskset 1 /bin/insmod mapdrv.ko pages=32768
exec 3>&-   # the fragmenter exits
wait
# The fragmenter took /proc/buddyinfo once the buffer was allocated, then gave
# its memory back (see maptest --help).
grep '^Node' /tmp/fragment.out > /tmp/buddyinfo.after

explain "Right after the buffer was allocated (the fragmenter took it then, before it" \
        "gave its memory back), and the change per order (after minus before): vmalloc took" \
        "the largest blocks first, then single pages from all over memory (a block split" \
        "in two shows as smaller ones gained)."
run "cat /tmp/buddyinfo.after"
run "awk 'NR == FNR { for (i = 5; i <= NF; i++) b[\$4, i] = \$i; next } { printf \"zone %-6s\", \$4; for (i = 5; i <= NF; i++) printf \" %+6d\", \$i - b[\$4, i]; print \"\" }' /tmp/buddyinfo.before /tmp/buddyinfo.after"
run "dmesg | grep 'mapdrv: [0-9]' | tail -n 1"

explain "What a process sees: only virtual addresses, in mappings (VMAs) that the" \
        "kernel lists in /proc/PID/maps. maptest shows its own, with its code, data," \
        "heap, stack, allocations and two mappings of the device placed in them."
run "./maptest maps"

# The regions are known for x86_64 and arm64 (rust/layout/); elsewhere the file
# says it is not available.
if ! grep -q 'not available' /sys/kernel/debug/mapdrv/layout; then
    explain "Where kernel memory lives: the regions of the kernel's address space, and a" \
            "live allocation of each kind that the driver makes for the occasion (root only:" \
            "/sys/kernel/debug/mapdrv/layout)."
    run "./maptest layout"
fi

explain "Loading a module built outside the kernel's tree taints the kernel: flag O" \
        "(bit 12 of /proc/sys/kernel/tainted); a kernel that checks modules' signatures," \
        "as Debian's does, adds E (bit 13) for a module it has no key for. Nothing else:"
run "dmesg | grep -i -e taint -e 'module verification'"
run "cat /proc/sys/kernel/tainted"

explain "The kernel gave the device a major number:"
run "grep mapdrv /proc/devices"
major=$(awk '$2 == "mapdrv" { print $1 }' /proc/devices)

explain "Make a node for it, as the lesson does (devtmpfs also made /dev/mapdrv):"
run "mknod mapfile c $major 0"
run "ls -l mapfile /dev/mapdrv"

explain "Map the kernel buffer into a process and read it back. The process sees" \
        "only virtual addresses; nothing is mapped until a page is first touched," \
        "then the driver's fault handler walks the kernel page tables" \
        "(PGD -> P4D -> PUD -> PMD -> PTE) to the page behind that part of the" \
        "buffer and maps exactly that page: demand paging."
run "./maptest --maps --hexdump 48 mapfile"

explain "Where those pages really are: the driver walked the kernel page tables by" \
        "hand for every page of its buffer. The virtual pages are consecutive; the" \
        "frames are wherever the page allocator found them: the first ones in the few" \
        "large blocks left, then single frames from all over memory."
run "./maptest walk --rows 8"
explain "One page under all its names: the kernel keeps a struct page for every frame" \
        "of memory, in one array (vmemmap), and maps all of memory once more at a constant" \
        "offset (the direct map): from the frame number, both are one addition away."
run "./maptest page 1"

explain "Its last pages, which came one by one from the fragmented free memory:"
run "./maptest walk --rows 32768 | awk '\$1 ~ /^[0-9]+\$/ && \$1 >= 32760'"

explain "The driver's counters: one fault per page touched, nothing left open."
run "cat /sys/kernel/debug/mapdrv/stats"

explain "The process's side of the same pages: its own page tables, read from" \
        "/proc/self/pagemap, point at the very frames the kernel's walk found. A private" \
        "mapping's first write copies the page (copy-on-write); a child after fork()" \
        "starts with its parent's frames."
run "./maptest frames mapfile"

explain "Unload the driver."
run "rm mapfile"
run "rmmod mapdrv"
run "dmesg | grep 'mapdrv: unloaded'"

explain "Fault-around: loaded with fault_around=16, each fault maps the block of 16" \
        "pages around the faulting one, as the kernel does for files. Blocks are" \
        "aligned in the process's addresses, so the first one is cut short where the" \
        "mapping begins inside a block. Reading 64 pages then takes 4 or 5 faults" \
        "instead of 64 (make bench measures what that saves)."
run "insmod mapdrv.ko pages=64 fault_around=16"
run "./maptest --hexdump 16 /dev/mapdrv"
run "grep -E '^(faults|pages_mapped):' /sys/kernel/debug/mapdrv/stats"
run "rmmod mapdrv"
explain "Done; powering off."
