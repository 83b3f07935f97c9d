//! The int8 matrix product behind the quantized 1x1 convolutions (`kineto quantize`, `--precision
//! int8`): `out[m, n] = act(s_x * s_w[n] * (Σ_k (q_x[m, k] - z) * q_w[k, n]) + b[n])`, with
//! `q_x` the layer's input quantized per tensor to unsigned bytes (`ActQuant`: scale `s_x`,
//! zero point `z`) and `q_w` its weights quantized per output channel to signed bytes. With
//! smoothing (`quant::smoothing`), input channel `k` is divided by its factor `s_k` as it is
//! quantized (`q_x[m, k] = quantize(x[m, k] * (1 / (s_x * s_k)))`) and `q_w` holds the weights
//! multiplied by it.
//!
//! The rows are quantized a tile at a time (still in cache when the blocks read them); the
//! zero point's share, `-z * Σ_k q_w[k, n]`, is a per-column integer added before the
//! conversion, so the kernels multiply bytes as they are. A register block keeps `MR x NR`
//! 32-bit sums and takes four values of `k` per step (one 32-bit broadcast of a row's four
//! bytes against a panel's `NR` columns of four bytes each):
//!
//! | kernel | instruction | block |
//! |---|---|---|
//! | AVX512-VNNI | `vpdpbusd` zmm | 6 x 64 |
//! | AVX-VNNI | `vpdpbusd` ymm | 6 x 16 |
//! | AVX2 | `vpmaddubsw` + `vpmaddwd` | 4 x 16 |
//! | portable | plain loops | 4 x 8 |
//!
//! All give the same integers: `vpmaddubsw` sums byte products in pairs, saturated to 16 bits,
//! which [`avx2_exact`] keeps out of reach (7-bit weights against 8-bit inputs, or 8-bit
//! weights against 7-bit inputs). The epilogue (offset, conversion, scale, bias,
//! activation) is the same sequence of single roundings everywhere, so the outputs are equal
//! bit for bit across kernels.

use std::cell::RefCell;

use super::gemm::for_row_tiles;
use super::quant::QuantLayer;
use super::simd::{Lanes, QLanes, QPortable};
#[cfg(target_arch = "x86_64")]
use super::simd::{QAvx2, QAvx512Vnni, QAvxVnni};
use crate::model::layers::Act;

/// The largest weight magnitude of a layer with 7-bit weights (the default): AVX2's pairs of
/// byte products stay inside 16 bits against 8-bit inputs, `2 * 255 * 63 = 32130 <= 32767`.
pub const WEIGHT_MAX: i32 = 63;

/// The largest weight magnitude of a layer with 8-bit weights (`kineto quantize --weight-bits
/// 8`): the VNNI kernels and the portable one take it as it is; AVX2 against 7-bit inputs
/// only (`2 * 127 * 127 = 32258`), else such a layer runs the portable kernel there.
pub const WEIGHT_MAX_8BIT: i32 = 127;

/// The largest input code of a layer with 8-bit inputs (the default).
pub const INPUT_MAX: u8 = 255;

/// The largest input code of a layer with 7-bit inputs (`kineto quantize --input-bits 7`).
pub const INPUT_MAX_7BIT: u8 = 127;

/// Whether AVX2's `vpmaddubsw`, which sums byte products in pairs saturated to 16 bits, gives
/// exact sums for inputs within 0..=`input_max` and weights within ±`weight_max`.
pub const fn avx2_exact(input_max: u8, weight_max: i32) -> bool {
    2 * input_max as i32 * weight_max <= i16::MAX as i32
}

/// How a layer's input is quantized: `q = clamp(round_ties_even(x * (1 / scale)) + zero_point,
/// 0, max)`, read back as `scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActQuant {
    pub scale: f32,
    pub zero_point: u8,
    /// The largest code: [`INPUT_MAX`] (8 bits) or [`INPUT_MAX_7BIT`].
    pub max: u8,
}

impl ActQuant {
    /// The quantization of `lower..=upper` (which holds 0) onto 0..=`max`.
    pub fn for_range(lower: f32, upper: f32, max: u8) -> Self {
        let (lower, upper) = (lower.min(0.0), upper.max(0.0));
        let span = upper - lower;
        if !(span.is_finite() && span > 0.0) {
            return ActQuant {
                scale: 1.0,
                zero_point: 0,
                max,
            };
        }
        let top = f32::from(max);
        let scale = span / top;
        let zero_point = (-lower / scale).round_ties_even().clamp(0.0, top) as u8;
        ActQuant {
            scale,
            zero_point,
            max,
        }
    }

    #[inline(always)]
    fn quantize(v: f32, inverse: f32, zero_point: f32, max: f32) -> u8 {
        // NaN becomes 0 (`as` saturates and maps NaN to 0).
        ((v * inverse).round_ties_even() + zero_point).clamp(0.0, max) as u8
    }
}

/// The int8 kernels, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QSimd {
    Portable,
    Avx2,
    AvxVnni,
    Avx512Vnni,
}

impl QSimd {
    pub fn name(self) -> &'static str {
        match self {
            QSimd::Portable => "portable",
            QSimd::Avx2 => "avx2",
            QSimd::AvxVnni => "avx-vnni",
            QSimd::Avx512Vnni => "avx512-vnni",
        }
    }

    /// Whether this CPU runs the kernel.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma");
            match self {
                QSimd::Portable => true,
                QSimd::Avx2 => avx2,
                QSimd::AvxVnni => avx2 && has!("avxvnni"),
                QSimd::Avx512Vnni => avx2 && has!("avx512f") && has!("avx512vnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == QSimd::Portable
        }
    }

    /// Rows x columns of the register block.
    fn block(self) -> (usize, usize) {
        match self {
            QSimd::Avx512Vnni => (6, 64),
            QSimd::AvxVnni => (6, 16),
            QSimd::Avx2 => (4, 16),
            QSimd::Portable => (4, 8),
        }
    }
}

/// The widest int8 kernel the CPU runs, capped by `KINETO_CPU_SIMD` as the float kernels are
/// (`portable`, `avx2`, `avxvnni`, `avx512`). Read once per process.
pub fn qsimd() -> QSimd {
    static CHOSEN: std::sync::OnceLock<QSimd> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let cap = match std::env::var("KINETO_CPU_SIMD").as_deref() {
            Ok("portable") => QSimd::Portable,
            Ok("avx2") => QSimd::Avx2,
            Ok("avxvnni") => QSimd::AvxVnni,
            _ => QSimd::Avx512Vnni,
        };
        [QSimd::Avx512Vnni, QSimd::AvxVnni, QSimd::Avx2]
            .into_iter()
            .find(|&kernel| kernel <= cap && kernel.available())
            .unwrap_or(QSimd::Portable)
    })
}

/// The kernel `layer` runs: [`qsimd`]'s, except that where AVX2 is the widest, a layer whose
/// byte products could saturate AVX2's pairs (8-bit weights against 8-bit inputs) runs
/// portable code.
pub fn kernel_for(layer: &QuantLayer) -> QSimd {
    match qsimd() {
        QSimd::Avx2 if !avx2_exact(layer.input.max, layer.weight_max) => QSimd::Portable,
        simd => simd,
    }
}

/// Target bytes of quantized rows per task.
const TILE_BYTES: usize = 64 * 1024;

thread_local! {
    /// Each thread's quantized rows of the tile it works on.
    static ROWS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A quantized `[k, n]` weight matrix in panels of `NR` columns, zero-padded to whole panels
/// and to `k` in fours: panel step `p` holds, for each of its columns, the four weights of
/// rows `4p..4p + 4`.
pub struct QuantizedMatrix {
    panels: Vec<i8>,
    /// `-z * Σ_k q_w[k, n]` per column.
    offset: Vec<i32>,
    /// `s_x * s_w[n]` per column.
    dequant: Vec<f32>,
    bias: Vec<f32>,
    /// `1 / (s_x * s_k)` per input channel (`s_k` 1 without smoothing).
    inverse: Vec<f32>,
    zero_point: u8,
    /// The largest input code.
    input_max: u8,
    /// The width the inputs are quantized in: the kernel's where the CPU has it, else the
    /// widest narrower one it has (the tests run wide kernels' geometries in portable code).
    quantize_simd: QSimd,
    k: usize,
    /// `k` rounded up to a multiple of 4: the quantized rows' stride.
    k4: usize,
    n: usize,
    simd: QSimd,
}

impl QuantizedMatrix {
    /// `layer` (whose values `QuantLayer::problem` accepts) with a float `bias` `[n]`.
    pub fn new(layer: &QuantLayer, bias: Option<&[f32]>) -> Self {
        Self::for_simd(kernel_for(layer), layer, bias)
    }

    fn for_simd(simd: QSimd, layer: &QuantLayer, bias: Option<&[f32]>) -> Self {
        let (k, n, input) = (layer.in_channels, layer.out_channels, layer.input);
        let (weight, weight_scale) = (&layer.weight, &layer.weight_scale);
        assert_eq!(weight.len(), k * n, "weight is not [n, k]");
        assert_eq!(weight_scale.len(), n, "weight_scale is not [n]");
        assert!(
            weight
                .iter()
                .all(|&w| i32::from(w).abs() <= layer.weight_max),
            "weights outside ±{}",
            layer.weight_max
        );
        assert!(
            simd != QSimd::Avx2 || avx2_exact(input.max, layer.weight_max),
            "AVX2's pairs could saturate"
        );
        let (_, nr) = simd.block();
        let k4 = k.div_ceil(4) * 4;
        let padded = n.div_ceil(nr) * nr;
        let mut panels = vec![0i8; padded * k4];
        for col in 0..n {
            let (panel, c) = (col / nr, col % nr);
            for row in 0..k {
                let (step, q) = (row / 4, row % 4);
                panels[panel * nr * k4 + step * nr * 4 + c * 4 + q] = weight[col * k + row];
            }
        }
        let zero_point = i32::from(input.zero_point);
        let mut offset = vec![0i32; padded];
        let mut dequant = vec![0f32; padded];
        let mut padded_bias = vec![0f32; padded];
        for col in 0..n {
            let sum: i32 = weight[col * k..][..k].iter().map(|&w| i32::from(w)).sum();
            offset[col] = -zero_point * sum;
            dequant[col] = input.scale * weight_scale[col];
        }
        if let Some(bias) = bias {
            assert_eq!(bias.len(), n, "bias is not [n]");
            padded_bias[..n].copy_from_slice(bias);
        }
        let inverse = match layer.smoothing.len() == k {
            true => layer
                .smoothing
                .iter()
                .map(|s| 1.0 / (input.scale * s))
                .collect(),
            false => vec![1.0 / input.scale; k],
        };
        Self {
            panels,
            offset,
            dequant,
            bias: padded_bias,
            inverse,
            zero_point: input.zero_point,
            input_max: input.max,
            quantize_simd: [simd, QSimd::Avx2]
                .into_iter()
                .find(|q| *q <= simd && q.available())
                .unwrap_or(QSimd::Portable),
            k,
            k4,
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

    /// The kernel this layer runs.
    pub fn kernel(&self) -> QSimd {
        self.simd
    }

    /// `out[m, n] = act(dequantized (quantized x[m, k]) · W + b)`. Rows are split across
    /// rayon's current pool.
    pub fn apply(&self, x: &[f32], m: usize, act: Act, out: &mut [f32]) {
        self.apply_rows(x, m, None, act, (out, self.n));
    }

    /// [`Self::apply`] into rows `ldo` values apart (`ldo >= n`; `out` holds `m * ldo`).
    pub fn apply_strided(&self, x: &[f32], m: usize, act: Act, out: (&mut [f32], usize)) {
        self.apply_rows(x, m, None, act, out);
    }

    /// [`Self::apply_strided`] on `frames` frames of `pixels` rows each, whose input channels
    /// are multiplied by their frame's `scales` `[frames, k]` (a squeeze-and-excitation's) as
    /// they are quantized: the same bytes as scaling `x` in place first.
    pub fn apply_scaled(
        &self,
        x: &[f32],
        (frames, pixels): (usize, usize),
        scales: &[f32],
        act: Act,
        (out, ldo): (&mut [f32], usize),
    ) {
        assert!(scales.len() >= frames * self.k && out.len() >= frames * pixels * ldo);
        let frame_in = (pixels * self.k).max(1);
        let frame_out = (pixels * ldo).max(1);
        for ((x, out), scales) in x[..frames * pixels * self.k]
            .chunks_exact(frame_in)
            .zip(out.chunks_exact_mut(frame_out))
            .zip(scales.chunks_exact(self.k))
        {
            self.apply_rows(x, pixels, Some(scales), act, (out, ldo));
        }
    }

    fn apply_rows(
        &self,
        x: &[f32],
        m: usize,
        scales: Option<&[f32]>,
        act: Act,
        (out, ldo): (&mut [f32], usize),
    ) {
        assert!(x.len() >= m * self.k && ldo >= self.n && out.len() >= m * ldo);
        for_row_tiles(
            (x, self.k),
            (out, ldo),
            m,
            (self.rows_per_tile(), self.simd.block().0),
            |x_tile, out_tile| {
                ROWS.with(|rows| {
                    let mut rows = rows.borrow_mut();
                    // Every byte is written by `quantize_scaled`: not cleared first.
                    rows.resize(x_tile.len() / self.k * self.k4, 0);
                    self.quantize_scaled(x_tile, scales, &mut rows);
                    self.tile(&rows, (out_tile, ldo), act);
                })
            },
        );
    }

    /// `out[m, n]` (rows `ldo` values apart) from inputs already quantized by
    /// [`Self::quantize_into`] (`rows` `[m, k4]`).
    pub fn apply_quantized(
        &self,
        rows: &[u8],
        m: usize,
        act: Act,
        (out, ldo): (&mut [f32], usize),
    ) {
        assert!(rows.len() >= m * self.k4 && ldo >= self.n && out.len() >= m * ldo);
        for_row_tiles(
            (rows, self.k4),
            (out, ldo),
            m,
            (self.rows_per_tile(), self.simd.block().0),
            |rows_tile, out_tile| self.tile(rows_tile, (out_tile, ldo), act),
        );
    }

    /// Rows per task: about [`TILE_BYTES`] of quantized rows, whole register blocks.
    fn rows_per_tile(&self) -> usize {
        let (mr, _) = self.simd.block();
        (TILE_BYTES / self.k4).max(mr) / mr * mr
    }

    /// The stride of quantized rows: `k` rounded up to a multiple of 4.
    pub fn k4(&self) -> usize {
        self.k4
    }

    /// Rows `[m, k]` -> bytes `[m, k4]` in `rows` (the padding zero), as [`Self::apply`]
    /// quantizes its input.
    pub fn quantize_into(&self, x: &[f32], rows: &mut [u8]) {
        self.quantize_scaled(x, None, rows);
    }

    /// [`Self::quantize_into`], each row first multiplied by `scales` `[k]` where given (one
    /// rounding, as scaling in place would).
    fn quantize_scaled(&self, x: &[f32], scales: Option<&[f32]>, rows: &mut [u8]) {
        let (zero_point, max) = (f32::from(self.zero_point), f32::from(self.input_max));
        let scales = scales.unwrap_or(&[]);
        for (src, dst) in x.chunks_exact(self.k).zip(rows.chunks_exact_mut(self.k4)) {
            let (dst, padding) = dst.split_at_mut(self.k);
            padding.fill(0);
            let row = QuantizeRow {
                src,
                scales,
                inverse: &self.inverse,
                zero_point,
                max,
            };
            // The SIMD loops quantize up to the last whole 16 values; the rest one by one.
            let done = match self.quantize_simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `quantize_simd` is AVX512-VNNI only where the CPU has AVX-512F
                // (`available`).
                QSimd::Avx512Vnni => unsafe { quantize_avx512(&row, dst) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `quantize_simd` names these only where the CPU has AVX2.
                QSimd::AvxVnni | QSimd::Avx2 => unsafe { quantize_avx2(&row, dst) },
                _ => 0,
            };
            quantize_scalar(&row, done, dst);
        }
    }

    fn tile(&self, rows: &[u8], out: (&mut [f32], usize), act: Act) {
        // `self.simd` is `qsimd()`'s answer (`new`) or, in this file's tests, one that
        // `available()` confirmed: the CPU has what it names.
        match self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX512-VNNI, AVX-512F, AVX2 and FMA (above); `tile` checks
            // the slices' lengths.
            QSimd::Avx512Vnni => unsafe { tile_avx512_vnni(self, rows, out, act) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX-VNNI, AVX2 and FMA (above).
            QSimd::AvxVnni => unsafe { tile_avx_vnni(self, rows, out, act) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 and FMA (above).
            QSimd::Avx2 => unsafe { tile_avx2(self, rows, out, act) },
            _ => tile::<4, 8>(self, rows, out, act, |block| {
                // SAFETY: QPortable and PortableLanes need no CPU feature; `tile` built the
                // block from slices long enough for it (4 rows, 8-wide panels).
                unsafe { block_lanes::<QPortable<8, false>, 4, 1>(block) }
            }),
        }
    }
}

/// One row for the quantize loops: `src` (multiplied by `scales` first unless it is empty),
/// each value's `inverse` scale, the zero point and the largest code.
struct QuantizeRow<'a> {
    src: &'a [f32],
    scales: &'a [f32],
    inverse: &'a [f32],
    zero_point: f32,
    max: f32,
}

impl QuantizeRow<'_> {
    /// The values the SIMD loops may read: `src`'s, `inverse`'s and any `scales`'.
    fn len(&self, dst: &[u8]) -> usize {
        let n = self.src.len().min(dst.len()).min(self.inverse.len());
        match self.scales.is_empty() {
            true => n,
            false => n.min(self.scales.len()),
        }
    }
}

/// [`ActQuant::quantize`] on `row` from value `from` on into `dst`, one at a time.
fn quantize_scalar(row: &QuantizeRow, from: usize, dst: &mut [u8]) {
    let n = row.len(dst);
    for (i, d) in dst.iter_mut().enumerate().take(n).skip(from) {
        let v = match row.scales.is_empty() {
            true => row.src[i],
            false => row.src[i] * row.scales[i],
        };
        *d = ActQuant::quantize(v, row.inverse[i], row.zero_point, row.max);
    }
}

/// [`ActQuant::quantize`] on `row` into `dst`, 16 values per step up to the last whole 16
/// (returned; the caller quantizes the rest): the same operations (scale, multiply, round to
/// nearest even, add, clamp) on 8 lanes, then packed to bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_avx2(row: &QuantizeRow, dst: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    let whole = row.len(dst) / 16 * 16;
    let scaled = !row.scales.is_empty();
    // SAFETY: the caller has AVX2; every load reads 8 values at i or i + 8 < whole of `src`,
    // `inverse` and (when scaled) `scales`, every store writes 16 bytes at i < whole of `dst`.
    unsafe {
        let zp = _mm256_set1_ps(row.zero_point);
        let (low, high) = (_mm256_setzero_ps(), _mm256_set1_ps(row.max));
        let quantize = |i: usize| {
            let mut v = _mm256_loadu_ps(row.src.as_ptr().add(i));
            if scaled {
                v = _mm256_mul_ps(v, _mm256_loadu_ps(row.scales.as_ptr().add(i)));
            }
            let v = _mm256_mul_ps(v, _mm256_loadu_ps(row.inverse.as_ptr().add(i)));
            let v = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            // max then min as `clamp` does; NaN (max's second operand wins) becomes 0.
            let v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, zp), low), high);
            _mm256_cvtps_epi32(v)
        };
        for i in (0..whole).step_by(16) {
            let a = quantize(i);
            let b = quantize(i + 8);
            // i16 [a0-3 b0-3 a4-7 b4-7] -> [a0-7 b0-7] -> 16 bytes in order.
            let words = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
            let bytes = _mm_packus_epi16(
                _mm256_castsi256_si128(words),
                _mm256_extracti128_si256::<1>(words),
            );
            _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), bytes);
        }
    }
    whole
}

/// [`quantize_avx2`] in 16 lanes: the same operations, each 16-lane result narrowed to bytes
/// by `vpmovdb` (the values are already within 0..=max); returns how many it quantized.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn quantize_avx512(row: &QuantizeRow, dst: &mut [u8]) -> usize {
    use std::arch::x86_64::*;
    let whole = row.len(dst) / 16 * 16;
    let scaled = !row.scales.is_empty();
    // SAFETY: the caller has AVX-512F; every load reads 16 values at i < whole of `src`,
    // `inverse` and (when scaled) `scales`, every store writes 16 bytes at i < whole of `dst`.
    unsafe {
        let zp = _mm512_set1_ps(row.zero_point);
        let (low, high) = (_mm512_setzero_ps(), _mm512_set1_ps(row.max));
        for i in (0..whole).step_by(16) {
            let mut v = _mm512_loadu_ps(row.src.as_ptr().add(i));
            if scaled {
                v = _mm512_mul_ps(v, _mm512_loadu_ps(row.scales.as_ptr().add(i)));
            }
            let v = _mm512_mul_ps(v, _mm512_loadu_ps(row.inverse.as_ptr().add(i)));
            let v = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            // max then min as `clamp` does; NaN (max's second operand wins) becomes 0.
            let v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, zp), low), high);
            let bytes = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v));
            _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), bytes);
        }
    }
    whole
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni,avx2,fma")]
unsafe fn tile_avx512_vnni(w: &QuantizedMatrix, rows: &[u8], out: (&mut [f32], usize), act: Act) {
    tile::<6, 64>(w, rows, out, act, |block| {
        // SAFETY: this function only runs where AVX512-VNNI and AVX-512F are present (its
        // contract); `tile` built the block's pointers from slices long enough for 6 rows of
        // k4 bytes, a 64-wide panel and 64 outputs per row.
        unsafe { block_lanes::<QAvx512Vnni, 6, 4>(block) }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avxvnni,avx2,fma")]
unsafe fn tile_avx_vnni(w: &QuantizedMatrix, rows: &[u8], out: (&mut [f32], usize), act: Act) {
    tile::<6, 16>(w, rows, out, act, |block| {
        // SAFETY: as `tile_avx512_vnni`, with AVX-VNNI, 6 rows and 16-wide panels.
        unsafe { block_lanes::<QAvxVnni, 6, 2>(block) }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(w: &QuantizedMatrix, rows: &[u8], out: (&mut [f32], usize), act: Act) {
    tile::<4, 16>(w, rows, out, act, |block| {
        // SAFETY: as `tile_avx512_vnni`, with AVX2, 4 rows and 16-wide panels.
        unsafe { block_lanes::<QAvx2, 4, 2>(block) }
    });
}

/// One register block's operands as raw pointers: `rows[r]` points at `4 * steps` bytes,
/// `panel` at `steps * W * 4` packed weights, `offset`, `dequant` and `bias` at `W` values and
/// `dst` at `MR` rows of `W` values `dst_stride` apart, `W` the panel's width.
struct Block<const MR: usize> {
    rows: [*const u8; MR],
    steps: usize,
    panel: *const i8,
    offset: *const i32,
    dequant: *const f32,
    bias: *const f32,
    dst: *mut f32,
    dst_stride: usize,
    act: Act,
}

/// A tile of quantized rows against every panel, in register blocks of `MR` rows; the ragged
/// edges (last rows, padded columns) go through a small buffer.
#[inline(always)]
fn tile<const MR: usize, const NR: usize>(
    w: &QuantizedMatrix,
    rows: &[u8],
    (out, ldo): (&mut [f32], usize),
    act: Act,
    kernel: impl Fn(&Block<MR>),
) {
    let (k4, n) = (w.k4, w.n);
    let m = rows.len() / k4;
    assert!(ldo >= n && (m == 0 || out.len() >= (m - 1) * ldo + n));
    assert!(w.panels.len() >= n.div_ceil(NR) * NR * k4);
    assert!(w.offset.len() >= n.div_ceil(NR) * NR && w.bias.len() == w.offset.len());
    let mut edge = [[0.0f32; NR]; MR];
    for col0 in (0..n).step_by(NR) {
        let panel = &w.panels[col0 * k4..(col0 + NR) * k4];
        let cols = (n - col0).min(NR);
        for r0 in (0..m).step_by(MR) {
            let valid = (m - r0).min(MR);
            let full = valid == MR && cols == NR;
            // Rows past the end repeat the last row; their results are not stored.
            let first = rows[r0 * k4..(r0 + valid) * k4].as_ptr();
            // SAFETY: `first` starts row r0 of a slice of `valid` rows of k4 bytes;
            // min(r, valid - 1) * k4 stays inside it.
            let row_at = |r: usize| unsafe { first.add(r.min(valid - 1) * k4) };
            let block = Block {
                rows: std::array::from_fn(row_at),
                steps: k4 / 4,
                panel: panel.as_ptr(),
                offset: w.offset[col0..col0 + NR].as_ptr(),
                dequant: w.dequant[col0..col0 + NR].as_ptr(),
                bias: w.bias[col0..col0 + NR].as_ptr(),
                dst: if full {
                    out[r0 * ldo + col0..].as_mut_ptr()
                } else {
                    edge.as_mut_ptr().cast::<f32>()
                },
                dst_stride: if full { ldo } else { NR },
                act,
            };
            kernel(&block);
            if !full {
                for (r, values) in edge.iter().enumerate().take(valid) {
                    out[(r0 + r) * ldo + col0..][..cols].copy_from_slice(&values[..cols]);
                }
            }
        }
    }
}

/// The register block over `NV` vectors of `Q` (`NR = NV * Q::N` columns): the step's weight
/// vectors stay in registers across the rows; offset, conversion, scale, bias and activation
/// are applied before the single store.
///
/// SAFETY: the CPU has the features `Q` needs; `tile` built the pointers as [`Block`] says.
#[inline(always)]
unsafe fn block_lanes<Q: QLanes, const MR: usize, const NV: usize>(block: &Block<MR>) {
    // SAFETY: the caller has the features `Q` needs and built `block` as documented, so each
    // load and store below stays inside those slices: row bytes at 4p < 4 * steps, panel
    // vectors at (p * NV + v) * 4N < steps * NR * 4, column values and dst rows at v * N < NR.
    unsafe {
        let mut acc: [[Q; NV]; MR] = [[Q::zero(); NV]; MR];
        let mut w = block.panel;
        for p in 0..block.steps {
            let wv: [Q; NV] = std::array::from_fn(|v| Q::load_bytes(w.add(v * Q::N * 4)));
            for (acc_row, row) in acc.iter_mut().zip(block.rows) {
                let x = Q::splat4(row.add(p * 4).cast::<u32>().read_unaligned());
                for (a, &wv) in acc_row.iter_mut().zip(&wv) {
                    *a = a.dot(x, wv);
                }
            }
            w = w.add(NV * Q::N * 4);
        }
        for (r, vectors) in acc.into_iter().enumerate() {
            let dst = block.dst.add(r * block.dst_stride);
            for (v, a) in vectors.into_iter().enumerate() {
                let col = v * Q::N;
                let sum = a.add(Q::load_i32(block.offset.add(col))).to_f32();
                let scaled = sum.mul(Q::F::load(block.dequant.add(col)));
                let y = scaled.add(Q::F::load(block.bias.add(col)));
                y.act(block.act).store(dst.add(col));
            }
        }
    }
}

/// The scalar definition the kernels are tested against: the same integers and the same
/// epilogue, one value at a time.
#[cfg(test)]
fn reference(w: &QuantizedMatrix, layer: &QuantLayer, x: &[f32], m: usize, act: Act) -> Vec<f32> {
    use super::simd::act_scalar;
    let (k, n) = (w.k, w.n);
    let (zero_point, max) = (
        f32::from(layer.input.zero_point),
        f32::from(layer.input.max),
    );
    let smoothing = |p: usize| layer.smoothing.get(p).copied().unwrap_or(1.0);
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        let q: Vec<i32> = x[i * k..][..k]
            .iter()
            .enumerate()
            .map(|(p, &v)| {
                let inverse = 1.0 / (layer.input.scale * smoothing(p));
                i32::from(ActQuant::quantize(v, inverse, zero_point, max))
            })
            .collect();
        for j in 0..n {
            let dot: i32 = (0..k)
                .map(|p| q[p] * i32::from(layer.weight[j * k + p]))
                .sum();
            let sum = (dot + w.offset[j]) as f32;
            out[i * n + j] = act_scalar(sum * w.dequant[j] + w.bias[j], act);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nhwc::gemm::same_bits;

    const SHAPES: [(usize, usize, usize); 7] = super::super::gemm::TEST_SHAPES;

    const ACTS: [Act; 3] = [Act::None, Act::Relu, Act::Hardswish];

    /// Activations over the whole byte range and beyond (clamped), weights over ±`limit`
    /// with the extremes present, a zero point inside the range.
    fn operands(
        m: usize,
        k: usize,
        n: usize,
        limit: i32,
    ) -> (Vec<f32>, Vec<i8>, Vec<f32>, Vec<f32>) {
        // Quarter steps: ties (x / 0.5 = n + 0.5) round to even; one NaN (to 0), one infinity.
        let mut x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 601) as f32 - 80.0) * 0.25)
            .collect();
        if x.len() > 20 {
            (x[3], x[19]) = (f32::NAN, f32::INFINITY);
        }
        let w = (0..n * k)
            .map(|i| ((i * 29 % (2 * limit as usize + 1)) as i32 - limit) as i8)
            .collect();
        let scale = (0..n).map(|j| 0.01 + j as f32 * 1e-3).collect();
        let bias = (0..n).map(|j| j as f32 / 10.0 - 1.0).collect();
        (x, w, scale, bias)
    }

    /// The input bits and weight bits every kernel but AVX2's takes; AVX2 takes those that
    /// [`avx2_exact`] allows.
    const WIDTHS: [(u8, i32); 3] = [
        (INPUT_MAX, WEIGHT_MAX),
        (INPUT_MAX_7BIT, WEIGHT_MAX_8BIT),
        (INPUT_MAX, WEIGHT_MAX_8BIT),
    ];

    fn check(simd: QSimd, kernel: Option<fn(&Block<6>)>, (input_max, weight_max): (u8, i32)) {
        for (shape, (m, k, n)) in SHAPES.into_iter().enumerate() {
            let (x, weight, weight_scale, bias) = operands(m, k, n, weight_max);
            // Every other shape with smoothing factors (a different one per input channel).
            let smoothing = match shape % 2 {
                0 => Vec::new(),
                _ => (0..k).map(|p| 0.5 + (p % 7) as f32 * 0.375).collect(),
            };
            let layer = QuantLayer {
                out_channels: n,
                in_channels: k,
                weight,
                weight_scale,
                input: ActQuant {
                    scale: 0.5,
                    zero_point: 40,
                    max: input_max,
                },
                smoothing,
                weight_max,
            };
            for act in ACTS {
                let matrix = QuantizedMatrix::for_simd(simd, &layer, Some(&bias));
                let mut out = vec![f32::NAN; m * n];
                match kernel {
                    Some(kernel) => {
                        let mut rows = vec![0xa5u8; m * matrix.k4()];
                        matrix.quantize_into(&x, &mut rows);
                        tile::<6, 64>(&matrix, &rows, (&mut out, n), act, kernel);
                    }
                    None => matrix.apply(&x, m, act, &mut out),
                }
                let expected = reference(&matrix, &layer, &x, m, act);
                // Inputs quantized first (as a depthwise hands them over), then multiplied.
                if kernel.is_none() {
                    let mut rows = vec![0xa5u8; m * matrix.k4()];
                    matrix.quantize_into(&x, &mut rows);
                    let mut from_bytes = vec![f32::NAN; m * n];
                    matrix.apply_quantized(&rows, m, act, (&mut from_bytes, n));
                    assert!(
                        same_bits(&from_bytes, &out),
                        "{} {m}x{k}x{n} {act:?}: quantized first differs",
                        simd.name()
                    );
                    // Rows further apart: the same values, the gaps untouched.
                    let ldo = n + 3;
                    let mut strided = vec![f32::NAN; m * ldo];
                    matrix.apply_strided(&x, m, act, (&mut strided, ldo));
                    super::super::gemm::assert_rows_apart(&out, &strided, (n, ldo));
                    // Scaled per frame as quantized (SE's scales) = scaled in place first.
                    let frames = if m % 2 == 0 { 2 } else { 1 };
                    let scales: Vec<f32> = (0..frames * k)
                        .map(|i| (i * 13 % 17) as f32 / 16.0 + 0.03)
                        .collect();
                    let scaled: Vec<f32> = x
                        .chunks_exact(m / frames * k)
                        .zip(scales.chunks_exact(k))
                        .flat_map(|(frame, s)| {
                            frame.chunks_exact(k).flat_map(move |px| {
                                px.iter().zip(s).map(|(v, s)| v * s).collect::<Vec<_>>()
                            })
                        })
                        .collect();
                    let (mut first, mut as_quantized) = (vec![f32::NAN; m * n], vec![0.0; m * n]);
                    matrix.apply(&scaled, m, act, &mut first);
                    let per_frame = (frames, m / frames);
                    let out = (&mut as_quantized[..], n);
                    matrix.apply_scaled(&x, per_frame, &scales, act, out);
                    assert!(
                        same_bits(&first, &as_quantized),
                        "{} {m}x{k}x{n} {act:?}: scaled as quantized differs",
                        simd.name()
                    );
                }
                for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
                    assert!(
                        got.to_bits() == want.to_bits(),
                        "{} {m}x{k}x{n} {act:?} inputs to {input_max}, weights ±{weight_max} \
                         [{i}]: {got} vs {want}",
                        simd.name()
                    );
                }
            }
        }
    }

    /// Every kernel this CPU runs equals the scalar definition bit for bit (the integer sums
    /// exactly, the epilogue in the same roundings).
    #[test]
    fn every_available_kernel_equals_the_scalar_definition() {
        let kernels = [
            QSimd::Portable,
            QSimd::Avx2,
            QSimd::AvxVnni,
            QSimd::Avx512Vnni,
        ];
        let available: Vec<QSimd> = kernels.into_iter().filter(|k| k.available()).collect();
        assert!(available.contains(&QSimd::Portable));
        for simd in available {
            for (input_max, weight_max) in WIDTHS {
                // AVX2 only where its pairs cannot saturate.
                if simd != QSimd::Avx2 || avx2_exact(input_max, weight_max) {
                    check(simd, None, (input_max, weight_max));
                }
            }
        }
    }

    /// The VNNI kernels' geometry (6 x 64 blocks, 16 lanes) and AVX2's saturating pair sums,
    /// in portable code: checked on every machine, whatever it has.
    #[test]
    fn wide_geometries_and_saturating_pairs_equal_the_scalar_definition() {
        check(
            QSimd::Avx512Vnni,
            Some(|block| {
                // SAFETY: QPortable needs no CPU feature; `tile` built the block from slices
                // long enough for 6 rows and 64-wide panels.
                unsafe { block_lanes::<QPortable<16, false>, 6, 4>(block) }
            }),
            (INPUT_MAX, WEIGHT_MAX_8BIT),
        );
        for widths in [(INPUT_MAX, WEIGHT_MAX), (INPUT_MAX_7BIT, WEIGHT_MAX_8BIT)] {
            check(
                QSimd::Avx512Vnni,
                Some(|block| {
                    // SAFETY: as above; 8 vectors of 8 lanes are the same 64 columns.
                    unsafe { block_lanes::<QPortable<8, true>, 6, 8>(block) }
                }),
                widths,
            );
        }
    }

    /// Byte products that would overflow 16 bits in pairs: AVX2's arithmetic saturates, which
    /// is why 8-bit weights need 7-bit inputs there (the emulation is the instruction's:
    /// checked where the CPU has AVX2).
    #[test]
    fn avx2_pairs_stay_inside_16_bits_at_7_bit_weights_or_7_bit_inputs() {
        assert!(avx2_exact(INPUT_MAX, WEIGHT_MAX));
        assert!(avx2_exact(INPUT_MAX_7BIT, WEIGHT_MAX_8BIT));
        assert!(!avx2_exact(INPUT_MAX, WEIGHT_MAX_8BIT));
        // SAFETY: QPortable needs no CPU feature.
        let saturated = unsafe {
            QPortable::<1, true>::zero().dot(
                QPortable::<1, true>::splat4(u32::MAX),
                QPortable::<1, true>::splat4(0x7f7f_7f7f),
            )
        };
        assert_eq!(saturated.0[0], 2 * 32767);
        #[cfg(target_arch = "x86_64")]
        if QSimd::Avx2.available() {
            let mut got = [0i32; 8];
            // SAFETY: the CPU has AVX2 (checked above); `got` holds 8 values.
            unsafe { avx2_dot(&mut got) };
            assert_eq!(got, [2 * 32767; 8], "the emulation is not vpmaddubsw's");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_dot(out: &mut [i32; 8]) {
        // SAFETY: the caller has AVX2; `out` holds the 8 values stored.
        unsafe {
            let sum = QAvx2::zero().dot(QAvx2::splat4(u32::MAX), QAvx2::splat4(0x7f7f_7f7f));
            let as_f32 = sum.to_f32();
            let mut f = [0f32; 8];
            as_f32.store(f.as_mut_ptr());
            *out = f.map(|v| v as i32);
        }
    }

    #[test]
    fn activation_ranges_map_zero_exactly() {
        let q = ActQuant::for_range(-1.0, 3.0, INPUT_MAX);
        assert_eq!(q.zero_point, 64);
        assert_eq!(ActQuant::quantize(0.0, 1.0 / q.scale, 64.0, 255.0), 64);
        let relu = ActQuant::for_range(0.0, 2.55, INPUT_MAX);
        assert_eq!(relu.zero_point, 0);
        assert_eq!(ActQuant::quantize(9.0, 1.0 / relu.scale, 0.0, 255.0), 255);
        assert_eq!(ActQuant::for_range(0.0, 0.0, INPUT_MAX).scale, 1.0);
        // 7 bits: half the codes, the same zero.
        let q7 = ActQuant::for_range(-1.0, 3.0, INPUT_MAX_7BIT);
        assert_eq!((q7.zero_point, q7.scale), (32, 4.0 / 127.0));
        assert_eq!(ActQuant::quantize(9.0, 1.0 / q7.scale, 32.0, 127.0), 127);
    }
}
