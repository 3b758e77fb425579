# The benchmark's report, from the `name value` figures of one guest boot
# (scripts/bench): a table of figures, the targets' ratios, and the JSON of
# bench/results/latest.json (the lines from `{` to `}`).
#
# Variables: big (the largest mapping of the scaling figures, in pages),
# kernel, mode, date, qemu, cpu.

{ v[$1] = $2 + 0; order[++n] = $1 }

function has(k) { return k in v }
function ratio(a, b) { return (has(a) && has(b) && v[b] > 0) ? v[a] / v[b] : -1 }
# beside(MODE, NAME): NAME as measured in the same rounds as MODE. The
# fault-around figures (faultaroundN_*, populate_faultaroundN_*) are measured
# with mapdrv loaded again, and what they are compared with again beside
# them, as faN_NAME; every other figure shares its rounds with NAME itself.
function beside(mode, name,    m) {
    if (match(mode, /faultaround[0-9]+_/)) {
        m = "fa" substr(mode, RSTART + 11, RLENGTH - 12) "_" name
        if (has(m)) return m
    }
    return name
}

# target(NAME, TEXT, VALUE, LIMIT, LE): one line of the targets table.
function target(name, text, value, limit, le,    ok) {
    if (value < 0) { printf "  %-44s %8s   (missing figures)\n", text, "-"; missing++; return }
    ok = le ? value <= limit : value >= limit
    printf "  %-44s %8.3f   %s %-5s %s\n", text, value, le ? "<=" : ">=", limit, ok ? "met" : "MISSED"
    r[name] = value; rorder[++rn] = name
    if (ok) met++; else missed++
}

# other(NAME, TEXT, VALUE): a ratio reported without a target.
function other(name, text, value) {
    if (value < 0) return
    printf "  %-44s %8.3f\n", text, value
    r[name] = value; rorder[++rn] = name
}

END {
    printf "\nFigures (medians; ns per page of first touch, GB/s of reads):\n"
    for (i = 1; i <= n; i++) printf "  %-44s %12.3f\n", order[i], v[order[i]]

    best = "fault_ns_per_page"
    split("faultaround16_ns_per_page faultaround512_ns_per_page populate_ns_per_page populate_faultaround16_ns_per_page populate_faultaround512_ns_per_page", modes, " ")
    for (i in modes) if (has(modes[i]) && v[modes[i]] < v[best]) best = modes[i]

    printf "\nTargets (ratios of figures from this boot; mode %s):\n", mode
    target("fault_vs_anon_read", "1. fault / anon_read_fault", ratio("fault_ns_per_page", "anon_read_fault_ns_per_page"), 1.1, 1)
    target("faultaround16_vs_anon_read", "2. faultaround16 / anon_read_fault", ratio("faultaround16_ns_per_page", beside("faultaround16_ns_per_page", "anon_read_fault_ns_per_page")), 0.25, 1)
    target("fault_vs_cref_fault", "3. fault / cref_fault (Rust vs C)", ratio("fault_ns_per_page", "cref_fault_ns_per_page"), 1.01, 1)
    target("best_vs_cref_eager", "4. best mode (" best ") / cref_eager", ratio(best, beside(best, "cref_eager_ns_per_page")), 1.0, 1)
    target("read_vs_anon_read", "5. read / anon_read", ratio("read_gbps", "anon_read_gbps"), 0.95, 0)
    target("syscall_read_vs_tmpfs_read", "5. syscall_read / tmpfs_read", ratio("syscall_read_gbps", "tmpfs_read_gbps"), 0.9, 0)
    target("vma_lock_retry_per_fault", "6. vma_lock_retry per fault", has("vma_lock_retry_per_fault") ? v["vma_lock_retry_per_fault"] : -1, 0, 1)
    target("fault_big_vs_256", "6. fault at " big " / at 256 pages", ratio("fault_ns_per_page_" big, "fault_ns_per_page_256"), 1.2, 1)
    target("fault_vs_tmpfs_fault", "7. fault / tmpfs_fault (fault_around_bytes=4096)", ratio("fault_ns_per_page", "tmpfs_fault_ns_per_page"), 1.0, 1)
    target("faultaround16_vs_tmpfs_faultaround16", "7. faultaround16 / tmpfs_faultaround16 (64 KiB)", ratio("faultaround16_ns_per_page", beside("faultaround16_ns_per_page", "tmpfs_faultaround16_ns_per_page")), 1.0, 1)
    target("faultaround512_vs_cref_eager", "7. faultaround512 / cref_eager", ratio("faultaround512_ns_per_page", beside("faultaround512_ns_per_page", "cref_eager_ns_per_page")), 1.05, 1)
    printf "\n%d of %d targets met%s\n", met, met + missed + missing, missing ? ", " missing " without figures" : ""

    printf "\nAgainst the kernel's own file fault (a tmpfs file in the page cache; not targets):\n"
    other("cref_fault_vs_tmpfs_fault", "cref_fault / tmpfs_fault", ratio("cref_fault_ns_per_page", "tmpfs_fault_ns_per_page"))
    other("tmpfs_fault_vs_anon_read", "tmpfs_fault / anon_read_fault", ratio("tmpfs_fault_ns_per_page", "anon_read_fault_ns_per_page"))

    if (has("flag_fa1_ns_per_page")) {
        printf "\nThe C opt-in (VM_OPS_FAULT_VMA_LOCK, patches/) against the no-op map_pages it replaces:\n"
        other("flag_vs_map_pages_fa1", "flag / map_pages, one page per fault", ratio("flag_fa1_ns_per_page", "mappages_fa1_ns_per_page"))
        other("flag_vs_map_pages_fa16", "flag / map_pages, fault_around=16", ratio("flag_fa16_ns_per_page", "mappages_fa16_ns_per_page"))
    }

    printf "{\n"
    printf "  \"kernel\": \"%s\",\n  \"mode\": \"%s\",\n  \"date\": \"%s\",\n", kernel, mode, date
    printf "  \"qemu\": \"%s\",\n  \"host_cpu\": \"%s\",\n  \"best_mode\": \"%s\",\n", qemu, cpu, best
    for (i = 1; i <= n; i++) printf "  \"%s\": %s,\n", order[i], v[order[i]]
    for (i = 1; i <= rn; i++) printf "  \"ratio_%s\": %.4f,\n", rorder[i], r[rorder[i]]
    printf "  \"targets_met\": %d,\n  \"targets\": %d\n}\n", met, met + missed + missing
}
