# mapdrv: a Rust kernel module that maps a vmalloc'ed buffer into userspace,
# one page per fault. See README.md.
#
#   make run               build what is missing, boot a QEMU guest, walk
#                          through the lesson (insmod, mknod, maptest, rmmod)
#   make test              build the debug kernel if missing, run every test
#                          in the guest; ends with `N passed, M failed`
#   make bench             the benchmark: mapdrv's fault path against the
#                          kernel's own and a C twin, on the plain guest;
#                          writes bench/results/ (see BENCHMARKS.md);
#                          ICOUNT=1 for repeatable instruction-counted
#                          figures, SMOKE=1 for a seconds-long check
#   make lint              CLIPPY=1 and rustfmt for the module, examples and
#                          patches/ of the abstractions, cargo fmt/clippy for
#                          maptest/, shellcheck (CI runs it before make test)
#   make patches           regenerate patches/ (the abstractions for the
#                          kernel tree) from rust/
#   make docs              redraw docs/*.svg from docs/diagrams/*.dot, record
#                          the lesson (make run, x86_64 and arm64) into
#                          docs/transcripts/, and fill the docs' code
#                          excerpts and transcripts from the source and
#                          those recordings
#   make                   build mapdrv.ko (into build/module/) against the
#                          plain guest kernel
#   make KDIR=/path        build mapdrv.ko against your own Rust-enabled
#                          kernel tree (like `make -C $KDIR M=$PWD`)
#   make rust-analyzer     rust-project.json for an editor (KDIR= as above)
#   make install           build and install mapdrv.ko for the running kernel,
#                          or for KDIR; INSTALL_MOD_PATH=DIR to stage it
#                          (dkms.conf does the same through DKMS)
#   make KDIR=/path run    boot your kernel instead of building one
#   make KERNEL=debian     build mapdrv.ko for Debian's own 7.3.4 kernel
#                          (linux-image-7.3.4+deb13-amd64), whose headers
#                          package lacks the Rust build metadata: rebuilt
#                          once, into the cache (scripts/debian-kernel);
#                          on a Debian machine running that kernel,
#                          make KDIR=/usr/src/linux-headers-$(uname -r)
#                          does the same with the installed headers
#   make run KERNEL=debian, make test KERNEL=debian
#                          the lesson and the suite in Debian's own kernel,
#                          its vmlinuz booted in the guest
#
# LLVM selects the kernel's LLVM toolchain: -19 (clang-19, the default) or 1.
# ARCH selects the guest's architecture: the host's by default, or arm64
# (also aarch64), cross-built with LLVM and booted on QEMU's virt machine:
#   make run ARCH=arm64, make test ARCH=arm64, make ARCH=arm64 KDIR=...

KDIR ?=
LLVM ?= -19
ifeq ($(ARCH),aarch64)
override ARCH := arm64
# What sub-makes and the scripts' makes inherit too.
MAKEOVERRIDES := $(patsubst ARCH=aarch64,ARCH=arm64,$(MAKEOVERRIDES))
endif
export KDIR LLVM
# Only an ARCH that is set: an empty one would reach the kernel's make as the
# empty architecture (its `ARCH ?= $(SUBARCH)` keeps a defined variable).
ifneq ($(ARCH),)
export ARCH
endif
HOST_ARCH := $(patsubst aarch64,arm64,$(shell uname -m))

# `make install` is for the running kernel unless KDIR (or KERNEL) names another.
ifeq ($(KDIR)$(KERNEL),)
ifneq ($(filter install,$(MAKECMDGOALS)),)
KDIR := /lib/modules/$(shell uname -r)/build
endif
endif

# A KDIR that cannot build a Rust module (no CONFIG_RUST, no Rust build
# metadata, another rustc) is refused here, in one line, before any build.
ifneq ($(KDIR),)
ifneq ($(filter-out clean help,$(or $(MAKECMDGOALS),all)),)
KDIR_PROBLEM := $(shell scripts/check-kdir '$(KDIR)' '$(or $(RUSTC),rustc)')
ifeq ($(KDIR_PROBLEM),debian-headers)
# The headers of Debian's own 7.3.4 kernel: scripts/debian-kernel rebuilds the
# Rust build metadata they lack, once, and builds the module with it.
DEBIAN_HEADERS := $(KDIR)
else ifneq ($(KDIR_PROBLEM),)
$(error $(KDIR_PROBLEM))
endif
endif
endif

.PHONY: all modules rust-analyzer install run test bench lint docs patches deps kernel kernel-debug maptest clean help

all: modules

# The module is built out of the source tree (the kernel's MO=), into
# build/module: the tree stays clean, so `make run` and `make test` (which
# build into build/module-FLAVOUR) work after it.
# (build/module-arm64 for an arm64 module built on another host).
# (build/module-debian for KERNEL=debian).
MO ?= $(CURDIR)/build/module$(if $(filter-out $(HOST_ARCH) x86 x86_64,$(or $(ARCH),$(HOST_ARCH))),-$(ARCH))$(if $(filter debian,$(KERNEL)),-debian)
ifneq ($(and $(filter debian,$(KERNEL)),$(KDIR)),)
$(error KERNEL=debian and KDIR=$(KDIR): give one; KDIR= of Debian's headers takes the same route)
endif
ifneq ($(filter-out debian,$(KERNEL)),)
$(error KERNEL=$(KERNEL): the one kernel mapdrv builds for but does not build itself is KERNEL=debian, Debian's own 7.3.4)
endif
export KERNEL
# The Debian route: scripts/debian-kernel, with the headers of KDIR= if given.
DEBIAN_KERNEL := $(if $(or $(DEBIAN_HEADERS),$(filter debian,$(KERNEL))),scripts/debian-kernel$(if $(DEBIAN_HEADERS), --headers '$(DEBIAN_HEADERS)'))

modules:
ifneq ($(DEBIAN_KERNEL),)
	+@$(DEBIAN_KERNEL) --module '$(MO)'
else ifeq ($(KDIR),)
	@kdir="$$(scripts/build-kernel plain)" && $(MAKE) --no-print-directory modules KDIR="$$kdir"
else
	@mkdir -p $(MO)
	$(MAKE) -C $(KDIR) M=$(CURDIR) MO=$(MO) LLVM=$(LLVM) modules
	@echo "mapdrv.ko: $(MO)/mapdrv.ko"
endif

# rust-project.json for rust-analyzer, against the kernel the module is built
# with, so that an editor resolves `kernel::` items.
rust-analyzer:
ifneq ($(DEBIAN_KERNEL),)
	+@$(DEBIAN_KERNEL) --make M=$(CURDIR) rust-analyzer
	@test -f rust-project.json || mv "$$($(DEBIAN_KERNEL))/rust-project.json" rust-project.json
	@echo "rust-project.json: $(CURDIR)/rust-project.json"
else ifeq ($(KDIR),)
	@kdir="$$(scripts/build-kernel plain)" && $(MAKE) --no-print-directory rust-analyzer KDIR="$$kdir"
else
	$(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=$(LLVM) rust-analyzer
	@test -f rust-project.json || mv "$(KDIR)/rust-project.json" rust-project.json
	@echo "rust-project.json: $(CURDIR)/rust-project.json"
endif

# `make install`: the module into the target kernel's module directory
# (/lib/modules/RELEASE/updates/, then depmod), by the kernel's
# modules_install; INSTALL_MOD_PATH=DIR installs under DIR instead. The target
# is the running kernel unless KDIR names another. For Debian's kernel, the
# module built before is installed as the kernel's modules_install would,
# left unsigned (only Debian has the key its modules are signed with; sign it
# with your own for Secure Boot, as DKMS does) and compressed as Debian's are
# (.ko.xz).
ifneq ($(DEBIAN_KERNEL),)
# The module built before (by the user, not by `sudo make install`, whose
# cache would be root's).
install:
	@$(DEBIAN_KERNEL) --install '$(MO)'
else
install: modules
	$(MAKE) -C $(KDIR) M=$(CURDIR) MO=$(MO) LLVM=$(LLVM) INSTALL_MOD_DIR=updates modules_install
endif

run:
	@scripts/run

test:
	@scripts/test

bench:
	@scripts/bench $(if $(filter 1,$(ICOUNT)),--icount) $(if $(filter 1,$(SMOKE)),--smoke)

lint:
	@scripts/lint

# The diagrams of docs/, from their Graphviz sources in docs/diagrams/; the
# lesson's transcript, recorded from make run; the docs' code excerpts and
# transcripts, filled from the source and from that recording (scripts/docs).
docs:
	@scripts/docs

patches:
	@scripts/gen-patches

deps:
	@scripts/deps

kernel:
	@scripts/build-kernel plain

kernel-debug:
	@scripts/build-kernel debug

maptest:
	@bash -c 'source scripts/lib.sh && maptest_build && echo "maptest/target/$$MAPDRV_RUST_TARGET/release/"'

clean:
	rm -rf build rust-project.json
	rm -f *.o *.ko *.mod *.mod.c .*.cmd Module.symvers modules.order .module-common.o
	cd maptest && cargo clean

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'
