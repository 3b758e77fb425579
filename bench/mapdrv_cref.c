// SPDX-License-Identifier: GPL-2.0
/*
 * mapdrv_cref: mapdrv's design in C, for the benchmark only (make bench).
 *
 * The same vmalloc'ed buffer with the same contents, mapped two ways:
 *
 *   /dev/mapdrv_cref_fault  page by page, by a fault handler with mapdrv's
 *                           logic: vmalloc_to_page() for the faulting page,
 *                           vm_insert_page(), two per-CPU counters, and the
 *                           fault under the per-VMA lock as mapdrv has it:
 *                           VM_OPS_FAULT_VMA_LOCK where the kernel has it
 *                           (patches/), a map_pages that maps nothing where
 *                           it does not (see rust/vm_ops.rs). Rust against
 *                           C, same work.
 *   /dev/mapdrv_cref_eager  everything at mmap() time, the kernel's way for a
 *                           buffer that is always mapped whole: mmap_prepare
 *                           asks for mmap_action_map_kernel_pages(), which
 *                           inserts the pages in batches once the VMA exists.
 *
 * It is built by make bench only and never loaded by make run or make test.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

static unsigned int pages = 16;
module_param(pages, uint, 0444);
MODULE_PARM_DESC(pages, "Size of the buffer in 4 KiB pages (1..=262144)");

#define CREF_PAGES_MAX 262144
#define CREF_PATTERN_PERIOD 251

static u8 *buffer;
/* The buffer's pages, for the eager mapping (found once, at load). */
static struct page **buffer_pages;

static DEFINE_PER_CPU(u64, cref_faults);
static DEFINE_PER_CPU(u64, cref_pages_mapped);

static void cref_fill(void)
{
	size_t len = (size_t)pages << PAGE_SHIFT, off;
	unsigned int i;

	for (off = 0; off < len; off++)
		buffer[off] = off % CREF_PATTERN_PERIOD;
	for (i = 0; i < pages; i++) {
		char header[48];
		int n = scnprintf(header, sizeof(header), "mapdrv page %u of %u\n", i, pages);

		memcpy(buffer + ((size_t)i << PAGE_SHIFT), header, n);
	}
}

static vm_fault_t cref_fault(struct vm_fault *vmf)
{
	struct page *page;
	int err;

	if (vmf->pgoff >= pages)
		return VM_FAULT_SIGBUS;
	page = vmalloc_to_page(buffer + (vmf->pgoff << PAGE_SHIFT));
	err = vm_insert_page(vmf->vma, vmf->address, page);
	if (err == -EBUSY)
		return VM_FAULT_NOPAGE;
	if (err == -ENOMEM)
		return VM_FAULT_OOM;
	if (err)
		return VM_FAULT_SIGBUS;
	this_cpu_inc(cref_faults);
	this_cpu_inc(cref_pages_mapped);
	return VM_FAULT_NOPAGE;
}

#ifndef VM_OPS_FAULT_VMA_LOCK
static vm_fault_t cref_map_pages(struct vm_fault *vmf, pgoff_t start, pgoff_t end)
{
	return 0;
}
#endif

static const struct vm_operations_struct cref_vm_ops = {
	.fault = cref_fault,
#ifdef VM_OPS_FAULT_VMA_LOCK
	.vm_ops_flags = VM_OPS_FAULT_VMA_LOCK,
#else
	.map_pages = cref_map_pages,
#endif
};

/* mapdrv's checks: no PROT_EXEC, ever; the window inside the buffer; no growth. */
static int cref_check(struct vm_area_desc *desc)
{
	if (vma_desc_test(desc, VMA_EXEC_BIT))
		return -EPERM;
	if (desc->pgoff >= pages || vma_desc_pages(desc) > pages - desc->pgoff)
		return -EINVAL;
	vma_desc_clear_flags(desc, VMA_MAYEXEC_BIT);
	vma_desc_set_flags(desc, VMA_DONTEXPAND_BIT, VMA_MIXEDMAP_BIT);
	return 0;
}

static int cref_fault_mmap_prepare(struct vm_area_desc *desc)
{
	int err = cref_check(desc);

	if (err)
		return err;
	desc->vm_ops = &cref_vm_ops;
	return 0;
}

static int cref_eager_mmap_prepare(struct vm_area_desc *desc)
{
	int err = cref_check(desc);

	if (err)
		return err;
	mmap_action_map_kernel_pages_full(desc, buffer_pages + desc->pgoff);
	return 0;
}

/* As mapdrv: the file is as long as the buffer (mapbench checks its size). */
static loff_t cref_llseek(struct file *file, loff_t offset, int whence)
{
	return fixed_size_llseek(file, offset, whence, (loff_t)pages << PAGE_SHIFT);
}

static const struct file_operations cref_fault_fops = {
	.owner = THIS_MODULE,
	.llseek = cref_llseek,
	.mmap_prepare = cref_fault_mmap_prepare,
};

static const struct file_operations cref_eager_fops = {
	.owner = THIS_MODULE,
	.llseek = cref_llseek,
	.mmap_prepare = cref_eager_mmap_prepare,
};

static struct miscdevice cref_fault_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "mapdrv_cref_fault",
	.fops = &cref_fault_fops,
	.mode = 0600,
};

static struct miscdevice cref_eager_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "mapdrv_cref_eager",
	.fops = &cref_eager_fops,
	.mode = 0600,
};

static int __init cref_init(void)
{
	unsigned int i;
	int err;

	if (pages < 1 || pages > CREF_PAGES_MAX) {
		pr_err("pages=%u out of range 1..=%u\n", pages, CREF_PAGES_MAX);
		return -EINVAL;
	}
	buffer = vmalloc((size_t)pages << PAGE_SHIFT);
	buffer_pages = kvmalloc_array(pages, sizeof(*buffer_pages), GFP_KERNEL);
	if (!buffer || !buffer_pages) {
		err = -ENOMEM;
		goto free;
	}
	cref_fill();
	for (i = 0; i < pages; i++)
		buffer_pages[i] = vmalloc_to_page(buffer + ((size_t)i << PAGE_SHIFT));

	err = misc_register(&cref_fault_dev);
	if (err)
		goto free;
	err = misc_register(&cref_eager_dev);
	if (err)
		goto unregister;
	pr_info("%u pages of vmalloc memory: /dev/%s, /dev/%s\n", pages,
		cref_fault_dev.name, cref_eager_dev.name);
	return 0;

unregister:
	misc_deregister(&cref_fault_dev);
free:
	kvfree(buffer_pages);
	vfree(buffer);
	return err;
}

static void __exit cref_exit(void)
{
	u64 faults = 0, mapped = 0;
	int cpu;

	misc_deregister(&cref_eager_dev);
	misc_deregister(&cref_fault_dev);
	for_each_possible_cpu(cpu) {
		faults += per_cpu(cref_faults, cpu);
		mapped += per_cpu(cref_pages_mapped, cpu);
	}
	pr_info("unloaded after %llu faults, %llu pages mapped by faults\n", faults, mapped);
	kvfree(buffer_pages);
	vfree(buffer);
}

module_init(cref_init);
module_exit(cref_exit);
MODULE_DESCRIPTION("mapdrv's design in C, for the benchmark: fault-driven and eager mappings");
MODULE_AUTHOR("The mapdrv authors");
MODULE_LICENSE("GPL");
