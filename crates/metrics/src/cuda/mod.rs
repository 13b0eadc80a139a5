//! The exact Euclidean distance transform on an NVIDIA GPU (feature `cuda`): the kernels of `edt.cu`
//! (compiled to PTX by build.rs) launched through cudarc, with the semantics of [`crate::edt_squared`].
//!
//! Kernel launches are `unsafe` in cudarc; this is the only module of the crate allowed to use it.
#![allow(unsafe_code)]

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::Ptx;

use crate::{Grid, MetricsError, Result};

/// PTX of `edt.cu`, compiled by build.rs with nvcc (`-fmad=false`).
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/edt.ptx"));

/// Threads per block of every launch.
const BLOCK: u32 = 128;

fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> MetricsError + '_ {
    move |e| MetricsError::Cuda(format!("{what}: {e}"))
}

/// A CUDA device with the EDT kernels loaded: context, stream and the two kernel functions.
pub struct CudaEdt {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    binary_lines: CudaFunction,
    envelope_lines: CudaFunction,
}

/// One volume's buffers on the device: the features, the distances and the envelope scratch, so that
/// [`CudaEdt::run`] can be timed without host transfers.
pub struct DeviceEdt {
    grid: Grid,
    features: CudaSlice<bool>,
    out: CudaSlice<f32>,
    v: CudaSlice<i32>,
    h: CudaSlice<f64>,
    z: CudaSlice<f64>,
}

impl DeviceEdt {
    /// The grid the buffers were made for.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }
}

impl CudaEdt {
    /// Open device `ordinal` and load the EDT kernels; an error when there is no such device or the
    /// driver cannot load the PTX.
    pub fn new(ordinal: usize) -> Result<Self> {
        let ctx = CudaContext::new(ordinal).map_err(cuda_err("opening the CUDA device"))?;
        let stream = ctx.default_stream();
        let module = ctx.load_module(Ptx::from_src(PTX)).map_err(cuda_err("loading the EDT PTX"))?;
        let binary_lines = module.load_function("edt_binary_lines").map_err(cuda_err("edt_binary_lines"))?;
        let envelope_lines = module.load_function("edt_envelope_lines").map_err(cuda_err("edt_envelope_lines"))?;
        Ok(Self { ctx, stream, binary_lines, envelope_lines })
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> Result<String> {
        self.ctx.name().map_err(cuda_err("device name"))
    }

    /// Squared Euclidean distance (mm²) from every voxel to the nearest feature (true) voxel, exactly
    /// as [`crate::edt_squared`] computes it (bit for bit): 0 on features, `f32::INFINITY` everywhere
    /// when there is no feature.
    pub fn edt_squared(&self, features: &[bool], grid: &Grid) -> Result<Vec<f32>> {
        let mut d = self.upload(features, grid)?;
        self.run(&mut d)?;
        self.download(&d)
    }

    /// Copy `features` to the device and allocate the output and scratch buffers for [`CudaEdt::run`].
    pub fn upload(&self, features: &[bool], grid: &Grid) -> Result<DeviceEdt> {
        let n = grid.check("features", features.len())?;
        let [nx, ny, nz] = grid.dims;
        // Envelope scratch: n + 1 entries per line of the j and k passes.
        let scratch = (nx * nz * (ny + 1)).max(nx * ny * (nz + 1)).max(1);
        let s = &self.stream;
        // A zero-voxel grid still gets one-element buffers (the driver refuses empty allocations).
        let host: &[bool] = if n == 0 { &[false] } else { features };
        let features = s.clone_htod(host).map_err(cuda_err("uploading the features"))?;
        let out = s.alloc_zeros::<f32>(n.max(1)).map_err(cuda_err("allocating the distances"))?;
        let v = s.alloc_zeros::<i32>(scratch).map_err(cuda_err("allocating scratch"))?;
        let h = s.alloc_zeros::<f64>(scratch).map_err(cuda_err("allocating scratch"))?;
        let z = s.alloc_zeros::<f64>(scratch).map_err(cuda_err("allocating scratch"))?;
        Ok(DeviceEdt { grid: *grid, features, out, v, h, z })
    }

    /// Launch the three passes on the device buffers (asynchronously; see [`CudaEdt::synchronize`]).
    pub fn run(&self, d: &mut DeviceEdt) -> Result<()> {
        let [nx, ny, nz] = d.grid.dims;
        let [si, sj, sk] = d.grid.spacing;
        if nx * ny * nz == 0 {
            return Ok(());
        }
        let dim = |n: usize| i32::try_from(n).map_err(|_| MetricsError::InvalidGrid(format!("{n} voxels per line")));
        let (ni, nj, nk) = (dim(nx)?, dim(ny)?, dim(nz)?);
        let lines_i = (ny * nz) as i64;
        let mut launch = self.stream.launch_builder(&self.binary_lines);
        launch.arg(&d.features).arg(&mut d.out).arg(&lines_i).arg(&ni).arg(&si);
        // SAFETY: edt_binary_lines(const u8* f, float* out, long long nlines, int n, double s): `features`
        // (bool = one 0/1 byte) and `out` (f32) hold nx*ny*nz = nlines*n elements; i64, i32, f64 scalars.
        unsafe { launch.launch(config(lines_i)?) }.map_err(cuda_err("edt_binary_lines"))?;
        // The CPU skips lines of length 1 (the envelope would round g/s²·s²); so does the GPU.
        if ny > 1 {
            let lines = (nx * nz) as i64;
            let (inner, outer, stride) = (nx as i64, (nx * ny) as i64, nx as i64);
            self.envelope(d, lines, nj, inner, outer, stride, sj)?;
        }
        if nz > 1 {
            let lines = (nx * ny) as i64;
            let (inner, outer, stride) = (lines, 0i64, lines);
            self.envelope(d, lines, nk, inner, outer, stride, sk)?;
        }
        Ok(())
    }

    /// One envelope pass over `lines` lines of `n` voxels.
    #[allow(clippy::too_many_arguments)]
    fn envelope(
        &self,
        d: &mut DeviceEdt,
        lines: i64,
        n: i32,
        inner: i64,
        outer: i64,
        stride: i64,
        s: f64,
    ) -> Result<()> {
        let mut launch = self.stream.launch_builder(&self.envelope_lines);
        launch.arg(&mut d.out).arg(&mut d.v).arg(&mut d.h).arg(&mut d.z);
        launch.arg(&lines).arg(&n).arg(&inner).arg(&outer).arg(&stride).arg(&s);
        // SAFETY: edt_envelope_lines(float* d, int* v, double* h, double* z, long long nlines, int n,
        // long long inner, long long outer, long long stride, double s): `out` holds nx*ny*nz f32 and every
        // line start + (n-1)*stride lies inside it; v/h/z (i32/f64/f64) hold at least lines*(n+1)
        // entries (allocated in `upload` for the larger of the j and k passes); scalars are i64/i32/f64.
        unsafe { launch.launch(config(lines)?) }.map_err(cuda_err("edt_envelope_lines"))?;
        Ok(())
    }

    /// Wait for every launched pass to finish.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(cuda_err("synchronize"))
    }

    /// Copy the distances (mm²) back to the host (waits for the passes).
    pub fn download(&self, d: &DeviceEdt) -> Result<Vec<f32>> {
        let n = d.grid.validate()?;
        let mut v = self.stream.clone_dtoh(&d.out).map_err(cuda_err("downloading the distances"))?;
        v.truncate(n);
        Ok(v)
    }
}

/// One thread per line, [`BLOCK`] threads per block.
fn config(lines: i64) -> Result<LaunchConfig> {
    let blocks = u32::try_from((lines + i64::from(BLOCK) - 1) / i64::from(BLOCK))
        .map_err(|_| MetricsError::InvalidGrid(format!("{lines} lines are too many for one launch")))?;
    Ok(LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 })
}
