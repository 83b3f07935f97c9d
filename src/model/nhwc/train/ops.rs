//! The kernels of the NHWC training step on plain `f32` slices (`[frames, h, w, c]`): the
//! matrix products of a 1x1 convolution and its backward (on the packed GEMM of `gemm`),
//! depthwise convolutions and their backward vectorised across channels, train-mode BatchNorm
//! and the reverse temporal shift. Work is split on rayon's current pool.

use rayon::prelude::*;

use crate::model::layers::Act;
use crate::model::nhwc::gemm::PackedMatrix;
use crate::model::nhwc::kernels::{self, Shape, inside_taps};
use crate::model::nhwc::simd::{Kernel, dispatch};

/// Rows of `x` and `dY` per weight-gradient product: the packed `dY` rows (`rows x 16`
/// values per panel) stay in L1 while every column of `x` passes over them.
const WEIGHT_GRAD_ROWS: usize = 256;

/// Pixels per task of the element-wise and per-channel passes.
const PIXEL_CHUNK: usize = 512;

/// Side of the square tiles of [`transpose`]: a tile's source rows and destination rows stay
/// in L1.
const TRANSPOSE_TILE: usize = 16;

/// `[rows, cols]` -> `[cols, rows]`, tile by tile.
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = kernels::buffer(rows * cols);
    for r0 in (0..rows).step_by(TRANSPOSE_TILE) {
        let r1 = (r0 + TRANSPOSE_TILE).min(rows);
        for c0 in (0..cols).step_by(TRANSPOSE_TILE) {
            let c1 = (c0 + TRANSPOSE_TILE).min(cols);
            for r in r0..r1 {
                let src = &values[r * cols + c0..r * cols + c1];
                for (c, &v) in (c0..c1).zip(src) {
                    t[c * rows + r] = v;
                }
            }
        }
    }
    t
}

/// A 1x1 convolution (or any `[in, out]` product) packed for the forward and for the input
/// gradient.
pub struct Pointwise {
    forward: PackedMatrix,
    backward: PackedMatrix,
}

impl Pointwise {
    /// `weight` is `[k, n]` (input channels x output channels); the caller checked its length.
    pub fn new(weight: &[f32], k: usize, n: usize) -> Self {
        Self {
            forward: PackedMatrix::new(weight, None, k, n),
            backward: PackedMatrix::new(&transpose(weight, k, n), None, n, k),
        }
    }

    pub fn k(&self) -> usize {
        self.forward.k()
    }

    pub fn n(&self) -> usize {
        self.forward.n()
    }

    /// `x[m, k] · W`.
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut z = kernels::buffer(m * self.n());
        self.forward.apply(x, m, Act::None, &mut z);
        z
    }

    /// `dZ[m, n] · Wᵀ`.
    pub fn input_grad(&self, dz: &[f32], m: usize) -> Vec<f32> {
        let mut dx = kernels::buffer(m * self.k());
        self.backward.apply(dz, m, Act::None, &mut dx);
        dx
    }
}

/// `Xᵀ · dZ` (`[k, n]`) of `x[m, k]` and `dz[m, n]`: the same GEMM on chunks of rows (the
/// chunk of `x` transposed, the chunk of `dZ` packed as the right-hand side), summed.
pub fn weight_grad(x: &[f32], dz: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    ordered_sum(m.div_ceil(WEIGHT_GRAD_ROWS), k * n, |chunk, acc| {
        let rows = WEIGHT_GRAD_ROWS.min(m - chunk * WEIGHT_GRAD_ROWS);
        let xc = &x[chunk * WEIGHT_GRAD_ROWS * k..][..rows * k];
        let dzc = &dz[chunk * WEIGHT_GRAD_ROWS * n..][..rows * n];
        let xt = transpose(xc, rows, k);
        let packed = PackedMatrix::new(dzc, None, rows, n);
        let mut part = kernels::buffer(k * n);
        packed.apply(&xt, k, Act::None, &mut part);
        add_into(acc, &part);
        kernels::recycle(part);
        kernels::recycle(xt);
    })
}

/// Chunks summed per group, in index order.
const SUM_GROUP: usize = 8;

/// `Σ_i chunk_i` of `count` chunks into `len` values, where `add(i, acc)` adds chunk `i` into
/// `acc`: groups of [`SUM_GROUP`] chunks in parallel, each summed in index order, then the
/// groups' sums in index order. The rounding is therefore the same whatever the thread count
/// and scheduling (rayon's `fold`/`reduce` split work adaptively), so a run repeats its
/// steps bit for bit, as resuming from a checkpoint needs.
pub fn ordered_sum<T>(count: usize, len: usize, add: impl Fn(usize, &mut [T]) + Sync) -> Vec<T>
where
    T: Copy + Default + std::ops::AddAssign + Send,
{
    let groups: Vec<Vec<T>> = (0..count.div_ceil(SUM_GROUP))
        .into_par_iter()
        .map(|g| {
            let mut acc = vec![T::default(); len];
            for i in g * SUM_GROUP..((g + 1) * SUM_GROUP).min(count) {
                add(i, &mut acc);
            }
            acc
        })
        .collect();
    let mut groups = groups.into_iter();
    let mut total = groups.next().unwrap_or_else(|| vec![T::default(); len]);
    for group in groups {
        total.iter_mut().zip(&group).for_each(|(t, &v)| *t += v);
    }
    total
}

pub fn add_into(acc: &mut [f32], x: &[f32]) {
    acc.iter_mut().zip(x).for_each(|(a, &b)| *a += b);
}

/// A depthwise convolution's geometry: one frame in, one frame out.
#[derive(Clone, Copy)]
struct DwGeometry {
    input: Shape,
    out: Shape,
    kernel: usize,
    stride: usize,
}

impl DwGeometry {
    fn new(input: Shape, kernel: usize, stride: usize) -> Self {
        Self {
            input,
            out: input.strided(kernel, stride, input.c),
            kernel,
            stride,
        }
    }

    fn frame_in(&self) -> usize {
        self.input.h * self.input.w * self.input.c
    }

    fn frame_out(&self) -> usize {
        self.out.h * self.out.w * self.out.c
    }

    /// Calls `f(output pixel, input pixel, tap)` for every tap inside the input.
    #[inline(always)]
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (k, s, pad) = (self.kernel, self.stride, (self.kernel - 1) / 2);
        for oy in 0..self.out.h {
            let (ky0, ky1) = inside_taps(oy, s, k, self.input.h);
            for ox in 0..self.out.w {
                let (kx0, kx1) = inside_taps(ox, s, k, self.input.w);
                let o = oy * self.out.w + ox;
                for ky in ky0..ky1 {
                    let iy = oy * s + ky - pad;
                    for kx in kx0..kx1 {
                        let ix = ox * s + kx - pad;
                        f(o, iy * self.input.w + ix, ky * k + kx);
                    }
                }
            }
        }
    }
}

/// Depthwise "same"-padded convolution without bias: `weight` is `[k * k, c]` (tap-major).
pub fn depthwise(
    x: &[f32],
    input: Shape,
    weight: &[f32],
    kernel: usize,
    stride: usize,
) -> (Vec<f32>, Shape) {
    let geo = DwGeometry::new(input, kernel, stride);
    let mut out = kernels::buffer(geo.out.values());
    out.fill(0.0);
    out.par_chunks_mut(geo.frame_out())
        .zip(x[..input.values()].par_chunks(geo.frame_in()))
        .for_each(|(out, x)| {
            dispatch(DwForward {
                geo: &geo,
                x,
                weight,
                out,
            })
        });
    (out, geo.out)
}

/// The backward of [`depthwise`]: the weight gradient (`[k * k, c]`), and the input gradient
/// added into `dx` when given.
pub fn depthwise_backward(
    dz: &[f32],
    x: &[f32],
    input: Shape,
    weight: &[f32],
    (kernel, stride): (usize, usize),
    dx: Option<&mut [f32]>,
) -> Vec<f32> {
    let geo = DwGeometry::new(input, kernel, stride);
    let taps = kernel * kernel * input.c;
    let frame = |f: usize, dx: Option<&mut [f32]>, acc: &mut [f32]| {
        let dz = &dz[f * geo.frame_out()..][..geo.frame_out()];
        let x = &x[f * geo.frame_in()..][..geo.frame_in()];
        dispatch(DwBackward {
            geo: &geo,
            dz,
            x,
            weight,
            dx,
            dw: acc,
        });
    };
    match dx {
        // Each frame's weight gradient apart, then summed in frame order (deterministic, see
        // `ordered_sum`).
        Some(dx) => {
            let per_frame: Vec<Vec<f32>> = dx[..input.values()]
                .par_chunks_mut(geo.frame_in())
                .enumerate()
                .map(|(f, dxf)| {
                    let mut acc = vec![0.0; taps];
                    frame(f, Some(dxf), &mut acc);
                    acc
                })
                .collect();
            let mut total = vec![0.0; taps];
            for part in &per_frame {
                add_into(&mut total, part);
            }
            total
        }
        None => ordered_sum(input.frames, taps, |f, acc| frame(f, None, acc)),
    }
}

/// One frame of [`depthwise`].
struct DwForward<'a> {
    geo: &'a DwGeometry,
    x: &'a [f32],
    weight: &'a [f32],
    out: &'a mut [f32],
}

impl Kernel for DwForward<'_> {
    #[inline(always)]
    fn run(self) {
        dw_forward_frame(self.geo, self.x, self.weight, self.out);
    }
}

/// One frame of [`depthwise_backward`].
struct DwBackward<'a> {
    geo: &'a DwGeometry,
    dz: &'a [f32],
    x: &'a [f32],
    weight: &'a [f32],
    dx: Option<&'a mut [f32]>,
    dw: &'a mut [f32],
}

impl Kernel for DwBackward<'_> {
    #[inline(always)]
    fn run(self) {
        dw_backward_frame(self.geo, self.dz, self.x, self.weight, self.dx, self.dw);
    }
}

#[inline(always)]
fn dw_forward_frame(geo: &DwGeometry, x: &[f32], weight: &[f32], out: &mut [f32]) {
    let c = geo.input.c;
    geo.for_each_tap(|o, i, tap| {
        let dst = &mut out[o * c..][..c];
        let src = &x[i * c..][..c];
        let w = &weight[tap * c..][..c];
        for ((d, &v), &wv) in dst.iter_mut().zip(src).zip(w) {
            *d += v * wv;
        }
    });
}

/// The backward of one frame: for every tap, `dw += x · dz` and (when given) `dx += w · dz`.
/// The tap loops are written out rather than passed as a closure to `for_each_tap`, so that
/// they land (inlined) in the AVX2 copy.
#[inline(always)]
fn dw_backward_frame(
    geo: &DwGeometry,
    dz: &[f32],
    x: &[f32],
    weight: &[f32],
    mut dx: Option<&mut [f32]>,
    dw: &mut [f32],
) {
    let c = geo.input.c;
    let (k, s, pad) = (geo.kernel, geo.stride, (geo.kernel - 1) / 2);
    for oy in 0..geo.out.h {
        let (ky0, ky1) = inside_taps(oy, s, k, geo.input.h);
        for ox in 0..geo.out.w {
            let (kx0, kx1) = inside_taps(ox, s, k, geo.input.w);
            let o = oy * geo.out.w + ox;
            let g = &dz[o * c..][..c];
            for ky in ky0..ky1 {
                let iy = oy * s + ky - pad;
                for kx in kx0..kx1 {
                    let i = iy * geo.input.w + ox * s + kx - pad;
                    let tap = ky * k + kx;
                    let src = &x[i * c..][..c];
                    let acc = &mut dw[tap * c..][..c];
                    for ch in 0..c {
                        acc[ch] += src[ch] * g[ch];
                    }
                    if let Some(dx) = dx.as_deref_mut() {
                        let dst = &mut dx[i * c..][..c];
                        let w = &weight[tap * c..][..c];
                        for ch in 0..c {
                            dst[ch] += w[ch] * g[ch];
                        }
                    }
                }
            }
        }
    }
}

/// Per-channel sums over all pixels of `[pixels, c]` data: `f(pixel range, acc)` adds a chunk
/// of pixels into `acc` (`width` values, f64 so that long sums keep float32's precision).
fn sum_over_pixels(
    pixels: usize,
    width: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [f64]) + Sync + Send,
) -> Vec<f64> {
    ordered_sum(pixels.div_ceil(PIXEL_CHUNK), width, |chunk, acc| {
        let start = chunk * PIXEL_CHUNK;
        f(start..(start + PIXEL_CHUNK).min(pixels), acc);
    })
}

/// A BatchNorm's normalisation: `(z − mean) · inv_std` per channel.
pub struct Norm {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
}

impl Norm {
    /// Train mode: the batch mean and biased batch variance of `z` (`[pixels, c]`), returned
    /// with the normalisation.
    pub fn batch(z: &[f32], c: usize, epsilon: f64) -> (Self, Vec<f32>) {
        let pixels = z.len() / c;
        let sums = sum_over_pixels(pixels, c, |range, acc| {
            for px in z[range.start * c..range.end * c].chunks_exact(c) {
                acc.iter_mut()
                    .zip(px)
                    .for_each(|(a, &v)| *a += f64::from(v));
            }
        });
        let mean: Vec<f64> = sums.iter().map(|s| s / pixels as f64).collect();
        let squares = sum_over_pixels(pixels, c, |range, acc| {
            for px in z[range.start * c..range.end * c].chunks_exact(c) {
                for ((a, &v), &m) in acc.iter_mut().zip(px).zip(&mean) {
                    let d = f64::from(v) - m;
                    *a += d * d;
                }
            }
        });
        let variance: Vec<f64> = squares.iter().map(|s| s / pixels as f64).collect();
        let norm = Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            inv_std: variance
                .iter()
                .map(|&v| (1.0 / (v + epsilon).sqrt()) as f32)
                .collect(),
        };
        (norm, variance.iter().map(|&v| v as f32).collect())
    }

    /// Eval mode: the running statistics.
    pub fn running(mean: &[f32], variance: &[f32], epsilon: f64) -> Self {
        Self {
            mean: mean.to_vec(),
            inv_std: variance
                .iter()
                .map(|&v| (1.0 / (f64::from(v) + epsilon).sqrt()) as f32)
                .collect(),
        }
    }
}

/// One BatchNorm layer's input and parameters, for the passes that recompute its output.
pub struct BnInput<'a> {
    pub z: &'a [f32],
    pub norm: &'a Norm,
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
}

impl BnInput<'_> {
    /// `γ · inv_std` per channel.
    fn scale(&self) -> Vec<f32> {
        self.gamma
            .iter()
            .zip(&self.norm.inv_std)
            .map(|(g, s)| g * s)
            .collect()
    }
}

/// `out (+)= (z − mean) · γ · inv_std + β` (added when `accumulate`), then ReLU if `relu`.
pub fn normalise_into(bn: &BnInput<'_>, c: usize, out: &mut [f32], accumulate: bool, relu: bool) {
    let scale = bn.scale();
    let (mean, beta) = (&bn.norm.mean[..c], &bn.beta[..c]);
    let len = bn.z.len();
    out[..len]
        .par_chunks_mut(PIXEL_CHUNK * c)
        .zip(bn.z.par_chunks(PIXEL_CHUNK * c))
        .for_each(|(dst, src)| {
            let params = (mean, &scale[..c], beta);
            match (accumulate, relu) {
                (false, false) => normalise_chunk::<false, false>(dst, src, params),
                (false, true) => normalise_chunk::<false, true>(dst, src, params),
                (true, false) => normalise_chunk::<true, false>(dst, src, params),
                (true, true) => normalise_chunk::<true, true>(dst, src, params),
            }
        });
}

#[inline(always)]
fn normalise_chunk<const ACCUMULATE: bool, const RELU: bool>(
    dst: &mut [f32],
    src: &[f32],
    (mean, scale, beta): (&[f32], &[f32], &[f32]),
) {
    let c = mean.len();
    for (d, s) in dst.chunks_exact_mut(c).zip(src.chunks_exact(c)) {
        let (d, s) = (&mut d[..c], &s[..c]);
        for ch in 0..c {
            let mut y = (s[ch] - mean[ch]) * scale[ch] + beta[ch];
            if ACCUMULATE {
                y += d[ch];
            }
            d[ch] = if RELU { y.max(0.0) } else { y };
        }
    }
}

pub fn relu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(PIXEL_CHUNK * 64)
        .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = v.max(0.0)));
}

/// The ReLU's backward after BatchNorm branches summed: `dy` is zeroed where the recomputed
/// sum of the branches' outputs is not positive.
pub fn relu_backward(dy: &mut [f32], c: usize, branches: &[BnInput<'_>]) {
    let scales: Vec<Vec<f32>> = branches.iter().map(BnInput::scale).collect();
    dy.par_chunks_mut(PIXEL_CHUNK * c)
        .enumerate()
        .for_each(|(chunk, dst)| {
            let start = chunk * PIXEL_CHUNK * c;
            let mut pre = vec![0.0f32; dst.len()];
            for (bn, scale) in branches.iter().zip(&scales) {
                let z = &bn.z[start..start + dst.len()];
                let params = (&bn.norm.mean[..c], &scale[..c], &bn.beta[..c]);
                normalise_chunk::<true, false>(&mut pre, z, params);
            }
            for (g, &y) in dst.iter_mut().zip(&pre) {
                *g = if y > 0.0 { *g } else { 0.0 };
            }
        });
}

/// Train-mode BatchNorm backward (gradients through the batch mean and variance): from `dy`
/// (the gradient of its output) to `(dz, dγ, dβ)`.
pub fn bn_backward(dy: &[f32], bn: &BnInput<'_>, c: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let z = bn.z;
    let pixels = z.len() / c;
    let (mean, inv_std) = (&bn.norm.mean, &bn.norm.inv_std);
    // [Σ dy | Σ dy · x̂] per channel.
    let sums = sum_over_pixels(pixels, 2 * c, |range, acc| {
        let (sum_dy, sum_dyx) = acc.split_at_mut(c);
        let (sum_dy, sum_dyx) = (&mut sum_dy[..c], &mut sum_dyx[..c]);
        let (mean, inv_std) = (&mean[..c], &inv_std[..c]);
        let span = range.start * c..range.end * c;
        for (g, v) in dy[span.clone()]
            .chunks_exact(c)
            .zip(z[span].chunks_exact(c))
        {
            let (g, v) = (&g[..c], &v[..c]);
            for ch in 0..c {
                sum_dy[ch] += f64::from(g[ch]);
                sum_dyx[ch] += f64::from(g[ch] * ((v[ch] - mean[ch]) * inv_std[ch]));
            }
        }
    });
    let (sum_dy, sum_dyx) = sums.split_at(c);
    let count = pixels as f64;
    let dbeta: Vec<f32> = sum_dy.iter().map(|&v| v as f32).collect();
    let dgamma: Vec<f32> = sum_dyx.iter().map(|&v| v as f32).collect();
    let mean_dy: Vec<f32> = sum_dy.iter().map(|&v| (v / count) as f32).collect();
    let mean_dyx: Vec<f32> = sum_dyx.iter().map(|&v| (v / count) as f32).collect();
    let scale: Vec<f32> = bn.gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect();
    let mut dz = kernels::buffer(z.len());
    dz.par_chunks_mut(PIXEL_CHUNK * c)
        .zip(dy.par_chunks(PIXEL_CHUNK * c))
        .zip(z.par_chunks(PIXEL_CHUNK * c))
        .for_each(|((dst, g), v)| {
            let (mean, inv_std) = (&mean[..c], &inv_std[..c]);
            let (scale, mean_dy, mean_dyx) = (&scale[..c], &mean_dy[..c], &mean_dyx[..c]);
            for ((d, g), v) in dst
                .chunks_exact_mut(c)
                .zip(g.chunks_exact(c))
                .zip(v.chunks_exact(c))
            {
                let (d, g, v) = (&mut d[..c], &g[..c], &v[..c]);
                for ch in 0..c {
                    let xhat = (v[ch] - mean[ch]) * inv_std[ch];
                    d[ch] = scale[ch] * (g[ch] - mean_dy[ch] - xhat * mean_dyx[ch]);
                }
            }
        });
    (dz, dgamma, dbeta)
}

/// Per-frame sums of `a · b` over each channel: `[frames, c]`.
pub fn frame_channel_dots(a: &[f32], b: &[f32], shape: Shape) -> Vec<f32> {
    let frame_len = shape.h * shape.w * shape.c;
    a[..shape.values()]
        .par_chunks(frame_len)
        .zip(b[..shape.values()].par_chunks(frame_len))
        .flat_map_iter(|(fa, fb)| {
            let mut acc = vec![0.0f64; shape.c];
            for (pa, pb) in fa.chunks_exact(shape.c).zip(fb.chunks_exact(shape.c)) {
                for ((s, &x), &y) in acc.iter_mut().zip(pa).zip(pb) {
                    *s += f64::from(x * y);
                }
            }
            acc.into_iter().map(|v| v as f32)
        })
        .collect()
}

/// The backward of Paddle's temporal shift (`kernels::temporal_shift`): channels `[0, c1)`
/// came from the previous frame, so their gradient goes back to it (it takes the next frame's
/// gradient); `[c1, c2)` the other way round; zeros past the clip's ends.
pub fn temporal_shift_backward(
    dy: &[f32],
    shape: Shape,
    num_seg: usize,
    (c1, c2): (usize, usize),
) -> Vec<f32> {
    let frame_len = shape.h * shape.w * shape.c;
    let c = shape.c;
    let mut out = kernels::buffer(shape.values());
    out.par_chunks_mut(frame_len)
        .enumerate()
        .for_each(|(frame, dst)| {
            let (previous, current, next) = kernels::clip_neighbours(dy, frame_len, num_seg, frame);
            // The adjoint of the shift is the shift with the neighbours swapped.
            kernels::shift_frame(next, current, previous, c, (c1, c2), dst);
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nhwc::kernels::pseudo_random;

    /// The sums do not depend on how rayon schedules them: 1, 2 and 4 threads agree bit
    /// for bit (what makes a resumed run repeat the uninterrupted one).
    #[test]
    fn weight_grad_is_bitwise_the_same_on_any_thread_count() {
        let (m, k, n) = (3000, 24, 40);
        let x = pseudo_random(m * k, 7);
        let dz = pseudo_random(m * n, 8);
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| weight_grad(&x, &dz, m, k, n))
        };
        let one = on(1);
        assert_eq!(one, on(2));
        assert_eq!(one, on(4));
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn weight_grad_is_xt_dz() {
        let (m, k, n) = (600, 7, 19);
        let x = pseudo_random(m * k, 1);
        let dz = pseudo_random(m * n, 2);
        let g = weight_grad(&x, &dz, m, k, n);
        for i in 0..k {
            for j in 0..n {
                let e: f32 = (0..m).map(|r| x[r * k + i] * dz[r * n + j]).sum();
                assert!(
                    (g[i * n + j] - e).abs() < 1e-3,
                    "[{i},{j}] {} vs {e}",
                    g[i * n + j]
                );
            }
        }
    }

    /// `<depthwise(x), g> = <x, dx> = <w, dw>` (the backward is the adjoint of the forward, which
    /// is linear in x and in w) for odd sizes and both strides.
    #[test]
    fn depthwise_backward_is_the_adjoint() {
        for (k, stride, h, w, c) in [(3, 1, 5, 7, 9), (5, 2, 7, 6, 16), (5, 1, 4, 4, 33)] {
            let s = Shape { frames: 2, h, w, c };
            let x = pseudo_random(s.values(), 1);
            let wt = pseudo_random(k * k * c, 2);
            let (y, o) = depthwise(&x, s, &wt, k, stride);
            let g = pseudo_random(o.values(), 3);
            let mut dx = vec![0.0; s.values()];
            let dw = depthwise_backward(&g, &x, s, &wt, (k, stride), Some(&mut dx));
            let lhs = dot(&y, &g);
            assert!(
                (lhs - dot(&x, &dx)).abs() < 1e-3 * (1.0 + lhs.abs()),
                "dx k{k}"
            );
            assert!(
                (lhs - dot(&wt, &dw)).abs() < 1e-3 * (1.0 + lhs.abs()),
                "dw k{k}"
            );
        }
    }

    #[test]
    fn shift_backward_is_the_adjoint() {
        let s = Shape {
            frames: 6,
            h: 2,
            w: 1,
            c: 12,
        };
        let x = pseudo_random(s.values(), 4);
        let g = pseudo_random(s.values(), 5);
        let split = (1, 3);
        let y = kernels::temporal_shift(&x, s, 3, split);
        let dx = temporal_shift_backward(&g, s, 3, split);
        assert!((dot(&y, &g) - dot(&x, &dx)).abs() < 1e-4);
    }
}
