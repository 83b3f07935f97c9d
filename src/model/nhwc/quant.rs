//! Post-training quantization, the model's side: what calibration measures at each quantized
//! layer's input ([`ActivationStats`]), how a range is chosen from it ([`Estimator`]), how
//! channels of unequal ranges are evened out ([`smoothing`]), and a quantized 1x1 convolution
//! as a weights file stores it ([`QuantLayer`]: int8 weights per output channel, its input's
//! scale and zero point, its input channels' smoothing factors).

use std::collections::BTreeMap;

use super::qgemm::{ActQuant, INPUT_MAX, INPUT_MAX_7BIT, WEIGHT_MAX, WEIGHT_MAX_8BIT};

/// `kineto quantize`'s default percentile (and the benchmark's calibration).
pub const DEFAULT_PERCENTILE: f64 = 99.99;

/// `kineto quantize`'s default smoothing strength (SmoothQuant's alpha), as measured over 639
/// timeline windows (`scripts/int8_accuracy.py`) of a head trained on demo data, every 1x1
/// convolution in int8 with 8-bit weights and 7-bit inputs: the float32 top-1 class of 92.3%
/// of them stayed unsmoothed, 96.1% at alpha 0.4, 99.4% at 0.5 and 0.6 (largest probability
/// change 0.79 and 0.52), 98.6% at 0.7, 97.3% at 0.8. The fixture model kept all 639 at 0.6.
pub const DEFAULT_SMOOTHING: f64 = 0.6;

/// The integer widths of the quantized layers (`kineto quantize --weight-bits`,
/// `--input-bits`): 7 or 8 bits each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantBits {
    pub weight: u8,
    pub input: u8,
}

impl QuantBits {
    /// 8-bit weights, 7-bit inputs: full speed on every kernel (AVX2's pairs of products
    /// cannot saturate), and with smoothing the measured best (a trained head kept the float32
    /// top-1 class of 99.4% of 639 windows, against 96.2% with 7-bit weights and 8-bit inputs
    /// and 99.1% with 8 bits of both).
    pub const DEFAULT: Self = Self {
        weight: 8,
        input: 7,
    };

    /// The weights' largest magnitude.
    pub fn weight_max(self) -> i32 {
        match self.weight {
            8 => WEIGHT_MAX_8BIT,
            _ => WEIGHT_MAX,
        }
    }

    /// The inputs' largest code.
    pub fn input_max(self) -> u8 {
        match self.input {
            7 => INPUT_MAX_7BIT,
            _ => INPUT_MAX,
        }
    }
}

/// How a layer's input range is chosen from its calibration statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Estimator {
    /// The smallest and largest values seen.
    MinMax,
    /// The largest value cut at this percentile of the positive values (the smallest stays
    /// the minimum seen): a few outliers do not stretch the scale of all the rest.
    Percentile(f64),
    /// The largest value cut where the expected squared error of the quantized values is
    /// least: rounding error (a step squared over 12) below the cut, the clipped distance
    /// above it, weighed by the histogram.
    Mse,
}

impl Estimator {
    pub fn name(self) -> &'static str {
        match self {
            Estimator::MinMax => "minmax",
            Estimator::Percentile(_) => "percentile",
            Estimator::Mse => "mse",
        }
    }
}

/// Bins of the histogram: the top 16 bits of a non-negative finite f32 (sign, exponent, 7
/// mantissa bits), so each bin spans under 1% of its values and the counts need no range
/// known in advance (calibration is one pass, and its result does not depend on the order).
const BINS: usize = (0x7f80_0000u32 >> 16) as usize;

/// A layer input's values over the calibration clips: values `[pixels, channels]`, each
/// divided by its channel's smoothing factor (none: 1) before it is counted.
#[derive(Clone, Debug)]
pub struct ActivationStats {
    pub min: f32,
    pub max: f32,
    /// Non-negative values seen, by [`BINS`].
    histogram: Vec<u64>,
    positive: u64,
    /// The largest magnitude seen in each channel (before smoothing).
    pub channel_max: Vec<f32>,
    /// Each channel's smoothing factor; empty: none.
    pub smoothing: Vec<f32>,
}

impl ActivationStats {
    /// Statistics of a `channels`-wide input, its values divided by `smoothing` (empty: none).
    pub fn new(channels: usize, smoothing: Vec<f32>) -> Self {
        Self {
            min: 0.0,
            max: 0.0,
            histogram: vec![0; BINS],
            positive: 0,
            channel_max: vec![0.0; channels],
            smoothing,
        }
    }

    pub fn observe(&mut self, values: &[f32]) {
        let channels = self.channel_max.len().max(1);
        for pixel in values.chunks(channels) {
            for (c, &v) in pixel.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                if let Some(m) = self.channel_max.get_mut(c) {
                    *m = m.max(v.abs());
                }
                let v = match self.smoothing.get(c) {
                    Some(s) => v / s,
                    None => v,
                };
                self.min = self.min.min(v);
                self.max = self.max.max(v);
                if v >= 0.0 {
                    self.histogram[(v.to_bits() >> 16) as usize] += 1;
                    self.positive += 1;
                }
            }
        }
    }

    /// The range `estimator` keeps for codes 0..=`max`, `lower <= 0 <= upper`.
    pub fn range(&self, estimator: Estimator, max: u8) -> (f32, f32) {
        let upper = match estimator {
            Estimator::MinMax => self.max,
            Estimator::Percentile(p) => {
                let wanted = (self.positive as f64 * p / 100.0).ceil() as u64;
                let mut seen = 0;
                let bin = self.histogram.iter().position(|&count| {
                    seen += count;
                    seen >= wanted.max(1)
                });
                match bin {
                    // The bin's upper edge, never past the largest value seen.
                    Some(bin) => bin_upper(bin).min(self.max),
                    None => self.max,
                }
            }
            Estimator::Mse => self.least_squared_error_cut(f64::from(max)),
        };
        (self.min.min(0.0), upper.max(0.0))
    }
}

/// The largest value of a histogram bin.
fn bin_upper(bin: usize) -> f32 {
    f32::from_bits(((bin as u32 + 1) << 16) - 1)
}

/// A bin's middle value.
fn bin_middle(bin: usize) -> f64 {
    let low = f64::from(f32::from_bits((bin as u32) << 16));
    (low + f64::from(bin_upper(bin))) / 2.0
}

impl ActivationStats {
    /// [`Estimator::Mse`]: every bin edge from the median up is a candidate cut (the bins are
    /// under 1% wide, so this is a fine search); the error of a cut `t` over `steps` steps of
    /// `(t - min) / steps` is `Σ count * (step² / 12)` below it and `Σ count * (v - t)²` above.
    fn least_squared_error_cut(&self, steps: f64) -> f32 {
        let lower = f64::from(self.min.min(0.0));
        let occupied: Vec<(usize, u64)> = self
            .histogram
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, &c)| (b, c))
            .collect();
        let total: u64 = occupied.iter().map(|(_, c)| c).sum();
        let mut seen = 0;
        let first = occupied
            .iter()
            .position(|(_, c)| {
                seen += c;
                seen * 2 >= total
            })
            .unwrap_or(0);
        let mut best = (f64::INFINITY, self.max);
        for &(bin, _) in &occupied[first..] {
            let cut = f64::from(bin_upper(bin).min(self.max));
            let step = (cut - lower) / steps;
            let error: f64 = occupied
                .iter()
                .map(|&(b, count)| {
                    let v = bin_middle(b);
                    let e = if v > cut {
                        (v - cut).powi(2)
                    } else {
                        step * step / 12.0
                    };
                    count as f64 * e
                })
                .sum();
            if error < best.0 {
                best = (error, cut as f32);
            }
        }
        best.1
    }
}

/// SmoothQuant's per-input-channel factors of a layer (Xiao et al., 2023): channel `k`'s
/// input is divided by `s_k = a_k^alpha / w_k^(1 - alpha)` and its weights multiplied by it,
/// with `a_k` its largest input magnitude and `w_k` its largest weight magnitude, so the
/// product is unchanged while a per-tensor input scale no longer spends its 256 steps on the
/// widest channels. `weight` is `[out, in]`; a channel never seen or without weights keeps 1.
pub fn smoothing(channel_max: &[f32], weight: &[f32], alpha: f64) -> Vec<f32> {
    let in_channels = channel_max.len();
    let mut weight_max = vec![0.0f32; in_channels];
    for row in weight.chunks_exact(in_channels.max(1)) {
        for (m, w) in weight_max.iter_mut().zip(row) {
            *m = m.max(w.abs());
        }
    }
    channel_max
        .iter()
        .zip(&weight_max)
        .map(|(&a, &w)| {
            let s = f64::from(a).powf(alpha) / f64::from(w).powf(1.0 - alpha);
            if s.is_finite() && s > 0.0 {
                s.clamp(1e-4, 1e4) as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// A 1x1 convolution in int8: weights `[out, in]` quantized per output channel (symmetric,
/// within ±[`WEIGHT_MAX`]) after each input channel's weights were multiplied by its
/// smoothing factor, and its input's quantization (of the input divided by those factors).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantLayer {
    pub out_channels: usize,
    pub in_channels: usize,
    pub weight: Vec<i8>,
    pub weight_scale: Vec<f32>,
    pub input: ActQuant,
    /// `[in]`; empty: none (every factor 1).
    pub smoothing: Vec<f32>,
    /// The weights' largest magnitude: [`WEIGHT_MAX`] (7 bits, every kernel) or
    /// [`WEIGHT_MAX_8BIT`].
    pub weight_max: i32,
}

impl QuantLayer {
    /// Quantizes float weights `[out, in]`, each column `k` multiplied by `smoothing[k]`
    /// (empty: none): each output channel's scale maps its largest magnitude to
    /// ±`weight_max`, values rounded to nearest, ties to even.
    pub fn quantize(
        weight: &[f32],
        out_channels: usize,
        input: ActQuant,
        smoothing: Vec<f32>,
        weight_max: i32,
    ) -> Self {
        let in_channels = weight.len() / out_channels.max(1);
        let mut q = Vec::with_capacity(weight.len());
        let mut weight_scale = Vec::with_capacity(out_channels);
        for row in weight.chunks_exact(in_channels.max(1)) {
            let row: Vec<f32> = match smoothing.len() == row.len() {
                true => row.iter().zip(&smoothing).map(|(w, s)| w * s).collect(),
                false => row.to_vec(),
            };
            let largest = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if largest > 0.0 && largest.is_finite() {
                largest / weight_max as f32
            } else {
                1.0
            };
            let limit = weight_max as f32;
            q.extend(
                row.iter()
                    .map(|&v| (v / scale).round_ties_even().clamp(-limit, limit) as i8),
            );
            weight_scale.push(scale);
        }
        Self {
            out_channels,
            in_channels,
            weight: q,
            weight_scale,
            input,
            smoothing,
            weight_max,
        }
    }

    /// Why these values cannot run, if they cannot (a weights file's layer is checked before
    /// use).
    pub fn problem(&self) -> Option<String> {
        let values = self.out_channels * self.in_channels;
        if self.out_channels == 0 || self.in_channels == 0 || self.weight.len() != values {
            return Some(format!(
                "weight has {} values for [{}, {}]",
                self.weight.len(),
                self.out_channels,
                self.in_channels
            ));
        }
        if self.weight_scale.len() != self.out_channels {
            return Some(format!(
                "weight_scale has {} values for {} output channels",
                self.weight_scale.len(),
                self.out_channels
            ));
        }
        if ![WEIGHT_MAX, WEIGHT_MAX_8BIT].contains(&self.weight_max) {
            return Some(format!(
                "weight_max is {}; Kineto's are {WEIGHT_MAX} and {WEIGHT_MAX_8BIT}",
                self.weight_max
            ));
        }
        if let Some(w) = self
            .weight
            .iter()
            .find(|w| i32::from(**w).abs() > self.weight_max)
        {
            return Some(format!(
                "weight value {w} is outside ±{} (the layer's weight_max)",
                self.weight_max
            ));
        }
        if ![INPUT_MAX, INPUT_MAX_7BIT].contains(&self.input.max)
            || self.input.zero_point > self.input.max
        {
            return Some(format!(
                "input_max is {} with zero point {}; Kineto's are {INPUT_MAX} and \
                 {INPUT_MAX_7BIT}, the zero point within",
                self.input.max, self.input.zero_point
            ));
        }
        if !(self.smoothing.is_empty() || self.smoothing.len() == self.in_channels) {
            return Some(format!(
                "input_smoothing has {} values for {} input channels",
                self.smoothing.len(),
                self.in_channels
            ));
        }
        let bad_scale = |s: f32| !(s.is_finite() && s > 0.0);
        if self.weight_scale.iter().any(|&s| bad_scale(s))
            || bad_scale(self.input.scale)
            || self.smoothing.iter().any(|&s| bad_scale(s))
        {
            return Some("a scale or smoothing factor is not a positive finite number".into());
        }
        None
    }
}

/// The quantized layers of a network, by name (`stages.2.0.pw_conv_1`, ...).
pub type QuantLayers = BTreeMap<String, QuantLayer>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_cuts_outliers_and_minmax_keeps_them() {
        let mut stats = ActivationStats::new(1, Vec::new());
        let mut values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        values.push(100.0);
        values.push(-0.5);
        values.push(f32::NAN);
        stats.observe(&values);
        assert_eq!(stats.range(Estimator::MinMax, INPUT_MAX), (-0.5, 100.0));
        let (lower, upper) = stats.range(Estimator::Percentile(99.9), INPUT_MAX);
        assert_eq!(lower, -0.5);
        assert!((0.99..=1.0).contains(&upper), "{upper}");
        // One outlier: keeping it costs 10 001 * (100.5 / 255)² / 12 ≈ 129 of squared error,
        // clipping it at 1 costs 99², so the least-error cut keeps it.
        assert_eq!(stats.range(Estimator::Mse, INPUT_MAX), (-0.5, 100.0));
        // Uniform values: nothing is worth clipping, the cut stays at the top.
        let mut spread = ActivationStats::new(1, Vec::new());
        spread.observe(&(0..10_000).map(|i| i as f32 / 100.0).collect::<Vec<_>>());
        let (_, cut) = spread.range(Estimator::Mse, INPUT_MAX);
        assert!((90.0..=100.0).contains(&cut), "{cut}");
    }

    #[test]
    fn weights_use_the_whole_range_per_channel() {
        let input = ActQuant {
            scale: 0.1,
            zero_point: 0,
            max: INPUT_MAX,
        };
        let weight = [1.0, -0.6, 0.25, 0.0, 0.0, 0.0];
        let layer = QuantLayer::quantize(&weight, 2, input, Vec::new(), WEIGHT_MAX);
        assert_eq!(layer.weight, vec![63, -38, 16, 0, 0, 0]);
        assert_eq!(layer.weight_scale, vec![1.0 / 63.0, 1.0]);
        assert_eq!(layer.problem(), None);
        let mut hostile = layer.clone();
        hostile.weight[0] = -128;
        assert!(hostile.problem().is_some_and(|p| p.contains("outside")));
        let eight = QuantLayer::quantize(&weight, 2, input, Vec::new(), WEIGHT_MAX_8BIT);
        assert_eq!(eight.weight, vec![127, -76, 32, 0, 0, 0]);
        assert_eq!(eight.problem(), None);
        let mut hostile = eight.clone();
        hostile.weight_max = WEIGHT_MAX;
        assert!(hostile.problem().is_some_and(|p| p.contains("outside ±63")));
        hostile.weight_max = 100;
        assert!(
            hostile
                .problem()
                .is_some_and(|p| p.contains("weight_max is 100"))
        );
        let mut hostile = layer.clone();
        hostile.input.max = 200;
        assert!(
            hostile
                .problem()
                .is_some_and(|p| p.contains("input_max is 200"))
        );
        hostile.input = ActQuant::for_range(-10.0, 0.1, INPUT_MAX);
        hostile.input.max = INPUT_MAX_7BIT;
        assert!(
            hostile
                .problem()
                .is_some_and(|p| p.contains("zero point 252"))
        );
        let mut hostile = layer.clone();
        hostile.smoothing = vec![1.0, 0.0, 1.0];
        assert!(hostile.problem().is_some_and(|p| p.contains("positive")));
        hostile.smoothing = vec![1.0];
        assert!(
            hostile
                .problem()
                .is_some_and(|p| p.contains("input_smoothing"))
        );
    }

    #[test]
    fn smoothing_evens_out_channel_ranges_and_keeps_the_product() {
        // Channel 0's inputs reach 100, channel 1's 1; their weights reach 0.5 and 2.
        let (channel_max, weight) = ([100.0f32, 1.0], [0.5f32, 2.0, -0.25, 1.0]);
        let s = smoothing(&channel_max, &weight, 0.5);
        // s_k = sqrt(a_k / w_k): sqrt(200) and sqrt(0.5).
        assert!((s[0] - 200f32.sqrt()).abs() < 1e-4 && (s[1] - 0.5f32.sqrt()).abs() < 1e-6);
        // Both channels now reach sqrt(a_k * w_k) = sqrt(50) and sqrt(2): 5x apart, not 100x.
        let reach: Vec<f32> = channel_max.iter().zip(&s).map(|(a, s)| a / s).collect();
        assert!((reach[0] / reach[1] - 5.0).abs() < 1e-4, "{reach:?}");
        // A channel never seen or without weights keeps 1.
        assert_eq!(smoothing(&[0.0, 3.0], &[1.0, 0.0], 0.5), [1.0, 1.0]);
        // The statistics count the smoothed values and the raw channel maxima.
        let mut stats = ActivationStats::new(2, s.clone());
        stats.observe(&[100.0, 1.0, -50.0, 0.5]);
        assert_eq!(stats.channel_max, [100.0, 1.0]);
        assert!((stats.max - 50f32.sqrt()).abs() < 1e-4, "{}", stats.max);
        // The layer's weights are quantized after the factors were applied.
        let input = ActQuant::for_range(0.0, 8.0, INPUT_MAX);
        let layer = QuantLayer::quantize(&weight, 2, input, s.clone(), WEIGHT_MAX);
        assert_eq!(layer.smoothing, s);
        assert_eq!(layer.weight[0], 63, "0.5 * sqrt(200) is row 0's largest");
    }
}
