//! Post-training quantization, the model's side: what calibration measures at each quantized
//! layer's input ([`ActivationStats`]), how a range is chosen from it ([`Estimator`]), and a
//! quantized 1x1 convolution as a weights file stores it ([`QuantLayer`]: int8 weights per
//! output channel, its input's scale and zero point).

use std::collections::BTreeMap;

use super::qgemm::{ActQuant, WEIGHT_MAX};

/// `kineto quantize`'s default percentile (and the benchmark's calibration).
pub const DEFAULT_PERCENTILE: f64 = 99.99;

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

/// A layer input's values over the calibration clips.
#[derive(Clone, Debug)]
pub struct ActivationStats {
    pub min: f32,
    pub max: f32,
    /// Non-negative values seen, by [`BINS`].
    histogram: Vec<u64>,
    positive: u64,
}

impl Default for ActivationStats {
    fn default() -> Self {
        Self {
            min: 0.0,
            max: 0.0,
            histogram: vec![0; BINS],
            positive: 0,
        }
    }
}

impl ActivationStats {
    pub fn observe(&mut self, values: &[f32]) {
        for &v in values {
            if !v.is_finite() {
                continue;
            }
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            if v >= 0.0 {
                self.histogram[(v.to_bits() >> 16) as usize] += 1;
                self.positive += 1;
            }
        }
    }

    /// The range `estimator` keeps, `lower <= 0 <= upper`.
    pub fn range(&self, estimator: Estimator) -> (f32, f32) {
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
            Estimator::Mse => self.least_squared_error_cut(),
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
    /// under 1% wide, so this is a fine search); the error of a cut `t` over 255 steps of
    /// `(t - min) / 255` is `Σ count * (step² / 12)` below it and `Σ count * (v - t)²` above.
    fn least_squared_error_cut(&self) -> f32 {
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
            let step = (cut - lower) / 255.0;
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

/// A 1x1 convolution in int8: weights `[out, in]` quantized per output channel (symmetric,
/// within ±[`WEIGHT_MAX`]) and its input's quantization.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantLayer {
    pub out_channels: usize,
    pub in_channels: usize,
    pub weight: Vec<i8>,
    pub weight_scale: Vec<f32>,
    pub input: ActQuant,
}

impl QuantLayer {
    /// Quantizes float weights `[out, in]`: each output channel's scale maps its largest
    /// magnitude to ±`WEIGHT_MAX`, values rounded to nearest, ties to even.
    pub fn quantize(weight: &[f32], out_channels: usize, input: ActQuant) -> Self {
        let in_channels = weight.len() / out_channels.max(1);
        let mut q = Vec::with_capacity(weight.len());
        let mut weight_scale = Vec::with_capacity(out_channels);
        for row in weight.chunks_exact(in_channels.max(1)) {
            let largest = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if largest > 0.0 && largest.is_finite() {
                largest / WEIGHT_MAX as f32
            } else {
                1.0
            };
            let limit = WEIGHT_MAX as f32;
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
        if let Some(w) = self
            .weight
            .iter()
            .find(|w| i32::from(**w).abs() > WEIGHT_MAX)
        {
            return Some(format!(
                "weight value {w} is outside ±{WEIGHT_MAX} (Kineto's int8 range)"
            ));
        }
        let bad_scale = |s: f32| !(s.is_finite() && s > 0.0);
        if self.weight_scale.iter().any(|&s| bad_scale(s)) || bad_scale(self.input.scale) {
            return Some("a scale is not a positive finite number".into());
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
        let mut stats = ActivationStats::default();
        let mut values: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        values.push(100.0);
        values.push(-0.5);
        values.push(f32::NAN);
        stats.observe(&values);
        assert_eq!(stats.range(Estimator::MinMax), (-0.5, 100.0));
        let (lower, upper) = stats.range(Estimator::Percentile(99.9));
        assert_eq!(lower, -0.5);
        assert!((0.99..=1.0).contains(&upper), "{upper}");
        // One outlier: keeping it costs 10 001 * (100.5 / 255)² / 12 ≈ 129 of squared error,
        // clipping it at 1 costs 99², so the least-error cut keeps it.
        assert_eq!(stats.range(Estimator::Mse), (-0.5, 100.0));
        // Uniform values: nothing is worth clipping, the cut stays at the top.
        let mut spread = ActivationStats::default();
        spread.observe(&(0..10_000).map(|i| i as f32 / 100.0).collect::<Vec<_>>());
        let (_, cut) = spread.range(Estimator::Mse);
        assert!((90.0..=100.0).contains(&cut), "{cut}");
    }

    #[test]
    fn weights_use_the_whole_range_per_channel() {
        let input = ActQuant {
            scale: 0.1,
            zero_point: 0,
        };
        let layer = QuantLayer::quantize(&[1.0, -0.6, 0.25, 0.0, 0.0, 0.0], 2, input);
        assert_eq!(layer.weight, vec![63, -38, 16, 0, 0, 0]);
        assert_eq!(layer.weight_scale, vec![1.0 / 63.0, 1.0]);
        assert_eq!(layer.problem(), None);
        let mut hostile = layer.clone();
        hostile.weight[0] = -128;
        assert!(hostile.problem().is_some_and(|p| p.contains("outside")));
    }
}
