//! Surface distances, HD95, HD, ASSD and Dice of two masks on the GPU ([`CudaSurface`]), equal to the
//! CPU's [`crate::surface_distances`] and [`crate::compare_masks`]: the same bounding-box crop, the
//! same surface voxels, the EDT kernels of `edt.cu` for passes i and j, and `surface.cu`'s `gather_k`
//! for the k pass evaluated only at the other surface's voxels (the f64 arithmetic of the CPU's
//! `distances_at`, in the same order, compiled with `-fmad=false`), so every distance is bit-identical.
//!
//! The distances are compacted on the device with an atomic counter; each carries a key giving its
//! position in the CPU's order, so the lists can be put in exactly the CPU's order on the host (then
//! even the ASSD sum is bit-identical). HD95 and HD do not depend on the order and skip that sort.
//! Device buffers are kept in the struct and grown only when a call needs more.

use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::{CudaFunction, CudaSlice, CudaStream, PushKernelArg};
use cudarc::nvrtc::Ptx;

use super::{config, cuda_err, grow, line_len, CudaEdt, Scratch};
use crate::distances::check_pair;
use crate::grid::union_opt;
use crate::{BBox, Connectivity, EmptyCase, EvalOptions, Grid, MetricsError, PairMetrics, Result, SurfaceDistances};

/// PTX of `surface.cu`, compiled by build.rs with nvcc (`-fmad=false`).
const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/surface.ptx"));

/// A CUDA device with the EDT and surface kernels loaded, plus reusable device buffers.
pub struct CudaSurface {
    edt: CudaEdt,
    mask_stats: CudaFunction,
    surfaces: CudaFunction,
    gather_k: CudaFunction,
    /// The masks of the slice-taking methods (reused across calls).
    masks: Mutex<Option<DeviceMasks>>,
    work: Mutex<Work>,
}

/// Two masks (prediction and reference) on the device, for timing without host uploads; made by
/// [`CudaSurface::upload`]. The buffers may be larger than the grid needs.
pub struct DeviceMasks {
    grid: Grid,
    pred: CudaSlice<bool>,
    reference: CudaSlice<bool>,
}

impl DeviceMasks {
    /// The grid of the masks.
    pub fn grid(&self) -> &Grid {
        &self.grid
    }
}

/// Scratch of one computation, grown only when too small.
struct Work {
    /// Output of `mask_stats`: both boxes (lo, hi per axis) and |pred|, |reference|, |both|.
    stats: CudaSlice<u64>,
    /// Surface voxel counts of pred and reference, then the gathered counts of both directions.
    counts: CudaSlice<u64>,
    /// Surfaces of pred and reference inside the box (0/1 bytes).
    sp: CudaSlice<u8>,
    sr: CudaSlice<u8>,
    /// Squared 2-D distances (passes i and j) inside the box.
    d2: CudaSlice<f32>,
    scratch: Scratch,
    /// Gathered distances and their keys: [pred → reference, reference → pred].
    dist: [CudaSlice<f64>; 2],
    key: [CudaSlice<i64>; 2],
}

/// What `mask_stats` found.
struct Stats {
    bp: Option<BBox>,
    br: Option<BBox>,
    np: u64,
    nr: u64,
    inter: u64,
}

impl CudaSurface {
    /// Open device `ordinal` and load the EDT and surface kernels; an error when there is no such
    /// device or the driver cannot load the PTX.
    pub fn new(ordinal: usize) -> Result<Self> {
        let edt = CudaEdt::new(ordinal)?;
        let module = edt.ctx().load_module(Ptx::from_src(PTX)).map_err(cuda_err("loading the surface PTX"))?;
        let f = |name: &str| module.load_function(name).map_err(|e| MetricsError::Cuda(format!("{name}: {e}")));
        let (mask_stats, surfaces, gather_k) = (f("mask_stats")?, f("surfaces")?, f("gather_k")?);
        let s = edt.stream();
        let alloc = cuda_err("allocating device memory");
        let work = Work {
            stats: s.alloc_zeros(15).map_err(&alloc)?,
            counts: s.alloc_zeros(4).map_err(&alloc)?,
            sp: s.alloc_zeros(1).map_err(&alloc)?,
            sr: s.alloc_zeros(1).map_err(&alloc)?,
            d2: s.alloc_zeros(1).map_err(&alloc)?,
            scratch: Scratch::new(s)?,
            dist: [s.alloc_zeros(1).map_err(&alloc)?, s.alloc_zeros(1).map_err(&alloc)?],
            key: [s.alloc_zeros(1).map_err(&alloc)?, s.alloc_zeros(1).map_err(&alloc)?],
        };
        Ok(Self { edt, mask_stats, surfaces, gather_k, masks: Mutex::new(None), work: Mutex::new(work) })
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> Result<String> {
        self.edt.device_name()
    }

    fn stream(&self) -> &Arc<CudaStream> {
        self.edt.stream()
    }

    /// Copy both masks to the device (checked against `grid` as the CPU functions check them).
    pub fn upload(&self, pred: &[bool], reference: &[bool], grid: &Grid) -> Result<DeviceMasks> {
        check_pair(pred, reference, grid)?;
        let s = self.stream();
        let alloc = cuda_err("allocating device memory");
        let mut d = DeviceMasks {
            grid: *grid,
            pred: s.alloc_zeros(1).map_err(&alloc)?,
            reference: s.alloc_zeros(1).map_err(&alloc)?,
        };
        self.upload_into(pred, reference, grid, &mut d)?;
        Ok(d)
    }

    /// Copy both masks into the buffers of `d` (grown when too small) and make `grid` its grid.
    pub fn upload_into(&self, pred: &[bool], reference: &[bool], grid: &Grid, d: &mut DeviceMasks) -> Result<()> {
        check_pair(pred, reference, grid)?;
        let s = self.stream();
        grow(s, &mut d.pred, pred.len())?;
        grow(s, &mut d.reference, reference.len())?;
        if !pred.is_empty() {
            s.memcpy_htod(pred, &mut d.pred).map_err(cuda_err("uploading pred"))?;
            s.memcpy_htod(reference, &mut d.reference).map_err(cuda_err("uploading the reference"))?;
        }
        d.grid = *grid;
        Ok(())
    }

    /// Directed surface distances on the GPU: equal (values and order) to
    /// [`crate::surface_distances`] with the same arguments.
    pub fn surface_distances(
        &self,
        pred: &[bool],
        reference: &[bool],
        grid: &Grid,
        connectivity: Connectivity,
    ) -> Result<SurfaceDistances> {
        self.with_masks(pred, reference, grid, |d| self.surface_distances_on(d, connectivity))
    }

    /// Dice, HD95, HD and ASSD on the GPU with the empty-mask policy of `opts`: equal to
    /// [`crate::compare_masks`] with the same arguments.
    pub fn compare_masks(
        &self,
        pred: &[bool],
        reference: &[bool],
        grid: &Grid,
        opts: &EvalOptions,
    ) -> Result<PairMetrics> {
        self.with_masks(pred, reference, grid, |d| self.metrics(d, opts, true))
    }

    /// HD95 (mm) in the convention of `opts`, with its empty-mask policy: equal to
    /// `crate::compare_masks(pred, reference, grid, opts)?.hd95`.
    pub fn hd95(&self, pred: &[bool], reference: &[bool], grid: &Grid, opts: &EvalOptions) -> Result<f64> {
        self.with_masks(pred, reference, grid, |d| self.hd95_on(d, opts))
    }

    /// [`CudaSurface::surface_distances`] of masks already on the device.
    pub fn surface_distances_on(&self, d: &DeviceMasks, connectivity: Connectivity) -> Result<SurfaceDistances> {
        let mut w = self.work()?;
        let st = self.stats(d, &mut w)?;
        let Some(b) = union_opt(st.bp, st.br) else { return Ok(SurfaceDistances::default()) };
        self.distances(d, &mut w, &st, b, connectivity, true)
    }

    /// [`CudaSurface::compare_masks`] of masks already on the device.
    pub fn compare_masks_on(&self, d: &DeviceMasks, opts: &EvalOptions) -> Result<PairMetrics> {
        self.metrics(d, opts, true)
    }

    /// [`CudaSurface::hd95`] of masks already on the device (only the gathered distances and a few
    /// counters come back to the host).
    pub fn hd95_on(&self, d: &DeviceMasks, opts: &EvalOptions) -> Result<f64> {
        Ok(self.metrics(d, opts, false)?.hd95)
    }

    /// The metrics of `compare_in` (src/pair.rs); `ordered`: put the lists in the CPU's order first
    /// (only the ASSD's rounding depends on it).
    fn metrics(&self, d: &DeviceMasks, opts: &EvalOptions, ordered: bool) -> Result<PairMetrics> {
        opts.validate()?;
        let mut w = self.work()?;
        let st = self.stats(d, &mut w)?;
        let b = match (st.bp, st.br) {
            (None, None) => return Ok(PairMetrics::empty(EmptyCase::BothEmpty, opts)),
            (None, Some(_)) => return Ok(PairMetrics::empty(EmptyCase::PredEmpty, opts)),
            (Some(_), None) => return Ok(PairMetrics::empty(EmptyCase::RefEmpty, opts)),
            (Some(a), Some(b)) => a.union(&b),
        };
        let dist = self.distances(d, &mut w, &st, b, opts.connectivity, ordered)?;
        Ok(PairMetrics {
            dice: 2.0 * st.inter as f64 / (st.np + st.nr) as f64,
            hd95: dist.hd95(opts.hd95),
            hd: dist.hd(),
            assd: dist.assd(),
            note: None,
        })
    }

    fn work(&self) -> Result<MutexGuard<'_, Work>> {
        self.work.lock().map_err(|_| MetricsError::Cuda("surface buffer lock poisoned".into()))
    }

    /// Run `f` on the masks uploaded into the reused device buffers.
    fn with_masks<R>(
        &self,
        pred: &[bool],
        reference: &[bool],
        grid: &Grid,
        f: impl FnOnce(&DeviceMasks) -> Result<R>,
    ) -> Result<R> {
        let mut cache = self.masks.lock().map_err(|_| MetricsError::Cuda("mask buffer lock poisoned".into()))?;
        let d = match cache.as_mut() {
            Some(d) => {
                self.upload_into(pred, reference, grid, d)?;
                d
            }
            None => cache.insert(self.upload(pred, reference, grid)?),
        };
        f(d)
    }

    /// Bounding boxes and voxel counts of both masks (one kernel, 15 numbers downloaded).
    fn stats(&self, d: &DeviceMasks, w: &mut Work) -> Result<Stats> {
        let n = d.grid.validate()?;
        let none = Stats { bp: None, br: None, np: 0, nr: 0, inter: 0 };
        if n == 0 {
            return Ok(none);
        }
        let [nx, ny, nz] = d.grid.dims;
        let s = self.stream();
        let mut init = [0u64; 15];
        init[0..3].fill(u64::MAX);
        init[6..9].fill(u64::MAX);
        s.memcpy_htod(&init[..], &mut w.stats).map_err(cuda_err("initialising the mask statistics"))?;
        let (nxi, nyi) = (line_len(nx)?, line_len(ny)?);
        let rows = (ny * nz) as i64;
        assert!(d.pred.len() >= n && d.reference.len() >= n && w.stats.len() >= 15, "mask_stats: buffers too small");
        let mut launch = s.launch_builder(&self.mask_stats);
        launch.arg(&d.pred).arg(&d.reference).arg(&mut w.stats).arg(&rows).arg(&nxi).arg(&nyi);
        // SAFETY: mask_stats(const u8* p, const u8* r, u64* stats, long long nrows, int nx, int ny): pred
        // and reference (bool = one 0/1 byte) hold at least nrows*nx = nx*ny*nz bytes and stats 15 u64
        // (asserted above); BLOCK is a multiple of 32 as the warp reductions need.
        unsafe { launch.launch(config(rows)?) }.map_err(cuda_err("mask_stats"))?;
        let v = s.clone_dtoh(&w.stats).map_err(cuda_err("downloading the mask statistics"))?;
        let bbox = |m: usize| -> Result<Option<BBox>> {
            let lo = [v[6 * m], v[6 * m + 1], v[6 * m + 2]].map(|x| x as usize);
            let hi = [v[6 * m + 3], v[6 * m + 4], v[6 * m + 5]].map(|x| x as usize);
            if hi == [0; 3] {
                return Ok(None);
            }
            if (0..3).any(|a| lo[a] >= hi[a] || hi[a] > d.grid.dims[a]) {
                return Err(MetricsError::Cuda(format!("mask_stats returned an invalid box {lo:?}..{hi:?}")));
            }
            Ok(Some(BBox { lo, hi }))
        };
        let st = Stats { bp: bbox(0)?, br: bbox(1)?, np: v[12], nr: v[13], inter: v[14] };
        if st.bp.is_some() != (st.np > 0) || st.br.is_some() != (st.nr > 0) {
            return Err(MetricsError::Cuda("mask_stats: boxes and voxel counts disagree".into()));
        }
        Ok(st)
    }

    /// Surfaces inside the box `b`, both EDTs (passes i, j) and the k pass gathered at the other
    /// surface; `ordered`: sort each list into the CPU's order by its keys.
    fn distances(
        &self,
        d: &DeviceMasks,
        w: &mut Work,
        st: &Stats,
        b: BBox,
        c: Connectivity,
        ordered: bool,
    ) -> Result<SurfaceDistances> {
        let s = self.stream();
        let [nx, ny, _] = d.grid.dims;
        let bd @ [bx, by, bz] = b.dims();
        let nbox = bx * by * bz;
        let [si, sj, sk] = d.grid.spacing;
        grow(s, &mut w.sp, nbox)?;
        grow(s, &mut w.sr, nbox)?;
        grow(s, &mut w.d2, nbox)?;
        w.scratch.grow(s, bd)?;
        // A surface is a subset of its mask: |surface| ≤ min(|mask|, box voxels).
        let caps = [st.np, st.nr].map(|m| (m as usize).min(nbox));
        for (k, cap) in caps.iter().enumerate() {
            grow(s, &mut w.dist[k], *cap)?;
            grow(s, &mut w.key[k], *cap)?;
        }
        s.memset_zeros(&mut w.counts).map_err(cuda_err("clearing counters"))?;

        let base = (b.lo[0] + nx * (b.lo[1] + ny * b.lo[2])) as i64;
        let (bxl, byl, bzl, nxl, plane) = (bx as i64, by as i64, bz as i64, nx as i64, (nx * ny) as i64);
        let conn26 = i32::from(c == Connectivity::TwentySix);
        let n = d.grid.validate()?;
        assert!(
            d.pred.len() >= n
                && d.reference.len() >= n
                && w.sp.len() >= nbox
                && w.sr.len() >= nbox
                && w.counts.len() >= 4,
            "surfaces: buffers too small"
        );
        let mut launch = s.launch_builder(&self.surfaces);
        launch.arg(&d.pred).arg(&d.reference).arg(&mut w.sp).arg(&mut w.sr).arg(&mut w.counts);
        launch.arg(&bxl).arg(&byl).arg(&bzl).arg(&base).arg(&nxl).arg(&plane).arg(&conn26);
        // SAFETY: surfaces(const u8* p, const u8* r, u8* sp, u8* sr, u64* counts, long long bx, by, bz,
        // base, nx, plane, int conn26): the box lies inside the grid (checked in `stats`), so every mask
        // byte read (box voxels and their in-box neighbours) is below nx*ny*nz ≤ the mask lengths; sp
        // and sr hold the box's voxels, counts 4 u64 (asserted above); BLOCK is a multiple of 32.
        unsafe { launch.launch(config(nbox as i64)?) }.map_err(cuda_err("surfaces"))?;

        let (nxi, nzi) = (line_len(bx)?, line_len(bz)?);
        let lines = (bx * by) as i64;
        for dir in 0..2 {
            // pred → reference: the EDT of the reference's surface, read at the prediction's surface.
            let (features, query) = if dir == 0 { (&w.sr, &w.sp) } else { (&w.sp, &w.sr) };
            self.edt.binary_pass(features, &mut w.d2, bd, si)?;
            if by > 1 {
                self.edt.envelope_j(&mut w.d2, &mut w.scratch, bd, sj)?;
            }
            let cap = caps[dir] as i64;
            let (v, h, z) = w.scratch.parts();
            let need = lines as usize * (bz + 1);
            assert!(
                w.d2.len() >= nbox
                    && query.len() >= nbox
                    && v.len() >= need
                    && h.len() >= need
                    && z.len() >= need
                    && w.dist[dir].len() >= caps[dir]
                    && w.key[dir].len() >= caps[dir],
                "gather_k: buffers too small"
            );
            let mut counter = w.counts.slice_mut(2 + dir..3 + dir);
            let mut launch = s.launch_builder(&self.gather_k);
            launch.arg(&w.d2).arg(query).arg(v).arg(h).arg(z);
            launch.arg(&mut w.dist[dir]).arg(&mut w.key[dir]).arg(&mut counter);
            launch.arg(&lines).arg(&nzi).arg(&nxi).arg(&sk).arg(&cap);
            // SAFETY: gather_k(const float* d, const u8* query, int* v, double* h, double* z, double* out,
            // long long* key, u64* counter, long long nlines, int n, int nx, double s, long long cap): d
            // and query hold nlines*n = box voxels, v/h/z nlines*(n+1) entries, out and key `cap`
            // entries (asserted above), and the kernel writes a line's values only when they fit below
            // `cap`; counter is one u64 of `counts`.
            unsafe { launch.launch(config(lines)?) }.map_err(cuda_err("gather_k"))?;
        }

        let counts = s.clone_dtoh(&w.counts).map_err(cuda_err("downloading the counters"))?;
        if counts[2] != counts[0] || counts[3] != counts[1] || counts[2] > caps[0] as u64 || counts[3] > caps[1] as u64
        {
            return Err(MetricsError::Cuda(format!(
                "inconsistent counts: surfaces {}/{}, gathered {}/{}, capacities {caps:?}",
                counts[0], counts[1], counts[2], counts[3]
            )));
        }
        let mut lists = [Vec::new(), Vec::new()];
        for (dir, list) in lists.iter_mut().enumerate() {
            let m = counts[2 + dir] as usize;
            if m == 0 {
                continue;
            }
            let dist = s.clone_dtoh(&w.dist[dir].slice(0..m)).map_err(cuda_err("downloading distances"))?;
            *list = if ordered {
                let key = s.clone_dtoh(&w.key[dir].slice(0..m)).map_err(cuda_err("downloading keys"))?;
                let mut pairs: Vec<(i64, f64)> = key.into_iter().zip(dist).collect();
                pairs.sort_unstable_by_key(|p| p.0);
                pairs.into_iter().map(|p| p.1).collect()
            } else {
                dist
            };
        }
        let [pred_to_ref, ref_to_pred] = lists;
        Ok(SurfaceDistances { pred_to_ref, ref_to_pred })
    }
}
