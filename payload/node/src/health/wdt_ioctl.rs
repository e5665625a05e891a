//! The Linux watchdog ioctls (`linux/watchdog.h`). The only `unsafe` in the
//! daemon: nix's ioctl wrappers are `unsafe fn` because the kernel cannot
//! check the argument type; each call below passes exactly the type the
//! header declares for that request.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

const WATCHDOG_IOCTL_BASE: u8 = b'W';

nix::ioctl_read!(wdioc_keepalive, WATCHDOG_IOCTL_BASE, 5, libc::c_int);
nix::ioctl_readwrite!(wdioc_settimeout, WATCHDOG_IOCTL_BASE, 6, libc::c_int);
nix::ioctl_read!(wdioc_gettimeout, WATCHDOG_IOCTL_BASE, 7, libc::c_int);

/// WDIOC_KEEPALIVE.
pub(super) fn keepalive(file: &File) -> nix::Result<()> {
    let mut dummy: libc::c_int = 0;
    // SAFETY: WDIOC_KEEPALIVE is _IOR('W', 5, int); the kernel may write one
    // int to the pointer, which points to a live local int.
    unsafe { wdioc_keepalive(file.as_raw_fd(), &raw mut dummy) }.map(|_| ())
}

/// WDIOC_SETTIMEOUT; returns the timeout the driver granted, in seconds.
pub(super) fn set_timeout(file: &File, seconds: i32) -> nix::Result<i32> {
    let mut value: libc::c_int = seconds;
    // SAFETY: WDIOC_SETTIMEOUT is _IOWR('W', 6, int); the kernel reads and
    // writes one int through the pointer to a live local int.
    unsafe { wdioc_settimeout(file.as_raw_fd(), &raw mut value) }?;
    Ok(value)
}

/// WDIOC_GETTIMEOUT, in seconds.
pub(super) fn get_timeout(file: &File) -> nix::Result<i32> {
    let mut value: libc::c_int = 0;
    // SAFETY: WDIOC_GETTIMEOUT is _IOR('W', 7, int); the kernel writes one
    // int through the pointer to a live local int.
    unsafe { wdioc_gettimeout(file.as_raw_fd(), &raw mut value) }?;
    Ok(value)
}
