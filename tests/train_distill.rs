//! The training losses against `train/distill.npz` (PaddleVideo's DML/CE losses on fixed
//! logits, and a numpy KD): every term and gradient within 1e-5 relative.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::fixture;
use kineto::npy::{NpyArray, read_npz_f64};
use kineto::train::losses::{
    DmlWeights, KdWeights, Targets, cross_entropy, dml_loss, dml_term, kd_loss, kd_term,
};

struct Fx(Vec<(String, NpyArray<f64>)>);

impl Fx {
    fn load() -> Self {
        let path = fixture("train/distill.npz");
        Fx(read_npz_f64(&path).unwrap_or_else(|e| panic!("{e}")))
    }
    fn get(&self, key: &str) -> &NpyArray<f64> {
        &self
            .0
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("fixture array {key} missing"))
            .1
    }
    /// The float64 scalar when stored, else the float32 one.
    fn scalar(&self, key: &str) -> f64 {
        let f64_key = format!("{key}_f64");
        if self.0.iter().any(|(k, _)| *k == f64_key) {
            self.get(&f64_key).data[0]
        } else {
            self.get(key).data[0]
        }
    }
}

const TOL: f64 = 1e-5;

fn check_scalar(what: &str, ours: f64, reference: f64) {
    let rel = (ours - reference).abs() / reference.abs().max(1e-30);
    assert!(
        rel <= TOL,
        "{what}: ours {ours}, reference {reference}, rel {rel:e}"
    );
}

/// Max abs difference relative to max |ref| (an all-zero reference must be matched to 1e-9).
fn check_grad(what: &str, ours: &[f64], reference: &[f64]) {
    assert_eq!(ours.len(), reference.len(), "{what}: length");
    let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(reference)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    if scale == 0.0 {
        assert!(
            diff <= 1e-9,
            "{what}: reference is zero, ours differs by {diff:e}"
        );
    } else {
        assert!(
            diff / scale <= TOL,
            "{what}: max diff {diff:e} vs max|ref| {scale:e} (rel {:e})",
            diff / scale
        );
    }
}

struct Case {
    s: Vec<f64>,
    t: Vec<f64>,
    y: Vec<usize>,
    classes: usize,
}

fn case(fx: &Fx) -> Case {
    let s = fx.get("student_logits");
    let t = fx.get("teacher_logits");
    let y = fx.get("labels");
    assert_eq!(s.shape, vec![4, 400]);
    assert_eq!(t.shape, s.shape);
    let y: Vec<usize> = y.data.iter().map(|v| *v as usize).collect();
    assert_eq!(y, vec![50, 84, 289, 388], "labels as the README gives them");
    Case {
        s: s.data.clone(),
        t: t.data.clone(),
        y,
        classes: 400,
    }
}

#[test]
fn cross_entropy_terms_match_paddle() {
    let fx = Fx::load();
    let c = case(&fx);
    let hard = Targets::Hard(c.y.clone());
    let ce_s = cross_entropy(&c.s, c.classes, &hard);
    let ce_t = cross_entropy(&c.t, c.classes, &hard);
    check_scalar("ce_student", ce_s.loss, fx.scalar("ce_student"));
    check_scalar("ce_teacher", ce_t.loss, fx.scalar("ce_teacher"));
    check_scalar("total_val", ce_s.loss, fx.scalar("total_val"));
    check_scalar("val_ce_student", ce_s.loss, fx.scalar("val_ce_student"));
    check_grad(
        "grad_s.ce_student",
        &ce_s.grad,
        &fx.get("grad_s.ce_student").data,
    );
    check_grad(
        "grad_t.ce_teacher",
        &ce_t.grad,
        &fx.get("grad_t.ce_teacher").data,
    );
    check_grad(
        "grad_s.total_val",
        &ce_s.grad,
        &fx.get("grad_s.total_val").data,
    );
    let zeros = vec![0.0; c.s.len()];
    check_grad(
        "grad_t.ce_student",
        &zeros,
        &fx.get("grad_t.ce_student").data,
    );
    check_grad(
        "grad_s.ce_teacher",
        &zeros,
        &fx.get("grad_s.ce_teacher").data,
    );
    check_grad("grad_t.total_val", &zeros, &fx.get("grad_t.total_val").data);
}

#[test]
fn dml_matches_paddle() {
    let fx = Fx::load();
    let c = case(&fx);
    let term = dml_term(&c.s, &c.t, c.classes);
    check_scalar("dml", term.loss, fx.scalar("dml"));
    check_grad("grad_s.dml", &term.grad_student, &fx.get("grad_s.dml").data);
    check_grad("grad_t.dml", &term.grad_teacher, &fx.get("grad_t.dml").data);

    let hard = Targets::Hard(c.y.clone());
    let total = dml_loss(&c.s, &c.t, c.classes, &hard, DmlWeights::default());
    check_scalar("total_train", total.total, fx.scalar("total_train"));
    check_scalar(
        "ce_student (in total)",
        total.ce_student,
        fx.scalar("ce_student"),
    );
    check_scalar(
        "ce_teacher (in total)",
        total.ce_teacher,
        fx.scalar("ce_teacher"),
    );
    check_scalar("dml (in total)", total.dml, fx.scalar("dml"));
    check_grad(
        "grad_s.total_train",
        &total.grad_student,
        &fx.get("grad_s.total_train").data,
    );
    check_grad(
        "grad_t.total_train",
        &total.grad_teacher,
        &fx.get("grad_t.total_train").data,
    );
}

#[test]
fn dml_with_mixup_matches_paddle() {
    let fx = Fx::load();
    let c = case(&fx);
    let b: Vec<usize> = [1, 2, 3, 0].iter().map(|&i| c.y[i]).collect();
    let mix = Targets::Mixup {
        a: c.y.clone(),
        b,
        lam: 0.7,
    };
    let total = dml_loss(&c.s, &c.t, c.classes, &mix, DmlWeights::default());
    check_scalar(
        "total_train_mixup",
        total.total,
        fx.scalar("total_train_mixup"),
    );
    check_scalar("dml (mixup run)", total.dml, fx.scalar("dml"));
    check_grad(
        "grad_s.total_train_mixup",
        &total.grad_student,
        &fx.get("grad_s.total_train_mixup").data,
    );
    check_grad(
        "grad_t.total_train_mixup",
        &total.grad_teacher,
        &fx.get("grad_t.total_train_mixup").data,
    );
}

#[test]
fn kd_at_t4_matches_numpy() {
    let fx = Fx::load();
    let c = case(&fx);
    let kd = kd_term(&c.s, &c.t, c.classes, 4.0);
    check_scalar("kd_T4", kd.loss, fx.scalar("kd_T4"));
    check_grad("grad_s.kd_T4", &kd.grad, &fx.get("grad_s.kd_T4").data);
    // The combined KD loss is CE + KD with their gradients summed.
    let hard = Targets::Hard(c.y.clone());
    let both = kd_loss(&c.s, &c.t, c.classes, &hard, 4.0, KdWeights::default());
    check_scalar(
        "kd total",
        both.total,
        fx.scalar("ce_student") + fx.scalar("kd_T4"),
    );
    let expected: Vec<f64> = fx
        .get("grad_s.ce_student")
        .data
        .iter()
        .zip(&fx.get("grad_s.kd_T4").data)
        .map(|(a, b)| a + b)
        .collect();
    check_grad("kd total grad", &both.grad_student, &expected);
}
