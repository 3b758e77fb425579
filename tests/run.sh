#!/bin/sh
# The mapdrv test suite, run inside the guest (`make test` boots it with
# `qemu/run --exec 'sh /tests/run.sh'`). One line per test,
# `ok N - name` or `not ok N - name: reason`; the host adds the kernel-log
# check and the closing `N passed, M failed` line.
#
# Module-level tests (parameters, load/unload, refusal to unload, the page
# walk, KUnit) are here; the behaviour of the device itself is tested by
# /mapcheck with the module loaded, and its lines are numbered into this list.
#
#   sh /tests/run.sh [NAME...]   run only the named tests
#   sh /tests/run.sh --part N    run part N of the suite (1, 2 or 3)
# Environment: MAPDRV_TEST_FIRST (number of the first test, default 1),
# MAPDRV_TEST_SUFFIX (appended to every name), MAPDRV_REQUIRE_KUNIT=1 (a
# kernel without KUnit is a failure, not a skip).
cd /
# The suite in three parts, which make test runs in three guests side by
# side: on the debug kernel a test spends most of its time waiting, not
# computing (every unload waits seconds for its kobjects' delayed release), and
# three guests wait at the same time rather than one after the other. Each
# part takes about as long; kmemleak_clean ends each. Every test is in one part (checked by
# every_test_in_a_part, in part 1).
part1="guest_is_smp every_test_in_a_part modinfo_complete load_unload taints_only_as_out_of_tree fault_vma_lock_flag dev_node mknod_maptest
 maptest_options param_pages_zero param_pages_too_big param_pages_not_a_number
 param_fault_around_zero param_fault_around_not_power_of_two param_fault_around_too_big
 param_fault_around_logged param_major_busy param_major_too_big param_major_fixed sizes
 offset_window rmmod_refused_while_open rmmod_refused_while_mapped sigkill_with_mappings
 memory_pressure unprivileged_sees_no_addresses broken_drivers_caught kmemleak_clean"
part2="reload_cycles kobject_release_clean error_paths_clean device_contract fault_around stress fuzz kmemleak_clean"
part3="pagewalk_matches_kernel pagewalk_levels pagewalk_zones layout_allocations_in_their_regions
 maps_annotated struct_page_arithmetic process_frames_match_kernel pagewalk_no_addresses_in_log fragmented_buffer_is_scattered
 fault_around_across_page_tables misc_sample_maps_vmalloc_buffer kunit_results doctest_results kmemleak_clean"
if [ "${1:-}" = --part ]; then
    # shellcheck disable=SC2086 # a part is a list of words
    case ${2:-} in
        1) set -- $part1 ;;
        2) set -- $part2 ;;
        3) set -- $part3 ;;
        *) echo "run.sh: --part takes 1, 2 or 3" >&2; exit 2 ;;
    esac
fi
ONLY=" $(echo "$*" | tr '\n' ' ') "
# Debian's busybox runs its own applets before anything on PATH; busybox's
# insmod retries a refused load with init_module(2), so the module's init runs,
# and logs why, twice. Ours (/bin/insmod) loads once, called by its path.
insmod() { /bin/insmod "$@"; }
# KUnit runs a module's suites when it loads. The module's suite (the page
# walker, 4096 pages under KASAN) runs in kunit_results, not at every insmod
# of the other tests: the filter matches no suite outside it. (The boot's
# filter, from scripts/guest, was for the built-in doctests.)
kfilter=/sys/module/kunit/parameters/filter_glob
# printf, not echo: a charp parameter keeps a trailing newline, which no name matches.
kunit_filter() { [ -w $kfilter ] && printf '%s' "$1" > $kfilter; }
kunit_filter 'no_suite_outside_kunit_results'
n=$((${MAPDRV_TEST_FIRST:-1} - 1))
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1${MAPDRV_TEST_SUFFIX:-}"; }
# A test that cannot run in this kernel (it lacks a debug feature the test
# needs; MAPDRV_REQUIRE_KUNIT=1 makes that a failure instead): TAP's SKIP,
# which make test counts as skipped, not passed.
skipped() { n=$((n + 1)); echo "ok $n - $1${MAPDRV_TEST_SUFFIX:-} # SKIP $2"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1${MAPDRV_TEST_SUFFIX:-}: $2"; }
want() { [ "$ONLY" = "  " ] || case $ONLY in *" $1 "*) true ;; *) false ;; esac; }

# Seconds since boot; `took NAME START` says how long NAME took, as a
# comment line (where a slow suite spends its time).
now() { cut -d' ' -f1 /proc/uptime; }
took() { awk -v n="$1" -v a="$2" -v b="$(now)" 'BEGIN { printf "# %s took %.1f s\n", n, b - a }'; }
# timed NAME COMMAND...: runs COMMAND, then says how long NAME took.
timed() { timed_name=$1 timed_start=$(now); shift; "$@"; took "$timed_name" "$timed_start"; }

# Runs test function $1; its last line of output is the reason if it fails.
# A test that succeeds with a last line `skip: WHY` was skipped.
t() {
    want "$1" || return 0
    t_start=$(now)
    if out=$("$1" 2>&1); then
        case $(echo "$out" | tail -n 1) in
            "skip: "*) skipped "$1" "$(echo "$out" | tail -n 1 | cut -c7-)" ;;
            *) ok "$1" ;;
        esac
    else
        notok "$1" "$(echo "$out" | tail -n 1)"
    fi
    took "$1" "$t_start"
    # Whatever a test left loaded does not leak into the next one.
    lsmod | grep -q '^mapdrv ' && rmmod mapdrv 2>/dev/null
    return 0
}

fail() { echo "$*"; return 1; }

every_test_in_a_part() {
    # A test that no part names would never run in make test; a name in a
    # part that is no test would run nothing.
    tests=" $(sed -nE 's/^(t|want) ([a-z0-9_]+).*/\2/p' /tests/run.sh | sort -u | tr '\n' ' ') "
    parts=" $(echo "$part1 $part2 $part3" | tr '\n' ' ') "
    missing="" unknown=""
    for name in $tests; do
        case $parts in *" $name "*) ;; *) missing="$missing $name" ;; esac
    done
    for name in $parts; do
        case $tests in *" $name "*) ;; *) unknown="$unknown $name" ;; esac
    done
    [ -z "$missing" ] || fail "in no part of tests/run.sh:$missing" || return 1
    [ -z "$unknown" ] || fail "not tests of tests/run.sh, but named in a part:$unknown"
}
# The guest's architecture, as the kernel names it: x86_64 or arm64.
case $(uname -m) in aarch64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;; esac
loaded() { lsmod | grep -q '^mapdrv '; }
major_of() { awk '$2 == "mapdrv" { print $1 }' /proc/devices; }
# The last line the module logged.
lastlog() { dmesg | grep 'mapdrv: ' | tail -n 1; }

# insmod must fail with the given errno name (EINVAL) and log the given message.
refused() { # expected-errno-name expected-log-text insmod-args...
    want_err=$1 want_log=$2
    shift 2
    before=$(dmesg | grep -cF "$want_log")
    if err=$(insmod mapdrv.ko "$@" 2>&1); then fail "insmod $* succeeded"; return 1; fi
    echo "$err" | grep -q "$want_err" || { fail "insmod $*: '$err', expected '$want_err'"; return 1; }
    lastlog | grep -qF "$want_log" || { fail "dmesg: '$(lastlog)', expected '$want_log'"; return 1; }
    # Once: the module's init ran once, and said why once.
    logged=$(( $(dmesg | grep -cF "$want_log") - before ))
    [ $logged = 1 ] || { fail "the reason was logged $logged times, expected once"; return 1; }
    ! loaded || fail "module is loaded after a failed insmod" || return 1
}

modinfo_complete() {
    # What `modinfo` shows: description, author, license, and a description
    # for every parameter. (Busybox's modinfo wants a modules.dep to exist.)
    d=/lib/modules/$(uname -r)
    mkdir -p "$d" && touch "$d/modules.dep"
    out=$(modinfo /mapdrv.ko) || fail "modinfo failed" || return 1
    for field in description author license; do
        echo "$out" | grep -qE "^$field: +[^ ]" || fail "no $field in modinfo" || return 1
    done
    for param in pages major fault_around; do
        echo "$out" | grep -qE "^parm: +$param:[A-Za-z]" || fail "parameter $param has no description" || return 1
    done
    # And no parameter that the test above does not know about.
    [ "$(echo "$out" | grep -c '^parm:')" = 3 ] || fail "parameters: $(echo "$out" | grep '^parm:' | tr '\n' ' ')" || return 1
}

guest_is_smp() {
    # The concurrency tests mean something only with more than one CPU.
    cpus=$(grep -c '^processor' /proc/cpuinfo)
    [ "$cpus" -ge 2 ] || fail "the guest has $cpus CPU(s); qemu/run starts it with -smp 2" || return 1
}

load_unload() {
    insmod mapdrv.ko || return 1
    loaded || fail "not in lsmod after insmod" || return 1
    major=$(major_of)
    [ -n "$major" ] || fail "/proc/devices does not list mapdrv" || return 1
    lastlog | grep -qE "mapdrv: 16 pages \(65536 bytes\) of vmalloc memory, major $major$" \
        || fail "load message: '$(lastlog)'" || return 1
    [ -d /sys/kernel/debug/mapdrv ] || fail "no debugfs directory" || return 1
    rmmod mapdrv || fail "rmmod failed" || return 1
    ! loaded || fail "still loaded after rmmod" || return 1
    [ -z "$(major_of)" ] || fail "/proc/devices still lists mapdrv" || return 1
    [ ! -e /dev/mapdrv ] || fail "/dev/mapdrv left behind" || return 1
    [ ! -e /sys/kernel/debug/mapdrv ] || fail "debugfs directory left behind" || return 1
    [ ! -e /sys/class/mapdrv ] || fail "device class left behind" || return 1
    lastlog | grep -q "mapdrv: unloaded" || fail "no unload message" || return 1
}

fault_vma_lock_flag() {
    # A kernel with VM_OPS_FAULT_VMA_LOCK (the C patch of patches/, in our
    # kernels) runs mapdrv's fault handler under the per-VMA lock on the
    # flag's word; on any other (Debian's) mapdrv is built with the no-op
    # map_pages instead, and says so when it loads. MAPDRV_FAULT_VMA_LOCK
    # is whether the kernel's bindings have the flag (scripts/test). That
    # the faults then really run under the VMA lock is faults_under_vma_lock.
    before=$(dmesg | wc -l)
    insmod mapdrv.ko || return 1
    # What this load logged.
    log=$(dmesg | tail -n +$((before + 1)) | grep 'mapdrv: ')
    rmmod mapdrv || return 1
    case $log in
        *"mapdrv: 16 pages ("*) ;;
        *) fail "the load's lines are not in dmesg: '$log'"; return 1 ;;
    esac
    case ${MAPDRV_FAULT_VMA_LOCK:-}:$log in
        1:*"no VM_OPS_FAULT_VMA_LOCK"*) fail "the fallback, in a kernel with the flag: $log" ;;
        0:*"no VM_OPS_FAULT_VMA_LOCK"*) echo "# the kernel has no VM_OPS_FAULT_VMA_LOCK: mapdrv uses the no-op map_pages" ;;
        1:*) echo "# the kernel has VM_OPS_FAULT_VMA_LOCK: mapdrv has no map_pages" ;;
        0:*) fail "no word of the fallback in a kernel without the flag: $log" ;;
        *) fail "MAPDRV_FAULT_VMA_LOCK is not set (scripts/test sets it)" ;;
    esac
}

taints_only_as_out_of_tree() {
    # Loading mapdrv taints the kernel only as a module built outside the
    # kernel's tree must: O (bit 12 of /proc/sys/kernel/tainted), and E (bit
    # 13, a module the kernel has no key for) where the kernel checks
    # signatures (CONFIG_MODULE_SIG, Debian's); N (bit 18, tests ran) only in
    # a kernel with KUnit, our debug kernel. The module's own flags too.
    insmod mapdrv.ko || return 1
    mine=$(cat /sys/module/mapdrv/taint)
    tainted=$(cat /proc/sys/kernel/tainted)
    rmmod mapdrv || return 1
    signed=0
    [ -e /sys/module/module/parameters/sig_enforce ] && signed=1
    allowed=$(( 4096 | 8192 * signed ))
    [ -d /sys/kernel/debug/kunit ] && allowed=$(( allowed | 262144 ))
    echo "# tainted: $tainted; mapdrv's flags: $mine; signatures checked: $signed"
    [ $(( tainted & 4096 )) != 0 ] || fail "no O (out-of-tree) in tainted=$tainted" || return 1
    [ $(( tainted & ~allowed )) = 0 ] || fail "tainted=$tainted has bits other than $allowed" || return 1
    case $signed$mine in
        0O|0ON|1OE|1OEN) ;;
        *) fail "mapdrv's taint flags '$mine' (signatures checked: $signed)"; return 1 ;;
    esac
    [ $signed = 0 ] || [ $(( tainted & 8192 )) != 0 ] || fail "no E (unsigned) in tainted=$tainted" || return 1
}

dev_node() {
    insmod mapdrv.ko || return 1
    [ -c /dev/mapdrv ] || fail "/dev/mapdrv is not a char device" || return 1
    # shellcheck disable=SC2046 # split into the four fields on purpose
    set -- $(stat -c '%a %t %T %u' /dev/mapdrv)
    [ "$1" = 600 ] || fail "/dev/mapdrv mode $1, expected 600" || return 1
    [ "$((0x$2))" = "$(major_of)" ] || fail "/dev/mapdrv major $((0x$2)), /proc/devices $(major_of)" || return 1
    [ "$((0x$3))" = 0 ] || fail "/dev/mapdrv minor $((0x$3))" || return 1
    [ "$4" = 0 ] || fail "/dev/mapdrv owned by uid $4" || return 1
    [ -e /sys/class/mapdrv/mapdrv/dev ] || fail "no /sys/class/mapdrv/mapdrv" || return 1
}

mknod_maptest() {
    insmod mapdrv.ko || return 1
    mknod /tmp/mapfile c "$(major_of)" 0 || return 1
    out=$(./maptest /tmp/mapfile) || fail "maptest failed: $(echo "$out" | tail -n 1)" || return 1
    echo "$out" | grep -q 'first line of the mapping: "mapdrv page 0 of 16"' \
        || fail "maptest did not print page 0's first line" || return 1
    rm /tmp/mapfile
}

maptest_options() {
    insmod mapdrv.ko pages=4 || return 1
    out=$(./maptest --write /dev/mapdrv) || fail "--write: $(echo "$out" | tail -n 1)" || return 1
    echo "$out" | grep -q 'MAP_SHARED: the process wrote straight into kernel memory' || fail "--write: no shared write" || return 1
    out=$(./maptest --private --write /dev/mapdrv) || fail "--private --write: $(echo "$out" | tail -n 1)" || return 1
    echo "$out" | grep -q 'MAP_PRIVATE: the write went to a private copy' || fail "--private: write reached the buffer" || return 1
    ./maptest -q /dev/mapdrv || fail "buffer changed by the --write runs" || return 1
    out=$(./maptest --hexdump 32 --maps /dev/mapdrv) || return 1
    echo "$out" | grep -q '^  00000000  6d 61 70 64 72 76 20 70 61 67 65 20 30 20 6f 66  |mapdrv page 0 of|' \
        || fail "--hexdump: $(echo "$out" | grep -m 1 '^  0000')" || return 1
    echo "$out" | grep -qE '/proc/self/maps: [0-9a-f]+-[0-9a-f]+ r--s 00000000 .* /dev/mapdrv' \
        || fail "--maps: $(echo "$out" | grep maps)" || return 1
    ./maptest /nonexistent 2>/dev/null; [ $? = 1 ] || fail "maptest on a missing file did not exit 1" || return 1
    ./maptest --bogus /dev/mapdrv 2>/dev/null; [ $? = 2 ] || fail "maptest with a bad option did not exit 2" || return 1
    ./maptest --help | grep -q '^USAGE:' || fail "no --help" || return 1
}

param_pages_zero() { refused EINVAL "mapdrv: pages=0 out of range 1..=262144" pages=0; }
param_pages_too_big() { refused EINVAL "mapdrv: pages=262145 out of range 1..=262144" pages=262145; }
param_pages_not_a_number() {
    ! insmod mapdrv.ko pages=many 2>/dev/null || fail "insmod pages=many succeeded" || return 1
    ! loaded || fail "loaded with pages=many" || return 1
}
param_fault_around_zero() { refused EINVAL "mapdrv: fault_around=0 is not a power of two in 1..=512" fault_around=0; }
param_fault_around_not_power_of_two() { refused EINVAL "mapdrv: fault_around=12 is not a power of two in 1..=512" fault_around=12; }
param_fault_around_too_big() { refused EINVAL "mapdrv: fault_around=1024 is not a power of two in 1..=512" fault_around=1024; }
param_fault_around_logged() {
    insmod mapdrv.ko fault_around=16 || fail "insmod fault_around=16 failed" || return 1
    lastlog | grep -q "mapdrv: fault-around: up to 16 pages mapped per fault$" \
        || fail "load message: '$(lastlog)'" || return 1
    grep -q '^fault_around: 16$' /sys/kernel/debug/mapdrv/stats || fail "stats: $(cat /sys/kernel/debug/mapdrv/stats)" || return 1
    rmmod mapdrv || fail "rmmod failed" || return 1
}
param_major_busy() { refused EBUSY "mapdrv: major 1 is already in use" major=1; }
param_major_too_big() { refused EINVAL "mapdrv: major=512 out of range 0..=511" major=512; }

param_major_fixed() {
    insmod mapdrv.ko major=240 || return 1
    [ "$(major_of)" = 240 ] || fail "/proc/devices major $(major_of), expected 240" || return 1
    ./maptest -q /dev/mapdrv || fail "maptest failed on major 240" || return 1
}

sizes() {
    for p in 1 2 3 255 4096; do
        insmod mapdrv.ko pages=$p || fail "insmod pages=$p" || return 1
        lastlog | grep -q "mapdrv: $p pages ($((p * 4096)) bytes)" || fail "pages=$p: '$(lastlog)'" || return 1
        out=$(./maptest /dev/mapdrv) || fail "pages=$p: $(echo "$out" | tail -n 1)" || return 1
        echo "$out" | grep -q "mapdrv page 0 of $p\"" || fail "pages=$p: wrong header" || return 1
        grep -q "^pages: $p$" /sys/kernel/debug/mapdrv/stats || fail "pages=$p: stats" || return 1
        grep -q "^faults: $p$" /sys/kernel/debug/mapdrv/stats || fail "pages=$p: faults $(grep faults /sys/kernel/debug/mapdrv/stats), expected $p" || return 1
        rmmod mapdrv || fail "rmmod pages=$p" || return 1
    done
}

offset_window() {
    insmod mapdrv.ko pages=8 || return 1
    out=$(./maptest --offset 5 --pages 3 /dev/mapdrv) || fail "$(echo "$out" | tail -n 1)" || return 1
    echo "$out" | grep -q '"mapdrv page 5 of 8"' || fail "offset 5 did not start at page 5" || return 1
    ! ./maptest -q --offset 5 --pages 4 /dev/mapdrv 2>/dev/null || fail "a window past the end was mapped" || return 1
}

rmmod_refused_while_open() {
    insmod mapdrv.ko || return 1
    exec 3</dev/mapdrv
    if rmmod mapdrv 2>/dev/null; then exec 3<&-; fail "rmmod succeeded with a file open"; return 1; fi
    loaded || { exec 3<&-; fail "module gone with a file open"; return 1; }
    grep -q '^opens: 1$' /sys/kernel/debug/mapdrv/stats || { exec 3<&-; fail "opens is not 1"; return 1; }
    exec 3<&-
    rmmod mapdrv || fail "rmmod refused after the file was closed" || return 1
}

# Starts `maptest --hold` in the background: it maps the device, closes the
# descriptor and keeps the mapping until `release_holder` (or a signal).
# Sets $holder to its pid.
start_holder() {
    rm -f /tmp/hold /tmp/hold.out
    mkfifo /tmp/hold
    ./maptest --hold /dev/mapdrv < /tmp/hold > /tmp/hold.out 2>&1 &
    holder=$!
    exec 4>/tmp/hold
    i=0
    until grep -q holding /tmp/hold.out; do
        i=$((i + 1))
        [ $i -gt 300 ] && { release_holder; fail "maptest --hold never got ready"; return 1; }
        sleep 0.1
    done
}

# Lets the holder unmap and exit; fails if it did not check out.
release_holder() {
    exec 4>&-
    wait "$holder" || fail "maptest --hold failed: $(tail -n 1 /tmp/hold.out)"
}

rmmod_refused_while_mapped() {
    insmod mapdrv.ko || return 1
    start_holder || return 1
    stats=$(cat /sys/kernel/debug/mapdrv/stats)
    refused=yes
    rmmod mapdrv 2>/dev/null && refused=no
    release_holder || return 1
    [ $refused = yes ] || fail "rmmod succeeded while a mapping existed" || return 1
    # The descriptor is closed, but the mapping keeps the file itself open.
    echo "$stats" | grep -q '^opens: 1$' || fail "opens not 1 with only a mapping: $stats" || return 1
    echo "$stats" | grep -q '^mappings: 1$' || fail "mappings not 1: $stats" || return 1
    grep -q '^mappings: 0$' /sys/kernel/debug/mapdrv/stats || fail "mappings not back to 0" || return 1
    grep -q '^opens: 0$' /sys/kernel/debug/mapdrv/stats || fail "opens not back to 0" || return 1
    rmmod mapdrv || fail "rmmod refused after the mapping was gone" || return 1
}

reload_cycles() {
    # Load/map/unload cycles with different sizes (MAPDRV_RELOAD_CYCLES, 100
    # by default; fewer on the debug kernel, whose delayed kobject release
    # makes every unload wait seconds); each must map, verify and unload
    # cleanly, and leave nothing registered behind.
    i=0
    while [ $i -lt "${MAPDRV_RELOAD_CYCLES:-100}" ]; do
        i=$((i + 1))
        p=$(( (i * 37) % 300 + 1 ))
        insmod mapdrv.ko pages=$p || fail "cycle $i: insmod pages=$p" || return 1
        ./maptest -q --pages $(( (p + 1) / 2 )) --offset $((p / 2)) /dev/mapdrv || fail "cycle $i: maptest (pages=$p)" || return 1
        rmmod mapdrv || fail "cycle $i: rmmod" || return 1
        [ -z "$(major_of)" ] || fail "cycle $i: /proc/devices still lists mapdrv" || return 1
    done
}

sigkill_with_mappings() {
    # A process killed while it holds mappings (fd closed) leaves nothing behind.
    insmod mapdrv.ko || return 1
    start_holder || return 1
    grep -q '^mappings: 1$' /sys/kernel/debug/mapdrv/stats || { release_holder; fail "mappings is not 1"; return 1; }
    kill -9 $holder
    wait $holder 2>/dev/null
    exec 4>&-
    grep -q '^mappings: 0$' /sys/kernel/debug/mapdrv/stats || fail "mappings not 0 after SIGKILL" || return 1
    grep -q '^opens: 0$' /sys/kernel/debug/mapdrv/stats || fail "opens not 0 after SIGKILL" || return 1
    rmmod mapdrv || fail "rmmod refused after the holder was killed" || return 1
}

memory_pressure() {
    # A buffer larger than the memory available is a clean ENOMEM with a
    # message, not an OOM kill or a warning; one that fits still works.
    avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
    big=$(( avail_kb * 3 / 8 ))            # 1.5 x MemAvailable, in 4 KiB pages
    [ $big -gt 262144 ] && big=262144
    [ $(( big * 4 )) -gt "$avail_kb" ] || fail "guest has too much memory for this test ($avail_kb kB)" || return 1
    refused ENOMEM "mapdrv: cannot vmalloc $((big * 4096)) bytes for pages=$big" pages=$big || return 1
    fits=$(( avail_kb / 4 / 4 ))           # a quarter of MemAvailable, at most 64 MiB
    [ $fits -gt 16384 ] && fits=16384
    insmod mapdrv.ko pages=$fits || fail "insmod pages=$fits failed" || return 1
    ./maptest -q --pages 64 --offset $((fits - 64)) /dev/mapdrv || fail "maptest on pages=$fits" || return 1
    rmmod mapdrv
}

unprivileged_sees_no_addresses() {
    # What an unprivileged user can read about mapdrv holds no kernel address.
    grep -q '^nobody:' /etc/passwd 2>/dev/null || {
        mkdir -p /etc
        echo 'root:x:0:0::/root:/bin/sh' > /etc/passwd
        echo 'nobody:x:65534:65534::/:/bin/sh' >> /etc/passwd
        echo 'root:x:0:' > /etc/group
        echo 'nogroup:x:65534:' >> /etc/group
    }
    insmod mapdrv.ko || return 1
    out=$(su nobody -s /bin/sh -c '
        id -u
        cat /dev/mapdrv >/dev/null 2>&1 && echo "OPENED /dev/mapdrv"
        cat /sys/kernel/debug/mapdrv/stats >/dev/null 2>&1 && echo "READ stats"
        cat /sys/kernel/debug/mapdrv/pagewalk >/dev/null 2>&1 && echo "READ pagewalk"
        cat /sys/kernel/debug/mapdrv/layout >/dev/null 2>&1 && echo "READ layout"
        cat /proc/devices /proc/modules /sys/class/mapdrv/mapdrv/uevent /sys/class/mapdrv/mapdrv/dev 2>&1
        dmesg 2>/dev/null | grep "mapdrv"
    ' 2>&1)
    echo "$out" | head -n 1 | grep -qx 65534 || fail "could not run as nobody: $(echo "$out" | head -n 1)" || return 1
    ! echo "$out" | grep -q '^OPENED\|^READ' || fail "nobody could: $(echo "$out" | grep '^OPENED\|^READ' | tr '\n' ' ')" || return 1
    # (/proc/modules shows module addresses as 0x0000000000000000 to nobody.)
    addr_re='ff[0-9a-f]{14}|0x0*[1-9a-f][0-9a-f]{8,}'
    ! echo "$out" | grep -qE "$addr_re" \
        || fail "a kernel address is visible to nobody: $(echo "$out" | grep -E "$addr_re" | head -n 1)" || return 1
    echo "$out" | grep -q '^mapdrv ' || fail "/proc/modules does not list mapdrv for nobody" || return 1
}

kmemleak_clean() {
    # After everything above, kmemleak finds nothing that mapdrv allocated.
    km=/sys/kernel/debug/kmemleak
    if [ ! -e $km ]; then
        # Our debug kernel has kmemleak; a kernel of the user's may not.
        [ "${MAPDRV_REQUIRE_KUNIT:-}" = 1 ] && { fail "no $km in the debug kernel"; return 1; }
        echo "skip: no kmemleak in this kernel"
        return 0
    fi
    echo scan > $km
    sleep 6   # kmemleak reports only objects older than 5 s
    echo scan > $km
    leaks=$(cat $km)
    ! echo "$leaks" | grep -q mapdrv || fail "kmemleak: $(echo "$leaks" | grep -m 1 -B 12 mapdrv | head -n 1) ... (mapdrv in a backtrace)" || return 1
}

mapstress_run() { # name, module arguments, mapstress arguments...
    name=$1
    modargs=$2
    shift 2
    # shellcheck disable=SC2086 # the module arguments are words
    insmod mapdrv.ko pages="${STRESS_PAGES:-64}" $modargs || { notok "$name" "insmod failed"; return; }
    ./mapstress "$@" > "/tmp/$name.out" 2>&1
    rc=$?
    result=$(grep '^RESULT: ' "/tmp/$name.out" | tail -n 1)
    grep '^# ' "/tmp/$name.out" | tail -n 3
    if [ $rc = 0 ] && echo "$result" | grep -q '^RESULT: [a-z]* ok'; then
        ok "$name # ${result#RESULT: }"
    else
        notok "$name" "${result:-exit status $rc, no RESULT line}; $(grep -v '^# ' "/tmp/$name.out" | tail -n 1)"
    fi
    rmmod mapdrv 2>/dev/null || notok "${name}_unload" "rmmod failed after $name"
}

# --- The explicit page-table walk ------------------------------------------

# The paging mode the guest runs in. x86_64: 5-level if the CPU has LA57 and
# the kernel was not told no5lvl. arm64: what the kernel was configured for
# (qemu/arm64.config: 4 KiB pages, 48-bit addresses).
expected_mode() {
    if [ "$ARCH" = arm64 ]; then
        echo 4-level
    elif grep -qw la57 /proc/cpuinfo && ! grep -qw no5lvl /proc/cmdline; then
        echo 5-level
    else
        echo 4-level
    fi
}

pagewalk_matches_kernel() {
    # At load the driver walks every page by hand and refuses to load if any
    # walk disagrees with vmalloc_to_page() or the direct map.
    mode=$(expected_mode)
    for p in 1 16 4096; do
        insmod mapdrv.ko pages=$p || fail "insmod pages=$p" || return 1
        line=$(dmesg | grep 'mapdrv: page walk' | tail -n 1)
        echo "$line" | grep -q "page walk: all $p pages agree with vmalloc_to_page(); $mode paging" \
            || fail "pages=$p: '$line' (expected $mode)" || return 1
        head -n 1 /sys/kernel/debug/mapdrv/pagewalk | grep -q "$ARCH, $mode paging" \
            || fail "pagewalk header: $(head -n 1 /sys/kernel/debug/mapdrv/pagewalk)" || return 1
        rows=$(grep -c '^page=' /sys/kernel/debug/mapdrv/pagewalk)
        [ "$rows" = $p ] || fail "pages=$p: pagewalk has $rows rows" || return 1
        # The table parses and its frames are distinct (maptest walk checks both).
        out=$(./maptest walk --rows 0 2>&1) || fail "pages=$p: maptest walk: $(echo "$out" | tail -n 1)" || return 1
        rmmod mapdrv || return 1
    done
}

pagewalk_levels() {
    insmod mapdrv.ko pages=2 || return 1
    line=$(grep '^page=1 ' /sys/kernel/debug/mapdrv/pagewalk)
    # A present (x86_64) or valid (arm64) entry at every level.
    valid=$([ "$ARCH" = arm64 ] && echo 'V,[A-Z]+[,=A-Za-z]*' || echo 'P[,A-Z]*')
    for l in pgd pud pmd pte; do
        echo "$line" | grep -qE " $l\[[0-9]+\]=0x[0-9a-f]{16}\($valid\)" \
            || fail "no present $l entry in: $line" || return 1
    done
    if [ "$(expected_mode)" = 5-level ]; then
        echo "$line" | grep -qE ' p4d\[[0-9]+\]=0x' || fail "no p4d entry with 5-level paging" || return 1
    else
        echo "$line" | grep -q ' p4d=folded' || fail "p4d not folded with 4-level paging" || return 1
    fi
    # A kernel data page: writable, not user, not executable; on arm64 a page
    # descriptor, accessed, normal memory, global, and not executable from
    # user mode either.
    if [ "$ARCH" = arm64 ]; then
        pte_flags='\(V,PAGE,AF,RW,SH=IS,NORMAL,G,[A-Z,]*PXN,UXN\)'
    else
        pte_flags='\(P,W,NX'
    fi
    echo "$line" | grep -qE " pte\[[0-9]+\]=0x[0-9a-f]+$pte_flags" || fail "pte flags: $line" || return 1
    echo "$line" | grep -qE 'pfn=0x[0-9a-f]+ phys=0x[0-9a-f]+000 struct_page=0x[0-9a-f]+ directmap=0x[0-9a-f]+' \
        || fail "no pfn/phys/struct_page/directmap: $line" || return 1
}

pagewalk_zones() {
    # Every page's zone, as the driver names it, is the zone of /proc/zoneinfo
    # whose span (start_pfn, spanned) holds its frame; maptest walk counts them.
    insmod mapdrv.ko pages=4096 || return 1
    bad=$(awk '
        function hex(s,    n, i, c) {
            n = 0; s = tolower(substr(s, 3))
            for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; n = n * 16 + c }
            return n
        }
        FNR == NR {
            if ($1 == "Node") { z = $4 }
            else if ($1 == "spanned") { span[z] = $2 }
            else if ($1 == "start_pfn:") { start[z] = $2 }
            next
        }
        /^page=/ {
            pfn = ""; zone = ""; node = ""
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^pfn=/) pfn = hex(substr($i, 5))
                if ($i ~ /^zone=/) zone = substr($i, 6)
                if ($i ~ /^node=/) node = substr($i, 6)
            }
            if (node != "0" || !(zone in span) || pfn < start[zone] || pfn >= start[zone] + span[zone]) {
                print $1 " pfn=" pfn " node=" node " zone=" zone; exit
            }
            seen++
        }
        END { if (seen != 4096 && !bad) print "only " seen " rows checked" }
    ' /proc/zoneinfo /sys/kernel/debug/mapdrv/pagewalk)
    [ -z "$bad" ] || fail "a page outside the zone named for it (or none): $bad" || return 1
    zones=$(./maptest walk --rows 0 | sed -n 's/^Zones (node 0): //p')
    [ -n "$zones" ] || fail "maptest walk names no zones" || return 1
    total=$(echo "$zones" | tr ',' '\n' | awk '{ n += $1 } END { print n }')
    [ "$total" = 4096 ] || fail "maptest walk: zones '$zones' add up to $total pages, not 4096" || return 1
    rmmod mapdrv || return 1
}

layout_allocations_in_their_regions() {
    # /sys/kernel/debug/mapdrv/layout: each kind of allocation lies in the
    # region the lesson says, inside that region's bounds; the direct-map and
    # kernel-image arithmetic holds; the buffer's first page is the frame
    # pagewalk shows. On arm64 the kernel image is mapped inside vmalloc.
    insmod mapdrv.ko pages=16 || return 1
    f=/sys/kernel/debug/mapdrv/layout
    head -n 1 $f | grep -q "^# mapdrv layout: $ARCH, " || fail "layout header: $(head -n 1 $f)" || return 1
    # With KASLR, arm64 puts the modules within reach of the randomized image,
    # in vmalloc: a user's kernel (KDIR=) may have it, the guest's has not.
    case $ARCH in
        arm64) regions="direct_map modules vmalloc vmemmap" image=vmalloc modules="(modules|vmalloc)" ;;
        *) regions="direct_map vmalloc vmemmap kernel_image modules" image=kernel_image modules=modules ;;
    esac
    for r in $regions; do
        grep -q "^region $r start=0x" $f || fail "no region $r" || return 1
    done
    [ "$(grep -c '^region ' $f)" = "$(echo "$regions" | wc -w)" ] || fail "regions: $(grep '^region ' $f)" || return 1
    grep -q '^region direct_map .* phys=0x' $f || fail "the direct map has no physical start: $(grep '^region direct_map ' $f)" || return 1
    for want in get_free_page:direct_map kmalloc:direct_map vmalloc:vmalloc mapdrv_buffer:vmalloc \
                stack_variable:vmalloc "module_function:$modules" kernel_function:$image; do
        line=$(grep "^alloc ${want%%:*} " $f)
        echo "$line" | grep -qE " region=${want#*:}$" || fail "expected ${want%%:*} in ${want#*:}: $line" || return 1
        echo "$line" | grep -qE " phys=0x[0-9a-f]+" || fail "no physical address: $line" || return 1
    done
    for a in get_free_page kmalloc; do
        grep "^alloc $a " $f | grep -q ' direct_map_check=ok ' || fail "$a: physical != virtual - base: $(grep "^alloc $a " $f)" || return 1
    done
    grep '^alloc kernel_function ' $f | grep -q ' image_check=ok ' || fail "kernel function: physical != the image's offset: $(grep '^alloc kernel_function ' $f)" || return 1
    ksize=$(sed -n 's/^alloc kmalloc .* ksize=\([0-9]*\) .*/\1/p' $f)
    [ "${ksize:-0}" -ge 100 ] || fail "kmalloc(100): ksize '$ksize'" || return 1
    # Every address inside its region's bounds (16 hex digits: compared as text).
    bad=$(awk '
        function pad(h) { h = substr(h, 3); while (length(h) < 16) h = "0" h; return h }
        $1 == "region" { for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                         lo[$2] = pad(v["start"]); hi[$2] = pad(v["end"]) }
        $1 == "alloc" { for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                        a = pad(v["virt"]); r = v["region"]
                        if (!(r in lo) || a < lo[r] || a >= hi[r]) { print $2 " " v["virt"] " " r; exit } }
    ' $f)
    [ -z "$bad" ] || fail "outside the named region: $bad" || return 1
    walk_phys=$(sed -n 's/^page=0 .* phys=\(0x[0-9a-f]*\) .*/\1/p' /sys/kernel/debug/mapdrv/pagewalk)
    grep '^alloc mapdrv_buffer ' $f | grep -q " phys=$walk_phys " \
        || fail "buffer: $(grep '^alloc mapdrv_buffer ' $f), pagewalk page 0 phys=$walk_phys" || return 1
    out=$(./maptest layout) || fail "maptest layout failed: $out" || return 1
    echo "$out" | grep -q 'kmalloc(100), [0-9]* bytes really' || fail "maptest layout: no kmalloc line" || return 1
    # No address of the layout reaches the kernel log.
    virt=$(sed -n 's/^alloc get_free_page virt=0x\([0-9a-f]*\) .*/\1/p' $f)
    ! dmesg | grep -qi "$virt" || fail "an address of the layout is in the kernel log" || return 1
    rmmod mapdrv || return 1
}

maps_annotated() {
    # maptest maps: each address it places lies in the /proc/self/maps line it
    # is shown under, and that line is the right kind of mapping.
    insmod mapdrv.ko || return 1
    out=$(./maptest maps) || fail "maptest maps failed: $(echo "$out" | tail -n 1)" || return 1
    bad=$(echo "$out" | awk '
        function pad(h) { while (length(h) < 16) h = "0" h; return h }
        /^[0-9a-f]+-[0-9a-f]+ / { split($1, r, "-"); lo = pad(r[1]); hi = pad(r[2]); perms = $2; off = $3; path = $6; next }
        /^    \^ 0x/ {
            a = pad(substr($2, 3)); note = $0
            if (a < lo || a >= hi) { print "outside its line: " note; exit }
            if (note ~ /code:/ && !(perms ~ /x/ && path == "/maptest")) { print "code not in maptest text: " perms " " path; exit }
            if (note ~ /data:/ && !(perms ~ /^rw/ && path == "/maptest")) { print "data not in maptest data: " perms " " path; exit }
            if (note ~ /heap:/ && path != "[heap]") { print "sbrk page not in [heap]: " path; exit }
            if (note ~ /stack:/ && path != "[stack]") { print "local not in [stack]: " path; exit }
            if (note ~ /malloc\(4 MiB\)/ && path != "") { print "large malloc in a file mapping: " path; exit }
            if (note ~ /MAP_SHARED/ && !(path == "/dev/mapdrv" && perms ~ /s$/ && off == "00000000")) { print "shared: " perms " " off " " path; exit }
            if (note ~ /MAP_PRIVATE/ && !(path == "/dev/mapdrv" && perms ~ /p$/ && off == "00002000")) { print "private: " perms " " off " " path; exit }
            seen++
        }
        /in no mapping/ { print $0; exit }
        END { if (seen != 8) print "placed " seen " of 8 addresses" }
    ')
    [ -z "$bad" ] || fail "$bad" || return 1
    echo "$out" | grep -q '\[vdso\]' || fail "no [vdso] line" || return 1
    echo "$out" | grep -q 'The top of user space' || fail "no top of user space" || return 1
    # The architecture's own bits of user address, 47 on x86_64, 48 on arm64:
    # what maptest says, and where the stack really is (just under the top).
    bits=47
    [ "$ARCH" = arm64 ] && bits=48
    echo "$out" | tr '\n' ' ' | grep -q "below 0x[0-9a-f]* ($bits bits;" \
        || fail "the top of user space is not given as $bits bits on $ARCH" || return 1
    stack=$(echo "$out" | sed -n 's/^    ^ \(0x[0-9a-f]*\)  stack:.*/\1/p')
    [ -n "$stack" ] || fail "no stack variable placed" || return 1
    [ $((stack < (1 << bits))) = 1 ] && [ $((stack >= (1 << (bits - 1)))) = 1 ] \
        || fail "the stack at $stack is not just under 2^$bits" || return 1
    rmmod mapdrv || return 1
}

# Fault-around finds a window's pages by walking down to the kernel's PTE table once and
# reading the entries after it. 1500 pages span at least three of the kernel's page tables, so
# windows of 16 and of 512 pages go on from one table to the next; maptest checks every byte.
fault_around_across_page_tables() {
    for n in 16 512; do
        insmod mapdrv.ko pages=1500 fault_around=$n || fail "insmod fault_around=$n failed" || return 1
        out=$(./maptest /dev/mapdrv) || fail "fault_around=$n: $(echo "$out" | tail -n 1)" || return 1
        stats=$(cat /sys/kernel/debug/mapdrv/stats)
        echo "$stats" | grep -q '^pages_mapped: 1500$' \
            || fail "fault_around=$n: $(echo "$stats" | tr '\n' ' ')" || return 1
        # At most one fault per aligned window of the mapping (and one more for a mapping
        # that does not start on a window's boundary).
        faults=$(echo "$stats" | sed -n 's/^faults: //p')
        [ "$faults" -le $(((1500 + n - 1) / n + 1)) ] \
            || fail "fault_around=$n: $faults faults for 1500 pages" || return 1
        rmmod mapdrv || fail "rmmod failed" || return 1
    done
}

struct_page_arithmetic() {
    # Every page of the buffer under its other names: its struct page is
    # vmemmap + pfn * sizeof(struct page), its direct-map address page_offset
    # + (physical - phys_offset), from the figures of the driver's memmap line
    # (maptest page checks a page's; here the first, one inside, the last),
    # and a page past the buffer is refused.
    insmod mapdrv.ko pages=16 || return 1
    out=$(./maptest page 5 2>&1) || fail "maptest page 5: $(echo "$out" | tail -n 1)" || return 1
    echo "$out" | grep -q '^  struct page  *0x[0-9a-f]*  = vmemmap + pfn \* [0-9]*$' || fail "maptest page: no struct page line" || return 1
    for n in 0 15; do
        ./maptest page $n > /dev/null || fail "maptest page $n failed" || return 1
    done
    err=$(./maptest page 16 2>&1) && { fail "maptest page 16 (past the buffer) succeeded"; return 1; }
    echo "$err" | grep -q 'there is no page 16' || fail "maptest page 16: '$err'" || return 1
    rmmod mapdrv || return 1
}

process_frames_match_kernel() {
    # The process's side of the mapping: its own page tables (/proc/self/
    # pagemap) hold, page for page, the frames the driver's walk of the
    # kernel's page tables found; a private write gets a new frame while the
    # buffer keeps its own; a child after fork has the parent's frames.
    # maptest frames checks each, and fails on the first that does not hold.
    insmod mapdrv.ko pages=16 || return 1
    out=$(./maptest frames --pages 8 /dev/mapdrv 2>&1) || fail "maptest frames: $(echo "$out" | tail -n 1)" || return 1
    same=$(echo "$out" | grep -c 'the same frame$')
    [ "$same" = 8 ] || fail "$same of 8 shared pages shown in the kernel walk's frame" || return 1
    echo "$out" | grep -q 'copied on write: a new frame' || fail "no copy-on-write shown" || return 1
    echo "$out" | grep -q "^After fork(), the child's page tables" || fail "no child shown" || return 1
    rmmod mapdrv || return 1
}

fragmented_buffer_is_scattered() {
    # The lesson's key fact, made visible as `make run` does: with free memory
    # fragmented (maptest fragment all: a margin of large blocks, 24 MiB and
    # 1/16 of RAM, the rest single frames), a 128 MiB buffer's frames are
    # scattered.
    rm -f /tmp/frag /tmp/frag.out
    mkfifo /tmp/frag
    # It gives its memory back once the buffer is vmalloc'ed: the rest of the
    # load then finds blocks of two pages or more (see maptest --help).
    taskset 1 ./maptest fragment all --release-after-vmalloc 128 < /tmp/frag > /tmp/frag.out &
    exec 5> /tmp/frag
    i=0
    until grep -q ready /tmp/frag.out; do
        i=$((i + 1))
        [ $i -gt 1200 ] && { exec 5>&-; fail "maptest fragment never got ready"; return 1; }
        sleep 0.1
    done
    taskset 1 /bin/insmod mapdrv.ko pages=32768
    rc=$?
    exec 5>&-
    wait
    [ $rc = 0 ] || fail "insmod failed" || return 1
    grep -q 'gave all memory back' /tmp/frag.out || fail "the fragmenter did not see the vmalloc: $(cat /tmp/frag.out)" || return 1
    out=$(./maptest walk --rows 0) || fail "maptest walk failed" || return 1
    runs=$(echo "$out" | tr '\n' ' ' | sed -n 's/.* sit in \([0-9]*\) physically.*/\1/p')
    [ -n "$runs" ] || fail "no summary in maptest walk" || return 1
    # At most the margin (88 MiB in a 1 GiB guest) from large blocks; the rest,
    # at least 10000 pages, one by one. (A kernel with compaction, Debian's,
    # would build free blocks again as vmalloc asks for them, moving other
    # pages; the fragmenter holds it off, and the figures from vmstat say
    # whether it ran all the same.)
    min=4096
    [ "$runs" -ge $min ] || fail "the 32768 pages sit in only $runs contiguous runs (at least $min expected; $(grep -E '^(compact_stall|compact_daemon_wake|pgmigrate_success) ' /proc/vmstat | tr '\n' ' '))" || return 1
}

misc_sample_maps_vmalloc_buffer() {
    # The series' sample (patches/: samples/rust/rust_misc_vmalloc.rs), built
    # into the debug kernel: a misc device whose fault handler maps a vmalloc
    # buffer page by page, through the same abstractions as mapdrv. mapsample
    # maps it: pages mapped only when touched, their contents, the refusals,
    # a buffer per open file, the mapping outliving the file.
    dev=/dev/rust-misc-vmalloc
    if [ ! -c $dev ]; then
        [ "${MAPDRV_REQUIRE_KUNIT:-}" = 1 ] && { fail "no $dev: the debug kernel lacks the series' sample"; return 1; }
        echo "skip: no rust_misc_vmalloc sample in this kernel (the series' patches/ are not in it)"
        return 0
    fi
    out=$(./mapsample $dev 2>&1) || fail "mapsample: $(echo "$out" | tail -n 1)" || return 1
    [ "$(echo "$out" | grep -c '^ok: ')" = 6 ] || fail "mapsample: $(echo "$out" | grep -c '^ok: ') checks, expected 6" || return 1
}

pagewalk_no_addresses_in_log() {
    # Kernel addresses belong in the root-only debugfs file, never in the log.
    insmod mapdrv.ko || return 1
    addr=$(sed -n 's/^page=0 vaddr=0x\([0-9a-f]*\) .*/\1/p' /sys/kernel/debug/mapdrv/pagewalk)
    [ -n "$addr" ] || fail "no vaddr in pagewalk" || return 1
    ! dmesg | grep 'mapdrv' | grep -qi "$addr" || fail "the buffer's address is in the kernel log" || return 1
    ! dmesg | grep 'mapdrv:' | grep -qE '0x[0-9a-f]{12,}|ff[0-9a-f]{14}' || fail "an address-like number in the log" || return 1
}

kunit_results() {
    # Not a test itself: the module's KUnit suites ran when it was loaded;
    # each case becomes a line of ours. Needs CONFIG_KUNIT (the debug kernel).
    # Suites: mapdrv_pagewalk (the walk, on every architecture),
    # mapdrv_pagewalk_$ARCH (the architecture's own: descriptor decoding, ...)
    # mapdrv_percpu (the per-CPU counter) and mapdrv_vm_ops (the fault-around
    # window, for any input).
    kunit_filter 'mapdrv_*.*'
    insmod mapdrv.ko || { kunit_filter 'no_suite_outside_kunit_results'; notok kunit "insmod failed"; return; }
    kunit_filter 'no_suite_outside_kunit_results'
    for suite in mapdrv_pagewalk "mapdrv_pagewalk_$ARCH" mapdrv_percpu mapdrv_vm_ops; do
        kunit_suite "$suite"
    done
    rmmod mapdrv
}

kunit_suite() { # suite-name
    suite=$1
    results=/sys/kernel/debug/kunit/$suite/results
    if [ ! -f "$results" ]; then
        if [ -d /sys/kernel/debug/kunit ] || [ "${MAPDRV_REQUIRE_KUNIT:-}" = 1 ]; then
            notok kunit "no $results (KUnit missing or the suite did not register)"
        else
            skipped "kunit_$suite" "no KUnit in this kernel"
        fi
        return
    fi
    cases=0
    while IFS= read -r line; do
        # Cases are indented one level: "    ok 1 name" / "    not ok 2 name";
        # `set -- $line` splits one into its fields.
        # shellcheck disable=SC2086
        case $line in
            "    ok "*) set -- $line; ok "kunit_$3"; cases=$((cases + 1)) ;;
            "    not ok "*) set -- $line; notok "kunit_$4" "KUnit case failed (see dmesg)"; cases=$((cases + 1)) ;;
        esac
    done < "$results"
    [ $cases -gt 0 ] || notok kunit "no KUnit case results in $results"
    grep -qE "^ok [0-9]+ $suite( |$)" "$results" || notok kunit_suite "suite $suite did not pass: $(tail -n 1 "$results")"
}

doctest_results() {
    # Not a test itself: the debug kernel carries the abstractions in its tree
    # (patches/), and their documentation examples ran as the built-in KUnit
    # suite rust_doctests_kernel at boot (with those the series adds to
    # miscdevice.rs and mm/virt.rs); each of ours becomes a line here.
    # MAPDRV_DOCTESTS is how many examples the sources have.
    results=/sys/kernel/debug/kunit/rust_doctests_kernel/results
    if [ ! -f $results ]; then
        if [ "${MAPDRV_REQUIRE_KUNIT:-}" = 1 ]; then
            notok doctests "no $results (a kernel without the in-tree abstractions?)"
        else
            skipped doctests "no KUnit, or not the abstractions in this kernel's tree"
        fi
        return
    fi
    cases=0
    while IFS= read -r line; do
        # shellcheck disable=SC2086 # `set -- $line` splits a result into its fields
        case $line in
            "    ok "*_chrdev_rs_*|"    ok "*_mm_vm_ops_rs_*|"    ok "*_mm_virt_rs_*|"    ok "*_miscdevice_rs_*)
                set -- $line; ok "doctest_${3#rust_doctest_kernel_}"; cases=$((cases + 1)) ;;
            "    not ok "*_chrdev_rs_*|"    not ok "*_mm_vm_ops_rs_*|"    not ok "*_mm_virt_rs_*|"    not ok "*_miscdevice_rs_*)
                set -- $line; notok "doctest_${4#rust_doctest_kernel_}" "doctest failed (see dmesg)"; cases=$((cases + 1)) ;;
        esac
    done < $results
    [ "$cases" = "${MAPDRV_DOCTESTS:-0}" ] || notok doctests "$cases results for ${MAPDRV_DOCTESTS:-?} examples"
    # The suite as a whole passed (scripts/build-kernel builds no other examples into it).
    grep -q '^ok [0-9]* rust_doctests_kernel' $results || notok doctests_kernel_suite "suite did not pass: $(grep -m 1 '^    not ok' $results)"
}

error_paths_clean() {
    # Every step of the device's registration can fail, and each failure must
    # undo the steps before it: nothing left registered, no reference dropped
    # twice. The debug kernel's failslab fails one allocation, the first made
    # under the named kernel function (the stack-trace filter), while mapdrv
    # loads: insmod must fail with ENOMEM and say why, leave no major, class
    # or node behind, and a later load must work. The kernel log is checked
    # for splats after the kobjects' delayed releases (CONFIG_DEBUG_KOBJECT_
    # RELEASE): kobj_map() is the cdev_add() failure, where a cdev whose
    # parent was set but not referenced dropped the device's last reference.
    fs=/sys/kernel/debug/failslab
    if [ ! -d $fs ]; then
        [ "${MAPDRV_REQUIRE_KUNIT:-}" = 1 ] && { fail "no $fs (CONFIG_FAILSLAB off?)"; return 1; }
        echo "skip: no failslab in this kernel"
        return 0
    fi
    echo N > $fs/ignore-gfp-wait
    echo 1 > $fs/verbose
    echo 0 > $fs/interval
    syms=$(awk '{ print $1 }' /proc/kallsyms | sort -u)
    # device_create_sys_dev_entry: device_add() failing late, after the driver data
    # was published and the device's sysfs files (its uevent among them) were made.
    for fn in alloc_chrdev_region class_create device_create device_create_sys_dev_entry \
        cdev_alloc kobj_map; do
        start=$(awk -v f="$fn" '$3 == f { print $1; exit }' /proc/kallsyms)
        [ -n "$start" ] || fail "$fn: not in /proc/kallsyms" || return 1
        end=$(echo "$syms" | awk -v s="$start" '$1 > s { print; exit }')
        printf '0x%s' "$start" > $fs/require-start
        printf '0x%s' "$end" > $fs/require-end
        echo 1 > $fs/times
        echo 100 > $fs/probability
        err=$(insmod mapdrv.ko 2>&1) && rc=0 || rc=$?
        echo 0 > $fs/probability
        [ "$rc" != 0 ] || { rmmod mapdrv; fail "$fn failing: insmod succeeded"; return 1; }
        echo "$err" | grep -q ENOMEM || fail "$fn failing: insmod said '$err', expected ENOMEM" || return 1
        [ "$(cat $fs/times)" = 0 ] || fail "$fn failing: no allocation under $fn failed" || return 1
        # (The name of the error where the kernel has CONFIG_SYMBOLIC_ERRNAME, its number where not.)
        lastlog | grep -qE 'cannot register the char device: (ENOMEM|Error\(-?12\))' \
            || fail "$fn failing: the log says '$(lastlog)'" || return 1
        [ -z "$(major_of)" ] || fail "$fn failing: the major is still in /proc/devices" || return 1
        [ ! -e /sys/class/mapdrv ] || fail "$fn failing: the class is still there" || return 1
        [ ! -e /dev/mapdrv ] || fail "$fn failing: the node is still in /dev" || return 1
        echo "# $fn failed as asked: $(lastlog)"
    done
    echo 0 > $fs/require-start
    printf '0x%s' ffffffffffffffff > $fs/require-end
    # The delayed releases of whatever the failed loads made, then a load that works.
    sleep 5
    insmod mapdrv.ko || fail "insmod after the failures" || return 1
    ./maptest -q /dev/mapdrv || fail "maptest after the failures" || return 1
    rmmod mapdrv
}

kobject_release_clean() {
    # The debug kernel releases kobjects 1-4 s after their last reference
    # goes (CONFIG_DEBUG_KOBJECT_RELEASE). Unload after files were closed,
    # after a mapping outlived its descriptor, and with a node made by mknod
    # that keeps the cdev in its inode; then let every delayed release run.
    # Memory freed too early would be used after free there (KASAN, and
    # panic_on_warn ends the run). At last the stale node must answer ENXIO:
    # the cdev's release ran and forgot the inode.
    insmod mapdrv.ko || return 1
    ./maptest -q /dev/mapdrv || fail "maptest" || return 1
    seen=$(dmesg | grep -c 'mapdrv: unloaded')
    rmmod mapdrv || fail "rmmod after files were closed" || return 1
    # What C keeps of the module past its unload (docs/design.md, "Lifetimes"):
    # the module is gone when rmmod returns, and the kernel still has the class
    # and the device, both named after it, to release 1-3 s later; the class's
    # release reads the name class_create() was given, a string of the module.
    if [ "${MAPDRV_REQUIRE_KUNIT:-}" = 1 ]; then
        [ ! -d /sys/module/mapdrv ] || fail "the module is still there after rmmod" || return 1
        sleep 5
        later=$(dmesg | awk -v seen="$seen" '/mapdrv: unloaded/ { n++; next }
            n > seen && /'"'"'mapdrv'"'"' \([0-9a-f]*\): kobject_release, parent .*delayed/ { k++ }
            END { print k + 0 }')
        [ "$later" -ge 2 ] || fail "after the unload, $later delayed releases of kobjects named mapdrv, expected the class's and the device's" || return 1
        echo "# after the unload: $later kobjects named mapdrv still to release (the class and the device)"
    fi
    insmod mapdrv.ko || return 1
    start_holder || return 1
    release_holder || return 1
    rmmod mapdrv || fail "rmmod after the mapping outlived its descriptor" || return 1
    insmod mapdrv.ko || return 1
    mknod /tmp/stale c "$(major_of)" 0 || return 1
    ./maptest -q /tmp/stale || fail "maptest through the mknod node" || return 1
    rmmod mapdrv || fail "rmmod with a mknod node" || return 1
    # Wait out the delayed releases before touching the stale node: until the
    # cdev's release has run, its inode still points to it, and the core's
    # cdev_get() would read cdev->owner, the unloaded module (a hazard of every
    # cdev driver under CONFIG_DEBUG_KOBJECT_RELEASE, not of this one).
    sleep 5
    if [ "${MAPDRV_REQUIRE_KUNIT:-}" = 1 ]; then
        dmesg | grep -q "'mapdrv' ([0-9a-f]*): kobject_release, parent" \
            || fail "no delayed kobject release logged for mapdrv (CONFIG_DEBUG_KOBJECT_RELEASE off?)" || return 1
    fi
    err=$(./maptest -q /tmp/stale 2>&1) && { fail "the stale node opened after unload"; return 1; }
    rm -f /tmp/stale
    echo "$err" | grep -q 'No such device or address' || fail "stale node: '$err', expected ENXIO" || return 1
}

broken_drivers_caught() {
    # The suite's own test: each deliberately broken build of the driver (one line of
    # tests/broken-drivers.tsv, built by scripts/broken-drivers) must make at least one of the
    # mapcheck tests the line names fail.
    [ -d /broken ] || { fail "no /broken/: scripts/guest builds the broken drivers for make test"; return 1; }
    tab=$(printf '\t')
    caught=0
    while IFS="$tab" read -r name _file _expr tests what; do
        case $name in '' | '#'*) continue ;; esac
        insmod "/broken/$name.ko" || { fail "$name: insmod failed"; return 1; }
        # shellcheck disable=SC2086 # the test names are words
        /mapcheck $tests > /tmp/broken.out 2>&1
        rc=$?
        rmmod mapdrv || { fail "$name: rmmod failed"; return 1; }
        if [ $rc != 1 ] || ! grep -q '^not ok - ' /tmp/broken.out; then
            fail "$name ($what): mapcheck $tests did not fail (exit $rc)"
            return 1
        fi
        caught=$((caught + 1))
    done < /tests/broken-drivers.tsv
    [ $caught -ge 7 ] || fail "only $caught broken drivers in /tests/broken-drivers.tsv"
}

device_contract() { # module arguments, mapcheck arguments
    # Not a test itself: runs /mapcheck and numbers its lines into ours.
    # shellcheck disable=SC2086 # the arguments are words
    insmod mapdrv.ko $1 || { notok mapcheck "insmod $1 failed"; return; }
    # shellcheck disable=SC2086
    /mapcheck $2 > /tmp/mapcheck.out 2>&1
    rc=$?
    while IFS= read -r line; do
        case $line in
            "ok - "*" # SKIP "*) rest=${line#ok - }; skipped "${rest%% # SKIP *}" "${rest#* # SKIP }" ;;
            "ok - "*) ok "${line#ok - }" ;;
            "not ok - "*) rest=${line#not ok - }; notok "${rest%%: *}" "${rest#*: }" ;;
            *) echo "# $line" ;;
        esac
    done < /tmp/mapcheck.out
    grep -q '^ok - ' /tmp/mapcheck.out || notok mapcheck "ran no test (exit $rc)"
    [ $rc = 0 ] || grep -q '^not ok - ' /tmp/mapcheck.out || notok mapcheck "exit status $rc"
    rmmod mapdrv 2>/dev/null || notok mapcheck_unload "rmmod failed after mapcheck"
}

t guest_is_smp
t every_test_in_a_part
t modinfo_complete
t load_unload
t taints_only_as_out_of_tree
t fault_vma_lock_flag
t dev_node
t mknod_maptest
t maptest_options
t param_pages_zero
t param_pages_too_big
t param_pages_not_a_number
t param_fault_around_zero
t param_fault_around_not_power_of_two
t param_fault_around_too_big
t param_fault_around_logged
t param_major_busy
t param_major_too_big
t param_major_fixed
t sizes
t offset_window
t rmmod_refused_while_open
t rmmod_refused_while_mapped
t reload_cycles
t pagewalk_matches_kernel
t pagewalk_levels
t pagewalk_zones
t layout_allocations_in_their_regions
t maps_annotated
t pagewalk_no_addresses_in_log
t struct_page_arithmetic
t process_frames_match_kernel
t fragmented_buffer_is_scattered
t misc_sample_maps_vmalloc_buffer
t fault_around_across_page_tables
want kunit_results && timed kunit_results kunit_results
want doctest_results && timed doctest_results doctest_results
t kobject_release_clean
t error_paths_clean
want device_contract && timed device_contract device_contract "" ""
# The same driver mapping 16 pages per fault: which pages each fault maps.
want fault_around && timed fault_around device_contract "pages=64 fault_around=16" --fault-around
want stress && timed stress mapstress_run stress "" stress --procs 8 --threads 4 --seconds "${STRESS_SECONDS:-5}"
want fuzz && timed fuzz mapstress_run fuzz "" fuzz --iterations "${FUZZ_ITERATIONS:-20000}"
want stress && timed stress_fault_around mapstress_run stress_fault_around fault_around=16 stress --procs 8 --threads 4 --seconds "${STRESS_SECONDS:-5}"
want fuzz && timed fuzz_fault_around mapstress_run fuzz_fault_around fault_around=16 fuzz --iterations "${FUZZ_ITERATIONS:-20000}" --seed 7
t sigkill_with_mappings
t memory_pressure
t unprivileged_sees_no_addresses
t broken_drivers_caught
t kmemleak_clean

echo "# guest: $failed failed"
[ $failed = 0 ]
