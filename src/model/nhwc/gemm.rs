//! The matrix product behind every 1x1 convolution: `out[m, n] = act(x[m, k] · w[k, n] + b[n])`
//! with `x` the pixels (rows) of a channels-last activation and `w` a layer's weights, packed
//! once when the model is built, and `act` one of the networks' activations (`Act`).
//!
//! Why not a general GEMM crate: the shapes here are tall and thin (m = frames x pixels, up to
//! 100 000; k and n = 16..1280), the weights never change, and the bias and activation can be applied
//! while the results are still in registers. The kernel broadcasts one value of `x` at a time
//! against a panel of `NR` packed weight columns and keeps an `MR x NR` block of outputs in
//! registers (written once over `simd::Lanes`, compiled per instruction set and chosen at run
//! time).

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::simd::{Avx2, Avx512};
use super::simd::{Lanes, Simd, act_scalar, simd};
use crate::model::layers::Act;

/// Target bytes of `x` rows per task: the row tile stays in L2 while every panel passes over it.
const TILE_BYTES: usize = 96 * 1024;

/// Rows x columns of the register block: `MR * NR / lanes` accumulators plus the weight
/// vectors and one broadcast must fit the register file (16 ymm, 32 zmm, 16 xmm).
fn block(simd: Simd) -> (usize, usize) {
    match simd {
        Simd::Avx512 => (12, 32),
        Simd::Avx2 => (6, 16),
        Simd::Portable => (4, 8),
    }
}

/// A `[k, n]` weight matrix in panels of `nr` columns (`k * nr` values each), the last one
/// `nr / 2` wide where the rest fits (see [`panel_widths`]), zero-padded, with its bias padded
/// to whole panels of `nr`.
pub struct PackedMatrix {
    panels: Vec<f32>,
    bias: Vec<f32>,
    k: usize,
    n: usize,
    simd: Simd,
}

impl PackedMatrix {
    /// `weight` is `[k, n]` row-major; `bias` is `[n]` (zeros when absent).
    pub fn new(weight: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Self {
        Self::for_simd(simd(), weight, bias, k, n)
    }

    fn for_simd(simd: Simd, weight: &[f32], bias: Option<&[f32]>, k: usize, n: usize) -> Self {
        assert_eq!(weight.len(), k * n, "weight is not [k, n]");
        let (_, nr) = block(simd);
        let panel_count = n.div_ceil(nr);
        let mut panels = Vec::with_capacity(panel_count * k * nr);
        for (col0, width) in panel_widths(n, nr) {
            let cols = (n - col0).min(width);
            for row in 0..k {
                panels.extend_from_slice(&weight[row * n + col0..][..cols]);
                panels.extend(std::iter::repeat_n(0.0, width - cols));
            }
        }
        let mut padded_bias = vec![0.0f32; panel_count * nr];
        if let Some(bias) = bias {
            assert_eq!(bias.len(), n, "bias is not [n]");
            padded_bias[..n].copy_from_slice(bias);
        }
        Self {
            panels,
            bias: padded_bias,
            k,
            n,
            simd,
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// The weights back as `[k, n]` row-major.
    pub fn weight(&self) -> Vec<f32> {
        let (_, nr) = block(self.simd);
        let mut weight = vec![0.0; self.k * self.n];
        let mut offset = 0;
        for (col0, width) in panel_widths(self.n, nr) {
            let cols = (self.n - col0).min(width);
            for row in 0..self.k {
                weight[row * self.n + col0..][..cols]
                    .copy_from_slice(&self.panels[offset + row * width..][..cols]);
            }
            offset += self.k * width;
        }
        weight
    }

    /// The bias, `[n]`.
    pub fn bias(&self) -> Vec<f32> {
        self.bias[..self.n].to_vec()
    }

    /// `out[m, n] = act(x[m, k] · W + b)`. Rows are split across rayon's current pool.
    pub fn apply(&self, x: &[f32], m: usize, act: Act, out: &mut [f32]) {
        self.apply_strided(x, m, act, (out, self.n));
    }

    /// [`Self::apply`] into rows `ldo` values apart (`ldo >= n`; `out` holds `m * ldo`).
    pub fn apply_strided(&self, x: &[f32], m: usize, act: Act, (out, ldo): (&mut [f32], usize)) {
        assert!(x.len() >= m * self.k && ldo >= self.n && out.len() >= m * ldo);
        let (mr, _) = block(self.simd);
        let rows_per_tile = (TILE_BYTES / (self.k * 4)).max(mr) / mr * mr;
        for_row_tiles(
            (x, self.k),
            (out, ldo),
            m,
            (rows_per_tile, mr),
            |x_tile, out_tile| self.tile(x_tile, (out_tile, ldo), act),
        );
    }

    fn tile(&self, x: &[f32], out: (&mut [f32], usize), act: Act) {
        // `self.simd` is `simd()`'s answer (`new`) or, in this file's tests, Portable: the CPU
        // has what it names.
        match self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `simd()` detected AVX-512F (with the AVX2 and FMA every such CPU has),
            // the features `tile_avx512` is compiled for; `tile` checks the slices' lengths.
            Simd::Avx512 => unsafe { tile_avx512(self, x, out, act) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `simd()` detected AVX2 and FMA, the features `tile_avx2` is compiled for;
            // `tile` checks the slices' lengths.
            Simd::Avx2 => unsafe { tile_avx2(self, x, out, act) },
            _ => tile::<4, 8>(
                self,
                x,
                out,
                act,
                block_portable::<4, 8>,
                block_portable::<4, 4>,
            ),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile_avx512(w: &PackedMatrix, x: &[f32], out: (&mut [f32], usize), act: Act) {
    tile::<12, 32>(
        w,
        x,
        out,
        act,
        |block| {
            // SAFETY: this function only runs where AVX-512F is present (its contract, upheld
            // by `PackedMatrix::tile`); `tile` built the block's pointers from slices it
            // indexed, long enough for k values per row, 12 rows of 32 outputs and a 32-wide
            // panel and bias.
            unsafe { block_lanes::<Avx512, 12, 2>(block) }
        },
        |block| {
            // SAFETY: as above, with a 16-wide panel and 16 outputs per row.
            unsafe { block_lanes::<Avx512, 12, 1>(block) }
        },
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(w: &PackedMatrix, x: &[f32], out: (&mut [f32], usize), act: Act) {
    tile::<6, 16>(
        w,
        x,
        out,
        act,
        |block| {
            // SAFETY: this function only runs where AVX2 and FMA are present (its contract,
            // upheld by `PackedMatrix::tile`); `tile` built the block's pointers from slices it
            // indexed, long enough for k values per row, 6 rows of 16 outputs and a 16-wide
            // panel and bias.
            unsafe { block_lanes::<Avx2, 6, 2>(block) }
        },
        |block| {
            // SAFETY: as above, with an 8-wide panel and 8 outputs per row.
            unsafe { block_lanes::<Avx2, 6, 1>(block) }
        },
    );
}

/// `run` on tiles of about `rows_per_tile` rows of `x` `[m, k]` and their rows of `out`
/// (`ldo` values apart), split across rayon's current pool where the product is large enough to pay for
/// it (the float and the int8 matrix products). Split, the tiles are whole register blocks of
/// `mr` rows, as many as a multiple of the pool's threads and within a block of each other's
/// size, so that no thread is left with a large last tile (stage 4's 392 rows at 128 per tile
/// were 128, 128, 128, 8: one thread of two did 256).
pub(super) fn for_row_tiles<T: Sync>(
    (x, k): (&[T], usize),
    (out, ldo): (&mut [f32], usize),
    m: usize,
    (rows_per_tile, mr): (usize, usize),
    run: impl Fn(&[T], &mut [f32]) + Sync + Send,
) {
    let x = &x[..m * k];
    let out = &mut out[..m * ldo];
    let run = |(x_tile, out_tile): (&[T], &mut [f32])| run(x_tile, out_tile);
    if m * k * ldo < 1 << 18 {
        x.chunks(rows_per_tile * k)
            .zip(out.chunks_mut(rows_per_tile * ldo))
            .for_each(run);
        return;
    }
    let blocks = m.div_ceil(mr);
    let tiles = m
        .div_ceil(rows_per_tile)
        .next_multiple_of(rayon::current_num_threads())
        .min(blocks);
    let (mut x_rest, mut out_rest) = (x, out);
    let mut pieces = Vec::with_capacity(tiles);
    for t in 0..tiles {
        let rows = ((t + 1) * blocks / tiles - t * blocks / tiles) * mr;
        let rows = rows.min(x_rest.len() / k);
        let (x_tile, x_next) = x_rest.split_at(rows * k);
        let (out_tile, out_next) = std::mem::take(&mut out_rest).split_at_mut(rows * ldo);
        pieces.push((x_tile, out_tile));
        (x_rest, out_rest) = (x_next, out_next);
    }
    pieces.into_par_iter().for_each(run);
}

/// The panels of `n` columns for register blocks `nr` wide, as `(first column, width)`: whole
/// panels of `nr`, then the rest in one of `nr / 2` where it fits, which a half-width block
/// runs without computing or copying padding (a MobileNet's 24, 40, 72, 120 or 184 channels
/// are whole 8-lane vectors), else in one of `nr`.
fn panel_widths(n: usize, nr: usize) -> impl Iterator<Item = (usize, usize)> {
    let rest = n % nr;
    let last = match rest {
        0 => None,
        r if r <= nr / 2 => Some(nr / 2),
        _ => Some(nr),
    };
    (0..n / nr)
        .map(move |p| (p * nr, nr))
        .chain(last.map(|width| (n - rest, width)))
}

/// One register block's operands, as raw pointers: `rows[r]` points at `k` values of `x`,
/// `panel` at `k * W` packed weights, `bias` at `W` values, `dst` at `MR` rows of `W`
/// values `dst_stride` apart, `W` the block's width (`NR` or `NR / 2`). The block starts from `dst` instead of `bias` when `accumulate`
/// (a later slice of a long `k`), and applies `act` (`Act::None` but in the last slice).
struct Block<const MR: usize> {
    rows: [*const f32; MR],
    k: usize,
    panel: *const f32,
    bias: *const f32,
    dst: *mut f32,
    dst_stride: usize,
    accumulate: bool,
    act: Act,
}

/// Bytes of a panel's slice of `k`: it stays in L1 (with the rows' slices) while every
/// register block of a tile passes over it. The largest power of two within two thirds of
/// the L1 data cache: 16 KiB of 32, 32 KiB of 48 (an EPYC with 48 KiB: stage 4's 1024 x 1024
/// layer at 108 GMAC/s against 89 with 16 KiB slices, 101 with 24, 104 with 40). Slices
/// change where partial sums wait, not their order: the same floats at any size.
fn panel_slice_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        let budget = (super::simd::l1d_bytes() * 2 / 3).max(4096);
        1 << budget.ilog2()
    })
}

/// A tile of rows against every panel. `k` is cut into slices whose part of a panel fits
/// L1; for each slice the tile's rows pass over it in blocks of `MR`, later slices adding to
/// what the earlier ones stored. Full blocks are written in place; the ragged edges (last
/// rows, last columns) go through a small buffer. `kernel` runs the blocks of `NR`-wide
/// panels, `half` those of the last panel where it is `NR / 2` wide.
#[inline(always)]
fn tile<const MR: usize, const NR: usize>(
    w: &PackedMatrix,
    x: &[f32],
    (out, ldo): (&mut [f32], usize),
    act: Act,
    kernel: impl Fn(&Block<MR>),
    half: impl Fn(&Block<MR>),
) {
    let (k, n) = (w.k, w.n);
    let rows = x.len() / k;
    assert!(ldo >= n && w.bias.len() >= n.div_ceil(NR) * NR);
    assert!(rows == 0 || out.len() >= (rows - 1) * ldo + n);
    let slices = (k * NR * 4).div_ceil(panel_slice_bytes()).max(1);
    let slice_len = k.div_ceil(slices);
    let mut edge = [[0.0f32; NR]; MR];
    let mut offset = 0;
    for (col0, width) in panel_widths(n, NR) {
        let panel = &w.panels[offset..offset + k * width];
        offset += k * width;
        let cols = (n - col0).min(width);
        for k0 in (0..k).step_by(slice_len) {
            let kc = (k - k0).min(slice_len);
            let accumulate = k0 > 0;
            for r0 in (0..rows).step_by(MR) {
                let valid = (rows - r0).min(MR);
                let full = valid == MR && cols == width;
                // Rows past the end repeat the last row; their results are not stored.
                let first = x[r0 * k + k0..(r0 + valid - 1) * k + k0 + kc].as_ptr();
                // SAFETY: `first` starts row r0's slice of a slice that runs to the end of row
                // r0 + valid - 1's; min(r, valid - 1) * k stays inside it.
                let row_at = |r: usize| unsafe { first.add(r.min(valid - 1) * k) };
                if !full && accumulate {
                    for (r, values) in edge.iter_mut().enumerate().take(valid) {
                        values[..cols].copy_from_slice(&out[(r0 + r) * ldo + col0..][..cols]);
                    }
                }
                let block = Block {
                    rows: std::array::from_fn(row_at),
                    k: kc,
                    panel: panel[k0 * width..].as_ptr(),
                    bias: w.bias[col0..col0 + width].as_ptr(),
                    dst: if full {
                        out[r0 * ldo + col0..].as_mut_ptr()
                    } else {
                        edge.as_mut_ptr().cast::<f32>()
                    },
                    dst_stride: if full { ldo } else { NR },
                    accumulate,
                    act: if k0 + kc == k { act } else { Act::None },
                };
                if width == NR {
                    kernel(&block);
                } else {
                    half(&block);
                }
                if !full {
                    for (r, values) in edge.iter().enumerate().take(valid) {
                        out[(r0 + r) * ldo + col0..][..cols].copy_from_slice(&values[..cols]);
                    }
                }
            }
        }
    }
}

/// The portable register block (no SIMD intrinsics; LLVM vectorises what it can).
fn block_portable<const MR: usize, const NR: usize>(block: &Block<MR>) {
    // SAFETY: `tile` built the pointers from slices long enough for these reads and writes:
    // `k` values per row, `k * NR` packed weights, `NR` bias values, and `MR` rows of `NR`
    // destination values `dst_stride` apart (the whole `edge` buffer or rows of `out`).
    unsafe {
        let panel = std::slice::from_raw_parts(block.panel, block.k * NR);
        let bias = std::slice::from_raw_parts(block.bias, NR);
        let mut acc = [[0.0f32; NR]; MR];
        for (r, row) in acc.iter_mut().enumerate() {
            if block.accumulate {
                let dst = std::slice::from_raw_parts(block.dst.add(r * block.dst_stride), NR);
                row.copy_from_slice(dst);
            } else {
                row.copy_from_slice(bias);
            }
        }
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let x = std::slice::from_raw_parts(block.rows[r], block.k);
            for (&v, wrow) in x.iter().zip(panel.chunks_exact(NR)) {
                for (c, &wv) in acc_row.iter_mut().zip(wrow) {
                    *c += v * wv;
                }
            }
        }
        for (r, acc_row) in acc.iter().enumerate() {
            let dst = std::slice::from_raw_parts_mut(block.dst.add(r * block.dst_stride), NR);
            for (d, &v) in dst.iter_mut().zip(acc_row) {
                *d = act_scalar(v, block.act);
            }
        }
    }
}

/// The register block over `NV` vectors of `L` (`NR = NV * L::N` columns): the weight vectors
/// of a step stay in registers across the rows, and the bias and activation are applied before the
/// single store. AVX2: 6 rows x 16 columns, 12 accumulators + 2 weight vectors + 1 broadcast
/// of 16 ymm; AVX-512: 12 x 32, 24 + 2 + 1 of 32 zmm.
///
/// SAFETY: the CPU has the features `L` needs; `tile` built the pointers from slices long
/// enough for k values per row, k * NR packed weights, NR bias values and MR destination rows
/// of NR.
#[inline(always)]
unsafe fn block_lanes<L: Lanes, const MR: usize, const NV: usize>(block: &Block<MR>) {
    let rows = block.rows;
    // SAFETY: the caller has the features `L` needs and built `block` as documented above, so
    // each load and store below reads or writes `L::N` values inside those slices: row values
    // at p < k, panel vectors at p * NR + v * N < k * NR, bias or dst rows at v * N < NR.
    unsafe {
        let start = |r: usize| match block.accumulate {
            true => block.dst.add(r * block.dst_stride),
            false => block.bias.cast_mut(),
        };
        let mut acc: [[L; NV]; MR] = std::array::from_fn(|r| {
            let s = start(r);
            std::array::from_fn(|v| L::load(s.add(v * L::N)))
        });
        let mut w = block.panel;
        for p in 0..block.k {
            let wv: [L; NV] = std::array::from_fn(|v| L::load(w.add(v * L::N)));
            for (c, row) in acc.iter_mut().zip(rows) {
                let x = L::splat(*row.add(p));
                for (c, &wv) in c.iter_mut().zip(&wv) {
                    *c = x.mul_add(wv, *c);
                }
            }
            w = w.add(NV * L::N);
        }
        for (r, vectors) in acc.into_iter().enumerate() {
            let dst = block.dst.add(r * block.dst_stride);
            for (v, a) in vectors.into_iter().enumerate() {
                a.act(block.act).store(dst.add(v * L::N));
            }
        }
    }
}

/// Ragged `(m, k, n)` shapes that the matrix products are tested on (this file's and
/// `qgemm`'s): single values, edges of every block and panel, long `k`.
#[cfg(test)]
pub(super) const TEST_SHAPES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (7, 27, 32),
    (13, 64, 130),
    (40, 3, 17),
    (5, 300, 33),
    (13, 1030, 40),
    (25, 16, 64),
];

/// (tests) `strided` holds `packed`'s rows of `n` values `ldo` apart, bit for bit, and only
/// NaN (untouched) in the gaps.
/// (tests) Whether two runs of floats are equal bit for bit, pairwise.
#[cfg(test)]
pub(super) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
}

#[cfg(test)]
pub(super) fn assert_rows_apart(packed: &[f32], strided: &[f32], (n, ldo): (usize, usize)) {
    for (i, (row, wide)) in packed
        .chunks_exact(n)
        .zip(strided.chunks_exact(ldo))
        .enumerate()
    {
        assert!(same_bits(row, wide), "row {i} differs at {ldo} apart");
        assert!(wide[n..].iter().all(|v| v.is_nan()), "row {i}: gap written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPES: [(usize, usize, usize); 7] = TEST_SHAPES;

    /// Every activation the networks use (hardswish and ReLU6 for the MobileNets).
    const ACTS: [Act; 4] = [Act::None, Act::Relu, Act::Relu6, Act::Hardswish];

    fn operands(m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let w = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0)
            .collect();
        let b = (0..n).map(|j| j as f32 / 10.0 - 1.0).collect();
        (x, w, b)
    }

    fn check(
        out: &[f32],
        (x, w, b): &(Vec<f32>, Vec<f32>, Vec<f32>),
        (m, k, n): (usize, usize, usize),
        act: Act,
    ) {
        for i in 0..m {
            for j in 0..n {
                let e = b[j] + (0..k).map(|p| x[i * k + p] * w[p * n + j]).sum::<f32>();
                let e = act_scalar(e, act);
                let got = out[i * n + j];
                assert!(
                    (got - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{m}x{k}x{n} {act:?} [{i},{j}]: {got} vs {e}"
                );
            }
        }
    }

    #[test]
    fn weights_and_bias_read_back_as_given() {
        for (_, k, n) in SHAPES {
            let (_, w, b) = operands(1, k, n);
            for width in [Simd::Portable, Simd::Avx2, Simd::Avx512] {
                let packed = PackedMatrix::for_simd(width, &w, Some(&b), k, n);
                assert_eq!((packed.weight(), packed.bias()), (w.clone(), b.clone()));
            }
        }
    }

    #[test]
    fn matches_the_definition_for_ragged_shapes_on_every_available_kernel() {
        let mut widths = vec![Simd::Portable];
        if simd() != Simd::Portable {
            widths.push(simd());
        }
        for (m, k, n) in SHAPES {
            let ops = operands(m, k, n);
            for &width in &widths {
                for act in ACTS {
                    let packed = PackedMatrix::for_simd(width, &ops.1, Some(&ops.2), k, n);
                    let mut out = vec![f32::NAN; m * n];
                    packed.apply(&ops.0, m, act, &mut out);
                    check(&out, &ops, (m, k, n), act);
                    // Rows further apart: the same values, the gaps untouched.
                    let ldo = n + 5;
                    let mut strided = vec![f32::NAN; m * ldo];
                    packed.apply_strided(&ops.0, m, act, (&mut strided, ldo));
                    assert_rows_apart(&out, &strided, (n, ldo));
                }
            }
        }
    }

    /// The AVX-512 geometry (12 x 32 blocks, 32-wide panels) through the register block over
    /// portable 16-lane vectors: the AVX-512 kernel's tiling, offsets and edges, on any machine.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_geometry_tiles_and_edges_are_right() {
        for (m, k, n) in SHAPES {
            let ops = operands(m, k, n);
            for act in ACTS {
                let packed = PackedMatrix::for_simd(Simd::Avx512, &ops.1, Some(&ops.2), k, n);
                let mut out = vec![f32::NAN; m * n];
                use crate::model::nhwc::simd::Portable16;
                tile::<12, 32>(
                    &packed,
                    &ops.0,
                    (&mut out, n),
                    act,
                    |block| {
                        // SAFETY: Portable16 needs no CPU feature; `tile` built the block from
                        // slices long enough for it (12 rows, 32-wide panels).
                        unsafe { block_lanes::<Portable16, 12, 2>(block) }
                    },
                    |block| {
                        // SAFETY: as above, with 16-wide panels.
                        unsafe { block_lanes::<Portable16, 12, 1>(block) }
                    },
                );
                check(&out, &ops, (m, k, n), act);
            }
        }
    }
}
