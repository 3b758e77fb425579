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
//!   module's memory is freed.) Each is a part of the registration with a `Drop` of its own, and
//!   a registration that fails halfway drops the parts it made; a cdev that `cdev_add()` refused
//!   is freed without its parent, on which `cdev_add()` took no reference.
//! - The data is reference counted, and reachable from C only through the device's driver data,
//!   by `open` and the class's `devnode`, which read it under `rcu_read_lock()`; `open` takes a
//!   reference and calls [`CharDevice::open`] under no lock at all, so opens run in parallel and
//!   lockdep sees every lock a driver's `open` takes. Dropping the registration clears the
//!   driver data after `cdev_del()` and waits for an RCU grace period before dropping its own
//!   reference: an `open` that comes later still (through an inode that kept the cdev) fails with
//!   `ENXIO`, and one already running keeps the data until it returns. An open file does not need
//!   the data: it has the [`CharDevice::Ptr`] that `open` made.
//! - The file operations and the code they call belong to the module: every open file holds a
//!   reference on the module (the cdev's and the operations' `owner`), so it cannot be unloaded
//!   while a file, or a mapping of one, exists.
//!
//! Two references outlive the module in C, as they do for any C driver that uses the same calls:
//! `class_create()` keeps the name it is given (read again by `class_release()`, only for a debug
//! message), and a cdev whose release `CONFIG_DEBUG_KOBJECT_RELEASE` delays is still reachable
//! from a `mknod` inode, whose next `open` reads the cdev's `owner` (`cdev_get()`) before it
//! finds the cdev dead.
//!
//! # Examples
//!
//! ```
//! use kernel::{fs::File, prelude::*, sync::Arc};
//! use kernel::chrdev::{CharDevice, Mode, Options, Registration};
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
//!     Options { name: c"rust_hello", major: 0, mode: Mode::new::<0o600>() },
//!     (),
//! )?;
//! assert!(reg.major() > 0);
//! // Dropping the registration removes the device, the class and the number.
//! drop(reg);
//! # Ok::<(), Error>(())
//! ```
//!
//! [`MiscDeviceRegistration`]: kernel::miscdevice::MiscDeviceRegistration

use crate::vma_desc::VmAreaDesc;
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
    sync::{Arc, ArcBorrow},
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
/// use kernel::chrdev::{Mode, Options};
///
/// // A node anybody may read and write, with a major chosen by the kernel.
/// let opts = Options { name: c"rust_shared", major: 0, mode: Mode::new::<0o666>() };
/// assert_eq!(opts.name.to_bytes(), b"rust_shared");
/// ```
#[derive(Copy, Clone)]
pub struct Options {
    /// The name in `/proc/devices`, of the device class and of the node in `/dev`.
    pub name: &'static CStr,
    /// The major number to claim, or 0 for one chosen by the kernel.
    pub major: u32,
    /// The permissions of the node devtmpfs creates in `/dev`.
    pub mode: Mode,
}

/// The permission bits of a device node: read, write and execute for its owner, its group and
/// the others (`0o777` at most), and nothing else. devtmpfs takes 0 for "not set" and makes the
/// node `0o600` then.
///
/// devtmpfs ORs the node's type into the mode it is given, so a mode with type bits of its own
/// would make another kind of node: `0o060666` a world-writable *block* device for the major. A
/// mode is therefore made from its bits at compile time, and anything beyond `0o777` does not
/// compile:
///
/// ```ignore,compile_fail
/// use kernel::chrdev::Mode;
///
/// pub fn block_device() -> Mode {
///     Mode::new::<0o060666>() // error[E0080]
/// }
/// ```
///
/// # Invariants
///
/// The value has no bit outside `0o777`.
///
/// # Examples
///
/// ```
/// use kernel::chrdev::Mode;
///
/// // Root may read and write; the group and the others may read.
/// let mode = Mode::new::<0o644>();
/// assert_eq!(mode.bits(), 0o644);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Mode(u16);

impl Mode {
    /// The mode of permission bits `BITS`, which must lie in `0o777`: checked when it compiles.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::chrdev::Mode;
    ///
    /// const ROOT_ONLY: Mode = Mode::new::<0o600>();
    /// assert_eq!(ROOT_ONLY.bits(), 0o600);
    /// ```
    pub const fn new<const BITS: u16>() -> Self {
        const {
            assert!(
                BITS & !0o777 == 0,
                "a device node's mode takes permission bits only (0o777 at most)"
            )
        };
        // INVARIANT: Checked above, at compile time.
        Self(BITS)
    }

    /// The permission bits.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::chrdev::Mode;
    ///
    /// assert_eq!(Mode::new::<0o400>().bits() & 0o077, 0);
    /// ```
    pub const fn bits(self) -> u16 {
        self.0
    }
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
/// use kernel::chrdev::{CharDevice, Mode, Options, Registration};
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
///     Options { name: c"rust_motd", major: 0, mode: Mode::new::<0o444>() },
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
    ///     fn read_iter(
    ///         _kiocb: Kiocb<'_, Arc<Empty>>,
    ///         _iov: &mut IovIterDest<'_>,
    ///     ) -> Result<usize> {
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
    ///     fn write_iter(
    ///         _kiocb: Kiocb<'_, Arc<Sink>>,
    ///         iov: &mut IovIterSource<'_>,
    ///     ) -> Result<usize> {
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
    ///     fn llseek(
    ///         text: ArcBorrow<'_, Text>,
    ///         file: &LocalFile,
    ///         offset: i64,
    ///         whence: u32,
    ///     ) -> Result<i64> {
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
    /// use kernel::mm::{
    ///     virt::VmAreaDesc,
    ///     vm_ops::{FaultError, Mapped, VmFault, VmOperations},
    /// };
    ///
    /// /// A device that maps one page of its own.
    /// struct OnePage(Page);
    ///
    /// #[vtable]
    /// impl VmOperations for OnePage {
    ///     type Ptr = Arc<Self>;
    ///
    ///     fn fault<'f>(
    ///         this: ArcBorrow<'_, Self>,
    ///         vmf: &'f VmFault,
    ///     ) -> Result<Mapped<'f>, FaultError> {
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
    ///         desc.set_vm_ops::<OnePage>(device);
    ///         Ok(())
    ///     }
    /// }
    /// ```
    ///
    /// The operations must be those of the module that owns the file, whose references keep
    /// its code loaded while a VMA uses them:
    ///
    /// ```ignore,compile_fail
    /// use kernel::{prelude::*, sync::{Arc, ArcBorrow}};
    /// use kernel::mm::{
    ///     virt::VmAreaDesc,
    ///     vm_ops::{FaultError, Mapped, VmFault, VmOperations},
    /// };
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
    ///     type Ptr = Arc<Self>;
    ///     fn fault<'f>(_: ArcBorrow<'_, Self>, _: &'f VmFault) -> Result<Mapped<'f>, FaultError> {
    ///         Err(FaultError::SigBus)
    ///     }
    /// }
    ///
    /// // A description of a file of this module's, and another module's operations.
    /// fn prepare<'a>(desc: &mut VmAreaDesc<'a, crate::LocalModule>, ops: ArcBorrow<'a, Foreign>) {
    ///     desc.set_vm_ops::<Foreign>(ops); // error[E0271]
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
///     fn llseek(
///         _: ArcBorrow<'_, Page4k>,
///         file: &LocalFile,
///         offset: i64,
///         whence: u32,
///     ) -> Result<i64> {
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
/// driver data of its device: refcounted, so that an `open` can keep it for as long as it runs.
struct Inner<T: CharDevice> {
    data: T::Data,
    mode: Mode,
}

/// The driver data of `device`, an `Inner<T>`, borrowed for an RCU read-side critical section.
///
/// # Safety
///
/// `device` must be valid, and its driver data null or the pointer of an `Arc<Inner<T>>` that a
/// [`Device`] published and keeps until a grace period after it clears it. (`device_create()`
/// publishes it before a `Device` exists, and when it fails, `Device::new` drops its reference
/// at once: sound, because a failing `device_create()` has by then removed everything through
/// which the driver data is read, the node (whose `devnode` calls come from `device_add()` and
/// `device_del()` themselves) and the sysfs `uevent` file (whose readers it drains).)
unsafe fn inner_of<'a, T: CharDevice>(
    device: *const bindings::device,
    _rcu: &'a kernel::sync::rcu::Guard,
) -> Option<ArcBorrow<'a, Inner<T>>> {
    // SAFETY: `device` is valid. `Device::drop` clears the field concurrently, hence one
    // volatile load (`READ_ONCE`).
    let ptr = unsafe { core::ptr::read_volatile(&raw const (*device).driver_data) };
    let ptr = NonNull::new(ptr.cast::<Inner<T>>())?;
    // SAFETY: The pointer was read inside the RCU read-side critical section `_rcu`, so the
    // `Arc` it came from keeps its reference until the section ends (the safety requirements),
    // which `'a` cannot outlive.
    Some(unsafe { ArcBorrow::from_raw(ptr.as_ptr()) })
}

/// A device number registered to us (`alloc_chrdev_region()` or `register_chrdev_region()`),
/// unregistered when dropped.
///
/// # Invariants
///
/// `devt` is registered to us, one minor.
struct Region {
    devt: bindings::dev_t,
}

impl Region {
    fn new(major: u32, name: &'static CStr) -> Result<Self> {
        let name = name.as_char_ptr();
        let devt = if major == 0 {
            let mut devt: bindings::dev_t = 0;
            // SAFETY: `devt` is valid for writing and `name` is a valid C string. The kernel
            // copies the name.
            to_result(unsafe { bindings::alloc_chrdev_region(&mut devt, 0, 1, name) })?;
            devt
        } else {
            let devt = mkdev(major, 0);
            // SAFETY: `name` is a valid C string; the kernel copies it.
            to_result(unsafe { bindings::register_chrdev_region(devt, 1, name) })?;
            devt
        };
        // INVARIANT: Registered just above.
        Ok(Self { devt })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the number is registered to us.
        unsafe { bindings::unregister_chrdev_region(self.devt, 1) };
    }
}

/// A device class made by `class_create()`, destroyed when dropped; the driver core frees it
/// when its last reference goes (possibly later, never from module code).
///
/// # Invariants
///
/// `ptr` is a class made by `class_create()`, whose `devnode` is `devnode::<T>`.
struct Class<T: CharDevice> {
    ptr: NonNull<bindings::class>,
    _t: PhantomData<T>,
}

impl<T: CharDevice> Class<T> {
    fn new(name: &'static CStr) -> Result<Self> {
        // SAFETY: `name` is a valid C string, `'static`. The class keeps the pointer: see the
        // module documentation on what that means after the module is gone.
        let class = from_err_ptr(unsafe { bindings::class_create(name.as_char_ptr()) })?;
        // SAFETY: The class was just made and has no device yet, so nothing reads `devnode`
        // concurrently; the callback is only called for devices of this class.
        unsafe { (*class).devnode = Some(devnode::<T>) };
        // INVARIANT: Made by `class_create()`, with our `devnode`. It is not null (an error
        // pointer was returned as an error above).
        Ok(Self {
            // SAFETY: `from_err_ptr` returned a valid class pointer, not null.
            ptr: unsafe { NonNull::new_unchecked(class) },
            _t: PhantomData,
        })
    }
}

impl<T: CharDevice> Drop for Class<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the class was made by `class_create()`. Its device, if
        // any, is unregistered already: a `Registration` drops its `Device` before its `Class`
        // (the order of its fields), and `register` drops a `Device` it made before the `Class`
        // (locals drop in the reverse order of their making).
        unsafe { bindings::class_destroy(self.ptr.as_ptr()) };
    }
}

/// The device of a registration (the node in `/dev`), made by `device_create()` with the
/// registration's [`Inner`] as its driver data; unregistered when dropped.
///
/// # Invariants
///
/// `ptr` is a registered device of a [`Class<T>`], made by `device_create()`. Its driver data is
/// the pointer of `_inner`, or null; once it is null, it stays null.
struct Device<T: CharDevice> {
    ptr: NonNull<bindings::device>,
    _inner: Arc<Inner<T>>,
}

impl<T: CharDevice> Device<T> {
    fn new(
        class: &Class<T>,
        devt: bindings::dev_t,
        inner: Arc<Inner<T>>,
        name: &CStr,
    ) -> Result<Self> {
        // SAFETY: `class` is valid (type invariants), `devt` is registered to the caller, the
        // driver data is `inner`'s pointer, which `Device` keeps valid while it is published, and
        // the format "%s" takes one C string, `name`.
        let dev = from_err_ptr(unsafe {
            bindings::device_create(
                class.ptr.as_ptr(),
                core::ptr::null_mut(),
                devt,
                Arc::as_ptr(&inner).cast_mut().cast(),
                c"%s".as_char_ptr(),
                name.as_char_ptr(),
            )
        })?;
        // INVARIANT: Made by `device_create()` with `inner` as driver data.
        Ok(Self {
            // SAFETY: `from_err_ptr` returned a valid device pointer, not null.
            ptr: unsafe { NonNull::new_unchecked(dev) },
            _inner: inner,
        })
    }
}

impl<T: CharDevice> Drop for Device<T> {
    fn drop(&mut self) {
        // Unpublish the data: an `open` that starts now (through an inode that kept the cdev)
        // finds none and fails with `ENXIO`.
        // SAFETY: By the type invariants the device is valid. `inner_of` reads the field
        // concurrently, hence one volatile store (`WRITE_ONCE`).
        unsafe {
            core::ptr::write_volatile(
                &raw mut (*self.ptr.as_ptr()).driver_data,
                core::ptr::null_mut(),
            )
        };
        // Every `open` or `devnode` that read the pointer before has left its RCU read-side
        // critical section, holding its own reference if it needs one: `inner` may go after this.
        kernel::sync::rcu::synchronize_rcu();
        // SAFETY: By the type invariants the device was made by `device_create()`; this drops
        // our reference. A cdev that a file still holds has one of its own.
        unsafe { bindings::device_unregister(self.ptr.as_ptr()) };
    }
}

/// A `struct cdev` from `cdev_alloc()`, added for a device number; deleted when dropped, and
/// freed by the kernel when its last reference goes.
///
/// # Invariants
///
/// `ptr` is a cdev made by `cdev_alloc()` with the file operations of `CharDeviceVTable<T>`,
/// `T`'s module as owner and a [`Device<T>`] as parent, added with `cdev_add()`.
struct Cdev<T: CharDevice> {
    ptr: NonNull<bindings::cdev>,
    _t: PhantomData<T>,
}

impl<T: CharDevice> Cdev<T> {
    fn new(device: &Device<T>, devt: bindings::dev_t) -> Result<Self> {
        // SAFETY: `cdev_alloc` has no preconditions.
        let cdev = NonNull::new(unsafe { bindings::cdev_alloc() }).ok_or(ENOMEM)?;
        let raw = cdev.as_ptr();
        // SAFETY: `cdev` was just allocated and nobody else references it. The file operations
        // are a `'static` table whose `owner` is `T`'s module; the cdev's `owner` makes every
        // open file hold a reference on that module too. Its parent is our device, which it
        // keeps alive from `cdev_add()` until its own release.
        unsafe {
            (*raw).ops = CharDeviceVTable::<T>::build();
            (*raw).owner = this_module::<T::OwnerModule>().as_ptr();
            bindings::cdev_set_parent(raw, &raw mut (*device.ptr.as_ptr()).kobj);
        }
        // SAFETY: `cdev` is initialised and `devt` is registered to the caller. From now on the
        // device can be opened.
        if let Err(e) = to_result(unsafe { bindings::cdev_add(raw, devt, 1) }) {
            // `cdev_add()` takes its reference on the parent only when it succeeds, but the
            // cdev's release (`cdev_dynamic_release()`) drops one whenever the parent is set:
            // forget the parent first, or the device would lose a reference it still needs.
            // SAFETY: The cdev was not added and nobody else references it; dropping its only
            // reference frees it, and no more.
            unsafe {
                (*raw).kobj.parent = core::ptr::null_mut();
                bindings::kobject_put(&raw mut (*raw).kobj);
            }
            return Err(e);
        }
        // INVARIANT: Set up and added above.
        Ok(Self {
            ptr: cdev,
            _t: PhantomData,
        })
    }
}

impl<T: CharDevice> Drop for Cdev<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the cdev was added. The device number no longer finds it
        // after this; the kernel frees it when its last reference goes.
        unsafe { bindings::cdev_del(self.ptr.as_ptr()) };
    }
}

/// A registered character device.
///
/// It is made of parts, each undone by its own `Drop`, in this order: the cdev (the number no
/// longer opens anything), the device (its data unpublished, then the node in `/dev` removed),
/// the class, the device number, and last the shared data, unless an `open` still running holds
/// it. A registration that fails halfway drops the parts it made, in the same order.
///
/// # Examples
///
/// ```
/// use kernel::{fs::File, prelude::*};
/// use kernel::chrdev::{CharDevice, Mode, Options, Registration};
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
///     _dev: Registration::register(
///         Options { name: c"rust_dev", major: 0, mode: Mode::new::<0o600>() },
///         (),
///     )?,
/// };
/// drop(module);
/// # Ok::<(), Error>(())
/// ```
pub struct Registration<T: CharDevice> {
    // Dropped in this order.
    _cdev: Cdev<T>,
    _device: Device<T>,
    _class: Class<T>,
    region: Region,
}

// SAFETY: Registration and unregistration may happen on any thread; the shared data is `Send`
// and `Sync`.
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
    /// use kernel::chrdev::{CharDevice, Mode, Options, Registration, MAJOR_MAX};
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
    /// let opts = Options { name: c"rust_nothing", major: 0, mode: Mode::new::<0o600>() };
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
        let inner = Arc::new(
            Inner::<T> {
                data,
                mode: opts.mode,
            },
            GFP_KERNEL,
        )?;
        // Each part undoes itself if a later one fails.
        let region = Region::new(opts.major, opts.name)?;
        let class = Class::<T>::new(opts.name)?;
        let device = Device::new(&class, region.devt, inner, opts.name)?;
        let cdev = Cdev::new(&device, region.devt)?;
        Ok(Self {
            _cdev: cdev,
            _device: device,
            _class: class,
            region,
        })
    }

    /// The major number of the device.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{fs::File, prelude::*};
    /// use kernel::chrdev::{CharDevice, Mode, Options, Registration};
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
    ///     Options { name: c"rust_numbered", major: 0, mode: Mode::new::<0o600>() },
    ///     (),
    /// )?;
    /// // A dynamic major; `mknod NAME c MAJOR 0` makes a node for it.
    /// pr_info!("rust_numbered is {}:0\n", reg.major());
    /// assert!(reg.major() > 0 && reg.major() <= kernel::chrdev::MAJOR_MAX);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn major(&self) -> u32 {
        self.region.devt >> MINOR_BITS
    }
}

/// The `devnode` callback of the class: sets the mode of the node in `/dev`.
///
/// # Safety
///
/// `dev` must be a device of a [`Class<T>`], so a [`Device<T>`]'s, and `mode` null or valid for
/// writing.
unsafe extern "C" fn devnode<T: CharDevice>(
    dev: *const bindings::device,
    mode: *mut bindings::umode_t,
) -> *mut c_char {
    if !mode.is_null() {
        let rcu = kernel::sync::rcu::read_lock();
        // SAFETY: `dev` is a `Device<T>`'s (the safety requirements), which publishes its data
        // as `inner_of` needs.
        if let Some(inner) = unsafe { inner_of::<T>(dev, &rcu) } {
            // SAFETY: `mode` is valid for writing.
            unsafe { *mode = inner.mode.bits() };
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
        // The registration's data, with a reference of our own, so that `T::open` runs under no
        // lock: the registration may go meanwhile, and the data then goes with our reference.
        let inner = {
            let rcu = kernel::sync::rcu::read_lock();
            // SAFETY: As above, `device` is valid during this call; it is a `Device<T>`'s.
            match unsafe { inner_of::<T>(device, &rcu) } {
                Some(inner) => Arc::from(inner),
                // The registration is gone; only an inode remembered the cdev.
                None => return ENXIO.to_errno(),
            }
        };
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
