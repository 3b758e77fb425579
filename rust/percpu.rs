// SPDX-License-Identifier: GPL-2.0

//! A counter in per-CPU memory: what C writes as `alloc_percpu(u64)` and `this_cpu_add()`.
//!
//! Each CPU adds to its own copy of the counter, so that CPUs faulting side by side never
//! write the same cache line; reading the counter sums the copies of every possible CPU. This
//! is the counter a hot path can afford: on x86-64 an add is one instruction on the CPU's own
//! copy, addressed through the `%gs` segment whose base is that CPU's per-CPU offset, as in
//! C's `this_cpu_add()`. A single instruction cannot be split by preemption or an interrupt,
//! so it needs no preemption turned off. Unlike C's, it carries a lock prefix (`lock addq`):
//! `sum` reads the copies from other CPUs, and in Rust's memory model a plain write racing with
//! another thread's read is a data race, undefined behaviour, whatever the kernel's memory
//! model says of it; as an atomic read-modify-write, like every other access to the copies,
//! it races with nothing. The prefix costs no instruction (the fault path's count stays that
//! of C's twin), only the cycles of a locked add on a line no other CPU writes. Elsewhere the
//! add finds the CPU's copy from its number (`raw_smp_processor_id()`) and adds atomically, so
//! that it stays correct if the task moves to another CPU meanwhile.
//!
//! # Examples
//!
//! ```
//! use crate::percpu::PerCpuCounter;
//!
//! let faults = PerCpuCounter::new()?;
//! faults.add(1);
//! faults.add(2);
//! assert_eq!(faults.sum(), 3);
//! # Ok::<(), Error>(())
//! ```

use core::ptr::NonNull;
use kernel::{
    bindings,
    cpu::{self, CpuId},
    cpumask::Cpumask,
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
};

/// A `u64` counter with one copy per CPU.
///
/// # Invariants
///
/// `ptr` is a per-CPU pointer (C's `u64 __percpu *`) to an allocation of one `u64` per
/// possible CPU, made by the per-CPU allocator, that lives until `self` is dropped. It is not
/// an address: CPU `c`'s copy is at `ptr + __per_cpu_offset[c]`. Every copy is written only
/// by atomic additions and read only by atomic loads.
pub struct PerCpuCounter {
    ptr: NonNull<u64>,
}

// SAFETY: The counter is per-CPU memory that any CPU may add to or sum; nothing in it belongs
// to the thread that made it.
unsafe impl Send for PerCpuCounter {}

// SAFETY: Every method takes `&self` and touches the copies only with atomic accesses (type
// invariants), so sharing the counter between threads is sound.
unsafe impl Sync for PerCpuCounter {}

impl PerCpuCounter {
    /// Allocates a counter, zero on every CPU.
    pub fn new() -> Result<Self> {
        // SAFETY: Allocating has no precondition; `GFP_KERNEL` may sleep, which a caller of a
        // function that returns `Result` from process context allows. The per-CPU allocator
        // returns zeroed memory, or null.
        let ptr = unsafe {
            bindings::pcpu_alloc_noprof(
                size_of::<u64>(),
                align_of::<u64>(),
                false,
                bindings::GFP_KERNEL,
            )
        };
        // INVARIANT: A non-null result is a per-CPU allocation of one `u64`, ours until drop.
        Ok(PerCpuCounter {
            ptr: NonNull::new(ptr.cast::<u64>()).ok_or(ENOMEM)?,
        })
    }

    /// Adds `n` to this CPU's copy.
    #[inline]
    pub fn add(&self, n: u64) {
        #[cfg(all(CONFIG_X86_64, CONFIG_SMP))]
        // SAFETY: `ptr` is a live per-CPU pointer (type invariants), and on x86-64 the `%gs`
        // base of every CPU is its per-CPU offset: `%gs:ptr` is this CPU's copy, as in C's
        // `this_cpu_add()`. One instruction finds and updates it, so preemption cannot move the
        // task in between, and the lock prefix makes it an atomic read-modify-write, as every
        // other access to the copy is (type invariants): what `copy(current).fetch_add(n)`
        // would do, in one instruction.
        unsafe {
            core::arch::asm!(
                "lock addq {n}, %gs:({ptr})",
                ptr = in(reg) self.ptr.as_ptr(),
                n = in(reg) n,
                options(att_syntax, nostack),
            );
        }
        #[cfg(not(all(CONFIG_X86_64, CONFIG_SMP)))]
        {
            // The task may move to another CPU before the add: the add is atomic, so it only
            // lands in that CPU's copy, and the sum stays right.
            // SAFETY: The CPU this runs on is a possible CPU.
            if let Some(copy) = unsafe { self.copy(CpuId::current()) } {
                copy.add(n, Relaxed);
            }
        }
    }

    /// The sum of every CPU's copy. Additions that run meanwhile may or may not be in it.
    pub fn sum(&self) -> u64 {
        let total: u64 = (0..cpu::nr_cpu_ids())
            .filter_map(CpuId::from_u32)
            .filter(|&cpu| possible().test(cpu))
            // SAFETY: `cpu` is a possible CPU (the filter above).
            .filter_map(|cpu| unsafe { self.copy(cpu) })
            .map(|copy| copy.load(Relaxed))
            .sum();
        total
    }

    /// What CPU `cpu`'s copy holds, or `None` if `cpu` is not a possible CPU.
    pub fn on(&self, cpu: CpuId) -> Option<u64> {
        if !possible().test(cpu) {
            return None;
        }
        // SAFETY: `cpu` is a possible CPU (just checked).
        unsafe { self.copy(cpu) }.map(|copy| copy.load(Relaxed))
    }

    /// CPU `cpu`'s copy (`None` only if `cpu` is past the kernel's array of offsets).
    ///
    /// # Safety
    ///
    /// `cpu` must be a possible CPU: the others have no per-CPU memory, and their offsets lead
    /// nowhere.
    unsafe fn copy(&self, cpu: CpuId) -> Option<&Atomic<u64>> {
        let offset = offset(cpu)?;
        let addr = (self.ptr.as_ptr() as usize).wrapping_add(offset);
        // SAFETY: `cpu` is a possible CPU (the caller guarantees it), so `ptr + its offset`
        // is its copy, live until `self` is dropped (type invariants); every other access to
        // it is atomic, so there is no data race.
        Some(unsafe { Atomic::from_ptr(addr as *mut u64) })
    }
}

impl Drop for PerCpuCounter {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from the per-CPU allocator and is freed once, here (type
        // invariants).
        unsafe { bindings::free_percpu(self.ptr.as_ptr().cast()) };
    }
}

/// CPU `cpu`'s per-CPU offset (C's `per_cpu_offset()`), if it has one.
#[cfg(CONFIG_SMP)]
fn offset(cpu: CpuId) -> Option<usize> {
    let offsets: *const [usize] = &raw const bindings::__per_cpu_offset;
    let cpu = cpu.as_u32() as usize;
    // SAFETY: `cpu` is an index of the array, which is set up at boot, before any module
    // loads, and not written after.
    (cpu < offsets.len()).then(|| unsafe { *offsets.cast::<usize>().add(cpu) })
}

/// Without SMP, per-CPU memory is ordinary memory: the one CPU's copy is at the pointer.
#[cfg(not(CONFIG_SMP))]
fn offset(cpu: CpuId) -> Option<usize> {
    (cpu.as_u32() == 0).then_some(0)
}

/// The mask of possible CPUs: those that have per-CPU memory.
fn possible() -> &'static Cpumask {
    // SAFETY: `__cpu_possible_mask` is a static that lives forever; it is set at boot, before
    // any module loads, and only read after.
    unsafe { Cpumask::from_raw(&raw const bindings::__cpu_possible_mask) }
}

#[kunit_tests(mapdrv_percpu)]
mod tests {
    use super::*;
    use core::ffi::c_void;

    /// Every CPU adds to its own copy (on x86-64 through `%gs`, as C's `this_cpu_add()`), and
    /// reading a CPU's copy (through `__per_cpu_offset`) finds exactly what that CPU added;
    /// the sum finds everything.
    #[test]
    fn percpu_counter_adds_land_on_each_cpu() -> Result {
        /// Adds one more than its number to the counter, on the CPU it runs on.
        unsafe extern "C" fn add_cpu_number(info: *mut c_void) {
            // SAFETY: `info` is the counter below, which outlives the call (`wait` is true).
            let counter = unsafe { &*info.cast::<PerCpuCounter>() };
            counter.add(u64::from(CpuId::current().as_u32()) + 1);
        }
        let counter = PerCpuCounter::new()?;
        assert_eq!(counter.sum(), 0);
        // SAFETY: `add_cpu_number` only adds to the counter, which lives until after the call
        // returns, since it waits for every CPU; `__cpu_online_mask` is a static.
        unsafe {
            bindings::on_each_cpu_cond_mask(
                None,
                Some(add_cpu_number),
                core::ptr::from_ref(&counter).cast_mut().cast(),
                true,
                &raw const bindings::__cpu_online_mask,
            )
        };
        let mut expected = 0;
        for cpu in (0..cpu::nr_cpu_ids()).filter_map(CpuId::from_u32) {
            let Some(copy) = counter.on(cpu) else {
                continue;
            };
            // A CPU that was online added its number plus one; an offline one, nothing.
            assert!(copy == 0 || copy == u64::from(cpu.as_u32()) + 1);
            expected += copy;
        }
        assert!(expected > 0);
        assert_eq!(counter.sum(), expected);
        // From this task, wherever it runs: the sum has every add.
        for n in 1..=1000 {
            counter.add(n);
        }
        assert_eq!(counter.sum(), expected + 500_500);
        Ok(())
    }
}
