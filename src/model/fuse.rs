//! Training form -> inference form, on the weights themselves (host f32, computed in f64):
//! merge each rep block's depthwise branches into one 5x5 conv with bias (PaddleVideo's
//! `RepDepthwiseSeparable.rep()`), and fold every remaining BatchNorm into its convolution.
//!
//! Works on key patterns, so it serves both architectures: `P.conv.weight` + `P.bn.*` (PP-TSMv2)
//! and `P._conv.weight` + `P._batch_norm.*` (ResNet) become `P.conv.{weight,bias}` /
//! `P._conv.{weight,bias}`; `B.dw_conv_list.{k}.*` become `B.dw_conv.{weight,bias}`.

use super::layers::BN_EPSILON;
use super::params::{ParamStore, ParamTensor};

/// A conv followed by a BatchNorm, folded: `W' = W * g / s`, `b' = beta - mean * g / s` with
/// `s = sqrt(var + eps)`, per output channel.
struct Folded {
    shape: Vec<usize>,
    weight: Vec<f64>,
    bias: Vec<f64>,
}

fn fold(store: &ParamStore, conv: &str, bn: &str) -> Result<Folded, String> {
    let get = |key: String| store.get(&key).ok_or(format!("missing {key}"));
    let w = get(format!("{conv}.weight"))?;
    let gamma = get(format!("{bn}.weight"))?;
    let beta = get(format!("{bn}.bias"))?;
    let mean = get(format!("{bn}._mean"))?;
    let var = get(format!("{bn}._variance"))?;
    let out = w.shape.first().copied().unwrap_or(0);
    let per_out = w.data.len().checked_div(out).unwrap_or(0);
    for (name, t) in [
        ("weight", gamma),
        ("bias", beta),
        ("_mean", mean),
        ("_variance", var),
    ] {
        if t.shape != [out] {
            return Err(format!(
                "{bn}.{name} has shape {:?}, its conv has {out} output channels",
                t.shape
            ));
        }
    }
    let mut weight = Vec::with_capacity(w.data.len());
    let mut bias = Vec::with_capacity(out);
    for o in 0..out {
        let scale = f64::from(gamma.data[o]) / (f64::from(var.data[o]) + BN_EPSILON).sqrt();
        weight.extend(
            w.data[o * per_out..(o + 1) * per_out]
                .iter()
                .map(|&v| f64::from(v) * scale),
        );
        bias.push(f64::from(beta.data[o]) - f64::from(mean.data[o]) * scale);
    }
    Ok(Folded {
        shape: w.shape.clone(),
        weight,
        bias,
    })
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The merged depthwise conv of a rep block `prefix` (`prefix.dw_conv_list.{k}`), zero-padding
/// smaller kernels to the largest, centred.
fn merge_rep(store: &ParamStore, prefix: &str) -> Result<Folded, String> {
    let mut branches = Vec::new();
    for k in 0.. {
        let branch = format!("{prefix}.dw_conv_list.{k}");
        if !store.contains(&format!("{branch}.conv.weight")) {
            break;
        }
        branches.push(fold(
            store,
            &format!("{branch}.conv"),
            &format!("{branch}.bn"),
        )?);
    }
    let size = branches
        .iter()
        .filter_map(|b| b.shape.get(3).copied())
        .max()
        .unwrap_or(0);
    let channels = branches
        .first()
        .and_then(|b| b.shape.first().copied())
        .unwrap_or(0);
    let mut weight = vec![0.0f64; channels * size * size];
    let mut bias = vec![0.0f64; channels];
    for b in &branches {
        let (Some(&c), Some(&k)) = (b.shape.first(), b.shape.get(3)) else {
            continue;
        };
        if c != channels || b.shape != [c, 1, k, k] {
            return Err(format!(
                "{prefix}: rep branches are not depthwise convs of {channels} channels"
            ));
        }
        let pad = (size - k) / 2;
        for ch in 0..c {
            for y in 0..k {
                for x in 0..k {
                    weight[(ch * size + y + pad) * size + x + pad] +=
                        b.weight[(ch * k + y) * k + x];
                }
            }
            bias[ch] += b.bias[ch];
        }
    }
    Ok(Folded {
        shape: vec![channels, 1, size, size],
        weight,
        bias,
    })
}

/// PaddleVideo's `rep()` on a canonical training-form store: each rep block's branches become
/// its merged `dw_conv.{weight,bias}` (where the first branch was); BatchNorms stay. This is the
/// form `export_model.py` saves in an inference model.
pub fn rep_store(store: &ParamStore) -> Result<ParamStore, String> {
    let mut repped = ParamStore::new();
    for (key, tensor) in store.iter() {
        // The first branch's conv weight stands for the merged conv; the rest of the branches
        // and the unused training-form dw_conv disappear.
        if let Some(prefix) = key.strip_suffix(".dw_conv_list.0.conv.weight") {
            let merged = merge_rep(store, prefix)?;
            insert(&mut repped, &format!("{prefix}.dw_conv"), merged);
            continue;
        }
        if key.contains(".dw_conv_list.") {
            continue;
        }
        let unused_training_dw = key
            .strip_suffix(".dw_conv.weight")
            .or_else(|| key.strip_suffix(".dw_conv.bias"))
            .is_some_and(|prefix| store.contains(&format!("{prefix}.dw_conv_list.0.conv.weight")));
        if !unused_training_dw {
            repped.insert(key, tensor.clone());
        }
    }
    Ok(repped)
}

/// The fused form of a canonical training-form store (or of its [`rep_store`]): rep blocks
/// merged, every BatchNorm folded into its convolution. Keys keep their order; each folded conv
/// gains a bias key right after its weight.
pub fn fuse_store(store: &ParamStore) -> Result<ParamStore, String> {
    let repped = rep_store(store)?;
    let mut fused = ParamStore::new();
    for (key, tensor) in repped.iter() {
        let bn_pair = [
            (".conv.weight", ".conv", ".bn"),
            ("._conv.weight", "._conv", "._batch_norm"),
        ]
        .into_iter()
        .find_map(|(suffix, conv, bn)| {
            let p = key.strip_suffix(suffix)?;
            repped
                .contains(&format!("{p}{bn}.weight"))
                .then(|| (format!("{p}{conv}"), format!("{p}{bn}")))
        });
        if let Some((conv, bn)) = bn_pair {
            insert(&mut fused, &conv, fold(&repped, &conv, &bn)?);
            continue;
        }
        if key.contains(".bn.") || key.contains("._batch_norm.") {
            continue;
        }
        fused.insert(key, tensor.clone());
    }
    Ok(fused)
}

fn insert(store: &mut ParamStore, conv: &str, folded: Folded) {
    let channels = folded.bias.len();
    store.insert(
        format!("{conv}.weight"),
        ParamTensor {
            shape: folded.shape,
            data: to_f32(&folded.weight),
        },
    );
    store.insert(
        format!("{conv}.bias"),
        ParamTensor {
            shape: vec![channels],
            data: to_f32(&folded.bias),
        },
    );
}
