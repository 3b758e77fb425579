# shellcheck shell=bash
# Common settings for mapdrv's scripts. Sourced, never run.
#
# Everything big (kernel source, kernel builds, the initramfs, logs) lives in
# the cache directory, outside the repository, so that a fresh clone reuses it
# and `git status` stays clean.

set -euo pipefail

MAPDRV_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAPDRV_CACHE=${MAPDRV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mapdrv}
# The kernel series we build for the guest, and Debian's package that ships it.
MAPDRV_KSERIES=${MAPDRV_KSERIES:-7.3}
MAPDRV_KPKG=linux-source-$MAPDRV_KSERIES
# The Debian suite that carries that package.
MAPDRV_KSUITE=${MAPDRV_KSUITE:-trixie-backports}
# LLVM toolchain suffix for the kernel's `make LLVM=...`.
LLVM=${LLVM:--19}
BINDGEN_VERSION=0.73.2

export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
jobs_n() { nproc 2>/dev/null || echo 2; }

# apt_private: sets apt_dir and apt_opts, a private apt configuration in the
# cache for $MAPDRV_KSUITE, on the Debian mirror this machine already uses
# (its sources list is only read). apt_private_update fetches its lists.
apt_private() {
    apt_dir=$MAPDRV_CACHE/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/debs"
    local mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    # deb822 or one-line format
    mirror=$(
        { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}'
          cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
              | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }'
        } | grep -v -e security -e '^$' | head -n 1 || true
    )
    [[ -n $mirror ]] || die "no Debian mirror found in the apt configuration; set MAPDRV_KERNEL_TARBALL instead"
    echo "deb [signed-by=$keyring] $mirror $MAPDRV_KSUITE main" > "$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=-"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
              -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root"
              -o "Debug::NoLocking=1")
}
apt_private_update() {
    apt-get "${apt_opts[@]}" -q update >&2 || die "apt-get update of $MAPDRV_KSUITE failed"
}

# known_early_death LOG: the console LOG shows the debug kernel's known death
# during boot (docs/building.md): KASAN's bounds follow pgtable_l5_enabled(),
# which reads 4-level paging while identify_boot_cpu() re-reads the CPU's
# features, and an interrupt then touches the 5-level direct map.
known_early_death() {
    grep -q 'KASAN: wild-memory-access' "$1" && grep -q 'arch_cpu_finalize_init' "$1"
}
