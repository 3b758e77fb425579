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
//! # Lifetimes
//!
//! A registration owns a range of one device number, a device class, a device of that class (the
//! node in `/dev`), a `struct cdev` that serves the number with the file operations of
//! [`CharDevice`], and the driver's [`CharDevice::Data`]. The kernel keeps references to the
//! class, the device and the cdev for as long as it needs them, which can be longer than the
//! registration: an open file holds the cdev; an inode of a node made with `mknod` keeps a
//! pointer to it; the cdev holds its parent, the device. With `CONFIG_DEBUG_KOBJECT_RELEASE` the
//! last release comes seconds later still, from a delayed work, possibly after the module is
//! gone. So:
//!
//! - Nothing the kernel releases late is embedded in the registration. The cdev comes from
//!   `cdev_alloc()`, the device from `device_create()`, the class from `class_create()`; each is
//!   freed by the driver core's own release function, never by code of the module. (A `static`
//!   class given to `class_register()` would be read by the core's `class_release()` after the
//!   module's memory is freed.)
//! - The data is reachable from C only through the device's driver data, and only in `open`,
//!   which reads it under the device's lock. Dropping the registration clears it under the same
//!   lock after `cdev_del()`, so an `open` that comes later still (through an inode that kept the
//!   cdev) fails with `ENXIO`, and the data can be dropped at once. An open file does not need
//!   the data: it has the [`CharDevice::Ptr`] that `open` made.
//! - The file operations and the code they call belong to the module: every open file holds a
//!   reference on the module (the cdev's and the operations' `owner`), so it cannot be unloaded
//!   while a file, or a mapping of one, exists.
//!
//! # Examples
//!
//! ```
//! use kernel::{fs::File, prelude::*, sync::Arc};
//! use kernel::chrdev::{CharDevice, Options, Registration};
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
//! // `/proc/devices` now lists `rust_hello` with a dynamic major, and `/dev/rust_hello` is
//! // root-only.
//! let reg = Registration::<Hello>::register(
//!     Options { name: c"rust_hello", major: 0, mode: 0o600 },
//!     (),
//! )?;
//! assert!(reg.major() > 0);
//! // Dropping the registration removes the device, the class and the number.
//! drop(reg);
//! # Ok::<(), Error>(())
//! ```
//!
//! [`MiscDeviceRegistration`]: kernel::miscdevice::MiscDeviceRegistration

use crate::vm_ops::VmAreaDesc;
use core::{marker::PhantomData, ptr::NonNull};
use kernel::{
    bindings,
    error::{from_err_ptr, to_result, VTABLE_DEFAULT_ERROR},
    ffi::{c_char, c_int},
    fs::{File, Kiocb, LocalFile},
    iov::{IovIterDest, IovIterSource},
    module::this_module,
    prelude::*,
    str::CStr,
    types::ForeignOwnable,
};

/// Number of bits of a `dev_t` that hold the minor number (`MINORBITS`).
const MINOR_BITS: u32 = bindings::MINORBITS;

/// Builds a `dev_t` from a major and a minor number, like the C macro `MKDEV`.
const fn mkdev(major: u32, minor: u32) -> bindings::dev_t {
    (major << MINOR_BITS) | minor
}

/// The largest major number a driver may ask for (`CHRDEV_MAJOR_MAX - 1`).
///
/// # Examples
///
/// ```
/// use kernel::chrdev::MAJOR_MAX;
///
/// // Majors are 12 bits wide, but the kernel hands out only the lower ones.
/// assert_eq!(MAJOR_MAX, 511);
/// ```
pub const MAJOR_MAX: u32 = bindings::CHRDEV_MAJOR_MAX - 1;

/// Options for [`Registration::register`].
///
/// # Examples
///
/// ```
/// use kernel::chrdev::Options;
///
/// // A node anybody may read and write, with a major chosen by the kernel.
/// let opts = Options { name: c"rust_shared", major: 0, mode: 0o666 };
/// assert_eq!(opts.name.to_bytes(), b"rust_shared");
/// ```
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
/// missing `file_operations` member (`read` and `write` with `EINVAL`, `llseek` with `ESPIPE`,
/// `mmap` with `ENODEV`, `fsync` with `EINVAL`).
///
/// A value of type [`CharDevice::Ptr`] is created by [`CharDevice::open`] for every open file and
/// lives until [`CharDevice::release`].
///
/// The data handed to C must outlive every borrow it could contain, so it is `'static`:
///
/// ```ignore,compile_fail
/// use kernel::{fs::File, prelude::*};
/// use kernel::chrdev::CharDevice;
///
/// struct Borrowing<'a>(&'a u32);
///
/// #[vtable]
/// impl<'a> CharDevice for Borrowing<'a> {
///     type Data = &'a u32; // error[E0477]
///     type Ptr = ();
///
///     fn open(_data: &&'a u32, _file: &File, _minor: u32) -> Result {
///         Ok(())
///     }
/// }
/// ```
///
/// # Examples
///
/// ```
/// use kernel::{fs::{File, Kiocb}, iov::IovIterDest, prelude::*, sync::Arc};
/// use kernel::chrdev::{CharDevice, Options, Registration};
///
/// /// A device whose every file reads as the same message.
/// struct Motd(&'static [u8]);
///
/// #[vtable]
/// impl CharDevice for Motd {
///     type Data = Arc<Motd>;
///     type Ptr = Arc<Motd>;
///
///     fn open(data: &Arc<Motd>, _file: &File, _minor: u32) -> Result<Arc<Motd>> {
///         Ok(data.clone())
///     }
///
///     fn read_iter(mut kiocb: Kiocb<'_, Arc<Motd>>, iov: &mut IovIterDest<'_>) -> Result<usize> {
///         let text = kiocb.file().0;
///         let pos = usize::try_from(kiocb.ki_pos()).map_err(|_| EINVAL)?;
///         let n = iov.copy_to_iter(text.get(pos..).unwrap_or_default());
///         *kiocb.ki_pos_mut() += n as i64;
///         Ok(n)
///     }
/// }
///
/// let motd = Arc::new(Motd(b"hello\n"), GFP_KERNEL)?;
/// let reg = Registration::<Motd>::register(
///     Options { name: c"rust_motd", major: 0, mode: 0o444 },
///     motd,
/// )?;
/// assert!(reg.major() > 0);
/// # Ok::<(), Error>(())
/// ```
#[vtable]
pub trait CharDevice: Sized {
    /// Data shared by every open file, owned by the [`Registration`].
    type Data: Send + Sync + 'static;

    /// What kind of pointer should `Self` be wrapped in.
    type Ptr: ForeignOwnable + Send + Sync + 'static;

    /// Called when the device node is opened. `minor` is always 0: a registration serves one
    /// minor, and the kernel answers `ENXIO` for the others of the major.
    ///
    /// The returned pointer is stored as the private data of the file.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::File, prelude::*, sync::{atomic::{Atomic, Relaxed}, Arc}};
    /// use kernel::chrdev::CharDevice;
    ///
    /// /// Every open file gets a number of its own.
    /// struct Ticket(u64);
    ///
    /// #[vtable]
    /// impl CharDevice for Ticket {
    ///     type Data = Atomic<u64>;
    ///     type Ptr = KBox<Ticket>;
    ///
    ///     fn open(next: &Atomic<u64>, _file: &File, _minor: u32) -> Result<KBox<Ticket>> {
    ///         Ok(KBox::new(Ticket(next.fetch_add(1, Relaxed)), GFP_KERNEL)?)
    ///     }
    /// }
    /// ```
    fn open(data: &Self::Data, file: &File, minor: u32) -> Result<Self::Ptr>;

    /// Called when the last reference to the file is dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::File, prelude::*, sync::{atomic::{Atomic, Relaxed}, Arc}};
    /// use kernel::chrdev::CharDevice;
    ///
    /// /// Counts its open files.
    /// struct Counted(Atomic<u64>);
    ///
    /// #[vtable]
    /// impl CharDevice for Counted {
    ///     type Data = Arc<Counted>;
    ///     type Ptr = Arc<Counted>;
    ///
    ///     fn open(data: &Arc<Counted>, _file: &File, _minor: u32) -> Result<Arc<Counted>> {
    ///         data.0.add(1, Relaxed);
    ///         Ok(data.clone())
    ///     }
    ///
    ///     fn release(device: Arc<Counted>, _file: &File) {
    ///         device.0.fetch_sub(1, Relaxed);
    ///     }
    /// }
    /// ```
    fn release(device: Self::Ptr, _file: &File) {
        drop(device);
    }

    /// Reads from the file at `kiocb.ki_pos()`, for `read(2)`, `pread(2)` and `readv(2)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::{File, Kiocb}, iov::IovIterDest, prelude::*, sync::Arc};
    /// use kernel::chrdev::CharDevice;
    ///
    /// /// Reads as an empty file, like `/dev/null`.
    /// struct Empty;
    ///
    /// #[vtable]
    /// impl CharDevice for Empty {
    ///     type Data = ();
    ///     type Ptr = Arc<Empty>;
    ///
    ///     fn open(_data: &(), _file: &File, _minor: u32) -> Result<Arc<Empty>> {
    ///         Ok(Arc::new(Empty, GFP_KERNEL)?)
    ///     }
    ///
    ///     fn read_iter(_kiocb: Kiocb<'_, Arc<Empty>>, _iov: &mut IovIterDest<'_>) -> Result<usize> {
    ///         Ok(0)
    ///     }
    /// }
    /// ```
    fn read_iter(_kiocb: Kiocb<'_, Self::Ptr>, _iov: &mut IovIterDest<'_>) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Writes to the file at `kiocb.ki_pos()`, for `write(2)`, `pwrite(2)` and `writev(2)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::{File, Kiocb}, iov::IovIterSource, prelude::*, sync::Arc};
    /// use kernel::chrdev::CharDevice;
    ///
    /// /// Swallows whatever is written to it, like `/dev/null`.
    /// struct Sink;
    ///
    /// #[vtable]
    /// impl CharDevice for Sink {
    ///     type Data = ();
    ///     type Ptr = Arc<Sink>;
    ///
    ///     fn open(_data: &(), _file: &File, _minor: u32) -> Result<Arc<Sink>> {
    ///         Ok(Arc::new(Sink, GFP_KERNEL)?)
    ///     }
    ///
    ///     fn write_iter(_kiocb: Kiocb<'_, Arc<Sink>>, iov: &mut IovIterSource<'_>) -> Result<usize> {
    ///         let n = iov.len();
    ///         iov.advance(n);
    ///         Ok(n)
    ///     }
    /// }
    /// ```
    fn write_iter(_kiocb: Kiocb<'_, Self::Ptr>, _iov: &mut IovIterSource<'_>) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Moves the file position, for `lseek(2)`; returns the new position.
    ///
    /// [`fixed_size_llseek`] implements the usual semantics of a file of a fixed size.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::{File, LocalFile}, prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::chrdev::{fixed_size_llseek, CharDevice};
    ///
    /// /// A file as long as the text it holds.
    /// struct Text(&'static [u8]);
    ///
    /// #[vtable]
    /// impl CharDevice for Text {
    ///     type Data = Arc<Text>;
    ///     type Ptr = Arc<Text>;
    ///
    ///     fn open(data: &Arc<Text>, _file: &File, _minor: u32) -> Result<Arc<Text>> {
    ///         Ok(data.clone())
    ///     }
    ///
    ///     fn llseek(text: ArcBorrow<'_, Text>, file: &LocalFile, offset: i64, whence: u32) -> Result<i64> {
    ///         let size = i64::try_from(text.0.len()).map_err(|_| EINVAL)?;
    ///         fixed_size_llseek(file, offset, whence, size)
    ///     }
    /// }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::File, prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::chrdev::CharDevice;
    ///
    /// /// Memory is the medium: a write is complete when it returns.
    /// struct Ram;
    ///
    /// #[vtable]
    /// impl CharDevice for Ram {
    ///     type Data = ();
    ///     type Ptr = Arc<Ram>;
    ///
    ///     fn open(_data: &(), _file: &File, _minor: u32) -> Result<Arc<Ram>> {
    ///         Ok(Arc::new(Ram, GFP_KERNEL)?)
    ///     }
    ///
    ///     fn fsync(_: ArcBorrow<'_, Ram>, _: &File, _: i64, _: i64, _: bool) -> Result {
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn fsync(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _start: i64,
        _end: i64,
        _datasync: bool,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Prepares a new mapping of the file, for `mmap(2)` (`f_op->mmap_prepare`).
    ///
    /// The kernel has described the mapping in `desc` from the arguments of `mmap(2)`; this
    /// method may refuse it, or configure it: its flags, and the operations of the VMA
    /// ([`VmAreaDesc::set_vm_ops`]), with data borrowed from `device` for `'a`. It must have no
    /// other effect: the mapping may still fail, or be merged into another, after it returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::File, page::Page, prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::chrdev::CharDevice;
    /// use kernel::mm::vm_ops::{FaultError, Mapped, VmAreaDesc, VmFault, VmOperations};
    ///
    /// /// A device that maps one page of its own.
    /// struct OnePage(Page);
    ///
    /// #[vtable]
    /// impl VmOperations for OnePage {
    ///     fn fault<'f>(this: &Self, vmf: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
    ///         match vmf.pgoff() {
    ///             0 => vmf.insert_page(&this.0),
    ///             _ => Err(FaultError::SigBus),
    ///         }
    ///     }
    /// }
    ///
    /// #[vtable]
    /// impl CharDevice for OnePage {
    ///     type Data = Arc<OnePage>;
    ///     type Ptr = Arc<OnePage>;
    ///
    ///     fn open(data: &Arc<OnePage>, _file: &File, _minor: u32) -> Result<Arc<OnePage>> {
    ///         Ok(data.clone())
    ///     }
    ///
    ///     fn mmap_prepare<'a>(
    ///         device: ArcBorrow<'a, OnePage>,
    ///         _file: &'a File,
    ///         desc: &mut VmAreaDesc<'a, Self::OwnerModule>,
    ///     ) -> Result {
    ///         if desc.pgoff() + desc.pages() > 1 {
    ///             return Err(EINVAL);
    ///         }
    ///         desc.set_mixedmap();
    ///         desc.set_vm_ops(device);
    ///         Ok(())
    ///     }
    /// }
    /// ```
    ///
    /// The operations must be those of the module that owns the file, whose references keep
    /// its code loaded while a VMA uses them:
    ///
    /// ```ignore,compile_fail
    /// use kernel::{prelude::*, sync::ArcBorrow};
    /// use kernel::mm::vm_ops::{FaultError, Mapped, VmAreaDesc, VmFault, VmOperations};
    ///
    /// struct Elsewhere;
    /// impl kernel::ModuleMetadata for Elsewhere {
    ///     const NAME: &'static kernel::str::CStr = c"elsewhere";
    ///     // SAFETY: A null module is the kernel itself.
    ///     const THIS_MODULE: kernel::ThisModule =
    ///         unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) };
    /// }
    ///
    /// struct Foreign;
    /// #[vtable]
    /// impl VmOperations for Foreign {
    ///     type OwnerModule = Elsewhere;
    ///     fn fault<'f>(_: &Self, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
    ///         Err(FaultError::SigBus)
    ///     }
    /// }
    ///
    /// // A description of a file of this module's, and another module's operations.
    /// fn prepare<'a>(desc: &mut VmAreaDesc<'a, crate::LocalModule>, ops: ArcBorrow<'a, Foreign>) {
    ///     desc.set_vm_ops(ops); // error[E0271]
    /// }
    /// ```
    fn mmap_prepare<'a>(
        _device: <Self::Ptr as ForeignOwnable>::Borrowed<'a>,
        _file: &'a File,
        _desc: &mut VmAreaDesc<'a, Self::OwnerModule>,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// Moves the position of a file of `size` bytes: `SEEK_SET`, `SEEK_CUR` and `SEEK_END` work as
/// usual; a resulting position outside `0..=size`, or any other `whence`, is `EINVAL`.
///
/// # Examples
///
/// ```
/// use kernel::{fs::{File, LocalFile}, prelude::*, sync::{Arc, ArcBorrow}};
/// use kernel::chrdev::{fixed_size_llseek, CharDevice};
///
/// /// A device of 4096 bytes.
/// struct Page4k;
///
/// #[vtable]
/// impl CharDevice for Page4k {
///     type Data = ();
///     type Ptr = Arc<Page4k>;
///
///     fn open(_data: &(), _file: &File, _minor: u32) -> Result<Arc<Page4k>> {
///         Ok(Arc::new(Page4k, GFP_KERNEL)?)
///     }
///
///     fn llseek(_: ArcBorrow<'_, Page4k>, file: &LocalFile, offset: i64, whence: u32) -> Result<i64> {
///         fixed_size_llseek(file, offset, whence, 4096)
///     }
/// }
/// ```
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

/// What a [`Registration`] shares with `open` and the class's `devnode` callback, through the
/// driver data of its device.
struct Inner<T: CharDevice> {
    data: T::Data,
    mode: u16,
}

/// The lock of a device (`device_lock()`), held while this lives.
struct DeviceLock(*mut bindings::device);

impl DeviceLock {
    /// # Safety
    ///
    /// `dev` must be a valid device for as long as the returned guard lives.
    unsafe fn new(dev: *mut bindings::device) -> Self {
        // SAFETY: By the safety requirements `dev` is valid; its mutex is initialised.
        unsafe { bindings::mutex_lock(&raw mut (*dev).mutex) };
        Self(dev)
    }

    /// The driver data of the device, which the lock protects for [`Registration`].
    fn driver_data(&self) -> *mut core::ffi::c_void {
        // SAFETY: The device is valid while the guard lives (type invariant of `new`).
        unsafe { (*self.0).driver_data }
    }

    fn clear_driver_data(&self) {
        // SAFETY: The device is valid while the guard lives. `devnode` reads the field without
        // the lock, so the write is a single volatile store (`WRITE_ONCE`).
        unsafe { core::ptr::write_volatile(&raw mut (*self.0).driver_data, core::ptr::null_mut()) };
    }
}

impl Drop for DeviceLock {
    fn drop(&mut self) {
        // SAFETY: `new` locked the mutex of this valid device.
        unsafe { bindings::mutex_unlock(&raw mut (*self.0).mutex) };
    }
}

/// A registered character device.
///
/// # Invariants
///
/// - `inner` points to a valid `Inner<T>` allocated with [`KBox`] and owned by `self`.
/// - If `region`, the device number `devt` is registered under the options' name.
/// - `class` is null or a class made by `class_create` whose `devnode` is `devnode::<T>`;
///   `device` is null or a device of `class` made by `device_create` for `devt`, whose driver
///   data is `inner` or, once `cdev_del` was called, null.
/// - `cdev` is null or a cdev made by `cdev_alloc`, with the file operations of
///   `CharDeviceVTable<T>`, `T`'s module as owner and `device` as parent, added for `devt`.
///
/// # Examples
///
/// ```
/// use kernel::{fs::File, prelude::*};
/// use kernel::chrdev::{CharDevice, Options, Registration};
///
/// struct Dev;
///
/// #[vtable]
/// impl CharDevice for Dev {
///     type Data = ();
///     type Ptr = ();
///
///     fn open(_data: &(), _file: &File, _minor: u32) -> Result {
///         Ok(())
///     }
/// }
///
/// /// A module keeps its registration for as long as it is loaded; unloading it drops the
/// /// registration, which removes the device.
/// struct DevModule {
///     _dev: Registration<Dev>,
/// }
///
/// let module = DevModule {
///     _dev: Registration::register(Options { name: c"rust_dev", major: 0, mode: 0o600 }, ())?,
/// };
/// drop(module);
/// # Ok::<(), Error>(())
/// ```
pub struct Registration<T: CharDevice> {
    inner: NonNull<Inner<T>>,
    devt: bindings::dev_t,
    region: bool,
    class: *mut bindings::class,
    device: *mut bindings::device,
    cdev: *mut bindings::cdev,
    _t: PhantomData<T>,
}

// SAFETY: Registration and unregistration may happen on any thread; the shared data is `Send`.
unsafe impl<T: CharDevice> Send for Registration<T> {}
// SAFETY: `&Registration` gives access to nothing but plain numbers; the file operations reach
// `T::Data`, which is `Sync`, from any thread.
unsafe impl<T: CharDevice> Sync for Registration<T> {}

impl<T: CharDevice> Registration<T> {
    /// Registers a character device serving minor 0 of `opts.major` (or of a dynamic major), with
    /// `data` shared by all its open files.
    ///
    /// Fails with `EBUSY` if the major is taken, `EINVAL` if it is above [`MAJOR_MAX`], and with
    /// the error of the first step that failed otherwise; nothing is left registered then.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::File, prelude::*};
    /// use kernel::chrdev::{CharDevice, Options, Registration, MAJOR_MAX};
    ///
    /// struct Nothing;
    ///
    /// #[vtable]
    /// impl CharDevice for Nothing {
    ///     type Data = ();
    ///     type Ptr = ();
    ///
    ///     fn open(_data: &(), _file: &File, _minor: u32) -> Result {
    ///         Err(ENXIO)
    ///     }
    /// }
    ///
    /// let opts = Options { name: c"rust_nothing", major: 0, mode: 0o600 };
    /// let first = Registration::<Nothing>::register(opts, ())?;
    /// // Its major is taken now; asking for it again fails.
    /// let again = Options { major: first.major(), ..opts };
    /// assert!(Registration::<Nothing>::register(again, ()).err() == Some(EBUSY));
    /// let too_big = Options { major: MAJOR_MAX + 1, ..opts };
    /// assert!(Registration::<Nothing>::register(too_big, ()).err() == Some(EINVAL));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn register(opts: Options, data: T::Data) -> Result<Self> {
        if opts.major > MAJOR_MAX {
            return Err(EINVAL);
        }
        let inner = KBox::new(
            Inner::<T> {
                data,
                mode: opts.mode,
            },
            GFP_KERNEL,
        )?;
        // INVARIANT: `inner` comes from a `KBox`; nothing else is registered yet.
        let mut this = Self {
            inner: NonNull::from(KBox::leak(inner)),
            devt: 0,
            region: false,
            class: core::ptr::null_mut(),
            device: core::ptr::null_mut(),
            cdev: core::ptr::null_mut(),
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

        // SAFETY: `name` is a valid C string that outlives the class (it is `'static`).
        let class = from_err_ptr(unsafe { bindings::class_create(name) })?;
        // SAFETY: The class was just made and has no device yet, so nothing reads `devnode`
        // concurrently; the callback is only called for devices of this class.
        unsafe { (*class).devnode = Some(devnode::<T>) };
        this.class = class;

        // SAFETY: `class` is valid, `devt` is ours, the driver data is `inner`, which outlives
        // the device's registration, and the format "%s" takes one C string, `name`.
        this.device = from_err_ptr(unsafe {
            bindings::device_create(
                class,
                core::ptr::null_mut(),
                this.devt,
                this.inner.as_ptr().cast(),
                c"%s".as_char_ptr(),
                name,
            )
        })?;

        // SAFETY: `cdev_alloc` has no preconditions.
        let cdev = unsafe { bindings::cdev_alloc() };
        if cdev.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `cdev` was just allocated and nobody else references it. The file operations
        // are a `'static` table whose `owner` is `T`'s module; the cdev's `owner` makes every
        // open file hold a reference on that module too. Its parent is our device, which it
        // keeps alive from `cdev_add` until its own release.
        unsafe {
            (*cdev).ops = CharDeviceVTable::<T>::build();
            (*cdev).owner = this_module::<T::OwnerModule>().as_ptr();
            bindings::cdev_set_parent(cdev, &raw mut (*this.device).kobj);
        }
        // SAFETY: `cdev` is initialised and `devt` is registered to us. From now on the device
        // can be opened.
        if let Err(e) = to_result(unsafe { bindings::cdev_add(cdev, this.devt, 1) }) {
            // SAFETY: The cdev was not added; dropping its only reference frees it.
            unsafe { bindings::kobject_put(&raw mut (*cdev).kobj) };
            return Err(e);
        }
        this.cdev = cdev;
        Ok(this)
    }

    /// The major number of the device.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::File, prelude::*};
    /// use kernel::chrdev::{CharDevice, Options, Registration};
    ///
    /// struct Numbered;
    ///
    /// #[vtable]
    /// impl CharDevice for Numbered {
    ///     type Data = ();
    ///     type Ptr = ();
    ///
    ///     fn open(_data: &(), _file: &File, _minor: u32) -> Result {
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let reg = Registration::<Numbered>::register(
    ///     Options { name: c"rust_numbered", major: 0, mode: 0o600 },
    ///     (),
    /// )?;
    /// // A dynamic major; `mknod NAME c MAJOR 0` makes a node for it.
    /// pr_info!("rust_numbered is {}:0\n", reg.major());
    /// assert!(reg.major() > 0 && reg.major() <= kernel::chrdev::MAJOR_MAX);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn major(&self) -> u32 {
        self.devt >> MINOR_BITS
    }
}

impl<T: CharDevice> Drop for Registration<T> {
    fn drop(&mut self) {
        if !self.cdev.is_null() {
            // SAFETY: By the type invariants the cdev was added. The device number no longer
            // finds it after this; the kernel frees it when its last reference goes.
            unsafe { bindings::cdev_del(self.cdev) };
        }
        if !self.device.is_null() {
            {
                // SAFETY: By the type invariants `device` is a live device of ours.
                let lock = unsafe { DeviceLock::new(self.device) };
                // An `open` through an inode that kept the cdev now finds no data.
                lock.clear_driver_data();
            }
            // SAFETY: By the type invariants `device` was made by `device_create`; this drops
            // our reference. The cdev, if any file still has it, holds another.
            unsafe { bindings::device_unregister(self.device) };
        }
        if !self.class.is_null() {
            // SAFETY: By the type invariants `class` was made by `class_create`, and its only
            // device is unregistered.
            unsafe { bindings::class_destroy(self.class) };
        }
        if self.region {
            // SAFETY: By the type invariants the number is registered to us.
            unsafe { bindings::unregister_chrdev_region(self.devt, 1) };
        }
        // SAFETY: By the type invariants `inner` came from `KBox`. Nothing reaches it any more:
        // `open` reads it only under the device lock, and the driver data was cleared; the
        // `devnode` callback runs only while the device is registered.
        drop(unsafe { KBox::from_raw(self.inner.as_ptr()) });
    }
}

/// The `devnode` callback of the class: sets the mode of the node in `/dev`.
///
/// # Safety
///
/// `dev` must be a device made by [`Registration::register`] for `T` and still registered, and
/// `mode` null or valid for writing.
unsafe extern "C" fn devnode<T: CharDevice>(
    dev: *const bindings::device,
    mode: *mut bindings::umode_t,
) -> *mut c_char {
    if !mode.is_null() {
        // SAFETY: By the safety requirements `dev` is valid. Its driver data is cleared under the
        // device lock without it being held here, hence one volatile load (`READ_ONCE`).
        let inner = unsafe { core::ptr::read_volatile(&raw const (*dev).driver_data) };
        let inner = inner.cast::<Inner<T>>();
        if !inner.is_null() {
            // SAFETY: The device is still registered, so its `Registration` has not freed
            // `inner` (it does so after unregistering the device); `mode` is valid for writing.
            unsafe { *mode = (*inner).mode };
        }
    }
    // Null keeps the default name, the device's own.
    core::ptr::null_mut()
}

/// The file operations of a [`CharDevice`].
struct CharDeviceVTable<T: CharDevice>(PhantomData<T>);

impl<T: CharDevice> CharDeviceVTable<T> {
    /// # Safety
    ///
    /// `inode` and `file` must be the inode and the file of a file being opened through a cdev
    /// made by a `Registration<T>`.
    unsafe extern "C" fn open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: `chrdev_open()` stored our cdev in `i_cdev` and took a reference on it before
        // calling us; for a char device inode that is the member of the union in use.
        let cdev = unsafe { (*inode).__bindgen_anon_5.i_cdev };
        // SAFETY: The cdev's parent is the kobject of the registration's device, which the cdev
        // keeps alive (it was set before `cdev_add` and never changes).
        let device = unsafe { kernel::container_of!((*cdev).kobj.parent, bindings::device, kobj) };
        // SAFETY: As above, `device` is valid during this call.
        let lock = unsafe { DeviceLock::new(device) };
        let inner = lock.driver_data().cast::<Inner<T>>();
        if inner.is_null() {
            // The registration is gone; only an inode remembered the cdev.
            return ENXIO.to_errno();
        }
        // SAFETY: The driver data is set, and we hold the lock under which `Registration::drop`
        // clears it before freeing `inner`.
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
    /// `desc` must be the description given to the `mmap_prepare` hook of a file of a
    /// `Registration<T>`.
    unsafe extern "C" fn mmap_prepare(desc: *mut bindings::vm_area_desc) -> c_int {
        // SAFETY: `desc` is valid; `file` is the file whose hook this is.
        let file = unsafe { (*desc).file };
        // SAFETY: The private data is a `T::Ptr` between `open` and `release`. `mmap(2)` holds a
        // reference on the file until it returns, so the borrow lasts that long.
        let device = unsafe { <T::Ptr as ForeignOwnable>::borrow((*file).private_data.cast()) };
        // SAFETY:
        // * The file is valid until `mmap(2)` returns.
        // * `mmap(2)` does not use `fdget_pos`.
        let f = unsafe { File::from_raw_file(file) };
        // SAFETY: `desc` is the description of this `mmap_prepare` call, which nobody else
        // accesses during it; the file's operations are `CharDeviceVTable<T>`, owned by
        // `T::OwnerModule`; `device` and `f` are borrowed until `mmap(2)` returns.
        let desc = unsafe { VmAreaDesc::<T::OwnerModule>::from_raw(desc) };
        match T::mmap_prepare(device, f, desc) {
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
        mmap_prepare: if T::HAS_MMAP_PREPARE {
            Some(Self::mmap_prepare)
        } else {
            None
        },
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
