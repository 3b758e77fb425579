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

# The guest's architecture: ARCH (the kernel's name or the machine's: x86,
# x86_64, arm64, aarch64), by default the host's. MAPDRV_ARCH is x86_64 or
# arm64; ARCH is set to the kernel's name for it (x86, as when ARCH is unset,
# and whose tinyconfig is the one the guest kernel has always been built
# from; arm64), which the kernel's make and the module's build take from the
# environment. The rest follows from it:
#   MAPDRV_RUST_TARGET  the userspace programs' target (static, musl)
#   MAPDRV_KIMAGE       the kernel image, relative to a kernel build directory
#   MAPDRV_QEMU         the QEMU system emulator
case ${ARCH:-$(uname -m)} in
    x86|x86_64|amd64) MAPDRV_ARCH=x86_64; ARCH=x86
        MAPDRV_RUST_TARGET=x86_64-unknown-linux-musl
        MAPDRV_KIMAGE=arch/x86/boot/bzImage
        MAPDRV_QEMU=qemu-system-x86_64 ;;
    arm64|aarch64) MAPDRV_ARCH=arm64; ARCH=arm64
        MAPDRV_RUST_TARGET=aarch64-unknown-linux-musl
        MAPDRV_KIMAGE=arch/arm64/boot/Image
        MAPDRV_QEMU=qemu-system-aarch64 ;;
    *) printf 'error: ARCH=%s: mapdrv builds for x86_64 and arm64\n' "${ARCH:-$(uname -m)}" >&2; exit 1 ;;
esac
export ARCH MAPDRV_ARCH MAPDRV_RUST_TARGET MAPDRV_KIMAGE MAPDRV_QEMU
# The host's own architecture, for what runs on the host (cargo test).
MAPDRV_HOST_ARCH=$(case $(uname -m) in aarch64) echo arm64 ;; *) uname -m ;; esac)
# KERNEL=debian: the guest boots Debian's own kernel (scripts/debian-kernel),
# not one built here.
MAPDRV_KERNEL=${KERNEL:-}
case $MAPDRV_KERNEL in
    ""|debian) ;;
    *) printf 'error: KERNEL=%s: the one kernel mapdrv builds for but does not build itself is KERNEL=debian\n' "$MAPDRV_KERNEL" >&2; exit 1 ;;
esac
# The build directory of everything guest-specific: build/guest for the host's
# architecture (as before arm64 came), build/guest-arm64 for arm64 on x86_64,
# build/guest-debian for Debian's kernel.
mapdrv_build_suffix() {
    [[ $MAPDRV_ARCH == "$MAPDRV_HOST_ARCH" ]] || echo -n "-$MAPDRV_ARCH"
    [[ $MAPDRV_KERNEL != debian ]] || echo -n "-debian"
}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
jobs_n() { nproc 2>/dev/null || echo 2; }

# apt_private [SUITE [ARCH]]: sets apt_dir and apt_opts, a private apt
# configuration in the cache for SUITE (default $MAPDRV_KSUITE) and the
# packages of ARCH (default: the system's), on the Debian mirror this machine
# already uses (its sources list is only read). apt_private_update fetches
# its lists.
apt_private() {
    local suite=${1:-$MAPDRV_KSUITE} arch=${2:-}
    apt_dir=$MAPDRV_CACHE/apt${arch:+-$arch}
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
    echo "deb [signed-by=$keyring${arch:+ arch=$arch}] $mirror $suite main" > "$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=-"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
              -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root"
              -o "Debug::NoLocking=1")
    [[ -z $arch ]] || apt_opts+=(-o "APT::Architecture=$arch" -o "APT::Architectures=$arch")
}
apt_private_update() {
    apt-get "${apt_opts[@]}" -q update >&2 || die "apt-get update of $(cut -d' ' -f4 "$apt_dir/sources.list") failed"
}

# series_patches DIR: the patches of the series in DIR (patches/ or
# patches/x86/), in order, one per line, without the cover letter (no diff).
series_patches() {
    local p
    for p in "$1"/*.patch; do
        [[ -f $p && $p != */0000-cover-letter.patch ]] && echo "$p"
    done
    return 0
}

# patched_files PATCH...: the files the patches change, once each, sorted.
patched_files() { sed -n 's/^+++ b\/\([^\t]*\).*/\1/p' "$@" | sort -u; }

# sgit ARGS...: git for the scratch repositories of patches/ (gen-patches,
# check-patches): none of the user's configuration (a format.thread
# Message-ID, a signing key, hooks, diff options would change or break the
# series), nor a GIT_DIR of the project's own repository.
sgit() {
    env -u GIT_DIR -u GIT_WORK_TREE -u GIT_INDEX_FILE -u GIT_OBJECT_DIRECTORY \
        GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 git "$@"
}

# known_early_death LOG: the console LOG shows the debug kernel's known death
# during boot (docs/building.md): KASAN's bounds follow pgtable_l5_enabled(),
# which reads 4-level paging while identify_boot_cpu() re-reads the CPU's
# features, and an interrupt then touches the 5-level direct map.
known_early_death() {
    grep -q 'KASAN: wild-memory-access' "$1" && grep -q 'arch_cpu_finalize_init' "$1"
}

# maptest_build: builds the userspace programs for the guest,
# static (musl). rust-lld links them for any target: no cross C toolchain.
maptest_build() {
    local linker_var
    linker_var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<< "$MAPDRV_RUST_TARGET")_LINKER
    (cd "$MAPDRV_ROOT/maptest" && env "$linker_var=rust-lld" \
        cargo build --quiet --release --locked --target "$MAPDRV_RUST_TARGET")
}

# transcript_hash: what a recorded lesson (docs/transcripts/) depends on: the
# lesson's script and the sources of what prints it, the module (its log and
# debugfs files) and maptest with its library (not mapcheck, mapstress,
# mapbench: the lesson does not run them).
transcript_hash() {
    (cd "$MAPDRV_ROOT" && { cat qemu/lesson.sh mapdrv.rs
        find rust maptest/src -name '*.rs' -not -path 'maptest/src/bin/map[csb]*' -print0 \
            | LC_ALL=C sort -z | xargs -0 cat; } | sha256sum | cut -c1-16)
}

# has_fault_vma_lock KDIR: whether the kernel built in KDIR has
# VM_OPS_FAULT_VMA_LOCK (patch 1 of patches/), in its generated bindings,
# where Kbuild looks for it too: the module then uses it rather than its
# no-op map_pages.
has_fault_vma_lock() {
    grep -qw VM_OPS_FAULT_VMA_LOCK "$1/rust/bindings/bindings_generated.rs" 2>/dev/null
}

# The diffs in upstream/ that document items the series adds to the kernel's
# own files (MiscDevice::mmap_prepare): their examples run as in-tree
# doctests (scripts/build-kernel builds those files' examples), and their
# misuses are built by scripts/compile-fail, as those of rust/.
MAPDRV_DOC_DIFFS=(upstream/rust-miscdevice-mmap-prepare.diff)

# added_lines DIFF...: the lines the diffs add, without their +++ headers.
added_lines() { sed -n '/^+++ /d; s/^+//p' "$@"; }

# doctest_count: how many documentation examples of the abstractions run as
# the debug kernel's in-tree doctests (every fenced block but the `ignore`
# ones, in rust/chrdev.rs, rust/vm_ops.rs and rust/vma_desc.rs, and those
# MAPDRV_DOC_DIFFS add): make test expects that many, make lint the docs to
# say so.
doctest_count() {
    { cat "$MAPDRV_ROOT"/rust/chrdev.rs "$MAPDRV_ROOT"/rust/vm_ops.rs "$MAPDRV_ROOT"/rust/vma_desc.rs
      added_lines "${MAPDRV_DOC_DIFFS[@]/#/$MAPDRV_ROOT/}"; } \
        | awk '/^[ \t]*\/\/[\/!] ```$/ { plain++ } /^[ \t]*\/\/[\/!] ```ignore/ { ignored++ }
               END { print (plain - ignored) / 2 }'
}

# The abstractions whose documentation holds misuses that must not compile
# (```ignore,compile_fail blocks): scripts/compile-fail builds them, make lint
# counts them.
# (And those MAPDRV_DOC_DIFFS add.)
MAPDRV_MISUSE_FILES=(rust/chrdev.rs rust/vm_ops.rs rust/vmalloc_buffer.rs)
