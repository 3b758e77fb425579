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
