//! Locked, non-dumpable, zeroized memory for secrets — and the only module
//! of this crate that contains `unsafe` code.
//!
//! Owns: [`SecretBox`], a fixed-size secret in its own anonymous mapping that
//! is `mlock`ed (never swapped), marked `MADV_DONTDUMP` (left out of core
//! dumps, the VMA shows the `dd` flag in `/proc/PID/smaps`) and
//! `MADV_WIPEONFORK` (a forked child sees zeros), zeroized and unmapped on
//! drop; [`set_process_undumpable`], which the daemon calls once at start.
//!
//! Must never: hand out the secret except by reference ([`SecretBox::expose`]),
//! print it (its `Debug` redacts), or leave the bytes in the mapping after
//! drop. It does not (cannot) scrub copies that other code makes on the stack
//! or in libraries' heaps; see the crate README for the residual copies.
#![allow(unsafe_code)]

use std::fmt;
use std::ptr::NonNull;

use zeroize::Zeroize;

use crate::error::KeyError;

/// Largest secret a [`SecretBox`] holds: one page on every platform we run on.
const MAX_SECRET: usize = 4096;

/// A fixed-size secret in locked, non-dumpable memory, zeroized on drop.
///
/// Each box is its own anonymous mapping of whole pages, so `mlock` and
/// `madvise` apply to exactly the secret's pages.
pub struct SecretBox<const N: usize> {
    ptr: NonNull<u8>,
    map_len: usize,
}

// SAFETY: SecretBox uniquely owns its mapping (no aliasing pointer escapes
// except through borrows tied to &self/&mut self), so moving it to another
// thread or sharing &SecretBox between threads is as safe as for a [u8; N].
unsafe impl<const N: usize> Send for SecretBox<N> {}
// SAFETY: see above; &SecretBox only gives out &[u8; N].
unsafe impl<const N: usize> Sync for SecretBox<N> {}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(v).ok().filter(|p| *p > 0).unwrap_or(4096)
}

impl<const N: usize> SecretBox<N> {
    /// Allocates a zero-filled secret of `N` bytes in its own locked,
    /// non-dumpable mapping.
    ///
    /// # Errors
    /// [`KeyError::SecretMemory`] if `mmap`, `mlock` (e.g. `RLIMIT_MEMLOCK`
    /// exhausted) or `madvise(MADV_DONTDUMP)` fails, or `N` is 0 or larger
    /// than a page.
    pub fn new_zeroed() -> Result<Self, KeyError> {
        if N == 0 || N > MAX_SECRET {
            return Err(KeyError::SecretMemory {
                op: "size check",
                errno: libc::EINVAL,
            });
        }
        let page = page_size();
        let map_len = N
            .div_ceil(page)
            .checked_mul(page)
            .ok_or(KeyError::SecretMemory {
                op: "size check",
                errno: libc::EOVERFLOW,
            })?;
        // SAFETY: anonymous private mapping with a null hint and no fd: no
        // existing memory is affected; the result is checked against
        // MAP_FAILED before use.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(KeyError::SecretMemory {
                op: "mmap",
                errno: errno(),
            });
        }
        let Some(ptr) = NonNull::new(raw.cast::<u8>()) else {
            return Err(KeyError::SecretMemory {
                op: "mmap",
                errno: libc::ENOMEM,
            });
        };
        // From here on `this` owns the mapping; its Drop unmaps it on every
        // early return below.
        let this = SecretBox { ptr, map_len };
        // SAFETY: [raw, raw+map_len) is the mapping we just created.
        if unsafe { libc::mlock(raw, map_len) } != 0 {
            return Err(KeyError::SecretMemory {
                op: "mlock",
                errno: errno(),
            });
        }
        // SAFETY: advice on our own mapping; MADV_DONTDUMP changes no content.
        if unsafe { libc::madvise(raw, map_len, libc::MADV_DONTDUMP) } != 0 {
            return Err(KeyError::SecretMemory {
                op: "madvise(MADV_DONTDUMP)",
                errno: errno(),
            });
        }
        // Best effort: kernels before 4.14 lack MADV_WIPEONFORK; the daemon
        // does not fork after unsealing, so failure here is not fatal.
        // SAFETY: advice on our own mapping; changes no content now.
        let _ = unsafe { libc::madvise(raw, map_len, libc::MADV_WIPEONFORK) };
        Ok(this)
    }

    /// Allocates a secret and lets `fill` write it in place, so the value
    /// never exists in ordinary memory owned by this crate.
    ///
    /// # Errors
    /// Errors of [`SecretBox::new_zeroed`], or whatever `fill` returns (the
    /// partly filled secret is zeroized and unmapped).
    pub fn new_with<F>(fill: F) -> Result<Self, KeyError>
    where
        F: FnOnce(&mut [u8; N]) -> Result<(), KeyError>,
    {
        let mut b = Self::new_zeroed()?;
        fill(b.expose_mut())?;
        Ok(b)
    }

    /// Borrows the secret bytes.
    #[must_use]
    pub fn expose(&self) -> &[u8; N] {
        // SAFETY: the mapping is at least N bytes, readable, page-aligned (so
        // aligned for [u8; N]) and lives as long as self; the shared borrow
        // of self prevents concurrent mutation.
        unsafe { &*self.ptr.as_ptr().cast::<[u8; N]>() }
    }

    /// Mutably borrows the secret bytes.
    pub fn expose_mut(&mut self) -> &mut [u8; N] {
        // SAFETY: as in `expose`, and &mut self guarantees exclusivity.
        unsafe { &mut *self.ptr.as_ptr().cast::<[u8; N]>() }
    }

    /// Overwrites the secret with zeros (volatile writes, not elided).
    pub fn wipe(&mut self) {
        self.expose_mut().zeroize();
    }

    /// Start address of the mapping, for diagnostics and the core-dump tests
    /// (to find the mapping in `/proc/self/smaps`). Not a way to the bytes.
    #[must_use]
    pub fn mapping_address(&self) -> usize {
        self.ptr.as_ptr() as usize
    }
}

impl<const N: usize> Drop for SecretBox<N> {
    fn drop(&mut self) {
        // Zeroize the whole mapping, not only N bytes.
        // SAFETY: the mapping is map_len bytes, writable, owned by self.
        let all = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.map_len) };
        all.zeroize();
        let raw = self.ptr.as_ptr().cast::<libc::c_void>();
        // SAFETY: unlocking our own mapping; failure (not locked) is harmless.
        let _ = unsafe { libc::munlock(raw, self.map_len) };
        // SAFETY: the mapping was created by mmap with this length and no
        // reference to it outlives self.
        let _ = unsafe { libc::munmap(raw, self.map_len) };
    }
}

impl<const N: usize> fmt::Debug for SecretBox<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBox<{N}>([REDACTED])")
    }
}

impl<const N: usize> PartialEq for SecretBox<N> {
    /// Constant-time comparison (no early exit on the first differing byte).
    fn eq(&self, other: &Self) -> bool {
        let mut acc = 0u8;
        for (a, b) in self.expose().iter().zip(other.expose().iter()) {
            acc |= a ^ b;
        }
        std::hint::black_box(acc) == 0
    }
}

impl<const N: usize> Eq for SecretBox<N> {}

/// Marks the whole process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): no
/// core file is written on a crash, `/proc/PID/mem` and ptrace need
/// `CAP_SYS_PTRACE`, and `/proc/PID/*` becomes root-owned. The daemon calls
/// this once at start, before unsealing anything.
///
/// # Errors
/// [`KeyError::SecretMemory`] if `prctl` fails.
pub fn set_process_undumpable() -> Result<(), KeyError> {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(KeyError::SecretMemory {
            op: "prctl(PR_SET_DUMPABLE)",
            errno: errno(),
        });
    }
    Ok(())
}

/// Whether the process is currently dumpable (`prctl(PR_GET_DUMPABLE)`).
#[must_use]
pub fn process_is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no pointer arguments.
    let rc = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
    rc > 0
}

/// Overwrites a region of the stack below the caller with zeros, to scrub
/// residues that secret-handling code (hashing, BIP32 derivation, the TSS
/// library's by-value structs) left in dead stack frames. Best effort.
#[inline(never)]
pub fn scrub_stack() {
    let mut buf = [0u8; 32 * 1024];
    buf.zeroize();
    std::hint::black_box(&buf);
}

/// Best-effort scrub of freed C-heap memory: for every malloc size class
/// from 16 bytes up to `max_size` (16-byte steps), allocates `per_class`
/// blocks through the global allocator (the system `malloc` unless a binary
/// installs another one), zeroes them and frees them again. glibc hands
/// recently freed chunks of a size class back first (tcache, then the exact
/// small bin), so this overwrites what libtss2-esys and its crypto backend
/// `malloc`ed for unsealed plaintext and freed without zeroing. The core-dump
/// tests measure that it works; it is not a guarantee.
#[inline(never)]
pub fn scrub_freed_heap(max_size: usize, per_class: usize) {
    let mut size = 16;
    while size <= max_size {
        let mut held: Vec<Vec<u8>> = Vec::with_capacity(per_class);
        for _ in 0..per_class {
            let mut v = vec![0u8; size];
            v.zeroize();
            held.push(std::hint::black_box(v));
        }
        drop(std::hint::black_box(held));
        size = size.saturating_add(16);
    }
    // Larger blocks are carved from big free chunks and the top of the
    // arena, where consolidated small chunks end up.
    let mut big = 4096usize;
    while big <= 96 * 1024 {
        let mut held: Vec<Vec<u8>> = Vec::with_capacity(4);
        for _ in 0..4 {
            let mut v = vec![0u8; big];
            v.zeroize();
            held.push(std::hint::black_box(v));
        }
        drop(std::hint::black_box(held));
        big = big.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm_flags_of(addr: usize) -> Option<Vec<String>> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut in_map = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = first.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                in_map = a <= addr && addr < b;
                continue;
            }
            if in_map && let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.split_whitespace().map(str::to_owned).collect());
            }
        }
        None
    }

    #[test]
    fn mapping_is_locked_and_dontdump() {
        let s = SecretBox::<32>::new_zeroed().unwrap();
        let flags = vm_flags_of(s.mapping_address()).expect("mapping in smaps");
        assert!(flags.iter().any(|f| f == "lo"), "not locked: {flags:?}");
        assert!(flags.iter().any(|f| f == "dd"), "not dontdump: {flags:?}");
    }

    #[test]
    fn wipe_zeroes_and_debug_redacts() {
        let mut s = SecretBox::<32>::new_with(|b| {
            b.fill(0xA5);
            Ok(())
        })
        .unwrap();
        assert_eq!(s.expose(), &[0xA5; 32]);
        assert_eq!(format!("{s:?}"), "SecretBox<32>([REDACTED])");
        s.wipe();
        assert_eq!(s.expose(), &[0u8; 32]);
    }

    #[test]
    fn failed_fill_is_reported() {
        let r = SecretBox::<16>::new_with(|_| Err(KeyError::Overflow { what: "test" }));
        assert!(matches!(r, Err(KeyError::Overflow { .. })));
    }

    #[test]
    fn eq_is_by_content() {
        let a = SecretBox::<8>::new_with(|b| {
            b.fill(1);
            Ok(())
        })
        .unwrap();
        let b = SecretBox::<8>::new_with(|b| {
            b.fill(1);
            Ok(())
        })
        .unwrap();
        let c = SecretBox::<8>::new_zeroed().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
