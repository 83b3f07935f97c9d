//! Softmax and top-k over one row of logits.

use crate::report::Ranked;

/// Numerically stable softmax (in f64, rounded to f32).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// Indices of the k largest values, largest first; ties keep the lower index first.
pub fn top_k_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// Top-k of softmax(logits) with label names (`label_of` gives the name of a class id).
pub fn top_k(logits: &[f32], k: usize, label_of: impl Fn(usize) -> String) -> Vec<Ranked> {
    let probs = softmax(logits);
    top_k_indices(&probs, k)
        .into_iter()
        .enumerate()
        .map(|(i, id)| Ranked {
            rank: i + 1,
            label_id: id,
            label: label_of(id),
            score: probs[id],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 3.0, 2.0, 10.0]);
        assert!(softmax(&[0.0, 1000.0]).iter().all(|x| x.is_finite()));
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(top_k_indices(&p, 2), vec![3, 1]);
    }

    #[test]
    fn top_k_breaks_ties_by_index_and_names_labels() {
        let r = top_k(&[0.0, 5.0, 5.0, 1.0], 3, |i| format!("c{i}"));
        let ids: Vec<usize> = r.iter().map(|x| x.label_id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(r[0].rank, 1);
        assert_eq!(r[2].label, "c3");
        assert!(top_k(&[1.0], 5, |_| String::new()).len() == 1);
    }
}
