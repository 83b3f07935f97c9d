//! PaddleVideo's Mixup collate (`MIX: {name: Mixup, alpha: 0.2}`): a permutation of the batch
//! and one `lam ~ Beta(alpha, alpha)` per batch, with the Beta draw from two Gamma draws.

use rand::Rng;
use rand::seq::SliceRandom;

use super::losses::Targets;

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A Gamma(shape, 1) draw (Marsaglia–Tsang; shape < 1 through `Gamma(shape + 1)·U^(1/shape)`).
fn gamma(shape: f64, rng: &mut impl Rng) -> f64 {
    if shape < 1.0 {
        let u = 1.0 - rng.random::<f64>();
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(alpha, alpha) draw (numpy's `np.random.beta(alpha, alpha)` in distribution).
pub fn beta(alpha: f64, rng: &mut impl Rng) -> f64 {
    let x = gamma(alpha, rng);
    let y = gamma(alpha, rng);
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}

/// PaddleVideo's Mixup collate on a batch `[n, per-clip values]`: `perm` a permutation,
/// `lam ~ Beta(alpha, alpha)`, `x = lam·x + (1 − lam)·x[perm]`, targets `(y, y[perm], lam)`.
pub fn mixup(data: &mut [f32], labels: &[usize], alpha: f64, rng: &mut impl Rng) -> Targets {
    let n = labels.len();
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let lam = beta(alpha, rng);
    if n > 0 && data.len().is_multiple_of(n) {
        let per = data.len() / n;
        let original = data.to_vec();
        for (i, out) in data.chunks_exact_mut(per).enumerate() {
            let other = &original[perm[i] * per..(perm[i] + 1) * per];
            for (o, (&a, &b)) in out
                .iter_mut()
                .zip(original[i * per..(i + 1) * per].iter().zip(other))
            {
                *o = (lam * f64::from(a) + (1.0 - lam) * f64::from(b)) as f32;
            }
        }
    }
    Targets::Mixup {
        a: labels.to_vec(),
        b: perm.iter().map(|&j| labels[j]).collect(),
        lam,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn beta_02_is_u_shaped_with_mean_one_half() {
        let mut rng = StdRng::seed_from_u64(9);
        let draws: Vec<f64> = (0..20000).map(|_| beta(0.2, &mut rng)).collect();
        assert!(draws.iter().all(|x| (0.0..=1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        // Beta(0.2, 0.2): mean 1/2, variance 1/(4·1.4) = 0.1786; most mass near 0 and 1.
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert!((var - 0.1786).abs() < 0.01, "variance {var}");
        let middle = draws.iter().filter(|x| (0.25..0.75).contains(*x)).count();
        assert!(middle < draws.len() / 4, "{middle} draws in the middle");
    }

    #[test]
    fn mixup_mixes_clips_and_labels_with_one_lambda() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut data = vec![0.0f32, 0.0, 1.0, 1.0, 2.0, 2.0];
        let targets = mixup(&mut data, &[0, 1, 2], 0.2, &mut rng);
        let Targets::Mixup { a, b, lam } = targets else {
            panic!("mixup targets");
        };
        assert_eq!(a, vec![0, 1, 2]);
        for i in 0..3 {
            let expected = lam * i as f64 + (1.0 - lam) * b[i] as f64;
            assert!((f64::from(data[2 * i]) - expected).abs() < 1e-6);
        }
    }
}
