//! The training losses on logits, with their analytic gradients, in f64 on the host.
//!
//! - Cross-entropy (`F.cross_entropy`, mean over the batch) and its Mixup form
//!   (`lam·CE(y_a) + (1 − lam)·CE(y_b)`, per sample, then the mean), as PaddleVideo's `BaseHead`
//!   and `DistillationCELoss` compute them.
//! - DML as PaddleVideo's PP-TSMv2 DML configs train it (`RecognizerDistillation`): student CE +
//!   teacher CE + `DistillationDMLLoss` (the symmetric KL between the two softmaxes, ε = 1e-12
//!   inside the logs, `(1/N) Σ_n ½[KL(p_t‖p_s) + KL(p_s‖p_t)]`), every weight 1.0, nothing
//!   detached: the DML term trains both models.
//! - Classic Hinton KD (not in PaddleVideo): `T²·(1/N) Σ_n KL(p_t^T ‖ p_s^T)` with
//!   `p^T = softmax(z/T)`, the teacher frozen; total = `w_ce·CE(student) + w_kd·KD`.
//!
//! Logits are row-major `[N, classes]` slices; every gradient is `d total / d logits` in the
//! same layout.

/// PaddleVideo's `DistillationDMLLoss` epsilon inside the logs.
pub const DML_EPS: f64 = 1e-12;

/// Labels of one batch: plain, or Mixup's `(y_a, y_b, lam)` (PaddleVideo's `Mixup` collate).
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    Hard(Vec<usize>),
    Mixup {
        a: Vec<usize>,
        b: Vec<usize>,
        lam: f64,
    },
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Hard(y) => y.len(),
            Targets::Mixup { a, .. } => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A scalar loss and its gradient wrt one set of logits.
#[derive(Clone, Debug, PartialEq)]
pub struct LossGrad {
    pub loss: f64,
    pub grad: Vec<f64>,
}

/// Softmax of each row of `[N, classes]` logits (max-subtracted).
pub fn softmax_rows(logits: &[f64], classes: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(classes.max(1)) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let start = out.len();
        let mut sum = 0.0;
        for &z in row {
            let e = (z - max).exp();
            sum += e;
            out.push(e);
        }
        for p in &mut out[start..] {
            *p /= sum;
        }
    }
    out
}

/// Log-softmax of each row (max-subtracted, log-sum-exp).
pub fn log_softmax_rows(logits: &[f64], classes: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(classes.max(1)) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|&z| (z - max).exp()).sum::<f64>().ln();
        out.extend(row.iter().map(|&z| z - lse));
    }
    out
}

fn batch_size(logits: &[f64], classes: usize) -> usize {
    assert!(
        classes > 0 && logits.len().is_multiple_of(classes),
        "logits of length {} are not [N, {classes}]",
        logits.len()
    );
    logits.len() / classes
}

/// Softmax cross-entropy, mean over the batch, with plain or Mixup targets.
pub fn cross_entropy(logits: &[f64], classes: usize, targets: &Targets) -> LossGrad {
    cross_entropy_smoothed(logits, classes, targets, 0.0)
}

/// [`cross_entropy`] against label-smoothed targets, as PaddleVideo's `BaseHead` with
/// `ls_eps = ε` trains (`label_smooth_loss`: `F.label_smooth(one_hot(y), ε)` =
/// `(1 − ε)·onehot + ε/classes`, soft-label CE, mean over the batch); with Mixup each of the
/// two labels is smoothed (`lam·CE(ã) + (1 − lam)·CE(b̃)`). ε = 0 is the plain CE, bit for bit.
pub fn cross_entropy_smoothed(
    logits: &[f64],
    classes: usize,
    targets: &Targets,
    epsilon: f64,
) -> LossGrad {
    let n = batch_size(logits, classes);
    assert_eq!(targets.len(), n, "one target per logits row");
    let log_p = log_softmax_rows(logits, classes);
    let inv_n = 1.0 / n as f64;
    let mut grad: Vec<f64> = log_p.iter().map(|l| l.exp() * inv_n).collect();
    let mut loss = 0.0;
    let mut take = |i: usize, label: usize, weight: f64, grad: &mut [f64]| {
        assert!(
            label < classes,
            "label {label} out of range ({classes} classes)"
        );
        let weight = if epsilon == 0.0 {
            weight
        } else {
            weight * (1.0 - epsilon)
        };
        loss -= weight * log_p[i * classes + label];
        grad[i * classes + label] -= weight * inv_n;
    };
    match targets {
        Targets::Hard(y) => {
            for (i, &label) in y.iter().enumerate() {
                take(i, label, 1.0, &mut grad);
            }
        }
        Targets::Mixup { a, b, lam } => {
            for i in 0..n {
                take(i, a[i], *lam, &mut grad);
                take(i, b[i], 1.0 - lam, &mut grad);
            }
        }
    }
    if epsilon != 0.0 {
        // The uniform part, ε/classes on every class (the Mixup weights sum to 1).
        let share = epsilon / classes as f64;
        for (g, l) in grad.iter_mut().zip(&log_p) {
            loss -= share * l;
            *g -= share * inv_n;
        }
    }
    LossGrad {
        loss: loss * inv_n,
        grad,
    }
}

/// PaddleVideo's `DistillationDMLLoss` between student and teacher logits.
#[derive(Clone, Debug, PartialEq)]
pub struct DmlTerm {
    pub loss: f64,
    pub grad_student: Vec<f64>,
    pub grad_teacher: Vec<f64>,
}

/// `(1/N) Σ_n Σ_c ½[p_t·ln((p_t+ε)/(p_s+ε)) + p_s·ln((p_s+ε)/(p_t+ε))]`, gradients to both.
pub fn dml_term(student: &[f64], teacher: &[f64], classes: usize) -> DmlTerm {
    let n = batch_size(student, classes);
    assert_eq!(
        student.len(),
        teacher.len(),
        "student and teacher logits differ in shape"
    );
    let ps = softmax_rows(student, classes);
    let pt = softmax_rows(teacher, classes);
    let inv_n = 1.0 / n as f64;
    let mut loss = 0.0;
    // d loss / d p (before the softmax Jacobian), per element.
    let mut gps = vec![0.0; ps.len()];
    let mut gpt = vec![0.0; pt.len()];
    for k in 0..ps.len() {
        let (s, t) = (ps[k], pt[k]);
        let ls = (s + DML_EPS).ln();
        let lt = (t + DML_EPS).ln();
        loss += 0.5 * (t * (lt - ls) + s * (ls - lt));
        gps[k] = 0.5 * inv_n * (-t / (s + DML_EPS) + (ls - lt) + s / (s + DML_EPS));
        gpt[k] = 0.5 * inv_n * (-s / (t + DML_EPS) + (lt - ls) + t / (t + DML_EPS));
    }
    DmlTerm {
        loss: loss * inv_n,
        grad_student: softmax_backward(&ps, &gps, classes),
        grad_teacher: softmax_backward(&pt, &gpt, classes),
    }
}

/// `dL/dz_j = p_j (g_j − Σ_c p_c g_c)` per row.
fn softmax_backward(p: &[f64], g: &[f64], classes: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(p.len());
    for (pr, gr) in p.chunks_exact(classes).zip(g.chunks_exact(classes)) {
        let dot: f64 = pr.iter().zip(gr).map(|(a, b)| a * b).sum();
        out.extend(pr.iter().zip(gr).map(|(a, b)| a * (b - dot)));
    }
    out
}

/// Weights of the DML terms (PaddleVideo's configs: all 1.0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DmlWeights {
    pub ce_student: f64,
    pub ce_teacher: f64,
    pub dml: f64,
}

impl Default for DmlWeights {
    fn default() -> Self {
        Self {
            ce_student: 1.0,
            ce_teacher: 1.0,
            dml: 1.0,
        }
    }
}

/// The DML training loss: total, each (unweighted) term, gradients to both models' logits.
#[derive(Clone, Debug, PartialEq)]
pub struct DmlLoss {
    pub total: f64,
    pub ce_student: f64,
    pub ce_teacher: f64,
    pub dml: f64,
    pub grad_student: Vec<f64>,
    pub grad_teacher: Vec<f64>,
}

/// PaddleVideo's `get_loss(..., 'Train')` for the PP-TSMv2 DML configs:
/// `w·CE(student, y) + w·CE(teacher, y) + w·DML(student, teacher)`.
pub fn dml_loss(
    student: &[f64],
    teacher: &[f64],
    classes: usize,
    targets: &Targets,
    weights: DmlWeights,
) -> DmlLoss {
    let ce_s = cross_entropy(student, classes, targets);
    let ce_t = cross_entropy(teacher, classes, targets);
    let dml = dml_term(student, teacher, classes);
    let combine = |ce: &[f64], w_ce: f64, d: &[f64]| -> Vec<f64> {
        ce.iter()
            .zip(d)
            .map(|(a, b)| w_ce * a + weights.dml * b)
            .collect()
    };
    DmlLoss {
        total: weights.ce_student * ce_s.loss
            + weights.ce_teacher * ce_t.loss
            + weights.dml * dml.loss,
        ce_student: ce_s.loss,
        ce_teacher: ce_t.loss,
        dml: dml.loss,
        grad_student: combine(&ce_s.grad, weights.ce_student, &dml.grad_student),
        grad_teacher: combine(&ce_t.grad, weights.ce_teacher, &dml.grad_teacher),
    }
}

/// Hinton KD term, teacher constant: `T²·(1/N) Σ_n Σ_c p_t^T (ln p_t^T − ln p_s^T)`; gradient
/// wrt the student `T·(p_s^T − p_t^T)/N`.
pub fn kd_term(student: &[f64], teacher: &[f64], classes: usize, temperature: f64) -> LossGrad {
    let n = batch_size(student, classes);
    assert_eq!(
        student.len(),
        teacher.len(),
        "student and teacher logits differ in shape"
    );
    assert!(temperature > 0.0, "temperature must be positive");
    let scale = |z: &[f64]| z.iter().map(|v| v / temperature).collect::<Vec<_>>();
    let ls = log_softmax_rows(&scale(student), classes);
    let lt = log_softmax_rows(&scale(teacher), classes);
    let inv_n = 1.0 / n as f64;
    let mut loss = 0.0;
    let mut grad = Vec::with_capacity(ls.len());
    for (s, t) in ls.iter().zip(&lt) {
        let pt = t.exp();
        loss += pt * (t - s);
        grad.push(temperature * (s.exp() - pt) * inv_n);
    }
    LossGrad {
        loss: temperature * temperature * loss * inv_n,
        grad,
    }
}

/// Weights of classic KD's two terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KdWeights {
    pub ce: f64,
    pub kd: f64,
}

impl Default for KdWeights {
    fn default() -> Self {
        Self { ce: 1.0, kd: 1.0 }
    }
}

/// Classic KD: total, terms and the gradient wrt the student's logits (the teacher is frozen).
#[derive(Clone, Debug, PartialEq)]
pub struct KdLoss {
    pub total: f64,
    pub ce: f64,
    pub kd: f64,
    pub grad_student: Vec<f64>,
}

pub fn kd_loss(
    student: &[f64],
    teacher: &[f64],
    classes: usize,
    targets: &Targets,
    temperature: f64,
    weights: KdWeights,
) -> KdLoss {
    let ce = cross_entropy(student, classes, targets);
    let kd = kd_term(student, teacher, classes, temperature);
    KdLoss {
        total: weights.ce * ce.loss + weights.kd * kd.loss,
        ce: ce.loss,
        kd: kd.loss,
        grad_student: ce
            .grad
            .iter()
            .zip(&kd.grad)
            .map(|(a, b)| weights.ce * a + weights.kd * b)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label smoothing: Paddle's soft-label CE against `(1 − ε)·onehot + ε/K` (written out
    /// here), its gradient `(p − q)/N` by central differences; ε = 0 is the plain CE.
    #[test]
    fn smoothed_cross_entropy_is_the_soft_label_loss() {
        let classes = 4;
        let z: Vec<f64> = (0..8).map(|i| ((i * 5 % 7) as f64 - 3.0) * 0.5).collect();
        let targets = Targets::Mixup {
            a: vec![2, 0],
            b: vec![1, 3],
            lam: 0.6,
        };
        let eps = 0.1;
        let got = cross_entropy_smoothed(&z, classes, &targets, eps);
        let log_p = log_softmax_rows(&z, classes);
        let soft = |row: usize, label: usize| -> f64 {
            (0..classes)
                .map(|j| {
                    let q = if j == label { 1.0 - eps } else { 0.0 } + eps / classes as f64;
                    -q * log_p[row * classes + j]
                })
                .sum()
        };
        let expected =
            (0.6 * soft(0, 2) + 0.4 * soft(0, 1) + 0.6 * soft(1, 0) + 0.4 * soft(1, 3)) / 2.0;
        assert!(
            (got.loss - expected).abs() < 1e-12,
            "{} vs {expected}",
            got.loss
        );
        let h = 1e-6;
        for j in 0..z.len() {
            let (mut up, mut down) = (z.clone(), z.clone());
            up[j] += h;
            down[j] -= h;
            let num = (cross_entropy_smoothed(&up, classes, &targets, eps).loss
                - cross_entropy_smoothed(&down, classes, &targets, eps).loss)
                / (2.0 * h);
            assert!(
                (num - got.grad[j]).abs() < 1e-8,
                "d[{j}]: {num} vs {}",
                got.grad[j]
            );
        }
        assert_eq!(
            cross_entropy_smoothed(&z, classes, &targets, 0.0),
            cross_entropy(&z, classes, &targets)
        );
        assert_ne!(got.loss, cross_entropy(&z, classes, &targets).loss);
    }

    /// Central differences agree with the analytic gradients of every loss.
    #[test]
    fn gradients_match_finite_differences() {
        let classes = 5;
        let s: Vec<f64> = (0..10).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.4).collect();
        let t: Vec<f64> = (0..10).map(|i| ((i * 5 % 13) as f64 - 6.0) * 0.3).collect();
        let targets = Targets::Mixup {
            a: vec![1, 3],
            b: vec![4, 0],
            lam: 0.7,
        };
        let f = |s: &[f64], t: &[f64]| dml_loss(s, t, classes, &targets, DmlWeights::default());
        let k = |s: &[f64]| kd_loss(s, &t, classes, &targets, 4.0, KdWeights::default());
        let base = f(&s, &t);
        let kd_base = k(&s);
        let h = 1e-6;
        for j in 0..s.len() {
            let mut sp = s.clone();
            let mut sm = s.clone();
            sp[j] += h;
            sm[j] -= h;
            let num = (f(&sp, &t).total - f(&sm, &t).total) / (2.0 * h);
            assert!((num - base.grad_student[j]).abs() < 1e-7, "dml ds[{j}]");
            let num = (k(&sp).total - k(&sm).total) / (2.0 * h);
            assert!((num - kd_base.grad_student[j]).abs() < 1e-7, "kd ds[{j}]");
            let mut tp = t.clone();
            let mut tm = t.clone();
            tp[j] += h;
            tm[j] -= h;
            let num = (f(&s, &tp).total - f(&s, &tm).total) / (2.0 * h);
            assert!((num - base.grad_teacher[j]).abs() < 1e-7, "dml dt[{j}]");
        }
    }
}
