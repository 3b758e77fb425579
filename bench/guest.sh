#!/bin/sh
# shellcheck shell=dash
# The benchmark, inside the guest (scripts/bench boots it): loads mapdrv and
# its C twin, measures every figure, and prints one `bench: NAME VALUE` line
# per figure for the host to collect.
#
# Every figure is the median of ROUNDS measurements. Figures that are compared
# with each other are measured in the same round, one after the other, so a
# slow moment of the emulator hits both sides of a ratio alike.
#
# Environment: MAPDRV_BENCH_ROUNDS (7), MAPDRV_BENCH_PAGES (pages of the main
# figures, 16384), MAPDRV_BENCH_BIG (the largest size of the scaling figures,
# 65536; the buffers are this big).
set -u
rounds=${MAPDRV_BENCH_ROUNDS:-7}
n=${MAPDRV_BENCH_PAGES:-16384}
big=${MAPDRV_BENCH_BIG:-65536}
bytes=$((n * 4096))
samples=/tmp/bench.samples
: > "$samples"

fail() { echo "bench: failed: $*" >&2; exit 1; }
# The sizes of the scaling figures (the smoke run's largest is 4096).
sizes=$(printf '%s\n' 256 4096 "$big" | sort -nu | tr '\n' ' ')

# measure ARGS...: one measurement by mapbench (which prints `NAME VALUE`),
# kept in the samples file.
measure() {
    /mapbench "$@" --rounds 1 >> "$samples" || fail "mapbench $*"
}

# report NAME...: the median of each figure's samples.
report() {
    for name in "$@"; do
        awk -v k="$name" '$1 == k { print $2 }' "$samples" | sort -g |
            awk -v k="$name" '{ v[NR] = $1 }
                END { if (NR == 0) exit 1
                      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                      printf "bench: %s %.3f\n", k, m }' || fail "no samples of $name"
    done
}

counter() { awk -v k="$1:" '$1 == k { print $2 }' /sys/kernel/debug/mapdrv/stats; }

echo "bench: kernel $(uname -r)"
echo "bench: rounds $rounds"
echo "bench: pages $n"
echo "bench: big $big"
grep -q '^vma_lock_retry ' /proc/vmstat || fail "/proc/vmstat has no vma_lock_retry (CONFIG_PER_VMA_LOCK_STATS)"

/bin/insmod /extra/mapdrv_cref.ko pages="$big" || fail "insmod mapdrv_cref.ko"
/bin/insmod /mapdrv.ko pages="$big" fault_around=1 || fail "insmod mapdrv.ko"
echo "bench: loaded mapdrv (fault_around=1) and its C twin, $big pages each"

# 1. First touch, one page per fault: mapdrv, its C twin, anonymous memory,
# and a tmpfs file already in the page cache (the kernel's own file fault),
# with the kernel's fault-around off (fault_around_bytes = one page) and on
# (its default, 64 KiB: 16 pages per fault). mapbench counts the VMA-lock
# retries during mapdrv's touches, and the driver its faults.
far=/sys/kernel/debug/fault_around_bytes
[ -w $far ] || fail "no $far (CONFIG_DEBUG_FS)"
far_default=$(cat $far)
/mapbench make-file --file /tmp/bench.dat --bytes "$bytes" > /dev/null || fail "make-file"
i=0
f0=$(counter faults)
while [ $i -lt "$rounds" ]; do
    measure touch --name fault_ns_per_page --file /dev/mapdrv --pages "$n" --retries
    measure touch --name cref_fault_ns_per_page --file /dev/mapdrv_cref_fault --pages "$n"
    measure touch --name anon_read_fault_ns_per_page --file anon --pages "$n"
    measure touch --name anon_write_fault_ns_per_page --file anon --pages "$n" --write
    measure touch --name populate_ns_per_page --file /dev/mapdrv --pages "$n" --populate
    measure touch --name cref_eager_ns_per_page --file /dev/mapdrv_cref_eager --pages "$n" --eager
    measure touch --name fault_2thread_ns_per_page --file /dev/mapdrv --pages "$n" --threads 2
    echo 4096 > $far
    measure touch --name tmpfs_fault_ns_per_page --file /tmp/bench.dat --pages "$n"
    echo "$far_default" > $far
    measure touch --name tmpfs_faultaround16_ns_per_page --file /tmp/bench.dat --pages "$n"
    i=$((i + 1))
done
report fault_ns_per_page cref_fault_ns_per_page anon_read_fault_ns_per_page \
    anon_write_fault_ns_per_page populate_ns_per_page cref_eager_ns_per_page \
    fault_2thread_ns_per_page tmpfs_fault_ns_per_page tmpfs_faultaround16_ns_per_page
# The touches of fault_ns_per_page were rounds * n faults (the driver counted
# them, among the others of this group).
touched=$((rounds * n))
[ $(( $(counter faults) - f0 )) -ge $touched ] || fail "mapdrv counted fewer faults than first touches"
retries=$(awk '$1 == "fault_ns_per_page_vma_lock_retries" { r += $2 } END { print r + 0 }' "$samples")
echo "bench: vma_lock_retries $retries"
awk -v r="$retries" -v f="$touched" 'BEGIN { printf "bench: vma_lock_retry_per_fault %.4f\n", r / f }'

# 2. Scaling: the cost per page of a first touch, by mode and mapping size.
i=0
while [ $i -lt "$rounds" ]; do
    for size in $sizes; do
        measure touch --name "fault_ns_per_page_$size" --file /dev/mapdrv --pages "$size"
        measure touch --name "cref_fault_ns_per_page_$size" --file /dev/mapdrv_cref_fault --pages "$size"
        measure touch --name "anon_read_fault_ns_per_page_$size" --file anon --pages "$size"
        measure touch --name "populate_ns_per_page_$size" --file /dev/mapdrv --pages "$size" --populate
        measure touch --name "cref_eager_ns_per_page_$size" --file /dev/mapdrv_cref_eager --pages "$size" --eager
    done
    i=$((i + 1))
done
for size in $sizes; do
    report "fault_ns_per_page_$size" "cref_fault_ns_per_page_$size" "anon_read_fault_ns_per_page_$size" \
        "populate_ns_per_page_$size" "cref_eager_ns_per_page_$size"
done

# 3. Reading memory that is mapped: through mapdrv's mapping and anonymous
# memory; read(2) of the device and of a tmpfs file of the same size.
i=0
while [ $i -lt "$rounds" ]; do
    measure read --name read_gbps --file /dev/mapdrv --pages "$n"
    measure read --name anon_read_gbps --file anon --pages "$n"
    measure syscall-read --name syscall_read_gbps --file /dev/mapdrv --bytes "$bytes"
    measure syscall-read --name tmpfs_read_gbps --file /tmp/bench.dat --bytes "$bytes"
    i=$((i + 1))
done
report read_gbps anon_read_gbps syscall_read_gbps tmpfs_read_gbps

# 4. Fault-around: 16 pages per fault (the kernel's default window for files),
# and 512 (one page table). mapdrv is loaded again for each, so its figures
# cannot share rounds with those of group 1: what they are compared with (the
# eager C twin; for 16, the zero-page fault and the page cache's own
# fault-around) is measured again in these rounds, as faN_NAME.
for fa in 16 512; do
    rmmod mapdrv || fail "rmmod mapdrv"
    /bin/insmod /mapdrv.ko pages="$big" fault_around=$fa || fail "insmod mapdrv.ko fault_around=$fa"
    i=0
    while [ $i -lt "$rounds" ]; do
        measure touch --name "faultaround${fa}_ns_per_page" --file /dev/mapdrv --pages "$n"
        measure touch --name "fa${fa}_cref_eager_ns_per_page" --file /dev/mapdrv_cref_eager --pages "$n" --eager
        if [ "$fa" = 16 ]; then
            measure touch --name fa16_anon_read_fault_ns_per_page --file anon --pages "$n"
            measure touch --name fa16_tmpfs_faultaround16_ns_per_page --file /tmp/bench.dat --pages "$n"
        fi
        measure touch --name "populate_faultaround${fa}_ns_per_page" --file /dev/mapdrv --pages "$n" --populate
        for size in $sizes; do
            measure touch --name "faultaround${fa}_ns_per_page_$size" --file /dev/mapdrv --pages "$size"
        done
        i=$((i + 1))
    done
    report "faultaround${fa}_ns_per_page" "fa${fa}_cref_eager_ns_per_page" \
        "populate_faultaround${fa}_ns_per_page"
    [ "$fa" != 16 ] || report fa16_anon_read_fault_ns_per_page fa16_tmpfs_faultaround16_ns_per_page
    for size in $sizes; do
        report "faultaround${fa}_ns_per_page_$size"
    done
    echo "bench: faultaround${fa}_pages_per_fault $(awk '$1 == "faults:" { f = $2 } $1 == "pages_mapped:" { p = $2 }
        END { printf "%.2f", p / f }' /sys/kernel/debug/mapdrv/stats)"
done

# 5. The C opt-in of patches/ (VM_OPS_FAULT_VMA_LOCK) against the fallback
# that kernels without it need (a map_pages that maps nothing, so a
# do_fault_around() for nothing on every read fault): mapdrv as built for
# this kernel (/mapdrv.ko) and built with the fallback
# (/extra/mapdrv-map-pages.ko, MAPDRV_MAP_PAGES_FALLBACK=1), loaded in turn
# in every round, one page per fault and 16.
if [ -f /extra/mapdrv-map-pages.ko ]; then
    rmmod mapdrv || fail "rmmod mapdrv"
    for fa in 1 16; do
        i=0
        while [ $i -lt "$rounds" ]; do
            /bin/insmod /extra/mapdrv-map-pages.ko pages="$n" fault_around=$fa || fail "insmod mapdrv-map-pages.ko"
            measure touch --name "mappages_fa${fa}_ns_per_page" --file /dev/mapdrv --pages "$n"
            rmmod mapdrv || fail "rmmod mapdrv"
            /bin/insmod /mapdrv.ko pages="$n" fault_around=$fa || fail "insmod mapdrv.ko"
            measure touch --name "flag_fa${fa}_ns_per_page" --file /dev/mapdrv --pages "$n"
            rmmod mapdrv || fail "rmmod mapdrv"
            i=$((i + 1))
        done
        report "mappages_fa${fa}_ns_per_page" "flag_fa${fa}_ns_per_page"
    done
    /bin/insmod /mapdrv.ko pages="$n" || fail "insmod mapdrv.ko"
fi

# Every measurement, for a look at how much they spread (the host reads only
# the `bench:` lines).
awk '!($1 in v) { order[++n] = $1 } { v[$1] = v[$1] " " $2 }
    END { for (i = 1; i <= n; i++) print "samples:", order[i] v[order[i]] }' "$samples"
rm -f /tmp/bench.dat
rmmod mapdrv || fail "rmmod mapdrv"
rmmod mapdrv_cref || fail "rmmod mapdrv_cref"
echo "bench: done"
