//! Allocator tuning for processes that run large tensor graphs (called once by the binaries).
//!
//! glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with fresh pages from
//! the kernel and returns them on free, so a network whose activations are tens of megabytes spends
//! most of its time zeroing pages in the kernel (measured: a UNETR forward at 96³ took 5.5 s with the
//! defaults and 1.55 s with large blocks kept in the heap). [`keep_freed_memory`] turns that off.
#![allow(unsafe_code)]

/// Make glibc's malloc serve large blocks from the heap and keep freed memory for reuse (no mmap for
/// big blocks, `M_TRIM_THRESHOLD = -1`: never trim). Returns whether the settings were applied (false on other C libraries).
/// Call it at the start of `main`, before other threads allocate.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's tuning parameters; it is called before the program
        // starts other threads and takes plain integers.
        unsafe { libc::mallopt(libc::M_MMAP_MAX, 0) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
