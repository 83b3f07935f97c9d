//! The optimiser and the schedule both trainers use (head-only on its host fc, full
//! fine-tuning on every parameter): Paddle's `Momentum` rule (L2 decay is *added to the
//! gradient* inside Paddle's momentum op, then plain or Nesterov momentum) and PaddleVideo's
//! warm-up + cosine learning rate.

use serde::Serialize;

/// `paddle.optimizer.Momentum(momentum, use_nesterov)`; the per-parameter L2 coefficient and
/// learning rate are arguments of each step, since Paddle's ParamAttrs set them per parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentum {
    pub momentum: f64,
    pub nesterov: bool,
}

impl Momentum {
    /// PaddleVideo's PP-TSM / PP-TSMv2 `OPTIMIZER`: momentum 0.9, `use_nesterov: True`. Paddle's
    /// momentum op carries `mu` as a float32 attribute, so 0.9 is `0.9_f32` even in a float64
    /// run (measured on `train/step64_8f.npz`: float64 updates then match Paddle's to rounding,
    /// ≤ 1.3e-13 abs, instead of 1.3e-8 × the update with 0.9).
    pub const PADDLEVIDEO: Self = Self {
        momentum: 0.9_f32 as f64,
        nesterov: true,
    };

    /// One element: `g' = g + c·p; v = μ·v + g'; p ← p − lr·(g' + μ·v)` (Nesterov) or
    /// `p ← p − lr·v`. Returns the new parameter and velocity.
    #[inline]
    pub fn update(&self, p: f64, v: f64, g: f64, lr: f64, decay: f64) -> (f64, f64) {
        let g = g + decay * p;
        let v = self.momentum * v + g;
        let step = if self.nesterov {
            g + self.momentum * v
        } else {
            v
        };
        (p - lr * step, v)
    }

    /// [`update`](Self::update) over a parameter, its velocity and its gradient (same length;
    /// the shortest decides).
    pub fn step<T: HostFloat>(&self, p: &mut [T], v: &mut [T], g: &[T], lr: f64, decay: f64) {
        for ((p, v), g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
            let (p1, v1) = self.update(p.to_f64(), v.to_f64(), g.to_f64(), lr, decay);
            *p = T::from_f64(p1);
            *v = T::from_f64(v1);
        }
    }
}

/// Host element types the rule runs on (computed in f64, stored back rounded).
pub trait HostFloat: Copy {
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl HostFloat for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl HostFloat for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// PaddleVideo's `CustomWarmupCosineDecay` (`iter_step: True`) on a fractional epoch `e`:
/// linear from `warmup_start` to `cos(warmup_epochs)` during the warm-up, then
/// `base·(cos(π·e/max_epochs) + 1)/2` (no restart after the warm-up).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WarmupCosine {
    pub warmup_start: f64,
    pub base: f64,
    pub warmup_epochs: f64,
    pub max_epochs: f64,
}

impl WarmupCosine {
    /// The PP-TSMv2 recipe scaled to a run: warm-up = 1/12 of the epochs (10 of 120 upstream);
    /// without `lr`, `cosine_base_lr = 0.01·B/128` and `warmup_start_lr = 0.005·B/128` (the
    /// 8-GPU x 16 setting scaled to the batch size as PaddleVideo's docs say); with `lr`, that
    /// base and half of it as the warm-up start.
    pub fn recipe(epochs: usize, batch_size: usize, lr: Option<f64>) -> Self {
        let base = lr.unwrap_or(0.01 * batch_size as f64 / 128.0);
        Self {
            warmup_start: base / 2.0,
            base,
            warmup_epochs: epochs as f64 / 12.0,
            max_epochs: epochs as f64,
        }
    }

    fn cosine(&self, e: f64) -> f64 {
        self.base * ((std::f64::consts::PI * e / self.max_epochs).cos() + 1.0) / 2.0
    }

    /// The learning rate at fractional epoch `e` (0 at the first iteration; it grows by
    /// 1/iterations-per-epoch after every iteration).
    pub fn lr(&self, e: f64) -> f64 {
        if e < self.warmup_epochs && self.warmup_epochs > 0.0 {
            let end = self.cosine(self.warmup_epochs);
            self.warmup_start + e * (end - self.warmup_start) / self.warmup_epochs
        } else {
            self.cosine(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_nesterov_step_is_paddles_closed_form() {
        // v = 0: p1 = p0 − lr·(1 + μ)·(g + c·p0).
        let rule = Momentum::PADDLEVIDEO;
        let (p, v) = rule.update(2.0, 0.0, 0.5, 0.1, 1e-4);
        let g = 0.5 + 1e-4 * 2.0;
        assert!((p - (2.0 - 0.1 * (1.0 + rule.momentum) * g)).abs() < 1e-15);
        assert!((v - g).abs() < 1e-15);
    }

    #[test]
    fn second_step_uses_the_velocity() {
        let rule = Momentum {
            momentum: 0.5,
            nesterov: false,
        };
        let mut p = [1.0f64];
        let mut v = [0.0f64];
        rule.step(&mut p, &mut v, &[1.0], 0.1, 0.0);
        rule.step(&mut p, &mut v, &[1.0], 0.1, 0.0);
        // v: 1, then 1.5; p: 1 − 0.1 − 0.15.
        assert!((p[0] - 0.75).abs() < 1e-15);
        assert!((v[0] - 1.5).abs() < 1e-15);
    }

    #[test]
    fn paddle_schedule_at_120_epochs() {
        // PaddleVideo's 8f config: 0.005 -> cos(10) = 0.0098296 over 10 epochs, then cosine.
        let s = WarmupCosine {
            warmup_start: 0.005,
            base: 0.01,
            warmup_epochs: 10.0,
            max_epochs: 120.0,
        };
        assert!((s.lr(0.0) - 0.005).abs() < 1e-15);
        assert!((s.lr(10.0) - 0.0098296).abs() < 1e-7);
        assert!((s.lr(5.0) - (0.005 + 0.5 * (0.0098296291 - 0.005))).abs() < 1e-8);
        assert!(s.lr(120.0).abs() < 1e-15);
        let r = WarmupCosine::recipe(12, 16, None);
        assert_eq!(r.warmup_epochs, 1.0);
        assert!((r.base - 0.00125).abs() < 1e-15);
        assert!((r.warmup_start - 0.000625).abs() < 1e-15);
    }
}
