//! The exact Euclidean distance transform on an NVIDIA GPU (feature `cuda`): the kernels of `edt.cu`
//! (compiled to PTX by build.rs) launched through cudarc, with the semantics of [`crate::edt_squared`];
//! and surface distances / HD95 on the GPU ([`CudaSurface`], kernels of `surface.cu`).
//!
//! Kernel launches are `unsafe` in cudarc; this is the only module of the crate allowed to use it.
#![allow(unsafe_code)]

mod surface;

use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;

pub use surface::{CudaSurface, DeviceMasks};

use crate::{Grid, MetricsError, Result};

/// PTX of `edt.cu`, compiled by build.rs with nvcc (`-fmad=false`).
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/edt.ptx"));

/// Threads per block of every launch (a multiple of 32: the surface kernels reduce per warp).
const BLOCK: u32 = 128;

fn cuda_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> MetricsError + '_ {
    move |e| MetricsError::Cuda(format!("{what}: {e}"))
}

/// Make `buf` hold at least `n` elements (at least 1: the driver refuses empty allocations),
/// reallocating (zeroed) only when it is too small; its contents are kept otherwise.
fn grow<T: DeviceRepr + ValidAsZeroBits>(s: &Arc<CudaStream>, buf: &mut CudaSlice<T>, n: usize) -> Result<()> {
    if buf.len() < n.max(1) {
        *buf = s.alloc_zeros::<T>(n.max(1)).map_err(cuda_err("allocating device memory"))?;
    }
    Ok(())
}

/// A CUDA device with the EDT kernels loaded: context, stream, the two kernel functions, and the
/// device buffers of the last [`CudaEdt::edt_squared`] call, reused (grown only when too small).
pub struct CudaEdt {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    binary_lines: CudaFunction,
    envelope_lines: CudaFunction,
    cache: Mutex<Option<DeviceEdt>>,
}

/// One volume's buffers on the device: the features, the distances and the envelope scratch, so that
/// [`CudaEdt::run`] can be timed without host transfers. The buffers may be larger than the grid
/// needs ([`CudaEdt::upload_into`] reuses them for other grids).
pub struct DeviceEdt {
    grid: Grid,
    features: CudaSlice<bool>,
    out: CudaSlice<f32>,
    scratch: Scratch,
}

impl DeviceEdt {
    /// The grid the buffers were made for.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }
}

/// Entries of the envelope scratch for a grid of `dims`: n + 1 per line of the j and k passes.
pub(crate) fn scratch_len([nx, ny, nz]: [usize; 3]) -> usize {
    (nx * nz * (ny + 1)).max(nx * ny * (nz + 1)).max(1)
}

/// Envelope scratch (apex positions, heights, interval boundaries), interleaved by line in the
/// kernels; grown only when too small.
pub(crate) struct Scratch {
    v: CudaSlice<i32>,
    h: CudaSlice<f64>,
    z: CudaSlice<f64>,
}

impl Scratch {
    pub(crate) fn new(s: &Arc<CudaStream>) -> Result<Self> {
        let alloc = cuda_err("allocating scratch");
        Ok(Self {
            v: s.alloc_zeros(1).map_err(&alloc)?,
            h: s.alloc_zeros(1).map_err(&alloc)?,
            z: s.alloc_zeros(1).map_err(&alloc)?,
        })
    }

    /// Make room for the passes over a grid of `dims`.
    pub(crate) fn grow(&mut self, s: &Arc<CudaStream>, dims: [usize; 3]) -> Result<()> {
        let n = scratch_len(dims);
        grow(s, &mut self.v, n)?;
        grow(s, &mut self.h, n)?;
        grow(s, &mut self.z, n)
    }

    /// The three buffers, for a kernel launch.
    pub(crate) fn parts(&mut self) -> (&mut CudaSlice<i32>, &mut CudaSlice<f64>, &mut CudaSlice<f64>) {
        (&mut self.v, &mut self.h, &mut self.z)
    }
}

/// A line length as the kernels' `int`.
pub(crate) fn line_len(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| MetricsError::InvalidGrid(format!("{n} voxels per line")))
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
        Ok(Self { ctx, stream, binary_lines, envelope_lines, cache: Mutex::new(None) })
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> Result<String> {
        self.ctx.name().map_err(cuda_err("device name"))
    }

    pub(crate) fn ctx(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Squared Euclidean distance (mm²) from every voxel to the nearest feature (true) voxel, exactly
    /// as [`crate::edt_squared`] computes it (bit for bit): 0 on features, `f32::INFINITY` everywhere
    /// when there is no feature. Reuses the device buffers of the previous call when they are large
    /// enough.
    pub fn edt_squared(&self, features: &[bool], grid: &Grid) -> Result<Vec<f32>> {
        let mut cache = self.cache.lock().map_err(|_| MetricsError::Cuda("EDT buffer lock poisoned".into()))?;
        let d = match cache.as_mut() {
            Some(d) => {
                self.upload_into(features, grid, d)?;
                d
            }
            None => cache.insert(self.upload(features, grid)?),
        };
        self.run(d)?;
        self.download(d)
    }

    /// Copy `features` to the device and allocate the output and scratch buffers for [`CudaEdt::run`].
    pub fn upload(&self, features: &[bool], grid: &Grid) -> Result<DeviceEdt> {
        grid.check("features", features.len())?;
        let s = &self.stream;
        let alloc = cuda_err("allocating device memory");
        let mut d = DeviceEdt {
            grid: *grid,
            features: s.alloc_zeros(1).map_err(&alloc)?,
            out: s.alloc_zeros(1).map_err(&alloc)?,
            scratch: Scratch::new(s)?,
        };
        self.upload_into(features, grid, &mut d)?;
        Ok(d)
    }

    /// Copy `features` into the buffers of `d` (grown when too small) and make `grid` its grid.
    pub fn upload_into(&self, features: &[bool], grid: &Grid, d: &mut DeviceEdt) -> Result<()> {
        let n = grid.check("features", features.len())?;
        let s = &self.stream;
        grow(s, &mut d.features, n)?;
        grow(s, &mut d.out, n)?;
        d.scratch.grow(s, grid.dims)?;
        if n > 0 {
            s.memcpy_htod(features, &mut d.features).map_err(cuda_err("uploading the features"))?;
        }
        d.grid = *grid;
        Ok(())
    }

    /// Launch the three passes on the device buffers (asynchronously; see [`CudaEdt::synchronize`]).
    pub fn run(&self, d: &mut DeviceEdt) -> Result<()> {
        let [nx, ny, nz] = d.grid.dims;
        let [si, sj, sk] = d.grid.spacing;
        if nx * ny * nz == 0 {
            return Ok(());
        }
        self.binary_pass(&d.features, &mut d.out, d.grid.dims, si)?;
        // The CPU skips lines of length 1 (the envelope would round g/s²·s²); so does the GPU.
        if ny > 1 {
            self.envelope_j(&mut d.out, &mut d.scratch, d.grid.dims, sj)?;
        }
        if nz > 1 {
            let lines = (nx * ny) as i64;
            let (inner, outer, stride) = (lines, 0i64, lines);
            self.envelope(&mut d.out, &mut d.scratch, lines, line_len(nz)?, inner, outer, stride, sk)?;
        }
        Ok(())
    }

    /// Pass i: squared distances (mm²) along i of the 0/1 bytes `features` on a grid of `dims` into
    /// `out`; both hold at least the grid's voxels.
    pub(crate) fn binary_pass<T>(
        &self,
        features: &CudaSlice<T>,
        out: &mut CudaSlice<f32>,
        dims: [usize; 3],
        s: f64,
    ) -> Result<()> {
        let [nx, ny, nz] = dims;
        let n = nx * ny * nz;
        if n == 0 {
            return Ok(());
        }
        assert!(
            std::mem::size_of::<T>() == 1 && features.len() >= n && out.len() >= n,
            "binary_pass: buffers too small"
        );
        let ni = line_len(nx)?;
        let lines_i = (ny * nz) as i64;
        let mut launch = self.stream.launch_builder(&self.binary_lines);
        launch.arg(features).arg(out).arg(&lines_i).arg(&ni).arg(&s);
        // SAFETY: edt_binary_lines(const u8* f, float* out, long long nlines, int n, double s): `features`
        // (one-byte 0/1 elements: bool or u8, asserted above) and `out` (f32) hold at least
        // nx*ny*nz = nlines*n elements (asserted above); i64, i32, f64 scalars.
        unsafe { launch.launch(config(lines_i)?) }.map_err(cuda_err("edt_binary_lines"))?;
        Ok(())
    }

    /// Pass j: envelopes along j of the grid `dims` in `out` (callers skip it when ny == 1).
    pub(crate) fn envelope_j(
        &self,
        out: &mut CudaSlice<f32>,
        sc: &mut Scratch,
        dims: [usize; 3],
        s: f64,
    ) -> Result<()> {
        let [nx, ny, nz] = dims;
        let lines = (nx * nz) as i64;
        let (inner, outer, stride) = (nx as i64, (nx * ny) as i64, nx as i64);
        self.envelope(out, sc, lines, line_len(ny)?, inner, outer, stride, s)
    }

    /// One envelope pass over `lines` lines of `n` voxels.
    #[allow(clippy::too_many_arguments)]
    fn envelope(
        &self,
        out: &mut CudaSlice<f32>,
        sc: &mut Scratch,
        lines: i64,
        n: i32,
        inner: i64,
        outer: i64,
        stride: i64,
        s: f64,
    ) -> Result<()> {
        // Every line start (t % inner) + (t / inner) * outer plus (n - 1) * stride lies inside `out`
        // (checked here), and the scratch holds lines * (n + 1) entries.
        let last = (lines - 1) % inner + (lines - 1) / inner * outer + i64::from(n - 1) * stride;
        let need = lines as usize * (n as usize + 1);
        assert!(
            (last as usize) < out.len() && sc.v.len() >= need && sc.h.len() >= need && sc.z.len() >= need,
            "envelope pass: buffers too small"
        );
        let mut launch = self.stream.launch_builder(&self.envelope_lines);
        launch.arg(out).arg(&mut sc.v).arg(&mut sc.h).arg(&mut sc.z);
        launch.arg(&lines).arg(&n).arg(&inner).arg(&outer).arg(&stride).arg(&s);
        // SAFETY: edt_envelope_lines(float* d, int* v, double* h, double* z, long long nlines, int n,
        // long long inner, long long outer, long long stride, double s): `out` holds f32 and every line
        // start + (n-1)*stride lies inside it; v/h/z (i32/f64/f64) hold at least lines*(n+1) entries
        // (both asserted above; the line starts grow with t, so the last line bounds them all);
        // scalars are i64/i32/f64.
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
        if n == 0 {
            return Ok(Vec::new());
        }
        self.stream.clone_dtoh(&d.out.slice(0..n)).map_err(cuda_err("downloading the distances"))
    }
}

/// One thread per item (line or voxel), [`BLOCK`] threads per block.
pub(crate) fn config(items: i64) -> Result<LaunchConfig> {
    let blocks = u32::try_from((items + i64::from(BLOCK) - 1) / i64::from(BLOCK))
        .map_err(|_| MetricsError::InvalidGrid(format!("{items} lines or voxels are too many for one launch")))?;
    Ok(LaunchConfig { grid_dim: (blocks.max(1), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 })
}
