//! Comparisons of float64 host arrays (training steps: gradients, parameters, statistics).

pub fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// `‖ours − reference‖₂ / ‖reference‖₂`.
pub fn l2_relative(ours: &[f64], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "length mismatch");
    let diff: f64 = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).powi(2))
        .sum();
    let norm: f64 = reference.iter().map(|b| b * b).sum();
    (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// The leading block of `data` (shape `shape`) with shape `want`: how the fixtures store their
/// sliced gradients.
pub fn leading_block(data: &[f64], shape: &[usize], want: &[usize]) -> Vec<f64> {
    assert_eq!(shape.len(), want.len(), "rank {shape:?} vs {want:?}");
    assert!(
        want.iter().zip(shape).all(|(w, s)| w <= s),
        "{want:?} does not fit in {shape:?}"
    );
    let total: usize = want.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut index = vec![0usize; want.len()];
    for _ in 0..total {
        let flat = index.iter().zip(shape).fold(0, |acc, (&i, &s)| acc * s + i);
        out.push(data[flat]);
        for d in (0..want.len()).rev() {
            index[d] += 1;
            if index[d] < want[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}
