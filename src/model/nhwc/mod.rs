//! PP-TSMv2's CPU inference path: the fused network (BatchNorm folded, rep branches merged) run
//! channels-last on host memory, with every 1x1 convolution as one GEMM over the pixels of a
//! frame (of all frames in stage 4) and the depthwise convolutions vectorised across channels
//! (`kernels`).
//!
//! Built from a loaded fused [`PpTsmV2`] (the weights' one source of truth: the same strict,
//! by-name load as every other path); the parity tests run it against PaddleVideo's fixtures.
//!
//! The network splits at the temporal shift: everything before it works on each frame alone
//! (`frame_maps`), which lets the live player cache per-frame results across sliding windows.
//!
//! The PP-TSM MobileNets run on the same layers (`mobilenet`); [`NhwcNet`] is either network.

pub mod gemm;
pub mod kernels;
pub mod mobilenet;
pub mod qgemm;
pub mod quant;
mod simd;
pub mod train;

pub use mobilenet::NhwcMobileNet;
pub use simd::{Simd, simd};

use std::sync::Mutex;

use burn::module::Param;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::layers::{Act, Conv, ConvBn, Linear, shift_channels};
use super::pptsm_v2::{PpTsmV2, RepDepthwiseSeparable, SeModule};
use gemm::PackedMatrix;
use kernels::{DwInput, Shape};
use qgemm::QuantizedMatrix;
use quant::{ActivationStats, Estimator, QuantBits, QuantLayer, QuantLayers};

/// Output rows of the stem per band of patches (112 x 27 values each: 8 rows are 97 KiB).
const STEM_BAND_ROWS: usize = 8;

thread_local! {
    /// The bytes of `Block::depthwise_into_int8`, kept for the next block.
    static QUANTIZED_INPUT: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Floats of depthwise output per band when it goes straight to an int8 layer's bytes
/// (`kernels::depthwise_banded`): 32 KiB, in L1/L2 when the band is quantized.
const QUANTIZED_BAND_FLOATS: usize = 8192;

/// `downscale_in_infer` dropout of p = 0.2 at inference (as `pptsm_v2`).
const DROPOUT_KEEP: f32 = 0.8;

#[derive(Debug, thiserror::Error)]
pub enum NhwcError {
    #[error("the CPU inference path needs a network in the fused form ({0})")]
    Unsupported(&'static str),
    #[error("the CPU inference path has no {layer} with weights of shape {shape:?}")]
    Shape {
        layer: &'static str,
        shape: Vec<usize>,
    },
    #[error("reading a parameter to the host: {0}")]
    Host(String),
    #[error("int8 layer {name}: {problem}")]
    Int8 { name: String, problem: String },
}

/// A network on the CPU path: PP-TSMv2 or a PP-TSM MobileNet, fused.
pub enum NhwcNet {
    PpTsmV2(NhwcPpTsmV2),
    MobileNet(NhwcMobileNet),
}

impl NhwcNet {
    /// Raw logits `[N, classes]` of clips `[N, T, 3, H, W]`.
    pub fn logits(&self, clips: &[f32], dims: [usize; 5]) -> Vec<f32> {
        match self {
            NhwcNet::PpTsmV2(net) => net.logits(clips, dims),
            NhwcNet::MobileNet(net) => net.logits(clips, dims),
        }
    }

    /// Pre-fc features `[N, 1280]` of clips `[N, T, 3, H, W]`.
    pub fn features(&self, clips: &[f32], dims: [usize; 5]) -> Vec<f32> {
        match self {
            NhwcNet::PpTsmV2(net) => net.features(clips, dims),
            NhwcNet::MobileNet(net) => net.features(clips, dims),
        }
    }

    /// PP-TSMv2, whose forward splits at its temporal shift (per-frame maps, the live window).
    pub fn pptsm_v2(&self) -> Option<&NhwcPpTsmV2> {
        match self {
            NhwcNet::PpTsmV2(net) => Some(net),
            NhwcNet::MobileNet(_) => None,
        }
    }
}

/// A parameter's values on the host and its shape.
fn host<const D: usize>(param: &Param<Tensor<D>>) -> Result<(Vec<f32>, Vec<usize>), NhwcError> {
    let data = param.val().into_data().convert::<f32>();
    let shape = data.shape().to_vec();
    let values = data
        .try_into_vec::<f32>()
        .map_err(|e| NhwcError::Host(format!("{e:?}")))?;
    Ok((values, shape))
}

fn bias_of(conv: &Conv) -> Result<Vec<f32>, NhwcError> {
    let bias = conv.bias.as_ref().ok_or(NhwcError::Unsupported(
        "a convolution without its folded bias",
    ))?;
    Ok(host(bias)?.0)
}

/// `[out, in, 1, 1]` -> `[in, out]`, the GEMM's right-hand side.
fn transposed(values: &[f32], out: usize, inp: usize) -> Vec<f32> {
    let mut t = vec![0.0; values.len()];
    for o in 0..out {
        for i in 0..inp {
            t[i * out + o] = values[o * inp + i];
        }
    }
    t
}

/// A 1x1 convolution (+ bias, zeros if it has none) + activation; in int8 when quantized.
struct Pointwise {
    /// PaddleVideo's name of the layer (`stages.2.0.pw_conv_1`); empty where unnamed.
    name: String,
    matrix: PackedMatrix,
    int8: Option<Box<QuantizedMatrix>>,
    /// Calibration: the statistics of every input this layer sees.
    observer: Option<Box<Mutex<ActivationStats>>>,
    act: Act,
}

impl Pointwise {
    /// A folded `ConvBn` with its activation.
    fn from_conv_bn(layer: &ConvBn, name: String) -> Result<Self, NhwcError> {
        if layer.bn.is_some() {
            return Err(NhwcError::Unsupported("BatchNorm not folded"));
        }
        Ok(Self {
            name,
            ..Self::new(&layer.conv, layer.act)?
        })
    }

    fn new(conv: &Conv, act: Act) -> Result<Self, NhwcError> {
        let (w, shape) = host(&conv.weight)?;
        if shape.len() != 4 || shape[2..] != [1, 1] || conv.groups != 1 {
            return Err(NhwcError::Shape {
                layer: "1x1 convolution",
                shape,
            });
        }
        let (c_out, c_in) = (shape[0], shape[1]);
        let weight = transposed(&w, c_out, c_in);
        let bias = match &conv.bias {
            Some(bias) => Some(host(bias)?.0),
            None => None,
        };
        Ok(Self {
            name: String::new(),
            matrix: PackedMatrix::new(&weight, bias.as_deref(), c_in, c_out),
            int8: None,
            observer: None,
            act,
        })
    }

    /// Runs in int8 with `layer`'s weights and input quantization (the float bias stays).
    fn set_int8(&mut self, layer: &QuantLayer) -> Result<(), NhwcError> {
        let problem = |problem: String| NhwcError::Int8 {
            name: self.name.clone(),
            problem,
        };
        if let Some(p) = layer.problem() {
            return Err(problem(p));
        }
        let (k, n) = (self.matrix.k(), self.matrix.n());
        if (layer.out_channels, layer.in_channels) != (n, k) {
            return Err(problem(format!(
                "shape [{}, {}], but the network's layer is [{n}, {k}]",
                layer.out_channels, layer.in_channels
            )));
        }
        let bias = self.matrix.bias();
        // Calibration, if it ran, is over.
        self.observer = None;
        self.int8 = Some(Box::new(QuantizedMatrix::new(layer, Some(&bias))));
        Ok(())
    }

    /// This layer quantized with its input range from the calibration statistics, in the
    /// integer widths `bits`.
    fn quantized(
        &self,
        estimator: Estimator,
        bits: QuantBits,
    ) -> Option<(QuantLayer, ActivationStats)> {
        let stats = self.observer.as_ref()?.lock().ok()?.clone();
        let (lower, upper) = stats.range(estimator, bits.input_max());
        let input = qgemm::ActQuant::for_range(lower, upper, bits.input_max());
        let (weight, n) = (self.weight_out_in(), self.matrix.n());
        let smoothing = stats.smoothing.clone();
        let layer = QuantLayer::quantize(&weight, n, input, smoothing, bits.weight_max());
        Some((layer, stats))
    }

    /// The weights `[out, in]`, as the convolution stores them.
    fn weight_out_in(&self) -> Vec<f32> {
        transposed(&self.matrix.weight(), self.matrix.k(), self.matrix.n())
    }

    /// Calibration starts over, this layer's inputs smoothed (`quant::smoothing`) by the
    /// channel ranges recorded so far if `alpha` is given.
    fn smooth_calibration(&mut self, alpha: Option<f64>) {
        let (weight, k) = (self.weight_out_in(), self.matrix.k());
        let Some(observer) = &mut self.observer else {
            return;
        };
        let Ok(stats) = observer.get_mut() else {
            return;
        };
        let factors = match alpha {
            Some(alpha) => quant::smoothing(&stats.channel_max, &weight, alpha),
            None => Vec::new(),
        };
        *stats = ActivationStats::new(k, factors);
    }

    fn out_shape(&self, shape: Shape) -> Shape {
        Shape {
            c: self.matrix.n(),
            ..shape
        }
    }

    /// The int8 matrix when this layer runs in int8 and records nothing, so its input may
    /// come already quantized.
    fn int8_ready(&self) -> Option<&QuantizedMatrix> {
        match self.observer {
            Some(_) => None,
            None => self.int8.as_deref(),
        }
    }

    fn forward(&self, x: &[f32], shape: Shape) -> (Vec<f32>, Shape) {
        let out_shape = self.out_shape(shape);
        let mut y = kernels::buffer(out_shape.values());
        self.forward_into(x, shape, &mut y);
        (y, out_shape)
    }

    fn forward_into(&self, x: &[f32], shape: Shape, out: &mut [f32]) {
        self.forward_strided(x, shape, (out, self.matrix.n()));
    }

    /// [`Self::forward_into`] with output pixels `ldo` values apart.
    fn forward_strided(&self, x: &[f32], shape: Shape, out: (&mut [f32], usize)) {
        let x = &x[..shape.values()];
        if let Some(observer) = &self.observer
            && let Ok(mut stats) = observer.lock()
        {
            stats.observe(x);
        }
        match &self.int8 {
            Some(int8) => int8.apply_strided(x, shape.pixels(), self.act, out),
            None => self.matrix.apply_strided(x, shape.pixels(), self.act, out),
        }
    }
}

/// A depthwise convolution (+ bias) + activation, weights tap-major `[k * k, c]`.
struct Depthwise {
    weights: kernels::DwWeights,
    stride: usize,
    act: Act,
}

impl Depthwise {
    fn from_conv(conv: &Conv, act: Act) -> Result<Self, NhwcError> {
        let (w, shape) = host(&conv.weight)?;
        if shape.len() != 4 || shape[1] != 1 || shape[2] != shape[3] || conv.groups != shape[0] {
            return Err(NhwcError::Shape {
                layer: "depthwise convolution",
                shape,
            });
        }
        let (c, k) = (shape[0], shape[3]);
        if k % 2 == 0 || k > 7 {
            return Err(NhwcError::Shape {
                layer: "depthwise convolution (odd kernels up to 7x7)",
                shape,
            });
        }
        let mut taps = vec![0.0; w.len()];
        for ch in 0..c {
            for tap in 0..k * k {
                taps[tap * c + ch] = w[ch * k * k + tap];
            }
        }
        Ok(Self {
            weights: kernels::DwWeights::new(taps, bias_of(conv)?, k),
            stride: conv.stride,
            act,
        })
    }

    fn out_shape(&self, shape: Shape) -> Shape {
        shape.strided(self.weights.kernel(), self.stride, shape.c)
    }

    fn forward(&self, x: &[f32], shape: Shape) -> (Vec<f32>, Shape) {
        let out_shape = self.out_shape(shape);
        let mut y = kernels::buffer(out_shape.values());
        self.forward_into(x, shape, &mut y);
        (y, out_shape)
    }

    fn forward_into(&self, x: &[f32], shape: Shape, out: &mut [f32]) {
        self.forward_input(DwInput::Frames(x), shape, out);
    }

    fn forward_input(&self, x: DwInput<'_>, shape: Shape, out: &mut [f32]) {
        kernels::depthwise(x, shape, &self.weights, self.stride, self.act, out);
    }
}

/// The gate of a squeeze-and-excitation.
#[derive(Clone, Copy)]
enum Gate {
    /// PP-TSMv2's.
    Sigmoid,
    /// PaddleVideo's MobileNetV3 `Hardsigmoid(slope=0.2, offset=0.5)` (`layers::hardsigmoid`).
    HardSigmoid,
}

impl Gate {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        match self {
            Gate::Sigmoid => kernels::sigmoid(v),
            Gate::HardSigmoid => (v * 0.2 + 0.5).clamp(0.0, 1.0),
        }
    }
}

/// Squeeze-and-excitation: per-frame channel means -> fc, ReLU -> fc, gate -> rescale.
struct Excitation {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    squeezed: usize,
    gate: Gate,
}

impl Excitation {
    fn from_module(se: &SeModule) -> Result<Self, NhwcError> {
        Self::new(&se.conv1, &se.conv2, Gate::Sigmoid)
    }

    /// The two 1x1 convolutions (with biases) of an SE module.
    fn new(conv1: &Conv, conv2: &Conv, gate: Gate) -> Result<Self, NhwcError> {
        let (w1, s1) = host(&conv1.weight)?;
        let (w2, s2) = host(&conv2.weight)?;
        for shape in [&s1, &s2] {
            if shape.len() != 4 || shape[2..] != [1, 1] {
                return Err(NhwcError::Shape {
                    layer: "squeeze-excitation",
                    shape: shape.clone(),
                });
            }
        }
        Ok(Self {
            w1: transposed(&w1, s1[0], s1[1]),
            b1: bias_of(conv1)?,
            w2: transposed(&w2, s2[0], s2[1]),
            b2: bias_of(conv2)?,
            squeezed: s1[0],
            gate,
        })
    }

    fn apply(&self, x: &mut [f32], shape: Shape) {
        let scales = self.scales(x, shape);
        kernels::scale_channels(x, shape, &scales);
    }

    /// The per-frame channel scales `[frames, c]` that `apply` multiplies `x` by.
    fn scales(&self, x: &[f32], shape: Shape) -> Vec<f32> {
        let means = kernels::channel_means(x, shape);
        let mut scales = vec![0.0; means.len()];
        simd::dispatch(ExcitationScales {
            excitation: self,
            means: &means,
            scales: &mut scales,
        });
        scales
    }
}

/// The two fc layers of [`Excitation`] for each frame's channel means, in a vectorised copy.
struct ExcitationScales<'a> {
    excitation: &'a Excitation,
    means: &'a [f32],
    scales: &'a mut [f32],
}

impl simd::Kernel for ExcitationScales<'_> {
    #[inline(always)]
    fn run(self) {
        let se = self.excitation;
        let c = se.b2.len();
        for (mean, scale) in self
            .means
            .chunks_exact(c)
            .zip(self.scales.chunks_exact_mut(c))
        {
            let mut hidden = kernels::dense(mean, &se.w1, Some(&se.b1), se.squeezed);
            hidden.iter_mut().for_each(|v| *v = v.max(0.0));
            scale.copy_from_slice(&kernels::dense(&hidden, &se.w2, Some(&se.b2), c));
            scale.iter_mut().for_each(|v| *v = se.gate.apply(*v));
        }
    }
}

/// The shape that `blocks` turn `shape` into.
fn blocks_out_shape(blocks: &[Block], shape: Shape) -> Shape {
    blocks.iter().fold(shape, |s, block| block.out_shape(s))
}

/// Frames' activations of equal length, one after another, in a spare buffer (the forward
/// pass gives it back, like every activation).
fn concatenated(frames: &[&[f32]]) -> Vec<f32> {
    let len = frames.first().map_or(0, |f| f.len());
    let mut out = kernels::buffer(frames.len() * len);
    for (dst, frame) in out.chunks_exact_mut(len.max(1)).zip(frames) {
        dst.copy_from_slice(frame);
    }
    out
}

/// A block's input: activations it owns (given back to the buffer pool after it), or the
/// temporal shift of three frames' maps, which its depthwise reads in place (stage 3's first
/// block).
enum BlockInput<'a> {
    /// Pixels `.1` values apart (`c`, or the depthwise's `kernels::dw_pixel_stride`).
    Owned(Vec<f32>, usize),
    Shifted(kernels::Shifted<'a>),
}

impl BlockInput<'_> {
    /// Activations of `c` channels per pixel, packed.
    fn packed(x: Vec<f32>, shape: Shape) -> Self {
        BlockInput::Owned(x, shape.c)
    }
}

/// `blocks` one after another on `x` (`shape`), the last writing into `out` (packed pixels).
/// Each block writes its output at the pixel stride the next one's depthwise reads fastest.
fn run_blocks(blocks: &[Block], x: BlockInput<'_>, shape: Shape, out: &mut [f32]) {
    let Some((last, first)) = blocks.split_last() else {
        match x {
            BlockInput::Owned(x, stride) => {
                copy_pixels((&x, stride), (out, shape.c), shape.c);
                kernels::recycle(x);
            }
            BlockInput::Shifted(shifted) => shifted.write(shape.c, out),
        }
        return;
    };
    let (mut x, mut shape) = (x, shape);
    for (i, block) in first.iter().enumerate() {
        let next = &blocks[i + 1];
        (x, shape) = block.forward(x, shape, next);
    }
    last.forward_into(x, shape, (out, last.out_shape(shape).c));
}

/// Pixels of `c` values from rows `src.1` apart to rows `dst.1` apart.
fn copy_pixels((src, from): (&[f32], usize), (dst, to): (&mut [f32], usize), c: usize) {
    if from == c && to == c {
        dst.copy_from_slice(&src[..dst.len()]);
        return;
    }
    for (d, s) in dst.chunks_mut(to).zip(src.chunks(from)) {
        d[..c].copy_from_slice(&s[..c]);
    }
}

/// `RepDepthwiseSeparable` in the fused form.
struct Block {
    depthwise: Depthwise,
    excitation: Option<Excitation>,
    /// One pointwise conv, or two (stage 3's split pointwise).
    pointwise: Vec<Pointwise>,
    shortcut: bool,
}

impl Block {
    /// `block` as PaddleVideo names it (`stem.1`, `stages.2.0`).
    fn from_module(block: &RepDepthwiseSeparable, name: &str) -> Result<Self, NhwcError> {
        let depthwise = match (&block.dw_conv, &block.rep_dw) {
            (Some(dw), None) if dw.bn.is_none() => Depthwise::from_conv(&dw.conv, Act::Relu)?,
            (None, Some(rep)) => Depthwise::from_conv(rep, Act::Relu)?,
            _ => return Err(NhwcError::Unsupported("rep branches not merged")),
        };
        let pointwise = [
            (&block.pw_conv_1, "pw_conv_1"),
            (&block.pw_conv_2, "pw_conv_2"),
            (&block.pw_conv, "pw_conv"),
        ]
        .into_iter()
        .filter_map(|(layer, field)| Some((layer.as_ref()?, field)))
        .map(|(layer, field)| Pointwise::from_conv_bn(layer, format!("{name}.{field}")))
        .collect::<Result<_, _>>()?;
        Ok(Self {
            depthwise,
            excitation: block.se.as_ref().map(Excitation::from_module).transpose()?,
            pointwise,
            shortcut: block.use_shortcut,
        })
    }

    fn out_shape(&self, shape: Shape) -> Shape {
        let dw_shape = self.depthwise.out_shape(shape);
        self.pointwise
            .iter()
            .fold(dw_shape, |s, pw| pw.out_shape(s))
    }

    /// The pixel stride this block's depthwise reads an input of `shape` fastest at.
    fn input_stride(&self, shape: Shape) -> usize {
        kernels::dw_pixel_stride(shape.c, self.depthwise.stride)
    }

    /// The block on `x` into a new buffer at the pixel stride `next` reads fastest.
    fn forward<'a>(
        &self,
        x: BlockInput<'_>,
        shape: Shape,
        next: &Block,
    ) -> (BlockInput<'a>, Shape) {
        let out_shape = self.out_shape(shape);
        let ldo = next.input_stride(out_shape);
        let mut out = kernels::buffer(out_shape.pixels() * ldo);
        self.forward_into(x, shape, (&mut out, ldo));
        (BlockInput::Owned(out, ldo), out_shape)
    }

    /// The block on `x` into `out`, its pixels `ldo` values apart (the last layer writes
    /// there, so a caller gathering frames needs no copy).
    fn forward_into(&self, x: BlockInput<'_>, shape: Shape, (out, ldo): (&mut [f32], usize)) {
        // The shortcut adds the input itself: a shifted one is made first.
        let x = match x {
            BlockInput::Shifted(shifted) if self.shortcut => {
                let mut own = kernels::buffer(shape.values());
                shifted.write(shape.c, &mut own);
                BlockInput::packed(own, shape)
            }
            x => x,
        };
        let dw_shape = self.depthwise.out_shape(shape);
        let mut mid = self.mid(dw_shape);
        let dw_input = match &x {
            BlockInput::Owned(own, stride) if *stride == shape.c => DwInput::Frames(own),
            BlockInput::Owned(own, stride) => DwInput::Strided(own, *stride),
            BlockInput::Shifted(shifted) => DwInput::Shifted(*shifted),
        };
        self.front_into(dw_input, shape, mid.slot());
        let y_shape = self.back_into(mid, dw_shape, (&mut *out, ldo));
        if let BlockInput::Owned(x, stride) = x {
            if self.shortcut {
                let c = y_shape.c;
                for (o, i) in out
                    .chunks_mut(ldo)
                    .zip(x.chunks(stride))
                    .take(y_shape.pixels())
                {
                    o[..c].iter_mut().zip(&i[..c]).for_each(|(a, b)| *a += b);
                }
            }
            kernels::recycle(x);
        }
    }

    /// An int8 first 1x1 that takes the depthwise output as bytes (no observer on it).
    fn first_int8(&self) -> Option<(&Pointwise, &QuantizedMatrix)> {
        let pw = self.pointwise.first()?;
        Some((pw, pw.int8_ready()?))
    }

    /// A buffer for the depthwise output of `dw_shape` as this block's 1x1 convolutions take
    /// it: bytes for an int8 first 1x1 with no SE between (quantized a band at a time as the
    /// depthwise makes them); floats otherwise, with SE's per-frame scales kept apart where an
    /// int8 first 1x1 applies them as it quantizes (no pass that rescales them in place).
    fn mid(&self, dw_shape: Shape) -> Mid<'_> {
        let frames = dw_shape.frames;
        let frame_pixels = dw_shape.h * dw_shape.w;
        match (self.first_int8(), &self.excitation) {
            (Some(first), None) => {
                // Every byte is written by `quantize_into`: the thread's buffer as it is.
                let mut bytes = QUANTIZED_INPUT.take();
                bytes.resize(dw_shape.pixels() * first.1.k4(), 0);
                Mid::Bytes {
                    bytes,
                    frames,
                    first,
                }
            }
            (first, _) => Mid::Floats {
                floats: kernels::buffer(dw_shape.values()),
                scales: match (first, &self.excitation) {
                    (Some(_), Some(_)) => vec![0.0; frames * dw_shape.c],
                    _ => Vec::new(),
                },
                frames,
                frame_pixels,
            },
        }
    }

    /// The depthwise (and SE) of `x` (`shape`) into `slot`, a slot of a [`Self::mid`] buffer
    /// for those frames.
    fn front_into(&self, x: DwInput<'_>, shape: Shape, slot: MidSlot<'_>) {
        let dw = &self.depthwise;
        let dw_shape = dw.out_shape(shape);
        match slot {
            MidSlot::Bytes(bytes, int8) => {
                let k4 = int8.k4();
                let band = QUANTIZED_BAND_FLOATS / (dw_shape.w * dw_shape.c).max(1);
                kernels::depthwise_banded(
                    (x, shape),
                    &dw.weights,
                    (dw.stride, dw.act),
                    (band, dw_shape.w * k4),
                    bytes,
                    |rows, out| int8.quantize_into(rows, out),
                );
            }
            MidSlot::Floats(floats, scales) => {
                dw.forward_input(x, shape, floats);
                if let Some(se) = &self.excitation {
                    match scales.is_empty() {
                        true => se.apply(floats, dw_shape),
                        false => scales.copy_from_slice(&se.scales(floats, dw_shape)),
                    }
                }
            }
        }
    }

    /// The 1x1 convolutions on `mid` (the depthwise output of `dw_shape`) into `out`; returns
    /// the output's shape.
    fn back_into(&self, mid: Mid<'_>, dw_shape: Shape, (out, ldo): (&mut [f32], usize)) -> Shape {
        let pixels = dw_shape.pixels();
        // The int8 first 1x1 (`pw`) writes into `out` where it is the last layer, else into
        // a buffer for the rest.
        let first_into = |pw: &Pointwise, out: &mut [f32], run: &dyn Fn(StridedOut<'_>)| {
            let y_shape = pw.out_shape(dw_shape);
            match self.pointwise.len() {
                1 => {
                    run((out, ldo));
                    (Vec::new(), y_shape, &self.pointwise[1..])
                }
                _ => {
                    let mut y = kernels::buffer(y_shape.values());
                    run((&mut y, y_shape.c));
                    (y, y_shape, &self.pointwise[1..])
                }
            }
        };
        // The int8 first 1x1 from `mid`'s bytes or scaled floats, or `mid`'s floats as they
        // are; then the rest, the last into `out`.
        let (mut y, mut y_shape, rest) = match mid {
            Mid::Bytes {
                bytes,
                first: (pw, int8),
                ..
            } => {
                let run =
                    |dst: (&mut [f32], usize)| int8.apply_quantized(&bytes, pixels, pw.act, dst);
                let first = first_into(pw, out, &run);
                QUANTIZED_INPUT.set(bytes);
                first
            }
            Mid::Floats {
                floats,
                scales,
                frames,
                frame_pixels,
            } => match self.first_int8() {
                Some((pw, int8)) => {
                    let run = |dst: StridedOut<'_>| match scales.is_empty() {
                        true => int8.apply_strided(&floats, pixels, pw.act, dst),
                        false => {
                            let frames = (frames, frame_pixels);
                            int8.apply_scaled(&floats, frames, &scales, pw.act, dst)
                        }
                    };
                    let first = first_into(pw, out, &run);
                    kernels::recycle(floats);
                    first
                }
                None if self.pointwise.is_empty() => {
                    copy_pixels((&floats, dw_shape.c), (out, ldo), dw_shape.c);
                    (floats, dw_shape, &self.pointwise[..])
                }
                None => (floats, dw_shape, &self.pointwise[..]),
            },
        };
        for (i, pw) in rest.iter().enumerate() {
            let z_shape = pw.out_shape(y_shape);
            if i + 1 == rest.len() {
                pw.forward_strided(&y, y_shape, (&mut *out, ldo));
            } else {
                let mut z = kernels::buffer(z_shape.values());
                pw.forward_into(&y, y_shape, &mut z);
                kernels::recycle(std::mem::replace(&mut y, z));
            }
            y_shape = z_shape;
        }
        if !y.is_empty() {
            kernels::recycle(y);
        }
        y_shape
    }
}

/// Output rows and how many values apart they start.
type StridedOut<'a> = (&'a mut [f32], usize);

/// A block's depthwise output as its 1x1 convolutions take it (`Block::mid`), for `frames`
/// frames of `frame_pixels` pixels.
enum Mid<'a> {
    /// Quantized for the block's int8 first 1x1 (`first`): `[pixels, k4]`.
    Bytes {
        bytes: Vec<u8>,
        frames: usize,
        first: (&'a Pointwise, &'a QuantizedMatrix),
    },
    /// Floats `[pixels, c]`, with SE's scales `[frames, c]` where the int8 first 1x1 applies
    /// them (else empty: SE, if any, has been applied).
    Floats {
        floats: Vec<f32>,
        scales: Vec<f32>,
        frames: usize,
        frame_pixels: usize,
    },
}

/// One or more frames' part of a [`Mid`].
enum MidSlot<'a> {
    /// Bytes for this int8 layer.
    Bytes(&'a mut [u8], &'a QuantizedMatrix),
    Floats(&'a mut [f32], &'a mut [f32]),
}

impl Mid<'_> {
    /// The whole buffer as one slot.
    fn slot(&mut self) -> MidSlot<'_> {
        match self {
            Mid::Bytes { bytes, first, .. } => MidSlot::Bytes(bytes, first.1),
            Mid::Floats { floats, scales, .. } => MidSlot::Floats(floats, scales),
        }
    }

    /// One slot per frame.
    fn frame_slots(&mut self) -> Vec<MidSlot<'_>> {
        match self {
            Mid::Bytes {
                bytes,
                frames,
                first,
            } => {
                let per_frame = bytes.len() / (*frames).max(1);
                let int8 = first.1;
                bytes
                    .chunks_exact_mut(per_frame.max(1))
                    .map(|frame| MidSlot::Bytes(frame, int8))
                    .collect()
            }
            Mid::Floats {
                floats,
                scales,
                frames,
                ..
            } => {
                let per_frame = floats.len() / (*frames).max(1);
                let scale_len = scales.len() / (*frames).max(1);
                let mut scales = &mut scales[..];
                floats
                    .chunks_exact_mut(per_frame.max(1))
                    .map(|f| {
                        let (s, rest) = std::mem::take(&mut scales).split_at_mut(scale_len);
                        scales = rest;
                        MidSlot::Floats(f, s)
                    })
                    .collect()
            }
        }
    }
}

/// The stem: a 3x3 stride-2 convolution (+ bias) of NCHW frames + activation, straight from
/// the frame (`kernels::stem_conv`) or, where that has no kernel, as a GEMM over its patches.
struct Stem {
    matrix: PackedMatrix,
    /// The weights `[27, channels]`, tap-major, and the bias, for `kernels::stem_conv`.
    taps: Vec<f32>,
    bias: Vec<f32>,
    act: Act,
}

impl Stem {
    fn new(conv: &Conv, act: Act) -> Result<Self, NhwcError> {
        let (w, shape) = host(&conv.weight)?;
        if shape.len() != 4 || shape[1..] != [3, 3, 3] || conv.stride != 2 || conv.groups != 1 {
            return Err(NhwcError::Shape {
                layer: "3x3 stride-2 stem",
                shape,
            });
        }
        let (channels, patch) = (shape[0], shape[1] * shape[2] * shape[3]);
        let (taps, bias) = (transposed(&w, channels, patch), bias_of(conv)?);
        Ok(Self {
            matrix: PackedMatrix::new(&taps, Some(&bias), patch, channels),
            taps,
            bias,
            act,
        })
    }

    /// The output's shape for one `h x w` frame.
    fn out_shape(&self, h: usize, w: usize) -> Shape {
        let input = Shape {
            frames: 1,
            h,
            w,
            c: 3,
        };
        input.strided(3, 2, self.matrix.n())
    }

    /// One NCHW frame `[3, h, w]` -> its output (`out_shape`), written into `out`. Without a
    /// direct kernel, the patches go a band of rows at a time, each band's patches still in L2
    /// when the GEMM reads them.
    fn forward_into(&self, frame: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let input = Shape {
            frames: 1,
            h,
            w,
            c: 3,
        };
        let shape = self.out_shape(h, w);
        let weights = (&self.taps[..], &self.bias[..]);
        if kernels::stem_conv(frame, input, weights, self.act, out) {
            return;
        }
        let row_len = shape.w * shape.c;
        for (band, out) in out[..shape.values()]
            .chunks_mut(STEM_BAND_ROWS * row_len)
            .enumerate()
        {
            let rows = band * STEM_BAND_ROWS..band * STEM_BAND_ROWS + out.len() / row_len;
            let pixels = rows.len() * shape.w;
            let cols = kernels::im2col_nchw_rows(frame, input, (3, 2), shape, rows);
            self.matrix.apply(&cols, pixels, self.act, out);
            kernels::recycle(cols);
        }
    }
}

/// A classifier (`Linear`: weight `[in, out]`, bias) as a GEMM.
fn classifier(fc: &Linear) -> Result<PackedMatrix, NhwcError> {
    let (weight, shape) = host(&fc.weight)?;
    if shape.len() != 2 {
        return Err(NhwcError::Shape {
            layer: "classifier",
            shape,
        });
    }
    Ok(PackedMatrix::new(
        &weight,
        Some(&host(&fc.bias)?.0),
        shape[0],
        shape[1],
    ))
}

/// `fc` on pre-fc features: `[N, in]` -> `[N, classes]`.
fn classify_with(fc: &PackedMatrix, features: &[f32]) -> Vec<f32> {
    let n = features.len() / fc.k();
    let mut logits = vec![0.0; n * fc.n()];
    fc.apply(features, n, Act::None, &mut logits);
    logits
}

/// PP-TSMv2 (fused) on the CPU, channels-last.
pub struct NhwcPpTsmV2 {
    /// Stem 3x3 stride-2 conv 3 -> 32 (+ ReLU).
    stem: Stem,
    /// `stem.1` and stages 1-2: per-frame work.
    per_frame: Vec<Block>,
    /// `GlobalAttention`'s fc (`[T, T]`, bias `[T]`), if the checkpoint has it.
    attention: Option<(Vec<f32>, Vec<f32>)>,
    /// Stage 3, after the temporal shift: run frame by frame.
    stage3: Vec<Block>,
    /// Stage 4: run on all frames at once.
    stage4: Vec<Block>,
    /// Last 1x1 conv `[1024, 1280]`, no bias.
    last_conv: PackedMatrix,
    /// The classifier `[1280, classes]` + bias.
    fc: PackedMatrix,
}

/// Per-frame maps at the temporal shift: stage 2's output, `[frames, h, w, c]`.
#[derive(Clone)]
pub struct FrameMaps {
    pub data: Vec<f32>,
    pub shape: Shape,
}

impl NhwcPpTsmV2 {
    pub fn from_network(net: &PpTsmV2) -> Result<Self, NhwcError> {
        if net.stem_conv.bn.is_some() {
            return Err(NhwcError::Unsupported("BatchNorm not folded"));
        }
        let mut per_frame = vec![Block::from_module(&net.stem_dw, "stem.1")?];
        let (mut stage3, mut stage4) = (Vec::new(), Vec::new());
        for (s, stage) in net.stages.iter().enumerate() {
            let target = match s {
                0 | 1 => &mut per_frame,
                2 => &mut stage3,
                _ => &mut stage4,
            };
            for (b, block) in stage.iter().enumerate() {
                target.push(Block::from_module(block, &format!("stages.{s}.{b}"))?);
            }
        }
        let attention = match &net.global_attention {
            Some(att) => Some((host(&att.fc.weight)?.0, host(&att.fc.bias)?.0)),
            None => None,
        };
        let (last, last_shape) = host(&net.last_conv.weight)?;
        let (last_out, last_in) = (last_shape[0], last_shape[1]);
        Ok(Self {
            stem: Stem::new(&net.stem_conv.conv, Act::Relu)?,
            per_frame,
            attention,
            stage3,
            stage4,
            last_conv: PackedMatrix::new(
                &transposed(&last, last_out, last_in),
                None,
                last_in,
                last_out,
            ),
            fc: classifier(&net.fc)?,
        })
    }

    /// Width of the pooled features the classifier sees (1280).
    pub fn feature_dim(&self) -> usize {
        self.last_conv.n()
    }

    /// The 1x1 convolutions of the blocks, in forward order: what int8 quantizes (the stem,
    /// the depthwise convolutions, SE, the last conv and the classifier stay float).
    fn pointwise_mut(&mut self) -> impl Iterator<Item = &mut Pointwise> {
        self.per_frame
            .iter_mut()
            .chain(&mut self.stage3)
            .chain(&mut self.stage4)
            .flat_map(|block| block.pointwise.iter_mut())
    }

    fn pointwise(&self) -> impl Iterator<Item = &Pointwise> {
        self.per_frame
            .iter()
            .chain(&self.stage3)
            .chain(&self.stage4)
            .flat_map(|block| block.pointwise.iter())
    }

    /// The narrowest int8 kernel its layers run (`None`: none in int8): 8-bit weights run
    /// portable code where AVX2 is the widest.
    pub fn int8_kernel(&self) -> Option<qgemm::QSimd> {
        self.pointwise()
            .filter_map(|pw| Some(pw.int8.as_ref()?.kernel()))
            .min()
    }

    /// The names of the layers int8 can quantize, in forward order.
    pub fn quantizable_layers(&self) -> Vec<String> {
        self.pointwise().map(|p| p.name.clone()).collect()
    }

    /// From now on, every forward pass records the inputs of the quantizable layers (in
    /// float, whatever ran before).
    pub fn start_calibration(&mut self) {
        for pw in self.pointwise_mut() {
            let stats = ActivationStats::new(pw.matrix.k(), Vec::new());
            pw.observer = Some(Box::new(Mutex::new(stats)));
            pw.int8 = None;
        }
    }

    /// Calibration starts over, the input channels of the layers `smooth` accepts by name to
    /// be smoothed with strength `alpha` by the ranges recorded so far (`quant::smoothing`):
    /// the clips run again.
    pub fn smooth_calibration(&mut self, alpha: f64, smooth: impl Fn(&str) -> bool) {
        for pw in self.pointwise_mut() {
            let alpha = smooth(&pw.name).then_some(alpha);
            pw.smooth_calibration(alpha);
        }
    }

    /// The quantizable layers quantized from what calibration recorded (in the integer
    /// widths `bits`), with the statistics each range came from, in forward order (empty
    /// before `start_calibration`).
    pub fn calibrated(
        &self,
        estimator: Estimator,
        bits: QuantBits,
    ) -> Vec<(String, QuantLayer, ActivationStats)> {
        self.pointwise()
            .filter_map(|pw| {
                let (layer, stats) = pw.quantized(estimator, bits)?;
                Some((pw.name.clone(), layer, stats))
            })
            .collect()
    }

    /// Runs the named layers in int8 (the others stay float). Every name must be one of
    /// `quantizable_layers`, with its shape.
    pub fn set_int8(&mut self, layers: &QuantLayers) -> Result<(), NhwcError> {
        let mut pending: Vec<&String> = layers.keys().collect();
        for pw in self.pointwise_mut() {
            if let Some(layer) = layers.get(&pw.name) {
                pw.set_int8(layer)?;
                pending.retain(|name| **name != pw.name);
            }
        }
        match pending.first() {
            Some(name) => Err(NhwcError::Int8 {
                name: (*name).clone(),
                problem: "no such 1x1 convolution in this network".into(),
            }),
            None => Ok(()),
        }
    }

    /// Frames `[frames, 3, h, w]` (NCHW, as preprocessing makes them) -> their maps at the
    /// temporal shift. Each frame's result depends on that frame only, so frames run one by
    /// one (in parallel), each through every layer while its activations are still in cache.
    pub fn frame_maps(&self, frames: &[f32], count: usize, h: usize, w: usize) -> FrameMaps {
        let frame_len = 3 * h * w;
        let one = blocks_out_shape(&self.per_frame, self.stem.out_shape(h, w));
        let mut data = kernels::buffer(count * one.values());
        data.par_chunks_mut(one.values().max(1))
            .zip(frames[..count * frame_len].par_chunks(frame_len.max(1)))
            .for_each(|(maps, frame)| self.one_frame(frame, h, w, maps));
        FrameMaps {
            data,
            shape: Shape {
                frames: count,
                ..one
            },
        }
    }

    /// One frame's maps into `out`: the last block writes there.
    fn one_frame(&self, frame: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let shape = self.stem.out_shape(h, w);
        let mut x = kernels::buffer(shape.values());
        self.stem.forward_into(frame, h, w, &mut x);
        run_blocks(&self.per_frame, BlockInput::packed(x, shape), shape, out);
    }

    /// The maps of `maps.shape.frames / num_seg` clips -> pre-fc features `[clips, 1280]`.
    pub fn features_from_maps(&self, maps: FrameMaps, num_seg: usize) -> Vec<f32> {
        let FrameMaps { data: mut x, shape } = maps;
        if let Some((weight, bias)) = &self.attention {
            self.apply_attention(&mut x, shape, num_seg, weight, bias);
        }
        let split = shift_channels(shape.c, num_seg);
        let frame_len = shape.h * shape.w * shape.c;
        let shares = self.frame_shares(shape, |f| {
            let (previous, current, next) = kernels::clip_neighbours(&x, frame_len, num_seg, f);
            kernels::Shifted {
                previous,
                current,
                next,
                split,
            }
        });
        kernels::recycle(x);
        let width = self.feature_dim();
        shares
            .chunks_exact(num_seg * width)
            .flat_map(|clip| {
                let frames: Vec<&[f32]> = clip.chunks_exact(width).collect();
                mean_of(&frames, width)
            })
            .collect()
    }

    /// Stages 3-4 on the shifted maps of `shape.frames` frames, pooling, the last conv + ReLU
    /// and the dropout scale: each frame's share `[frames, 1280]` of its clip's features (which
    /// are their mean). `shifted(f)` describes frame f's shifted maps, which stage 3's first
    /// depthwise reads in place.
    ///
    /// Stage 3 runs frame by frame (in parallel), each frame's activations staying in L2;
    /// stage 4 runs on all frames at once, so that its 6 MB of weights pass through the cache
    /// once rather than once per frame.
    fn frame_shares<'a>(
        &self,
        shape: Shape,
        shifted: impl Fn(usize) -> kernels::Shifted<'a> + Sync,
    ) -> Vec<f32> {
        if shape.frames == 0 {
            return Vec::new();
        }
        let one = Shape { frames: 1, ..shape };
        let one_out = blocks_out_shape(&self.stage3, one);
        let frames = shape.frames;
        let (x_in, shape, stage4) = match self.stage4.split_first() {
            // Stage 4's first block (stride 2, no shortcut) starts in each frame's loop: its
            // depthwise reads the frame's stage-3 output while that is in L2 (gathered first,
            // 8 frames' 3.2 MB came back from memory at a third of its speed), and its 1x1
            // convolutions run on all frames at once.
            Some((first, rest)) if !first.shortcut => {
                let dw_one = first.depthwise.out_shape(one_out);
                let dw_all = Shape { frames, ..dw_one };
                let mut mid = first.mid(dw_all);
                mid.frame_slots()
                    .into_par_iter()
                    .enumerate()
                    .for_each(|(f, slot)| {
                        let mut maps = kernels::buffer(one_out.values());
                        run_blocks(
                            &self.stage3,
                            BlockInput::Shifted(shifted(f)),
                            one,
                            &mut maps,
                        );
                        first.front_into(DwInput::Frames(&maps), one_out, slot);
                        kernels::recycle(maps);
                    });
                let out_shape = first.out_shape(Shape { frames, ..one_out });
                let ldo = rest
                    .first()
                    .map_or(out_shape.c, |b| b.input_stride(out_shape));
                let mut x = kernels::buffer(out_shape.pixels() * ldo);
                first.back_into(mid, dw_all, (&mut x, ldo));
                (BlockInput::Owned(x, ldo), out_shape, rest)
            }
            _ => {
                let mut x = kernels::buffer(frames * one_out.values());
                x.par_chunks_mut(one_out.values().max(1))
                    .enumerate()
                    .for_each(|(f, out)| {
                        run_blocks(&self.stage3, BlockInput::Shifted(shifted(f)), one, out);
                    });
                let shape = Shape { frames, ..one_out };
                (BlockInput::packed(x, shape), shape, &self.stage4[..])
            }
        };
        let shape_out = blocks_out_shape(stage4, shape);
        let mut x = kernels::buffer(shape_out.values());
        run_blocks(stage4, x_in, shape, &mut x);
        let shape = shape_out;
        let pooled = kernels::channel_means(&x, shape);
        kernels::recycle(x);
        let mut shares = vec![0.0; shape.frames * self.feature_dim()];
        self.last_conv
            .apply(&pooled, shape.frames, Act::Relu, &mut shares);
        shares.iter_mut().for_each(|v| *v *= DROPOUT_KEEP);
        shares
    }

    /// Whether a frame's share of the clip features depends only on its own maps and its two
    /// neighbours' (no temporal attention, which weighs frames by the whole clip).
    pub fn shares_are_local(&self) -> bool {
        self.attention.is_none()
    }

    /// One frame's share of its clip's features (see `frame_shares`) from its maps and its
    /// neighbours' (`None` at the clip's ends). With a sliding window, only the frames whose
    /// neighbours changed need this again. Without temporal attention only.
    pub fn frame_share(
        &self,
        previous: Option<&FrameMaps>,
        current: &FrameMaps,
        next: Option<&FrameMaps>,
        num_seg: usize,
    ) -> Vec<f32> {
        let shape = Shape {
            frames: 1,
            ..current.shape
        };
        self.frame_shares(shape, |_| kernels::Shifted {
            previous: previous.map(|m| m.data.as_slice()),
            current: &current.data,
            next: next.map(|m| m.data.as_slice()),
            split: shift_channels(shape.c, num_seg),
        })
    }

    /// A clip's features from its frames' shares: their mean.
    pub fn features_from_shares(&self, shares: &[&[f32]]) -> Vec<f32> {
        mean_of(shares, self.feature_dim())
    }

    /// `GlobalAttention`: each frame scaled by sigmoid(fc(per-frame means over the clip)).
    fn apply_attention(
        &self,
        x: &mut [f32],
        shape: Shape,
        num_seg: usize,
        weight: &[f32],
        bias: &[f32],
    ) {
        let channel_means = kernels::channel_means(x, shape);
        let frame_means: Vec<f32> = channel_means
            .chunks_exact(shape.c)
            .map(|m| m.iter().sum::<f32>() / shape.c as f32)
            .collect();
        let scales: Vec<f32> = frame_means
            .chunks_exact(num_seg)
            .flat_map(|clip| kernels::dense(clip, weight, Some(bias), num_seg))
            .map(kernels::sigmoid)
            .collect();
        let frame_len = shape.h * shape.w * shape.c;
        for (frame, s) in x.chunks_exact_mut(frame_len).zip(scales) {
            frame.iter_mut().for_each(|v| *v *= s);
        }
    }

    /// Pre-fc features of one clip whose frames' maps were computed separately (the live
    /// player's sliding window reuses the maps of the frames it shares with the last window).
    /// Every entry holds one frame of the same shape.
    pub fn features_from_frames(&self, frames: &[&FrameMaps]) -> Vec<f32> {
        let Some(first) = frames.first() else {
            return Vec::new();
        };
        let data = concatenated(&frames.iter().map(|m| m.data.as_slice()).collect::<Vec<_>>());
        let maps = FrameMaps {
            data,
            shape: Shape {
                frames: frames.len(),
                ..first.shape
            },
        };
        self.features_from_maps(maps, frames.len())
    }

    /// Pre-fc features `[N, 1280]` of clips `[N, T, 3, H, W]`.
    pub fn features(&self, clips: &[f32], [n, t, _, h, w]: [usize; 5]) -> Vec<f32> {
        let maps = self.frame_maps(clips, n * t, h, w);
        self.features_from_maps(maps, t)
    }

    /// The classifier on pre-fc features: `[N, 1280]` -> `[N, classes]`.
    pub fn classify(&self, features: &[f32]) -> Vec<f32> {
        classify_with(&self.fc, features)
    }

    /// Raw logits `[N, classes]` of clips `[N, T, 3, H, W]`.
    pub fn logits(&self, clips: &[f32], dims: [usize; 5]) -> Vec<f32> {
        self.classify(&self.features(clips, dims))
    }
}

/// The element-wise mean of equally long rows (summed in order, then divided, as the batched
/// path does).
fn mean_of(rows: &[&[f32]], width: usize) -> Vec<f32> {
    let mut mean = vec![0.0; width];
    for row in rows {
        for (m, &v) in mean.iter_mut().zip(*row) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows.len() as f32);
    mean
}
