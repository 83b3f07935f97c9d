//! Paddle's `Momentum` optimiser rule, the one both trainers use (head-only on its host fc, full
//! fine-tuning on every parameter): L2 decay is *added to the gradient* inside Paddle's momentum
//! op, then plain or Nesterov momentum.

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
}
