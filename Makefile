# mapdrv: a Rust kernel module that maps a vmalloc'ed buffer into userspace,
# one page per fault. See README.md.
#
#   make run               build what is missing, boot a QEMU guest, walk
#                          through the lesson (insmod, mknod, maptest, rmmod)
#   make test              build the debug kernel if missing, run every test
#                          in the guest; ends with `N passed, M failed`
#   make lint              CLIPPY=1 and rustfmt for the module, examples and
#                          patches/ of the abstractions, cargo fmt/clippy for
#                          maptest/, shellcheck (CI runs it before make test)
#   make patches           regenerate patches/ (the abstractions for the
#                          kernel tree) from rust/
#   make KDIR=/path        build mapdrv.ko against your own Rust-enabled
#                          kernel tree (like `make -C $KDIR M=$PWD`)
#   make KDIR=/path run    boot your kernel instead of building one
#
# LLVM selects the kernel's LLVM toolchain: -19 (clang-19, the default) or 1.

KDIR ?=
LLVM ?= -19
export KDIR LLVM

.PHONY: all modules run test lint patches deps kernel kernel-debug maptest clean help

all: modules

modules:
ifeq ($(KDIR),)
	@$(MAKE) --no-print-directory modules KDIR="$$(scripts/build-kernel plain)"
else
	$(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=$(LLVM) modules
endif

run:
	@scripts/run

test:
	@scripts/test

lint:
	@scripts/lint

patches:
	@scripts/gen-patches

deps:
	@scripts/deps

kernel:
	@scripts/build-kernel plain

kernel-debug:
	@scripts/build-kernel debug

maptest:
	cd maptest && cargo build --release --locked --target x86_64-unknown-linux-musl

clean:
	rm -rf build
	rm -f *.o *.ko *.mod *.mod.c .*.cmd Module.symvers modules.order .module-common.o
	cd maptest && cargo clean

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'
