//! The building blocks both architectures share, and the one place where low-level kernels are
//! chosen. Field names are PaddleVideo's attribute names, so a module's path in the tree is its
//! checkpoint key (see `model::names` for the few renames).

use burn::module::{Module, Param};
use burn::tensor::module::{batch_norm, conv2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData, activation};

/// Paddle's BatchNorm epsilon (`BatchNorm2D` default).
pub const BN_EPSILON: f64 = 1e-5;

/// The epsilon Paddle's `batch_norm` kernel really adds: the op attribute is a float32, so a
/// float64 run adds `1e-5_f32` (9.99999974737875e-6). Only a float64 run can tell the two apart.
pub const PADDLE_BN_EPSILON: f64 = 1e-5_f32 as f64;

/// A zero-filled parameter: the skeleton that a checkpoint later fills by name.
pub(crate) fn zeros_param<const D: usize>(shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::zeros(shape, device))
}

/// Host data -> tensor of rank D on `device`. Shapes are validated before this is called.
pub(crate) fn tensor_from_host<const D: usize>(
    data: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// The non-linearity after a convolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Act {
    #[default]
    None,
    Relu,
    /// PaddlePaddle's `leaky_relu` default slope.
    LeakyRelu,
    /// `min(max(x, 0), 6)` (MobileNetV2).
    Relu6,
    /// `x * relu6(x + 3) / 6` (MobileNetV3).
    Hardswish,
}

impl Act {
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Act::None => x,
            Act::Relu => activation::relu(x),
            Act::LeakyRelu => activation::leaky_relu(x, 0.01),
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Hardswish => x.clone() * x.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0),
        }
    }
}

/// `Conv2D` with "same" padding `(k - 1) / 2`, as every convolution in both models has.
#[derive(Module, Debug)]
pub struct Conv {
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub stride: usize,
    pub groups: usize,
}

impl Conv {
    /// `[out, in / groups, k, k]` zero weights (and a zero bias if `bias`).
    pub fn new(
        device: &Device,
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        groups: usize,
        bias: bool,
    ) -> Self {
        let [c_in, c_out] = channels;
        Self {
            weight: zeros_param([c_out, c_in / groups, kernel, kernel], device),
            bias: bias.then(|| zeros_param([c_out], device)),
            stride,
            groups,
        }
    }

    pub fn kernel_size(&self) -> usize {
        self.weight.dims()[3]
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pad = (self.kernel_size() - 1) / 2;
        let options = ConvOptions::new([self.stride; 2], [pad; 2], [1, 1], self.groups);
        conv2d(
            x,
            self.weight.val(),
            self.bias.as_ref().map(Param::val),
            options,
        )
    }
}

/// `BatchNorm2D` in inference form: running statistics, epsilon 1e-5.
#[derive(Module, Debug)]
pub struct BatchNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub _mean: Param<Tensor<1>>,
    pub _variance: Param<Tensor<1>>,
}

impl BatchNorm {
    pub fn new(device: &Device, channels: usize) -> Self {
        Self {
            weight: zeros_param([channels], device),
            bias: zeros_param([channels], device),
            _mean: zeros_param([channels], device),
            _variance: zeros_param([channels], device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        batch_norm(
            x,
            self.weight.val(),
            self.bias.val(),
            self._mean.val(),
            self._variance.val(),
            BN_EPSILON,
        )
    }

    /// Train-mode `BatchNorm2D`: normalises with the batch mean and the *biased* batch variance
    /// of each channel over N·H·W, built from differentiable ops so gradients flow through both
    /// statistics. Returns the output and the (still attached) per-channel mean and variance.
    pub fn forward_batch_stats(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        let [_, c, _, _] = x.dims();
        let channel_mean = |t: Tensor<4>| t.mean_dim(0).mean_dim(2).mean_dim(3);
        let mean = channel_mean(x.clone());
        let centered = x - mean.clone();
        let variance = channel_mean(centered.clone() * centered.clone());
        let inv_std = variance
            .clone()
            .add_scalar(PADDLE_BN_EPSILON)
            .sqrt()
            .recip();
        let scale = self.weight.val().reshape([1, c, 1, 1]) * inv_std;
        let y = centered * scale + self.bias.val().reshape([1, c, 1, 1]);
        (y, mean.reshape([c]), variance.reshape([c]))
    }

    /// Normalises `x` as `norm` says; in batch mode the layer's statistics are recorded under
    /// `name`.
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        norm: &mut Normalization<'_>,
        name: &str,
    ) -> Tensor<4> {
        match norm {
            Normalization::Running => self.forward(x),
            Normalization::Batch(stats) => {
                let (y, mean, variance) = self.forward_batch_stats(x);
                stats.layers.push(BatchStat {
                    name: name.to_string(),
                    mean: mean.without_autodiff(),
                    variance: variance.without_autodiff(),
                });
                y
            }
        }
    }
}

/// How the BatchNorm layers of a forward pass normalise.
pub enum Normalization<'a> {
    /// With their running statistics (inference, Paddle's `model.eval()`).
    Running,
    /// With each batch's own statistics (Paddle's `model.train()`), recorded for the
    /// running-statistics update.
    Batch(&'a mut BatchStats),
}

/// One BatchNorm layer's batch statistics, detached from the autodiff graph.
#[derive(Clone, Debug)]
pub struct BatchStat {
    /// The layer's name in PaddleVideo's module tree without the `backbone.` prefix, e.g.
    /// `stages.2.0.dw_conv_list.0.bn`.
    pub name: String,
    pub mean: Tensor<1>,
    /// Biased (÷ N·H·W), as Paddle both normalises with and stores.
    pub variance: Tensor<1>,
}

/// The batch statistics of every BatchNorm layer of one train-mode forward, in forward order.
#[derive(Clone, Debug, Default)]
pub struct BatchStats {
    pub layers: Vec<BatchStat>,
}

/// Paddle `Linear`: weight `[in, out]`, `y = x W + b`.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    pub fn new(device: &Device, d_in: usize, d_out: usize) -> Self {
        Self {
            weight: zeros_param([d_in, d_out], device),
            bias: zeros_param([d_out], device),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let bias = self.bias.val().unsqueeze::<2>();
        x.matmul(self.weight.val()) + bias
    }
}

/// PP-TSMv2's `ConvBNLayer` (keys `conv.*`, `bn.*`): conv, BatchNorm, optional ReLU. In the
/// fused form `bn` is gone and the conv carries the folded bias.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv,
    pub bn: Option<BatchNorm>,
    #[module(skip)]
    pub act: Act,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device: &Device,
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        groups: usize,
        act: Act,
        fused: bool,
    ) -> Self {
        Self {
            conv: Conv::new(device, channels, kernel, stride, groups, fused),
            bn: (!fused).then(|| BatchNorm::new(device, channels[1])),
            act,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, &mut Normalization::Running, "")
    }

    /// The forward with BatchNorm in the given mode; `name` is this layer's PaddleVideo name
    /// (its BatchNorm is `{name}.bn`).
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        norm: &mut Normalization<'_>,
        name: &str,
    ) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match (&self.bn, norm) {
            (None, _) => x,
            (Some(bn), Normalization::Running) => bn.forward(x),
            (Some(bn), norm) => bn.forward_with(x, norm, &format!("{name}.bn")),
        };
        self.act.apply(x)
    }
}

/// `paddle.nn.functional.temporal_shift(x, num_seg, 1 / num_seg)` on `[N*T, C, H, W]`: channels
/// `[0, c1)` take the previous frame, `[c1, c2)` the next one (zeros past the ends), the rest stay.
pub fn temporal_shift(x: Tensor<4>, num_seg: usize) -> Tensor<4> {
    let [nt, c, h, w] = x.dims();
    let (c1, c2) = shift_channels(c, num_seg);
    let t = num_seg;
    let n = nt / t;
    let x5: Tensor<5> = x.reshape([n, t, c, h, w]);
    // Padding in the input's own dtype: the device default may differ (float64 training).
    let (device, dtype) = (x5.device(), x5.dtype());
    let zeros = |channels: usize| Tensor::<5>::zeros([n, 1, channels, h, w], (&device, dtype));

    let mut parts = Vec::with_capacity(3);
    if c1 > 0 {
        let back = if t > 1 {
            let prev = x5.clone().slice([0..n, 0..t - 1, 0..c1, 0..h, 0..w]);
            Tensor::cat(vec![zeros(c1), prev], 1)
        } else {
            zeros(c1)
        };
        parts.push(back);
    }
    if c2 > c1 {
        let forward = if t > 1 {
            let next = x5.clone().slice([0..n, 1..t, c1..c2, 0..h, 0..w]);
            Tensor::cat(vec![next, zeros(c2 - c1)], 1)
        } else {
            zeros(c2 - c1)
        };
        parts.push(forward);
    }
    if c > c2 {
        parts.push(x5.slice([0..n, 0..t, c2..c, 0..h, 0..w]));
    }
    Tensor::cat(parts, 2).reshape([nt, c, h, w])
}

/// Paddle's kernel computes `c1 = int(C * ratio)` and `c2 = int(2 * C * ratio)` with the ratio as
/// a float32 attribute; truncation matters (C = 12, ratio 1/8 gives 1 and 3, not 1 and 2).
pub fn shift_channels(channels: usize, num_seg: usize) -> (usize, usize) {
    let ratio = 1.0f32 / num_seg as f32;
    let c1 = (channels as f32 * ratio) as usize;
    let c2 = ((channels * 2) as f32 * ratio) as usize;
    (c1.min(channels), c2.min(channels))
}

/// PaddleVideo's MobileNetV3 `Hardsigmoid(slope=0.2, offset=0.5)`: `clip(0.2 x + 0.5, 0, 1)`
/// (not PyTorch's 1/6 slope).
pub fn hardsigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.mul_scalar(0.2).add_scalar(0.5).clamp(0.0, 1.0)
}

/// Global average pool to `[N, C, 1, 1]`.
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c, 1, 1])
}

/// `[N*T, C, 1, 1]` pooled frame features -> `[N, C]`, the mean over each clip's segments.
pub fn segment_mean(x: Tensor<4>, num_seg: usize) -> Tensor<2> {
    let [nt, c, _, _] = x.dims();
    x.reshape([nt / num_seg, num_seg, c])
        .mean_dim(1)
        .reshape([nt / num_seg, c])
}

/// Records named intermediate results when enabled (parity tests); free otherwise.
#[derive(Default)]
pub struct Trace {
    enabled: bool,
    pub records: Vec<(String, TensorData)>,
}

impl Trace {
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            records: Vec::new(),
        }
    }

    pub fn off() -> Self {
        Self::default()
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn record<const D: usize>(&mut self, name: impl Into<String>, x: &Tensor<D>) {
        if self.enabled {
            self.records.push((name.into(), x.to_data()));
        }
    }

    pub fn get(&self, name: &str) -> Option<&TensorData> {
        self.records.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_channels_truncate_like_paddle() {
        assert_eq!(shift_channels(256, 8), (32, 64));
        assert_eq!(shift_channels(256, 16), (16, 32));
        assert_eq!(shift_channels(12, 8), (1, 3));
        assert_eq!(shift_channels(64, 1), (64, 64));
    }

    #[test]
    fn temporal_shift_moves_channels_between_frames() {
        let device = Device::flex();
        // N=1, T=3, C=4 (c1 = 1, c2 = 2 for num_seg 3), 1x1 maps; value = 10*t + c.
        let data: Vec<f32> = (0..3)
            .flat_map(|t| (0..4).map(move |c| (10 * t + c) as f32))
            .collect();
        let x = tensor_from_host(data, [3, 4, 1, 1], &device);
        let y: Vec<f32> = temporal_shift(x, 3)
            .into_data()
            .try_to_vec()
            .unwrap_or_default();
        #[rustfmt::skip]
        let expected = vec![
            0.0, 11.0, 2.0, 3.0,
            0.0, 21.0, 12.0, 13.0,
            10.0, 0.0, 22.0, 23.0,
        ];
        assert_eq!(y, expected);
    }
}
