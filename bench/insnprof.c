// SPDX-License-Identifier: GPL-2.0
/*
 * insnprof: a QEMU TCG plugin that counts the guest's executed instructions
 * by the address of the translation block they ran in, for
 * scripts/fault-profile. Built by that script with the host's gcc into
 * build/ (never loaded by make bench, make run or make test).
 *
 *   qemu-system-x86_64 ... -smp 1 \
 *       -plugin build/fault-profile/insnprof.so,out=PREFIX,snap=ADDR,enter=ADDR,leave=ADDR
 *
 *   out=PREFIX  where the counts go: PREFIX.0, PREFIX.1, ... at each
 *               snapshot, PREFIX.exit when QEMU exits
 *   snap=ADDR   a snapshot of all counts (since boot) is written each time
 *               the guest runs the block at ADDR (a kernel function that the
 *               guest calls on purpose between measurements, such as
 *               ksys_sync: `sync`)
 *   enter=ADDR  the block at ADDR (the page fault's entry, asm_exc_page_fault),
 *               run right after user code (a fault of user space, not one
 *               of the kernel's own accesses to user memory), starts
 *               context 1, which lasts until the guest next runs user code
 *               or the block at the leave address; everything else is
 *               context 0. So what a fault runs, its exit to user space and
 *               any interrupt taken during it included, is told apart from
 *               what the same functions run in system calls (munmap, exit)
 *   leave=ADDR  the block at ADDR ends context 1: the task switch
 *               (__switch_to_asm), so that what other tasks run when the
 *               fault's exit to user space gives up the CPU is not counted
 *               as the fault's (nor the rest of that exit, later)
 *
 * Each file has one line per block start address and context:
 * `CTX ADDR COUNT RUNS`, ADDR in hex, COUNT the instructions run in blocks
 * that start there, RUNS how many times such a block ran (for the first
 * block of a function: its calls). User-space blocks are all counted at
 * address 0. A block counts all its instructions when it starts (an
 * exception in its middle counts the rest too; blocks rarely end that way
 * in the kernel). A string instruction with a rep prefix counts once per
 * iteration, as QEMU's -icount counts it.
 *
 * QEMU's plugin header is not installed with Debian's QEMU, so the few
 * declarations used are written out below, as QEMU 7.2 (API version 1)
 * has them. The counters are not atomic: run the guest with one vCPU.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* From QEMU 7.2's include/qemu/qemu-plugin.h. */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* only passed on */
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags {
	QEMU_PLUGIN_CB_NO_REGS,
	QEMU_PLUGIN_CB_R_REGS,
	QEMU_PLUGIN_CB_RW_REGS,
};
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id,
					       struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index,
					    void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
					   qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
					  qemu_plugin_vcpu_udata_cb_t cb,
					  enum qemu_plugin_cb_flags flags,
					  void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
				    qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_outs(const char *string);

/* API version 1, QEMU 7.2's (Debian 12); a QEMU that no longer takes it refuses to load this. */
__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* The lowest kernel address of x86-64 (scripts/fault-profile refuses other architectures). */
#define KERNEL_START 0xffff800000000000ULL

/* One block start address: its instructions and its runs, by context. */
struct site {
	uint64_t vaddr;
	uint64_t count[2];
	uint64_t runs[2];
};

/* One translation of a block: QEMU may translate a block again (after a
 * flush, or with other flags), with the same start and maybe another
 * length. Never freed: QEMU keeps the pointer for the translation's life. */
enum kind { KERNEL, USER, ENTER, SNAP, LEAVE };
struct trans {
	struct site *site;
	uint32_t n;
	enum kind kind;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct site **table; /* open addressing on vaddr; sites never move */
static size_t table_size, table_used;
static struct site user_site; /* every user-space block */
static const char *out = "insnprof";
static uint64_t snap_addr, enter_addr, leave_addr;
static unsigned int snaps;
static int ctx; /* one vCPU */
static bool after_user; /* the last block run was user code */

static size_t hash(uint64_t v)
{
	v ^= v >> 33;
	v *= 0xff51afd7ed558ccdULL;
	v ^= v >> 33;
	return (size_t)v;
}

static void grow(void)
{
	size_t size = table_size ? table_size * 2 : 1 << 16;
	struct site **t = calloc(size, sizeof(*t));

	if (!t)
		abort();
	for (size_t i = 0; i < table_size; i++) {
		if (!table[i])
			continue;
		size_t j = hash(table[i]->vaddr) & (size - 1);

		while (t[j])
			j = (j + 1) & (size - 1);
		t[j] = table[i];
	}
	free(table);
	table = t;
	table_size = size;
}

/* The site of vaddr, made if new. Called with lock held. */
static struct site *site_of(uint64_t vaddr)
{
	if (2 * (table_used + 1) > table_size)
		grow();
	size_t j = hash(vaddr) & (table_size - 1);

	while (table[j]) {
		if (table[j]->vaddr == vaddr)
			return table[j];
		j = (j + 1) & (table_size - 1);
	}
	table[j] = calloc(1, sizeof(struct site));
	if (!table[j])
		abort();
	table[j]->vaddr = vaddr;
	table_used++;
	return table[j];
}

static void dump(const char *name)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s.%s", out, name);
	f = fopen(path, "w");
	if (!f) {
		qemu_plugin_outs("insnprof: cannot write ");
		qemu_plugin_outs(path);
		qemu_plugin_outs("\n");
		return;
	}
	pthread_mutex_lock(&lock);
	for (int c = 0; c < 2; c++)
		if (user_site.count[c])
			fprintf(f, "%d 0 %" PRIu64 " %" PRIu64 "\n", c,
				user_site.count[c], user_site.runs[c]);
	for (size_t i = 0; i < table_size; i++) {
		struct site *s = table[i];

		if (!s)
			continue;
		for (int c = 0; c < 2; c++)
			if (s->count[c])
				fprintf(f, "%d %" PRIx64 " %" PRIu64 " %" PRIu64 "\n",
					c, s->vaddr, s->count[c], s->runs[c]);
	}
	pthread_mutex_unlock(&lock);
	fclose(f);
}

static void exec(unsigned int vcpu, void *udata)
{
	struct trans *t = udata;

	(void)vcpu;
	switch (t->kind) {
	case KERNEL:
		break;
	case USER:
		ctx = 0;
		break;
	case ENTER:
		if (after_user)
			ctx = 1;
		break;
	case SNAP: {
		char name[16];

		snprintf(name, sizeof(name), "%u", snaps++);
		dump(name);
		break;
	}
	case LEAVE:
		ctx = 0;
		break;
	}
	t->site->count[ctx] += t->n;
	t->site->runs[ctx]++;
	after_user = t->kind == USER;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
	struct trans *t = calloc(1, sizeof(*t));

	(void)id;
	if (!t)
		abort();
	t->n = qemu_plugin_tb_n_insns(tb);
	if (vaddr < KERNEL_START) {
		t->kind = USER;
		t->site = &user_site;
	} else {
		t->kind = vaddr == enter_addr ? ENTER :
			  vaddr == snap_addr  ? SNAP :
			  vaddr == leave_addr ? LEAVE : KERNEL;
		pthread_mutex_lock(&lock);
		t->site = site_of(vaddr);
		pthread_mutex_unlock(&lock);
	}
	qemu_plugin_register_vcpu_tb_exec_cb(tb, exec, QEMU_PLUGIN_CB_NO_REGS, t);
}

static void at_exit(qemu_plugin_id_t id, void *udata)
{
	(void)id;
	(void)udata;
	dump("exit");
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
		    char **argv)
{
	(void)info;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];

		if (!strncmp(a, "out=", 4)) {
			out = a + 4;
		} else if (!strncmp(a, "snap=", 5)) {
			snap_addr = strtoull(a + 5, NULL, 16);
		} else if (!strncmp(a, "enter=", 6)) {
			enter_addr = strtoull(a + 6, NULL, 16);
		} else if (!strncmp(a, "leave=", 6)) {
			leave_addr = strtoull(a + 6, NULL, 16);
		} else {
			fprintf(stderr, "insnprof: unknown argument %s\n", a);
			return -1;
		}
	}
	pthread_mutex_lock(&lock);
	grow();
	pthread_mutex_unlock(&lock);
	qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
