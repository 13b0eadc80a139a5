//! Allocator tuning for processes that run large tensor graphs (called once by the binaries).
//!
//! glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with fresh pages from
//! the kernel and returns them on free, so a network whose activations are tens of megabytes spends
//! most of its time zeroing pages in the kernel (measured: a UNETR forward at 96³ took 5.5 s with the
//! defaults and 1.55 s with large blocks kept in the heap). [`keep_freed_memory`] turns that off.
//!
//! CUDA's stream-ordered allocator (`cuMemAllocAsync`, which candle's cudarc uses) has the same
//! habit: the device's memory pool has a release threshold of 0 bytes by default, so at every
//! stream, event or context synchronisation it hands all unused memory back to the driver, and the
//! next allocations map fresh physical pages again. A training step synchronises at least once
//! (the loss, the optimiser's gradient norm) and frees gigabytes of activations in between, so every
//! step would map its whole working set anew. [`cuda_device`] opens a device with the pool keeping
//! its memory, as PyTorch's caching allocator does.
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

/// Open CUDA device `ordinal` for candle, set up for magseg's allocation pattern:
///
/// - the release threshold of the device's memory pool is raised to `u64::MAX`, so memory freed
///   during a step stays in the pool for the next one instead of going back to the driver at each
///   synchronisation (CUDA's default threshold is 0). The process keeps its peak device memory
///   reserved until it exits, as PyTorch's caching allocator does.
/// - cudarc's per-allocation event tracking is turned off. cudarc records and waits on those events
///   only once a context has a second stream (`CudaContext::new_stream`), which neither candle's
///   device (it launches on the thread's default stream) nor magseg creates; until then every
///   allocation still creates two CUDA events and every free destroys them, for nothing.
///
/// Errors: the device cannot be opened, or the driver refuses the pool setting.
#[cfg(feature = "cuda")]
pub fn cuda_device(ordinal: usize) -> candle_core::Result<candle_core::Device> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};

    let device = candle_core::Device::new_cuda(ordinal)?;
    let cuda = device.as_cuda_device()?;
    let ctx = cuda.cuda_stream().context().clone();
    if ctx.has_async_alloc() {
        let failed = |what: &'static str| {
            move |e: result::DriverError| {
                candle_core::Error::from(crate::KernelsError::Cuda { op: "cuda_device", msg: format!("{what}: {e}") })
            }
        };
        let pool = device_pool(&ctx).map_err(failed("getting the memory pool"))?;
        // SAFETY: the pool handle comes from the driver, and RELEASE_THRESHOLD takes a `u64`
        // (cuuint64_t), which `threshold` is and which outlives the call.
        unsafe {
            let mut threshold = u64::MAX;
            result::mem_pool::set_attribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            )
            .map_err(failed("setting the memory pool's release threshold"))?;
        }
    }
    // SAFETY: the context never enters cudarc's multi-stream mode (no `new_stream`: candle's device
    // uses the thread's default stream and magseg makes no other), so the events were never used to
    // order anything; what they would order across streams does not happen.
    unsafe { cuda.disable_event_tracking() };
    Ok(device)
}

/// The memory pool `cuMemAllocAsync` draws from on `ctx`'s device (binds `ctx` to this thread).
#[cfg(feature = "cuda")]
fn device_pool(
    ctx: &candle_core::cuda_backend::cudarc::driver::CudaContext,
) -> Result<
    candle_core::cuda_backend::cudarc::driver::sys::CUmemoryPool,
    candle_core::cuda_backend::cudarc::driver::DriverError,
> {
    ctx.bind_to_thread()?;
    // SAFETY: `ctx.cu_device()` is a device handle the driver returned when the context was created.
    unsafe { candle_core::cuda_backend::cudarc::driver::result::device::get_mem_pool(ctx.cu_device()) }
}

/// Byte counts of a CUDA device's memory pool (the one `cuMemAllocAsync` draws from), as the driver
/// reports them: see [`cuda_pool_bytes`].
#[cfg(feature = "cuda")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBytes {
    /// Memory the pool holds now, in use or not (`RESERVED_MEM_CURRENT`).
    pub reserved: u64,
    /// Memory in live allocations now (`USED_MEM_CURRENT`).
    pub used: u64,
    /// The most memory in live allocations at any time since the pool was created
    /// (`USED_MEM_HIGH`): the process's peak device memory for tensors.
    pub used_high: u64,
}

/// The byte counts of `device`'s memory pool; an error when `device` is not a CUDA device or the
/// driver has no memory pools.
#[cfg(feature = "cuda")]
pub fn cuda_pool_bytes(device: &candle_core::Device) -> candle_core::Result<PoolBytes> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    use sys::CUmemPool_attribute as A;

    let ctx = device.as_cuda_device()?.cuda_stream().context().clone();
    let failed = |e: result::DriverError| {
        candle_core::Error::from(crate::KernelsError::Cuda { op: "cuda_pool_bytes", msg: e.to_string() })
    };
    let pool = device_pool(&ctx).map_err(failed)?;
    // SAFETY: the pool handle comes from the driver; the three attributes are `cuuint64_t` values,
    // written into `v`.
    unsafe {
        let get = |attr: A| {
            let mut v = 0u64;
            result::mem_pool::get_attribute(pool, attr, (&mut v as *mut u64).cast()).map(|()| v).map_err(failed)
        };
        Ok(PoolBytes {
            reserved: get(A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?,
            used: get(A::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?,
            used_high: get(A::CU_MEMPOOL_ATTR_USED_MEM_HIGH)?,
        })
    }
}
