//! The CPU kernels of the NHWC inference path besides the matrix product (`gemm`), on plain
//! `f32` slices: depthwise convolutions vectorised across channels, the stem's patches, and the
//! small glue operations.
//!
//! Layout: activations are `[frames, h, w, c]` row-major. Work is split on rayon's current pool
//! (the engine installs its own, sized by `--threads`).

use std::cell::RefCell;

use rayon::prelude::*;

use super::simd::{self, Lanes, Simd, act_scalar};
use crate::model::layers::Act;

thread_local! {
    /// Activation buffers given back after use, reused by the next layer or forward pass:
    /// large fresh allocations cost a page fault per 4 KiB and a zero fill on every pass.
    static SPARE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// How many spare buffers a thread keeps (a PP-TSMv2 pass has about 15 sizes in flight, a
/// MobileNet's several times more: 32 evicted, and zero-filled anew, part of every pass's), and
/// how many bytes at most.
const SPARE_BUFFERS: usize = 96;
const SPARE_BYTES: usize = 256 << 20;

/// A buffer of `len` values whose contents are unspecified (a reused buffer keeps old values):
/// for outputs that the kernel overwrites entirely. Spares are reused only at their exact
/// length, so that reuse never fills (a best fit by capacity zero-filled 67 MB per 8-frame
/// forward pass growing shorter buffers).
pub fn buffer(len: usize) -> Vec<f32> {
    let reused = SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        let latest = spare.iter().rposition(|v| v.len() == len)?;
        Some(spare.remove(latest))
    });
    reused.unwrap_or_else(|| vec![0.0; len])
}

/// Gives a buffer back for reuse (the least recently given back go first).
pub fn recycle(v: Vec<f32>) {
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        spare.push(v);
        while spare.len() > SPARE_BUFFERS
            || spare.iter().map(|v| v.len() * 4).sum::<usize>() > SPARE_BYTES
        {
            spare.remove(0);
        }
    });
}

/// Shape of an NHWC activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub frames: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    /// Number of values.
    pub fn values(self) -> usize {
        self.frames * self.h * self.w * self.c
    }

    pub fn pixels(self) -> usize {
        self.frames * self.h * self.w
    }

    /// Spatial size after a "same"-padded convolution of `stride`.
    pub fn strided(self, kernel: usize, stride: usize, c: usize) -> Shape {
        let pad = (kernel - 1) / 2;
        Shape {
            frames: self.frames,
            h: (self.h + 2 * pad - kernel) / stride + 1,
            w: (self.w + 2 * pad - kernel) / stride + 1,
            c,
        }
    }
}

/// The 3x3 stride-2 stem convolution's patches: NCHW frames `[frames, 3, h, w]` ->
/// `[out pixels, 3 * k * k]`, patch index `(ci * k + ky) * k + kx` (a conv weight's layout).
pub fn im2col_nchw(x: &[f32], input: Shape, kernel: usize, stride: usize, out: Shape) -> Vec<f32> {
    im2col_nchw_rows(x, input, (kernel, stride), out, 0..out.frames * out.h)
}

/// `im2col_nchw` for the output rows `rows` (counted across frames) only.
pub fn im2col_nchw_rows(
    x: &[f32],
    input: Shape,
    (kernel, stride): (usize, usize),
    out: Shape,
    rows: std::ops::Range<usize>,
) -> Vec<f32> {
    let pad = (kernel - 1) / 2;
    let patch = input.c * kernel * kernel;
    let mut cols = buffer(rows.len() * out.w * patch);
    let plane = input.h * input.w;
    cols.par_chunks_mut(out.w * patch)
        .enumerate()
        .for_each(|(i, dst)| {
            let row = rows.start + i;
            let (frame, oy) = (row / out.h, row % out.h);
            let frame_in = &x[frame * input.c * plane..(frame + 1) * input.c * plane];
            let (ky0, ky1) = inside_taps(oy, stride, kernel, input.h);
            for (ox, p) in dst.chunks_exact_mut(patch).enumerate() {
                let (kx0, kx1) = inside_taps(ox, stride, kernel, input.w);
                let ix0 = ox * stride + kx0 - pad;
                if kernel == 3 && kx1 - kx0 == 3 && ky1 - ky0 == 3 {
                    // Inside the frame (most pixels): every tap, no zeros.
                    let at = (oy * stride - pad) * input.w + ix0;
                    for (ci, dst) in p.chunks_exact_mut(9).enumerate() {
                        let plane_in = &frame_in[ci * plane..(ci + 1) * plane];
                        for (ky, d) in dst.chunks_exact_mut(3).enumerate() {
                            d.copy_from_slice(&plane_in[at + ky * input.w..][..3]);
                        }
                    }
                    continue;
                }
                p.fill(0.0);
                // Copy the rectangle of taps inside the input, one contiguous run per row.
                for ci in 0..input.c {
                    for ky in ky0..ky1 {
                        let iy = oy * stride + ky - pad;
                        let src = &frame_in[ci * plane + iy * input.w + ix0..][..kx1 - kx0];
                        p[(ci * kernel + ky) * kernel + kx0..][..kx1 - kx0].copy_from_slice(src);
                    }
                }
            }
        });
    cols
}

/// The 3x3 stride-2 stem convolution (+ bias) + `act` straight from an NCHW frame `[3, h, w]`
/// (`input`, one frame) into its NHWC output `out` (`[h_out, w_out, c]`),
/// without patches: each output pixel's 27 taps are broadcast against the weights' vectors of
/// channels (`weight` `[27, c]`, tap `(ci * 3 + ky) * 3 + kx`), four neighbouring pixels at a
/// time so that each tap's weight vectors are loaded once for the four. Returns `false`, doing
/// nothing, where the CPU has no vector kernel or `c` is not 1, 2 or 4 of its vectors (the
/// caller then multiplies patches).
pub fn stem_conv(
    frame: &[f32],
    input: Shape,
    (weight, bias): (&[f32], &[f32]),
    act: Act,
    out: &mut [f32],
) -> bool {
    let c = bias.len();
    let Some(row_fn) = StemPath::detect(c) else {
        return false;
    };
    let shape = input.strided(3, 2, c);
    assert!(input.c == 3 && frame.len() >= input.values() && weight.len() == 27 * c);
    assert!(out.len() >= shape.values());
    out[..shape.values()]
        .par_chunks_mut(shape.w * c)
        .enumerate()
        .for_each(|(oy, out_row)| {
            let args = StemRow {
                frame,
                input,
                weight,
                bias,
                act,
                oy,
            };
            // SAFETY: `detect` chose a row function for the features `simd()` found on this
            // CPU and for `c` vectors of its width.
            unsafe { row_fn(&args, out_row) }
        });
    true
}

/// One output row of [`stem_conv`].
struct StemRow<'a> {
    frame: &'a [f32],
    input: Shape,
    weight: &'a [f32],
    bias: &'a [f32],
    act: Act,
    oy: usize,
}

/// SAFETY: only where the CPU has the features the function was compiled for, and `c` is the
/// number of its vectors it was made for.
type StemRowFn = unsafe fn(&StemRow<'_>, &mut [f32]);

struct StemPath;

impl StemPath {
    /// The row function for `c` output channels on this CPU, if there is one.
    fn detect(c: usize) -> Option<StemRowFn> {
        match simd::simd() {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => x86::stem_row_avx512(c),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => x86::stem_row_avx2(c),
            _ => None,
        }
    }
}

/// The row function of `V` vectors of `L` for `c = V * L::N` channels, if `c` is 1, 2 or 4
/// vectors.
fn stem_row_for<L: Lanes>(
    c: usize,
    one: StemRowFn,
    two: StemRowFn,
    four: StemRowFn,
) -> Option<StemRowFn> {
    match (c % L::N, c / L::N) {
        (0, 1) => Some(one),
        (0, 2) => Some(two),
        (0, 4) => Some(four),
        _ => None,
    }
}

/// Neighbouring output pixels per strip of [`stem_row_lanes`].
const STEM_STRIP: usize = 4;

/// One output row of the stem: strips of [`STEM_STRIP`] pixels whose taps all lie inside the
/// frame's columns, single pixels at the edges (taps outside the frame skipped: zeros). Each
/// accumulator starts at the bias and adds its taps in the patch order.
///
/// SAFETY: the CPU has the features `L`'s operations need; `args.bias.len() == V * L::N`.
#[inline(always)]
unsafe fn stem_row_lanes<L: Lanes, const V: usize>(args: &StemRow<'_>, out_row: &mut [f32]) {
    let StemRow {
        frame,
        input,
        weight,
        bias,
        oy,
        ..
    } = *args;
    let c = V * L::N;
    let (h, w) = (input.h, input.w);
    let ow = out_row.len() / c;
    let out = input.strided(3, 2, c);
    assert!(bias.len() == c && weight.len() == 27 * c && frame.len() >= 3 * h * w);
    assert!(oy < out.h && ow == out.w);
    let (ky0, ky1) = inside_taps(oy, 2, 3, h);
    let full = |ox: usize| inside_taps(ox, 2, 3, w) == (0, 3);
    let mut ox = 0;
    while ox < ow {
        // SAFETY: the caller has `L`'s features and `c` channels (this function's contract);
        // the pixels lie inside the row and their taps' columns kx0..kx1 inside the frame.
        unsafe {
            if ox + STEM_STRIP <= ow && full(ox) && full(ox + STEM_STRIP - 1) {
                stem_pixels::<L, V, STEM_STRIP>(args, (ox, 0, 3), (ky0, ky1), out_row);
                ox += STEM_STRIP;
            } else {
                let (kx0, kx1) = inside_taps(ox, 2, 3, w);
                stem_pixels::<L, V, 1>(args, (ox, kx0, kx1), (ky0, ky1), out_row);
                ox += 1;
            }
        }
    }
}

/// `P` output pixels from `ox` of [`stem_row_lanes`]'s row, with the taps of columns
/// `kx0..kx1` and rows `ky0..ky1` (those inside the frame).
///
/// SAFETY: as [`stem_row_lanes`]; pixels `ox..ox + P` lie in the row and every tap given lies
/// inside the frame.
#[inline(always)]
unsafe fn stem_pixels<L: Lanes, const V: usize, const P: usize>(
    args: &StemRow<'_>,
    (ox, kx0, kx1): (usize, usize, usize),
    (ky0, ky1): (usize, usize),
    out_row: &mut [f32],
) {
    let StemRow {
        frame,
        input,
        weight,
        bias,
        act,
        oy,
    } = *args;
    let (c, plane, w) = (V * L::N, input.h * input.w, input.w);
    // SAFETY: the caller's contract: every input read is at a tap inside the frame, every
    // weight read at tap * c + v * N < 27 * c, every store at a pixel of the row.
    unsafe {
        let b: [L; V] = std::array::from_fn(|v| L::load(bias.as_ptr().add(v * L::N)));
        let mut acc = [b; P];
        for ci in 0..3 {
            for ky in ky0..ky1 {
                let row = frame.as_ptr().add(ci * plane + (2 * oy + ky - 1) * w);
                for kx in kx0..kx1 {
                    let at = weight.as_ptr().add(((ci * 3 + ky) * 3 + kx) * c);
                    let wv: [L; V] = std::array::from_fn(|v| L::load(at.add(v * L::N)));
                    for (p, a) in acc.iter_mut().enumerate() {
                        let x = L::splat(*row.add(2 * (ox + p) + kx - 1));
                        for (a, &wv) in a.iter_mut().zip(&wv) {
                            *a = x.mul_add(wv, *a);
                        }
                    }
                }
            }
        }
        for (p, a) in acc.iter().enumerate() {
            for (v, a) in a.iter().enumerate() {
                a.act(act)
                    .store(out_row.as_mut_ptr().add((ox + p) * c + v * L::N));
            }
        }
    }
}

/// A depthwise convolution's weights: `taps` `[k * k, c]` (tap-major, so each tap's weights
/// for all channels are contiguous), `bias` `[c]`, and the taps grouped once for the row
/// function this CPU runs (`grouped_taps`; regrouping them on every call cost 1% of a
/// forward pass).
pub struct DwWeights {
    taps: Vec<f32>,
    bias: Vec<f32>,
    kernel: usize,
    /// `grouped_taps(taps, .., lanes)` for `DwPath::detect()`'s lanes (empty: its reference).
    grouped: Vec<f32>,
    lanes: usize,
}

impl DwWeights {
    /// `taps` `[kernel * kernel, c]` and `bias` `[c]`.
    pub fn new(taps: Vec<f32>, bias: Vec<f32>, kernel: usize) -> Self {
        assert!(kernel % 2 == 1 && kernel <= 7, "odd kernels up to 7x7");
        assert_eq!(
            taps.len(),
            kernel * kernel * bias.len(),
            "taps are not [k * k, c]"
        );
        let (grouped, lanes) = match DwPath::detect() {
            DwPath::Lanes { lanes, .. } => (
                grouped_taps(&taps, kernel * kernel, bias.len(), lanes),
                lanes,
            ),
            DwPath::Reference => (Vec::new(), 0),
        };
        Self {
            taps,
            bias,
            kernel,
            grouped,
            lanes,
        }
    }

    pub fn kernel(&self) -> usize {
        self.kernel
    }

    /// The taps grouped for `path`: the ones made once where `path` is the detected one's.
    fn grouped_for(&self, path: DwPath) -> std::borrow::Cow<'_, [f32]> {
        match path {
            DwPath::Lanes { lanes, .. } if lanes == self.lanes => {
                std::borrow::Cow::Borrowed(&self.grouped)
            }
            DwPath::Lanes { lanes, .. } => std::borrow::Cow::Owned(grouped_taps(
                &self.taps,
                self.kernel * self.kernel,
                self.bias.len(),
                lanes,
            )),
            DwPath::Reference => std::borrow::Cow::Borrowed(&[]),
        }
    }
}

/// One frame of the temporal shift, described rather than made: channels `..split.0` of
/// `previous`, `split.0..split.1` of `next` (zeros where a neighbour is `None`, past the
/// clip's ends), the rest of `current`; all NHWC frames of the same shape.
#[derive(Clone, Copy)]
pub struct Shifted<'a> {
    pub previous: Option<&'a [f32]>,
    pub current: &'a [f32],
    pub next: Option<&'a [f32]>,
    pub split: (usize, usize),
}

impl Shifted<'_> {
    /// The shifted frame of `c` channels, written out.
    pub fn write(&self, c: usize, dst: &mut [f32]) {
        shift_frame(self.previous, self.current, self.next, c, self.split, dst);
    }
}

/// What a depthwise convolution reads: frames one after another, or one shifted frame read
/// in place from its neighbours (no copy of it is made where the row kernels' channel groups
/// fall inside the shift's channel ranges).
#[derive(Clone, Copy)]
pub enum DwInput<'a> {
    Frames(&'a [f32]),
    /// Frames whose pixels lie `.1` values apart (`.1 >= c`: see [`dw_pixel_stride`]).
    Strided(&'a [f32], usize),
    Shifted(Shifted<'a>),
}

/// The pixel stride a depthwise convolution at `stride` reads `c` channels fastest at: pixels
/// a multiple of 2 KiB apart put a strip's inputs in a few L1 sets, which evict each other, so
/// stride-1 SIMD strips read such inputs one cache line wider per pixel (14x14x512 alone: 1.4x
/// faster, a copy included; at stride 2 the copy costs more). An input given at another stride
/// is copied to this one; a layer that writes its output at it saves the copy.
pub fn dw_pixel_stride(c: usize, stride: usize) -> usize {
    pixel_stride_for(DwPath::detect(), c, stride)
}

fn pixel_stride_for(path: DwPath, c: usize, stride: usize) -> usize {
    match matches!(path, DwPath::Lanes { .. }) && stride == 1 && c.is_multiple_of(512) {
        true => c + 16,
        false => c,
    }
}

/// Depthwise "same"-padded convolution of `x` (`input`) with `weights` at `stride` + bias +
/// `act` into `out`; returns the output's shape.
pub fn depthwise(
    x: DwInput<'_>,
    input: Shape,
    weights: &DwWeights,
    stride: usize,
    act: Act,
    out: &mut [f32],
) -> Shape {
    depthwise_impl(x, input, weights, (stride, act), out, DwPath::detect())
}

/// How the depthwise rows run: the portable reference, or strips of `lanes`-wide vectors.
#[derive(Clone, Copy)]
enum DwPath {
    Reference,
    Lanes {
        lanes: usize,
        /// SAFETY: only chosen where the CPU has the features it was compiled for.
        row: unsafe fn(&DwRow<'_>, &mut [f32]),
    },
}

impl DwPath {
    fn detect() -> DwPath {
        match simd::simd() {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => DwPath::Lanes {
                lanes: 16,
                row: x86::dw_row_avx512,
            },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => DwPath::Lanes {
                lanes: 8,
                row: x86::dw_row_avx2,
            },
            _ => DwPath::Reference,
        }
    }
}

fn depthwise_impl(
    x: DwInput<'_>,
    input: Shape,
    weights: &DwWeights,
    (stride, act): (usize, Act),
    out: &mut [f32],
    path: DwPath,
) -> Shape {
    let plan = DwPlan::new(x, input, weights, (stride, act), path);
    let shape = plan.shape;
    assert!(out.len() >= shape.values());
    out[..shape.values()]
        .par_chunks_mut(shape.w * shape.c)
        .enumerate()
        .for_each(|(row, out_row)| plan.row(row, out_row));
    plan.finish();
    shape
}

/// [`depthwise`] in bands of `band` output rows (counted across frames): each band's rows are
/// computed into a scratch buffer of floats, still in cache when `finish(rows, out_band)`
/// turns them into the band's part of `out` (`per_row` items per output row). The bands run
/// across rayon's current pool. For a consumer that wants the output in another form (the
/// int8 layers' quantized inputs) without a float tensor in between.
pub fn depthwise_banded<O: Send>(
    (x, input): (DwInput<'_>, Shape),
    weights: &DwWeights,
    (stride, act): (usize, Act),
    (band, per_row): (usize, usize),
    out: &mut [O],
    finish: impl Fn(&[f32], &mut [O]) + Sync,
) -> Shape {
    let plan = DwPlan::new(x, input, weights, (stride, act), DwPath::detect());
    let shape = plan.shape;
    let (rows, row_len) = (shape.frames * shape.h, shape.w * shape.c);
    let band = band.max(1);
    assert!(out.len() >= rows * per_row);
    out[..rows * per_row]
        .par_chunks_mut(band * per_row)
        .enumerate()
        .for_each(|(b, out_band)| {
            let first = b * band;
            let count = out_band.len() / per_row.max(1);
            let mut scratch = buffer(count * row_len);
            for (i, row) in scratch.chunks_exact_mut(row_len).enumerate() {
                plan.row(first + i, row);
            }
            finish(&scratch, out_band);
            recycle(scratch);
        });
    plan.finish();
    shape
}

/// What every output row of one depthwise call shares: the output shape, the weights grouped
/// for the row function, and the input (a copy with padded pixels where that pays; a shifted
/// frame's three sources, or a copy of it where the row function's channel groups would
/// straddle the shift's channel ranges).
struct DwPlan<'a> {
    x: PlanInput<'a>,
    input: Shape,
    shape: Shape,
    pixel_stride: usize,
    weight: &'a [f32],
    grouped: std::borrow::Cow<'a, [f32]>,
    bias: &'a [f32],
    kernel: usize,
    stride: usize,
    act: Act,
    path: DwPath,
}

/// What a [`DwPlan`] reads: frames (borrowed, or a copy it gives back to the buffer pool),
/// or a shifted frame in place, with a shared frame of zeros for a missing neighbour.
enum PlanInput<'a> {
    Frames(std::borrow::Cow<'a, [f32]>),
    Shifted(Shifted<'a>, Option<std::sync::Arc<Vec<f32>>>),
}

impl<'a> DwPlan<'a> {
    fn new(
        x: DwInput<'a>,
        input: Shape,
        weights: &'a DwWeights,
        (stride, act): (usize, Act),
        path: DwPath,
    ) -> Self {
        let kernel = weights.kernel;
        let shape = input.strided(kernel, stride, input.c);
        assert!(
            weights.bias.len() == input.c,
            "weights for another channel count"
        );
        let wanted = pixel_stride_for(path, input.c, stride);
        let frame_len = input.h * input.w * input.c;
        // The row functions read any stride; an unpadded input is copied to the one wanted.
        let padded = |x: std::borrow::Cow<'a, [f32]>| {
            let copy = with_pixel_stride(&x[..input.values()], input.c, wanted);
            if let std::borrow::Cow::Owned(x) = x {
                recycle(x);
            }
            std::borrow::Cow::Owned(copy)
        };
        let (x, pixel_stride) = match x {
            DwInput::Shifted(s) if wanted == input.c && shift_fits(s.split, input.c, path) => {
                assert!(input.frames == 1, "a shifted input is one frame");
                let zero =
                    (s.previous.is_none() || s.next.is_none()).then(|| zero_frame(frame_len));
                (PlanInput::Shifted(s, zero), input.c)
            }
            DwInput::Shifted(s) => {
                assert!(input.frames == 1, "a shifted input is one frame");
                let mut copy = buffer(frame_len);
                s.write(input.c, &mut copy);
                match wanted == input.c {
                    true => (PlanInput::Frames(std::borrow::Cow::Owned(copy)), input.c),
                    false => (PlanInput::Frames(padded(copy.into())), wanted),
                }
            }
            DwInput::Strided(x, given) if given != input.c => (PlanInput::Frames(x.into()), given),
            DwInput::Frames(x) | DwInput::Strided(x, _) if wanted != input.c => {
                (PlanInput::Frames(padded(x.into())), wanted)
            }
            DwInput::Frames(x) | DwInput::Strided(x, _) => (PlanInput::Frames(x.into()), input.c),
        };
        assert!(pixel_stride >= input.c);
        if let PlanInput::Frames(x) = &x {
            assert!(x.len() >= input.pixels() * pixel_stride);
        }
        Self {
            x,
            input,
            shape,
            pixel_stride,
            weight: &weights.taps,
            grouped: weights.grouped_for(path),
            bias: &weights.bias,
            kernel,
            stride,
            act,
            path,
        }
    }

    /// Output row `row` (counted across frames) into `out_row` (`shape.w * c` values).
    fn row(&self, row: usize, out_row: &mut [f32]) {
        let (frame, oy) = (row / self.shape.h, row % self.shape.h);
        let frame_len = self.input.h * self.input.w * self.pixel_stride;
        let c = self.input.c;
        let (one, three);
        let sources: &[(usize, &[f32])] = match &self.x {
            PlanInput::Shifted(s, zero) => {
                let zero = zero.as_deref().map_or(&[][..], |z| &z[..]);
                three = [
                    (s.split.0, s.previous.unwrap_or(zero)),
                    (s.split.1, s.next.unwrap_or(zero)),
                    (c, s.current),
                ];
                &three
            }
            PlanInput::Frames(x) => {
                one = [(c, &x[frame * frame_len..(frame + 1) * frame_len])];
                &one
            }
        };
        let args = DwRow {
            sources,
            pixel_stride: self.pixel_stride,
            input: self.input,
            weight: self.weight,
            grouped: &self.grouped,
            bias: self.bias,
            kernel: self.kernel,
            stride: self.stride,
            act: self.act,
            oy,
        };
        match self.path {
            // SAFETY: `detect` (or a test) chose a row function for the features `simd()`
            // found on this CPU, and `grouped` was grouped by that function's `lanes`.
            DwPath::Lanes { row, .. } => unsafe { row(&args, out_row) },
            DwPath::Reference => dw_row_portable(&args, out_row),
        }
    }

    /// The padded copy goes back to the buffer pool.
    fn finish(self) {
        if let PlanInput::Frames(std::borrow::Cow::Owned(copy)) = self.x {
            recycle(copy);
        }
    }
}

/// Whether the row functions of `path` can read a frame shifted at `split` in place: each
/// group of channels they take (two vectors, then one, then single channels) lies inside one
/// of the shift's channel ranges.
fn shift_fits((c1, c2): (usize, usize), c: usize, path: DwPath) -> bool {
    let group = match path {
        DwPath::Lanes { lanes, .. } => 2 * lanes,
        DwPath::Reference => 1,
    };
    c1 <= c2 && c2 <= c && c1.is_multiple_of(group) && c2.is_multiple_of(group)
}

/// A frame of `len` zeros, shared: a missing neighbour of a shifted frame. Made once at the
/// largest size asked for.
fn zero_frame(len: usize) -> std::sync::Arc<Vec<f32>> {
    use std::sync::{Arc, Mutex, PoisonError};
    static ZEROS: Mutex<Option<Arc<Vec<f32>>>> = Mutex::new(None);
    let mut zeros = ZEROS.lock().unwrap_or_else(PoisonError::into_inner);
    match &*zeros {
        Some(z) if z.len() >= len => z.clone(),
        _ => {
            let z = Arc::new(vec![0.0; len]);
            *zeros = Some(z.clone());
            z
        }
    }
}

/// Pixels of `c` values -> the same pixels `stride` values apart (the gaps unspecified).
fn with_pixel_stride(x: &[f32], c: usize, stride: usize) -> Vec<f32> {
    let pixels = x.len() / c;
    let mut out = buffer(pixels * stride);
    let chunk = 256;
    out.par_chunks_mut(chunk * stride)
        .zip(x.par_chunks(chunk * c))
        .for_each(|(dst, src)| {
            for (d, s) in dst.chunks_mut(stride).zip(src.chunks_exact(c)) {
                d[..c].copy_from_slice(s);
            }
        });
    out
}

/// `[taps, c]` weights -> `[c / lanes, taps, lanes]`: the taps of one vector of channels in
/// one contiguous run (a tap-major run of a wide layer puts every tap `c` apart, a power of
/// two that maps them all onto the same few L1 sets).
fn grouped_taps(weight: &[f32], taps: usize, c: usize, lanes: usize) -> Vec<f32> {
    let mut grouped = Vec::with_capacity(c / lanes * taps * lanes);
    for g in 0..c / lanes {
        for tap in 0..taps {
            grouped.extend_from_slice(&weight[tap * c + lanes * g..][..lanes]);
        }
    }
    grouped
}

struct DwRow<'a> {
    /// The input frame by channels, its pixels `pixel_stride` values apart: `(end, frame)`,
    /// `end` increasing to `c`; channel `ch` is read from the first whose `end` is above it
    /// (one entry, or a shifted frame's three).
    sources: &'a [(usize, &'a [f32])],
    pixel_stride: usize,
    input: Shape,
    /// `[taps, c]`, and for the SIMD rows the same as `grouped_taps`.
    weight: &'a [f32],
    grouped: &'a [f32],
    bias: &'a [f32],
    kernel: usize,
    stride: usize,
    act: Act,
    oy: usize,
}

impl DwRow<'_> {
    /// The frame channel `ch` is read from.
    fn source(&self, ch: usize) -> &[f32] {
        self.sources
            .iter()
            .find(|(end, _)| ch < *end)
            .map_or(&[][..], |(_, frame)| frame)
    }

    /// The channel ranges of the sources, with their frames.
    fn ranges(&self) -> impl Iterator<Item = (std::ops::Range<usize>, &[f32])> {
        let starts = std::iter::once(0).chain(self.sources.iter().map(|(end, _)| *end));
        starts
            .zip(self.sources)
            .filter(|(start, (end, _))| start < end)
            .map(|(start, (end, frame))| (start..*end, *frame))
    }
}

/// The taps of output pixel `ox` that fall inside the input: `(tap index, input column)`.
fn taps_of_pixel(args: &DwRow<'_>, ox: usize) -> impl Iterator<Item = (usize, usize)> {
    let DwRow {
        input,
        kernel,
        stride,
        oy,
        ..
    } = *args;
    let pad = (kernel - 1) / 2;
    (0..kernel).flat_map(move |ky| {
        (0..kernel).filter_map(move |kx| {
            let iy = (oy * stride + ky)
                .checked_sub(pad)
                .filter(|&y| y < input.h)?;
            let ix = (ox * stride + kx)
                .checked_sub(pad)
                .filter(|&x| x < input.w)?;
            Some((ky * kernel + kx, iy * input.w + ix))
        })
    })
}

/// One output row of the depthwise conv in portable code: bias + taps, then the activation.
fn dw_row_portable(args: &DwRow<'_>, out_row: &mut [f32]) {
    let c = args.input.c;
    for (ox, px) in out_row.chunks_exact_mut(c).enumerate() {
        px.copy_from_slice(args.bias);
        for (tap, pixel) in taps_of_pixel(args, ox) {
            for (channels, frame) in args.ranges() {
                let src = &frame[pixel * args.pixel_stride..][channels.clone()];
                let w = &args.weight[tap * c..][channels.clone()];
                for ((acc, &v), &wv) in px[channels].iter_mut().zip(src).zip(w) {
                    *acc += v * wv;
                }
            }
        }
        px.iter_mut().for_each(|v| *v = act_scalar(*v, args.act));
    }
}

/// The taps `k0..k1` of a "same"-padded kernel at output position `o` that read inside an
/// input of `size`.
pub(crate) fn inside_taps(o: usize, stride: usize, kernel: usize, size: usize) -> (usize, usize) {
    let pad = (kernel - 1) / 2;
    let start = o * stride;
    let k0 = pad.saturating_sub(start);
    let k1 = (size + pad).saturating_sub(start).min(kernel);
    (k0, k1.max(k0))
}

/// Where a strip reads: the frame and weights at its channel group, the input rows `rows`
/// (`first_row` is the input row of tap row 0, possibly above the frame), and the input
/// column of its first pixel's tap 0 (left of the frame at its left edge).
struct Strip {
    src: *const f32,
    wts: *const f32,
    bias: *const f32,
    /// Values between input pixels, between output pixels.
    stride: usize,
    c: usize,
    width: usize,
    rows: std::ops::Range<usize>,
    first_row: isize,
    first_col: isize,
    act: Act,
    dst: *mut f32,
}

/// `P` neighbouring output pixels x `V` vectors of channels of a `K`-wide, stride-`S`
/// depthwise conv. For each row of taps, the row's `K` weight vectors are loaded once, and
/// each input pixel under the strip is loaded once and multiplied into every output pixel
/// that reads it (`P * K` products from `(P - 1) * S + K` loads). The accumulators stay in
/// registers from the bias to the activation and the one store; each one adds its taps in the
/// reference's order. `CHECKED` strips skip the input columns left or right of the frame;
/// the others read only inside it.
#[inline(always)]
unsafe fn strip<
    L: Lanes,
    const K: usize,
    const S: usize,
    const P: usize,
    const V: usize,
    const CHECKED: bool,
>(
    at: &Strip,
) {
    // SAFETY: (whole body) `dw_row_lanes` builds strips whose rows lie inside the frame, whose
    // columns lie inside it (or are checked against `width` here), whose weights lie inside
    // the grouped weights and whose P pixels lie inside the output row.
    unsafe {
        let b: [L; V] = std::array::from_fn(|v| L::load(at.bias.add(L::N * v)));
        let mut acc = [b; P];
        for ky in at.rows.clone() {
            let iy = (at.first_row + ky as isize) as usize;
            let row = at.src.add(iy * at.width * at.stride);
            let w: [[L; V]; K] = std::array::from_fn(|kx| {
                std::array::from_fn(|v| L::load(at.wts.add((v * K * K + ky * K + kx) * L::N)))
            });
            for j in 0..(P - 1) * S + K {
                let ix = at.first_col + j as isize;
                // A negative column wraps to a huge one.
                if CHECKED && ix as usize >= at.width {
                    continue;
                }
                let px = row.add(ix as usize * at.stride);
                let xs: [L; V] = std::array::from_fn(|v| L::load(px.add(L::N * v)));
                for (p, a) in acc.iter_mut().enumerate() {
                    let kx = j.wrapping_sub(p * S);
                    if kx >= K {
                        continue;
                    }
                    for v in 0..V {
                        a[v] = xs[v].mul_add(w[kx][v], a[v]);
                    }
                }
            }
        }
        for (p, a) in acc.iter().enumerate() {
            for (v, a) in a.iter().enumerate() {
                a.act(at.act).store(at.dst.add(p * at.c + L::N * v));
            }
        }
    }
}

/// One output row of the depthwise conv in vectors of `L`: strips of 4, 2 and 1 pixels x
/// 2 vectors of channels (and a last single vector), checking their taps only where they
/// reach past the frame's edges; the last `c % L::N` channels one by one.
///
/// SAFETY: the CPU has the features `L`'s operations need; `args.grouped` is
/// `grouped_taps(.., L::N)`.
#[inline(always)]
unsafe fn dw_row_lanes<L: Lanes>(args: &DwRow<'_>, out_row: &mut [f32]) {
    // SAFETY: the caller has `L`'s features and grouped the weights by `L::N` (this function's
    // contract), which is all `dw_row_strips` needs besides the lengths it asserts.
    unsafe {
        match (args.kernel, args.stride) {
            (3, 1) => dw_row_strips::<L, 3, 1>(args, out_row),
            (3, 2) => dw_row_strips::<L, 3, 2>(args, out_row),
            (5, 1) => dw_row_strips::<L, 5, 1>(args, out_row),
            (5, 2) => dw_row_strips::<L, 5, 2>(args, out_row),
            _ => dw_row_portable(args, out_row),
        }
    }
}

#[inline(always)]
unsafe fn dw_row_strips<L: Lanes, const K: usize, const S: usize>(
    args: &DwRow<'_>,
    out_row: &mut [f32],
) {
    let DwRow {
        pixel_stride,
        input,
        weight,
        grouped,
        bias,
        act,
        oy,
        ..
    } = *args;
    let (c, n) = (input.c, L::N);
    let ow = out_row.len() / c;
    let pad = (K - 1) / 2;
    let (ky0, ky1) = inside_taps(oy, S, K, input.h);
    assert!(pixel_stride >= c);
    assert!(
        args.ranges()
            .all(|(_, frame)| frame.len() >= input.h * input.w * pixel_stride)
    );
    assert!(weight.len() >= K * K * c);
    assert!(grouped.len() >= c / n * K * K * n);
    let out = out_row.as_mut_ptr();
    let strip_at = |c0: usize, ox: usize| Strip {
        src: args.source(c0)[c0..].as_ptr(),
        wts: grouped[c0 / n * K * K * n..].as_ptr(),
        bias: bias[c0..].as_ptr(),
        stride: pixel_stride,
        c,
        width: input.w,
        rows: ky0..ky1,
        first_row: (oy * S) as isize - pad as isize,
        first_col: (ox * S) as isize - pad as isize,
        act,
        dst: out.wrapping_add(ox * c + c0),
    };
    // Pixels lo..hi read only inside the frame.
    let lo = pad.div_ceil(S).min(ow);
    let hi = ((input.w + pad).saturating_sub(K) / S + 1).clamp(lo, ow);
    // Every group of 2 vectors of channels (and a last single vector) of the strip of `$p`
    // pixels at `$ox`.
    macro_rules! groups {
        ($ox:expr, $p:literal, $checked:literal) => {
            let mut c0 = 0;
            while c0 + 2 * n <= c {
                // SAFETY: `L`'s features are this function's contract; c0 + 2 * n <= c keeps
                // the strip's channels inside each pixel of its source (each a whole frame),
                // `bias` and `grouped` (asserted above); its pixels end by ow (the loops
                // below), its rows are `inside_taps`', and its columns lie in lo..hi unless
                // `$checked` makes `strip` test them.
                unsafe { strip::<L, K, S, $p, 2, $checked>(&strip_at(c0, $ox)) };
                c0 += 2 * n;
            }
            if c0 + n <= c {
                // SAFETY: as above, with c0 + n <= c for the one vector.
                unsafe { strip::<L, K, S, $p, 1, $checked>(&strip_at(c0, $ox)) };
            }
        };
    }
    // The strip of `$p` pixels at `$ox`, checking its taps if it reaches past lo..hi.
    macro_rules! run_strip {
        ($ox:expr, $p:literal) => {
            if $ox >= lo && hi.saturating_sub($ox) >= $p {
                groups!($ox, $p, false);
            } else {
                groups!($ox, $p, true);
            }
        };
    }
    // Strips of 4, then 2, then 1 pixel. (Strips of 8 on AVX-512, which has the registers
    // for their 16 accumulators, measured no faster on a Xeon with AVX-512.) PP-TSMv2's 5x5
    // rows of 14 and 7 pixels on AVX-512 go in strips of 7 (14 accumulators, 10 weights):
    // 4% less depthwise time on an EPYC than 4 + 4 + 4 + 2 and 4 + 2 + 1.
    let mut ox = 0;
    if L::N == 16 && K == 5 && S == 1 && ow.is_multiple_of(7) {
        while ox + 7 <= ow {
            run_strip!(ox, 7);
            ox += 7;
        }
    }
    while ox + 4 <= ow {
        run_strip!(ox, 4);
        ox += 4;
    }
    if ox + 2 <= ow {
        run_strip!(ox, 2);
        ox += 2;
    }
    if ox < ow {
        run_strip!(ox, 1);
    }
    for ch in c / n * n..c {
        for ox in 0..ow {
            let (kx0, kx1) = inside_taps(ox, S, K, input.w);
            let mut acc = bias[ch];
            for ky in ky0..ky1 {
                let iy = oy * S + ky - pad;
                for kx in kx0..kx1 {
                    let ix = ox * S + kx - pad;
                    acc += args.source(ch)[(iy * input.w + ix) * pixel_stride + ch]
                        * weight[(ky * K + kx) * c + ch];
                }
            }
            out_row[ox * c + ch] = act_scalar(acc, act);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{DwRow, StemRow, StemRowFn, dw_row_lanes, stem_row_for, stem_row_lanes};
    use crate::model::nhwc::simd::{Avx2, Avx512};

    /// SAFETY: the CPU has AVX2 and FMA; the row has `V * 8` channels.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn stem_row_avx2_v<const V: usize>(args: &StemRow<'_>, out_row: &mut [f32]) {
        // SAFETY: this function's contract: AVX2 and FMA (the features of `Avx2`), V vectors.
        unsafe { stem_row_lanes::<Avx2, V>(args, out_row) }
    }

    /// SAFETY: the CPU has AVX-512F; the row has `V * 16` channels.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn stem_row_avx512_v<const V: usize>(args: &StemRow<'_>, out_row: &mut [f32]) {
        // SAFETY: this function's contract: AVX-512F (the feature of `Avx512`), V vectors.
        unsafe { stem_row_lanes::<Avx512, V>(args, out_row) }
    }

    /// The AVX2 stem row for `c` channels (8, 16 or 32).
    pub(super) fn stem_row_avx2(c: usize) -> Option<StemRowFn> {
        stem_row_for::<Avx2>(
            c,
            stem_row_avx2_v::<1>,
            stem_row_avx2_v::<2>,
            stem_row_avx2_v::<4>,
        )
    }

    /// The AVX-512 stem row for `c` channels (16, 32 or 64).
    pub(super) fn stem_row_avx512(c: usize) -> Option<StemRowFn> {
        stem_row_for::<Avx512>(
            c,
            stem_row_avx512_v::<1>,
            stem_row_avx512_v::<2>,
            stem_row_avx512_v::<4>,
        )
    }

    /// SAFETY: the CPU has AVX2 and FMA; `args.grouped` is grouped by 8.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dw_row_avx2(args: &DwRow<'_>, out_row: &mut [f32]) {
        // SAFETY: this function's contract: AVX2 and FMA (the features of `Avx2`) are present,
        // and the weights are grouped by 8 (`Avx2::N`).
        unsafe { dw_row_lanes::<Avx2>(args, out_row) }
    }

    /// SAFETY: the CPU has AVX-512F; `args.grouped` is grouped by 16.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn dw_row_avx512(args: &DwRow<'_>, out_row: &mut [f32]) {
        // SAFETY: this function's contract: AVX-512F (the feature of `Avx512`) is present, and
        // the weights are grouped by 16 (`Avx512::N`).
        unsafe { dw_row_lanes::<Avx512>(args, out_row) }
    }
}

/// Per-frame channel means `[frames, c]` (global average pooling).
pub fn channel_means(x: &[f32], shape: Shape) -> Vec<f32> {
    let mut means = vec![0.0f32; shape.frames * shape.c];
    let frame_len = shape.h * shape.w * shape.c;
    means
        .par_chunks_mut(shape.c)
        .zip(x[..shape.values()].par_chunks(frame_len))
        .for_each(|(mean, frame)| {
            for px in frame.chunks_exact(shape.c) {
                for (m, &v) in mean.iter_mut().zip(px) {
                    *m += v;
                }
            }
            let scale = 1.0 / (shape.h * shape.w) as f32;
            mean.iter_mut().for_each(|m| *m *= scale);
        });
    means
}

/// `x[frame, .., c] *= scale[frame, c]`.
pub fn scale_channels(x: &mut [f32], shape: Shape, scale: &[f32]) {
    let frame_len = shape.h * shape.w * shape.c;
    x[..shape.values()]
        .par_chunks_mut(frame_len)
        .zip(scale.par_chunks(shape.c))
        .for_each(|(frame, s)| {
            for px in frame.chunks_exact_mut(shape.c) {
                for (v, &k) in px.iter_mut().zip(s) {
                    *v *= k;
                }
            }
        });
}

/// Paddle's temporal shift on NHWC frames of clips of `num_seg` frames: channels `[0, c1)` take
/// the previous frame's values, `[c1, c2)` the next frame's (zeros past the clip's ends).
pub fn temporal_shift(x: &[f32], shape: Shape, num_seg: usize, split: (usize, usize)) -> Vec<f32> {
    let frame_len = shape.h * shape.w * shape.c;
    let mut out = buffer(shape.values());
    out.par_chunks_mut(frame_len)
        .enumerate()
        .for_each(|(frame, dst)| {
            let (previous, current, next) = clip_neighbours(x, frame_len, num_seg, frame);
            shift_frame(previous, current, next, shape.c, split, dst);
        });
    out
}

/// Frame `f` of `x` (frames of `frame_len` values, in clips of `num_seg`) with the frames
/// before and after it in its clip (`None` at the clip's ends).
pub fn clip_neighbours(
    x: &[f32],
    frame_len: usize,
    num_seg: usize,
    f: usize,
) -> (Option<&[f32]>, &[f32], Option<&[f32]>) {
    let frame = |f: usize| &x[f * frame_len..(f + 1) * frame_len];
    let t = f % num_seg;
    let previous = (t > 0).then(|| frame(f - 1));
    let next = (t + 1 < num_seg).then(|| frame(f + 1));
    (previous, frame(f), next)
}

/// One frame of the temporal shift from its neighbours (`None` past the clip's ends), all
/// NHWC frames of `c` channels.
pub fn shift_frame(
    previous: Option<&[f32]>,
    current: &[f32],
    next: Option<&[f32]>,
    c: usize,
    (c1, c2): (usize, usize),
    dst: &mut [f32],
) {
    for (p, d) in dst.chunks_exact_mut(c).enumerate() {
        let at = p * c;
        match previous {
            Some(prev) => d[..c1].copy_from_slice(&prev[at..at + c1]),
            None => d[..c1].fill(0.0),
        }
        match next {
            Some(next) => d[c1..c2].copy_from_slice(&next[at + c1..at + c2]),
            None => d[c1..c2].fill(0.0),
        }
        d[c2..].copy_from_slice(&current[at + c2..at + c]);
    }
}

/// `y[j] = b[j] + sum_i x[i] w[i, j]` for a small dense layer (`w` is `[in, out]`).
#[inline(always)]
pub fn dense(x: &[f32], w: &[f32], b: Option<&[f32]>, out_dim: usize) -> Vec<f32> {
    let mut y = b.map_or_else(|| vec![0.0; out_dim], <[f32]>::to_vec);
    for (&xi, row) in x.iter().zip(w.chunks_exact(out_dim)) {
        for (yj, &wij) in y.iter_mut().zip(row) {
            *yj += xi * wij;
        }
    }
    y
}

pub fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// Deterministic values in [-1, 1] (xorshift) for the kernel tests of this module and of
/// `nhwc::train`.
#[cfg(test)]
pub(crate) fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nhwc::gemm::same_bits;

    /// Direct definition of a depthwise conv on NHWC, for comparison.
    fn depthwise_reference(
        x: &[f32],
        s: Shape,
        w: &[f32],
        b: &[f32],
        k: usize,
        stride: usize,
        act: Act,
    ) -> Vec<f32> {
        let o = s.strided(k, stride, s.c);
        let pad = (k - 1) / 2;
        let mut out = vec![0.0; o.values()];
        for f in 0..s.frames {
            for oy in 0..o.h {
                for ox in 0..o.w {
                    for c in 0..s.c {
                        let mut acc = b[c];
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky) as isize - pad as isize;
                                let ix = (ox * stride + kx) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w
                                {
                                    let v =
                                        x[((f * s.h + iy as usize) * s.w + ix as usize) * s.c + c];
                                    acc += v * w[(ky * k + kx) * s.c + c];
                                }
                            }
                        }
                        out[((f * o.h + oy) * o.w + ox) * o.c + c] = act_scalar(acc, act);
                    }
                }
            }
        }
        out
    }

    fn dw_row_portable16(args: &DwRow<'_>, out_row: &mut [f32]) {
        // SAFETY: Portable16 needs no CPU feature; the test pairs this row with `lanes: 16`,
        // so `depthwise_impl` grouped the weights by 16.
        unsafe { dw_row_lanes::<crate::model::nhwc::simd::Portable16>(args, out_row) }
    }

    /// The stem straight from the frame against its definition over patches: every size's
    /// edges (odd and even widths, the first column and row's missing taps), 1, 2 and 4
    /// vectors of channels in 8 and 16 portable lanes, and whatever this CPU runs.
    #[test]
    fn stem_conv_matches_its_patches_for_odd_and_even_sizes() {
        use crate::model::nhwc::simd::PortableLanes;
        for (case, (h, w, c)) in [(9, 7, 16), (6, 6, 32), (11, 20, 8), (5, 13, 64), (2, 9, 16)]
            .into_iter()
            .enumerate()
        {
            let input = Shape {
                frames: 1,
                h,
                w,
                c: 3,
            };
            let out = input.strided(3, 2, c);
            let x: Vec<f32> = pseudo_random(input.values(), 4)
                .iter()
                .map(|v| 4.0 * v)
                .collect();
            let (taps, bias) = (pseudo_random(27 * c, 5), pseudo_random(c, 6));
            let act = [Act::Relu, Act::Hardswish, Act::None][case % 3];
            let cols = im2col_nchw(&x, input, 3, 2, out);
            let reference: Vec<f32> = (0..out.h * out.w * c)
                .map(|i| {
                    let (p, co) = (i / c, i % c);
                    let dot: f64 = (0..27)
                        .map(|t| f64::from(cols[p * 27 + t]) * f64::from(taps[t * c + co]))
                        .sum();
                    act_scalar((dot + f64::from(bias[co])) as f32, act)
                })
                .collect();
            let close = |got: &[f32], name: &str| {
                for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
                    assert!(
                        (g - r).abs() <= 1e-5 * (1.0 + r.abs()),
                        "{name} {h}x{w}x{c} [{i}]"
                    );
                }
            };
            let row = |oy: usize| StemRow {
                frame: &x,
                input,
                weight: &taps,
                bias: &bias,
                act,
                oy,
            };
            let portable = |lanes: usize| -> Option<Vec<f32>> {
                let mut got = vec![f32::NAN; out.values()];
                for (oy, dst) in got.chunks_exact_mut(out.w * c).enumerate() {
                    // SAFETY: portable lanes need no CPU feature; each arm runs `c / lanes`
                    // vectors of `lanes`, so `c` is the number of channels given.
                    unsafe {
                        match (lanes, c / lanes) {
                            (8, 1) => stem_row_lanes::<PortableLanes<8>, 1>(&row(oy), dst),
                            (8, 2) => stem_row_lanes::<PortableLanes<8>, 2>(&row(oy), dst),
                            (8, 4) => stem_row_lanes::<PortableLanes<8>, 4>(&row(oy), dst),
                            (16, 1) => stem_row_lanes::<PortableLanes<16>, 1>(&row(oy), dst),
                            (16, 2) => stem_row_lanes::<PortableLanes<16>, 2>(&row(oy), dst),
                            (16, 4) => stem_row_lanes::<PortableLanes<16>, 4>(&row(oy), dst),
                            _ => return None,
                        }
                    }
                }
                Some(got)
            };
            let mut checked = 0;
            for lanes in [8, 16] {
                if c % lanes == 0
                    && let Some(got) = portable(lanes)
                {
                    close(&got, &format!("portable {lanes} lanes"));
                    checked += 1;
                }
            }
            assert!(checked > 0, "{c} channels ran no portable geometry");
            let mut got = vec![f32::NAN; out.values()];
            if stem_conv(&x, input, (&taps, &bias), act, &mut got) {
                close(&got, simd::simd().name());
            }
        }
    }

    /// The depthwise row paths the tests compare: the CPU's, the reference, and 16 portable
    /// lanes (the AVX-512 strips' geometry on any machine).
    fn dw_paths() -> [(&'static str, DwPath); 3] {
        [
            ("detected", DwPath::detect()),
            ("reference", DwPath::Reference),
            (
                "portable 16 lanes",
                DwPath::Lanes {
                    lanes: 16,
                    row: dw_row_portable16,
                },
            ),
        ]
    }

    /// A shifted frame read in place from its neighbours gives the floats of the frame
    /// shifted first, bit for bit: at both strides, splits the row kernels' channel groups
    /// fit (read in place) or straddle (copied first), a neighbour missing at either end, and
    /// the 512-channel stride-1 case that reads a padded copy.
    #[test]
    fn depthwise_of_a_shifted_frame_equals_it_shifted_first() {
        for (k, stride, h, w, c, split) in [
            (5, 2, 9, 8, 128, (32, 64)),
            (3, 1, 6, 7, 96, (32, 64)),
            (5, 1, 5, 6, 64, (16, 48)),
            (3, 2, 7, 5, 40, (8, 16)),
            (5, 1, 4, 5, 512, (64, 128)),
        ] {
            let one = Shape { frames: 1, h, w, c };
            let frames: Vec<Vec<f32>> = (0..3)
                .map(|f| pseudo_random(one.values(), 10 + f))
                .collect();
            let weights = DwWeights::new(pseudo_random(k * k * c, 2), pseudo_random(c, 3), k);
            let o = one.strided(k, stride, c);
            let neighbours = [
                (Some(&frames[0][..]), Some(&frames[2][..])),
                (None, Some(&frames[2][..])),
                (Some(&frames[0][..]), None),
            ];
            for (previous, next) in neighbours {
                let shifted = Shifted {
                    previous,
                    current: &frames[1],
                    next,
                    split,
                };
                let mut copy = vec![f32::NAN; one.values()];
                shifted.write(c, &mut copy);
                for (name, path) in dw_paths() {
                    let run = |input: DwInput| {
                        let mut out = vec![f32::NAN; o.values()];
                        depthwise_impl(input, one, &weights, (stride, Act::Relu), &mut out, path);
                        out
                    };
                    let (in_place, first) =
                        (run(DwInput::Shifted(shifted)), run(DwInput::Frames(&copy)));
                    assert!(
                        same_bits(&in_place, &first),
                        "k{k} s{stride} c{c} {split:?} {name} previous {} next {}",
                        previous.is_some(),
                        next.is_some()
                    );
                }
            }
        }
    }

    #[test]
    fn depthwise_matches_its_definition_for_odd_sizes_and_strides() {
        for (case, (k, stride, h, w, c)) in [
            (3, 1, 5, 7, 9),
            (5, 2, 7, 6, 16),
            (3, 2, 8, 8, 3),
            (5, 1, 4, 4, 33),
            (5, 1, 6, 5, 72),
            (3, 1, 3, 13, 24),
            (5, 2, 9, 15, 40),
            (7, 1, 9, 9, 8),
            (3, 2, 9, 10, 48),
            (5, 1, 6, 7, 512),
            (3, 1, 5, 9, 1024),
            (7, 1, 5, 5, 512),
            (5, 1, 3, 21, 32),
            (3, 2, 4, 40, 16),
        ]
        .into_iter()
        .enumerate()
        {
            let s = Shape { frames: 2, h, w, c };
            // Inputs in [-4, 4]: ReLU6's ceiling and hardswish's both knees are reached.
            let x: Vec<f32> = pseudo_random(s.values(), 1)
                .iter()
                .map(|v| 4.0 * v)
                .collect();
            let wt = pseudo_random(k * k * c, 2);
            let b = pseudo_random(c, 3);
            let o = s.strided(k, stride, c);
            // The activation varies with the case (3x3 and 5x5 at both strides meet hardswish
            // and ReLU6).
            let act = [Act::Relu, Act::Relu6, Act::Hardswish, Act::None][case % 4];
            let reference = depthwise_reference(&x, s, &wt, &b, k, stride, act);
            let weights = DwWeights::new(wt.clone(), b.clone(), k);
            for (name, path) in dw_paths() {
                let mut out = vec![f32::NAN; o.values()];
                depthwise_impl(
                    DwInput::Frames(&x),
                    s,
                    &weights,
                    (stride, act),
                    &mut out,
                    path,
                );
                for (a, r) in out.iter().zip(&reference) {
                    assert!(
                        (a - r).abs() < 1e-4,
                        "k{k} s{stride} {act:?} {name}: {a} vs {r}"
                    );
                }
            }
            // In bands (a ragged last one too), handed over as they are: the same floats.
            let mut whole = vec![f32::NAN; o.values()];
            depthwise(DwInput::Frames(&x), s, &weights, stride, act, &mut whole);
            // Input pixels further apart (as a layer writes them for this one): the same.
            let wide = c + 5;
            let mut strided_x = vec![f32::NAN; s.pixels() * wide];
            for (d, px) in strided_x.chunks_exact_mut(wide).zip(x.chunks_exact(c)) {
                d[..c].copy_from_slice(px);
            }
            let mut strided = vec![f32::NAN; o.values()];
            let input = DwInput::Strided(&strided_x, wide);
            depthwise(input, s, &weights, stride, act, &mut strided);
            assert!(
                same_bits(&strided, &whole),
                "k{k} s{stride} pixels {wide} apart"
            );
            let row_len = o.w * c;
            for band in [1, 3] {
                let mut banded = vec![f32::NAN; o.values()];
                let per_row = (band, row_len);
                let copy = |rows: &[f32], out: &mut [f32]| out.copy_from_slice(rows);
                depthwise_banded(
                    (DwInput::Frames(&x), s),
                    &weights,
                    (stride, act),
                    per_row,
                    &mut banded,
                    copy,
                );
                assert!(same_bits(&banded, &whole), "k{k} s{stride} bands of {band}");
            }
        }
    }

    #[test]
    fn temporal_shift_moves_channels_between_frames_of_one_clip() {
        // Two clips of 3 frames, 1 pixel, 4 channels; value = 100 * clip + 10 * t + c.
        let s = Shape {
            frames: 6,
            h: 1,
            w: 1,
            c: 4,
        };
        let x: Vec<f32> = (0..6)
            .flat_map(|f| (0..4).map(move |c| (100 * (f / 3) + 10 * (f % 3) + c) as f32))
            .collect();
        let y = temporal_shift(&x, s, 3, (1, 2));
        #[rustfmt::skip]
        let expected = [
            0.0, 11.0, 2.0, 3.0,     0.0, 21.0, 12.0, 13.0,     10.0, 0.0, 22.0, 23.0,
            0.0, 111.0, 102.0, 103.0, 100.0, 121.0, 112.0, 113.0, 110.0, 0.0, 122.0, 123.0,
        ];
        assert_eq!(y, expected);
    }
}
