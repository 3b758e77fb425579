// SPDX-License-Identifier: GPL-2.0

//! Character devices with a major number of their own.
//!
//! C headers: [`include/linux/cdev.h`](srctree/include/linux/cdev.h),
//! [`include/linux/fs.h`](srctree/include/linux/fs.h) (`alloc_chrdev_region`),
//! [`include/linux/device/class.h`](srctree/include/linux/device/class.h).
//!
//! A [`MiscDeviceRegistration`] gives a driver one minor of the shared `misc` major. A driver that
//! wants the classic arrangement instead (its own name in `/proc/devices`, a major of its own that
//! `mknod NAME c MAJOR 0` can use, and a node in `/dev` created through a device class) uses a
//! [`Registration`] of a type that implements [`CharDevice`].
//!
//! A registration owns, in this order: a range of one device number (`alloc_chrdev_region` or
//! `register_chrdev_region`), a `struct cdev` serving that number with the file operations built
//! from [`CharDevice`], a device class of the same name and the class device that makes
//! devtmpfs/udev create `/dev/NAME`. Dropping it undoes all four.
//!
//! # Examples
//!
//! ```
//! use kernel::{fs::File, prelude::*, sync::Arc};
//! use crate::chrdev::{CharDevice, Options, Registration};
//!
//! struct Hello;
//!
//! #[vtable]
//! impl CharDevice for Hello {
//!     type Data = ();
//!     type Ptr = Arc<Hello>;
//!
//!     fn open(_data: &(), _file: &File, _minor: u32) -> Result<Arc<Hello>> {
//!         Ok(Arc::new(Hello, GFP_KERNEL)?)
//!     }
//! }
//!
//! // `/proc/devices` now lists `hello` with a dynamic major and `/dev/hello` is root-only.
//! let reg = Registration::<Hello>::register(
//!     Options { name: c"hello", major: 0, mode: 0o600 },
//!     (),
//! )?;
//! pr_info!("hello is {}:0\n", reg.major());
//! # Ok::<(), Error>(())
//! ```
//!
//! [`MiscDeviceRegistration`]: kernel::miscdevice::MiscDeviceRegistration

use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    bindings,
    error::{from_err_ptr, to_result, VTABLE_DEFAULT_ERROR},
    ffi::{c_char, c_int},
    fs::{File, Kiocb, LocalFile},
    iov::{IovIterDest, IovIterSource},
    mm::virt::VmaNew,
    module::this_module,
    prelude::*,
    str::CStr,
    types::{ForeignOwnable, Opaque},
};

/// Number of bits of a `dev_t` that hold the minor number (`MINORBITS`).
const MINOR_BITS: u32 = bindings::MINORBITS;

/// Builds a `dev_t` from a major and a minor number, like the C macro `MKDEV`.
const fn mkdev(major: u32, minor: u32) -> bindings::dev_t {
    (major << MINOR_BITS) | minor
}

/// The largest major number a driver may ask for (`CHRDEV_MAJOR_MAX - 1`).
pub const MAJOR_MAX: u32 = bindings::CHRDEV_MAJOR_MAX - 1;

/// Options for [`Registration::register`].
#[derive(Copy, Clone)]
pub struct Options {
    /// The name in `/proc/devices`, of the device class and of the node in `/dev`.
    pub name: &'static CStr,
    /// The major number to claim, or 0 for one chosen by the kernel.
    pub major: u32,
    /// The permissions of the node devtmpfs creates in `/dev` (for example `0o600`).
    pub mode: u16,
}

/// Operations of a character device; the methods not implemented fail as the VFS does for a
/// missing `file_operations` member (`read` and `write` with `EINVAL`, `ioctl` with `ENOTTY`,
/// `llseek` with `ESPIPE`, `mmap` with `ENODEV`, `fsync` with `EINVAL`).
///
/// A value of type [`CharDevice::Ptr`] is created by [`CharDevice::open`] for every open file and
/// lives until [`CharDevice::release`].
#[vtable]
pub trait CharDevice: Sized {
    /// Data shared by every open file, owned by the [`Registration`].
    type Data: Send + Sync;

    /// What kind of pointer should `Self` be wrapped in.
    type Ptr: ForeignOwnable + Send + Sync;

    /// Called when the device node is opened. `minor` is always 0: a registration serves one
    /// minor, and the kernel answers `ENXIO` for the others of the major.
    ///
    /// The returned pointer is stored as the private data of the file.
    fn open(data: &Self::Data, file: &File, minor: u32) -> Result<Self::Ptr>;

    /// Called when the last reference to the file is dropped.
    fn release(device: Self::Ptr, _file: &File) {
        drop(device);
    }

    /// Reads from the file at `kiocb.ki_pos()`, for `read(2)`, `pread(2)` and `readv(2)`.
    fn read_iter(_kiocb: Kiocb<'_, Self::Ptr>, _iov: &mut IovIterDest<'_>) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Writes to the file at `kiocb.ki_pos()`, for `write(2)`, `pwrite(2)` and `writev(2)`.
    fn write_iter(_kiocb: Kiocb<'_, Self::Ptr>, _iov: &mut IovIterSource<'_>) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Moves the file position, for `lseek(2)`; returns the new position.
    ///
    /// [`fixed_size_llseek`] implements the usual semantics of a file of a fixed size.
    fn llseek(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &LocalFile,
        _offset: i64,
        _whence: u32,
    ) -> Result<i64> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Writes the file's data back, for `fsync(2)`, `fdatasync(2)` and `msync(MS_SYNC)` of a
    /// shared mapping; `start..=end` is the byte range, `datasync` asks for data only.
    fn fsync(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _start: i64,
        _end: i64,
        _datasync: bool,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Sets up a new mapping of the file, for `mmap(2)`.
    ///
    /// The kernel has initialised `vma` from the arguments of `mmap(2)`; this method may refuse
    /// it or configure it (flags, [`VmaNewExt::set_vm_ops`]).
    ///
    /// [`VmaNewExt::set_vm_ops`]: crate::vm_ops::VmaNewExt::set_vm_ops
    fn mmap(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _vma: &VmaNew,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// Moves the position of a file of `size` bytes: `SEEK_SET`, `SEEK_CUR` and `SEEK_END` work as
/// usual; a resulting position outside `0..=size`, or any other `whence`, is `EINVAL`.
pub fn fixed_size_llseek(file: &LocalFile, offset: i64, whence: u32, size: i64) -> Result<i64> {
    let whence = c_int::try_from(whence).map_err(|_| EINVAL)?;
    // SAFETY: `file` is a valid file for the duration of the call, and the caller of an `llseek`
    // method holds whatever `f_pos_lock` the VFS takes for it.
    let pos = unsafe { bindings::fixed_size_llseek(file.as_ptr(), offset, whence, size) };
    if pos < 0 {
        // The value is a negative errno, which fits in a `c_int`.
        return Err(Error::from_errno(pos as c_int));
    }
    Ok(pos)
}

/// What a [`Registration`] owns, in memory that open files may reference: the kernel keeps a
/// pointer to `cdev` in the inodes of the device node and a reference on its kobject in every
/// open file.
struct Inner<T: CharDevice> {
    cdev: Opaque<bindings::cdev>,
    data: T::Data,
    mode: u16,
}

/// A registered character device.
///
/// # Invariants
///
/// - `inner` points to a valid `Inner<T>` allocated with [`KBox`]; its `data` and `mode` never
///   change while it is registered.
/// - If `cdev_added`, `inner.cdev` was initialised by `cdev_init` with the file operations of
///   `CharDeviceVTable<T>` and its owner set to `T`'s module, and added with `cdev_add` for
///   `devt`; otherwise nobody but `self` references `inner`.
/// - If `region`, the device number `devt` is registered under the options' name.
/// - `class` is null or a class created by `class_create`; `device` is null or a device of
///   `class` created for `devt`, whose driver data is `inner`.
pub struct Registration<T: CharDevice> {
    inner: NonNull<Inner<T>>,
    devt: bindings::dev_t,
    region: bool,
    cdev_added: bool,
    class: *mut bindings::class,
    device: *mut bindings::device,
    _t: PhantomData<T>,
}

// SAFETY: Registration and unregistration may happen on any thread; the shared data is `Send`.
unsafe impl<T: CharDevice> Send for Registration<T> {}
// SAFETY: `&Registration` gives access to nothing but plain numbers; the file operations reach
// `T::Data`, which is `Sync`, from any thread, through the cdev.
unsafe impl<T: CharDevice> Sync for Registration<T> {}

impl<T: CharDevice> Registration<T> {
    /// Registers a character device serving minor 0 of `opts.major` (or of a dynamic major), with
    /// `data` shared by all its open files.
    ///
    /// Fails with `EBUSY` if the major is taken, `EINVAL` if it is above [`MAJOR_MAX`], and with
    /// the error of the first step that failed otherwise; nothing is left registered then.
    pub fn register(opts: Options, data: T::Data) -> Result<Self> {
        if opts.major > MAJOR_MAX {
            return Err(EINVAL);
        }
        let inner = KBox::new(
            Inner::<T> {
                cdev: Opaque::uninit(),
                data,
                mode: opts.mode,
            },
            GFP_KERNEL,
        )?;
        // INVARIANT: `inner` comes from a `KBox` and nothing else references it yet.
        let mut this = Self {
            inner: NonNull::from(KBox::leak(inner)),
            devt: 0,
            region: false,
            cdev_added: false,
            class: core::ptr::null_mut(),
            device: core::ptr::null_mut(),
            _t: PhantomData,
        };
        let name = opts.name.as_char_ptr();

        // From here on, dropping `this` undoes whatever part of the registration was done.
        if opts.major == 0 {
            let mut devt: bindings::dev_t = 0;
            // SAFETY: `devt` is valid for writing and `name` is a valid C string. The kernel
            // copies the name.
            to_result(unsafe { bindings::alloc_chrdev_region(&mut devt, 0, 1, name) })?;
            this.devt = devt;
        } else {
            let devt = mkdev(opts.major, 0);
            // SAFETY: `name` is a valid C string; the kernel copies it.
            to_result(unsafe { bindings::register_chrdev_region(devt, 1, name) })?;
            this.devt = devt;
        }
        this.region = true;

        let cdev = this.cdev_ptr();
        // SAFETY: `cdev` points to memory owned by `this` that nobody else references yet; the
        // file operations are a `'static` table.
        unsafe { bindings::cdev_init(cdev, CharDeviceVTable::<T>::build()) };
        // SAFETY: `cdev` was just initialised. Setting the owner makes every open file hold a
        // reference on the module, which the drop of `Registration` relies on.
        unsafe { (*cdev).owner = this_module::<T::OwnerModule>().as_ptr() };
        // SAFETY: `cdev` is initialised and `devt` is registered to us. From now on the device
        // can be opened.
        to_result(unsafe { bindings::cdev_add(cdev, this.devt, 1) })?;
        this.cdev_added = true;

        // SAFETY: `name` is a valid C string; the class keeps its own reference to it only while
        // the class exists, and the name is `'static`.
        let class = from_err_ptr(unsafe { bindings::class_create(name) })?;
        // SAFETY: `class` was just created and is not in use yet, so its `devnode` callback may
        // be set.
        unsafe { (*class).devnode = Some(devnode::<T>) };
        this.class = class;

        // SAFETY: `class` is valid, `devt` is ours, the driver data is `inner`, which outlives
        // the device, and the format "%s" takes one C string, `name`.
        let device = from_err_ptr(unsafe {
            bindings::device_create(
                class,
                core::ptr::null_mut(),
                this.devt,
                this.inner.as_ptr().cast(),
                c"%s".as_char_ptr(),
                name,
            )
        })?;
        this.device = device;
        Ok(this)
    }

    /// The major number of the device.
    pub fn major(&self) -> u32 {
        self.devt >> MINOR_BITS
    }

    fn cdev_ptr(&self) -> *mut bindings::cdev {
        // SAFETY: By the type invariants `inner` is valid.
        unsafe { self.inner.as_ref().cdev.get() }
    }
}

impl<T: CharDevice> Drop for Registration<T> {
    fn drop(&mut self) {
        if !self.device.is_null() {
            // SAFETY: By the type invariants, `device` was created in `class` for `devt`.
            unsafe { bindings::device_destroy(self.class, self.devt) };
        }
        if !self.class.is_null() {
            // SAFETY: By the type invariants, `class` was created by `class_create` and its only
            // device is gone.
            unsafe { bindings::class_destroy(self.class) };
        }
        if self.cdev_added {
            // SAFETY: By the type invariants the cdev was added; no new file can open it after
            // this returns.
            unsafe { bindings::cdev_del(self.cdev_ptr()) };
        }
        if self.region {
            // SAFETY: By the type invariants the number is registered to us.
            unsafe { bindings::unregister_chrdev_region(self.devt, 1) };
        }

        // Files that are still open reference `inner.cdev`, and drop that reference only after
        // their `release`. Every open file also holds a reference on the owning module, taken
        // by `chrdev_open()` before it first touches the cdev and dropped by `cdev_put()` after
        // it last touches it. So if the module holds no reference (as always when
        // the registration is dropped at module unload), no file references `inner`. Otherwise
        // `inner` is leaked rather than freed under a file. Built-in code (no module) cannot
        // tell, and always leaks.
        if self.cdev_added {
            let owner = this_module::<T::OwnerModule>().as_ptr();
            // SAFETY: `owner` is not null, so it is `T`'s module, which is valid while its code
            // runs. Its count is 0 while nobody holds a reference, and -1 once `delete_module`
            // has dropped the base reference to unload it.
            let in_use = owner.is_null() || unsafe { bindings::module_refcount(owner) } > 0;
            if in_use {
                pr_warn!("chrdev: registration dropped while its module is in use; leaking it\n");
                return;
            }
        }
        // SAFETY: By the type invariants `inner` came from `KBox`, and by the argument above
        // nothing references it any more.
        drop(unsafe { KBox::from_raw(self.inner.as_ptr()) });
    }
}

/// The `devnode` callback of the class: sets the mode of the node in `/dev`.
///
/// # Safety
///
/// `dev` must be a device created by [`Registration::register`] for `T`, and `mode` null or valid
/// for writing.
unsafe extern "C" fn devnode<T: CharDevice>(
    dev: *const bindings::device,
    mode: *mut bindings::umode_t,
) -> *mut c_char {
    if !mode.is_null() {
        // SAFETY: By the safety requirements `dev` is valid and its driver data is the `Inner<T>`
        // of a live registration (the device is destroyed before `Inner` is freed).
        let inner = unsafe { (*dev).driver_data.cast::<Inner<T>>() };
        // SAFETY: As above; `mode` is valid for writing.
        unsafe { *mode = (*inner).mode };
    }
    // Null keeps the default name, the device's own.
    core::ptr::null_mut()
}

/// The file operations of a [`CharDevice`].
struct CharDeviceVTable<T: CharDevice>(PhantomData<T>);

impl<T: CharDevice> CharDeviceVTable<T> {
    /// # Safety
    ///
    /// `inode` and `file` must be the inode and the file of a file being opened through the cdev
    /// of a live `Registration<T>`.
    unsafe extern "C" fn open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: `chrdev_open()` stored our cdev in `i_cdev` before calling us; for a char
        // device inode that is the member of the union in use.
        let cdev = unsafe { (*inode).__bindgen_anon_5.i_cdev }.cast::<Opaque<bindings::cdev>>();
        // SAFETY: The cdev is the `cdev` field of an `Inner<T>` (`Opaque` is transparent).
        let inner = unsafe { kernel::container_of!(cdev, Inner<T>, cdev) };
        // SAFETY: The open file holds references on the cdev and on the module, so the
        // registration's `Inner` stays valid for the whole call.
        let inner = unsafe { &*inner };
        // SAFETY: `inode` is valid; `i_rdev` is constant for a device inode.
        let minor = unsafe { (*inode).i_rdev } & ((1 << MINOR_BITS) - 1);
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * The file is being opened, so no `fdget_pos` region on it exists.
        let f = unsafe { File::from_raw_file(file) };

        match T::open(&inner.data, f, minor) {
            Ok(ptr) => {
                // SAFETY: The open call of a file can set the private data; the other methods
                // read it back as `T::Ptr`.
                unsafe { (*file).private_data = ptr.into_foreign().cast() };
                0
            }
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `file` must be a file of a `Registration<T>` that is being released.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: The release call of a file owns the private data set by `open`.
        let ptr = unsafe { <T::Ptr as ForeignOwnable>::from_foreign((*file).private_data.cast()) };
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * The file is being released, so no `fdget_pos` region on it exists.
        T::release(ptr, unsafe { File::from_raw_file(file) });
        0
    }

    /// # Safety
    ///
    /// `kiocb` must be valid and its file a file of a `Registration<T>`; `iter` must be a valid
    /// `struct iov_iter` for writing.
    unsafe extern "C" fn read_iter(
        kiocb: *mut bindings::kiocb,
        iter: *mut bindings::iov_iter,
    ) -> isize {
        // SAFETY: The file's private data is a `T::Ptr`, set by `open`.
        let kiocb = unsafe { Kiocb::from_raw(kiocb) };
        // SAFETY: The caller provides a valid destination iterator.
        let iov = unsafe { IovIterDest::from_raw(iter) };
        match T::read_iter(kiocb, iov) {
            Ok(n) => n as isize,
            Err(err) => err.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// `kiocb` must be valid and its file a file of a `Registration<T>`; `iter` must be a valid
    /// `struct iov_iter` for reading.
    unsafe extern "C" fn write_iter(
        kiocb: *mut bindings::kiocb,
        iter: *mut bindings::iov_iter,
    ) -> isize {
        // SAFETY: The file's private data is a `T::Ptr`, set by `open`.
        let kiocb = unsafe { Kiocb::from_raw(kiocb) };
        // SAFETY: The caller provides a valid source iterator.
        let iov = unsafe { IovIterSource::from_raw(iter) };
        match T::write_iter(kiocb, iov) {
            Ok(n) => n as isize,
            Err(err) => err.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// `file` must be a file of a `Registration<T>` on which `lseek(2)` was called.
    unsafe extern "C" fn llseek(
        file: *mut bindings::file,
        offset: bindings::loff_t,
        whence: c_int,
    ) -> bindings::loff_t {
        // SAFETY: The private data is a `T::Ptr` between `open` and `release`, and `llseek`
        // runs between them.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * The `fdget_pos` of `lseek(2)` either took `f_pos_lock` or runs on this thread.
        let f = unsafe { LocalFile::from_raw_file(file) };
        // A negative `whence` is no valid `SEEK_*` value.
        let Ok(whence) = u32::try_from(whence) else {
            return EINVAL.to_errno().into();
        };
        match T::llseek(device, f, offset, whence) {
            Ok(pos) => pos,
            Err(err) => err.to_errno().into(),
        }
    }

    /// # Safety
    ///
    /// `file` must be a file of a `Registration<T>` on which `fsync` was called.
    unsafe extern "C" fn fsync(
        file: *mut bindings::file,
        start: bindings::loff_t,
        end: bindings::loff_t,
        datasync: c_int,
    ) -> c_int {
        // SAFETY: The private data is a `T::Ptr` between `open` and `release`, and `fsync` runs
        // between them.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * `fsync(2)` and `msync(2)` do not use `fdget_pos`.
        let f = unsafe { File::from_raw_file(file) };
        match T::fsync(device, f, start, end, datasync != 0) {
            Ok(()) => 0,
            Err(err) => err.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `file` must be a file of a `Registration<T>`; `vma` must be a vma being set up by
    /// `mmap(2)` of that file.
    unsafe extern "C" fn mmap(
        file: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: The private data is a `T::Ptr` between `open` and `release`, and `mmap` runs
        // between them.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY: The caller provides a vma that is undergoing initial setup.
        let area = unsafe { VmaNew::from_raw(vma) };
        // SAFETY:
        // * The file is valid for the duration of this call.
        // * `mmap(2)` does not use `fdget_pos`.
        let f = unsafe { File::from_raw_file(file) };
        match T::mmap(device, f, area) {
            Ok(()) => 0,
            Err(err) => err.to_errno(),
        }
    }

    const VTABLE: bindings::file_operations = bindings::file_operations {
        open: Some(Self::open),
        release: Some(Self::release),
        read_iter: if T::HAS_READ_ITER {
            Some(Self::read_iter)
        } else {
            None
        },
        write_iter: if T::HAS_WRITE_ITER {
            Some(Self::write_iter)
        } else {
            None
        },
        llseek: if T::HAS_LLSEEK {
            Some(Self::llseek)
        } else {
            None
        },
        mmap: if T::HAS_MMAP { Some(Self::mmap) } else { None },
        fsync: if T::HAS_FSYNC {
            Some(Self::fsync)
        } else {
            None
        },
        owner: this_module::<T::OwnerModule>().as_ptr(),
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::file_operations {
        &Self::VTABLE
    }
}
