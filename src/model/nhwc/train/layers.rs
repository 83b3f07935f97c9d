//! The training form's layers as the NHWC step holds them (read from a [`ParamStore`] by
//! canonical key, shapes checked), and the two small per-frame modules with their forward and
//! backward: squeeze-and-excitation and the temporal attention.

use rayon::prelude::*;

use super::ops::{self, BnInput, Norm, Pointwise};
use super::{Grads, NhwcTrainError, SHORTCUT_STAGE};
use crate::model::nhwc::kernels::{self, Shape};
use crate::model::params::ParamStore;

/// A parameter's values, checked against `expected` (`None` entries are free); returns the
/// values and the actual shape.
pub(super) fn param<'a>(
    store: &'a ParamStore,
    key: &str,
    expected: &[Option<usize>],
) -> Result<(&'a [f32], &'a [usize]), NhwcTrainError> {
    let t = store
        .get(key)
        .ok_or_else(|| NhwcTrainError::Missing(key.to_string()))?;
    let fits = t.shape.len() == expected.len()
        && t.shape
            .iter()
            .zip(expected)
            .all(|(&s, e)| e.is_none_or(|e| e == s))
        && t.shape.iter().all(|&s| s > 0)
        && t.data.len() == t.shape.iter().product::<usize>();
    if !fits {
        return Err(NhwcTrainError::Shape {
            key: key.to_string(),
            got: t.shape.clone(),
            expected: format!("{expected:?}"),
        });
    }
    Ok((&t.data, &t.shape))
}

pub(super) fn has_prefix(store: &ParamStore, prefix: &str) -> bool {
    store.names().any(|k| k.starts_with(prefix))
}

/// A BatchNorm's parameters and running statistics.
pub(super) struct BatchNormW {
    pub(super) gamma: Vec<f32>,
    pub(super) beta: Vec<f32>,
    pub(super) running_mean: Vec<f32>,
    pub(super) running_var: Vec<f32>,
}

impl BatchNormW {
    pub(super) fn load(store: &ParamStore, layer: &str, c: usize) -> Result<Self, NhwcTrainError> {
        let get = |name: &str| -> Result<Vec<f32>, NhwcTrainError> {
            Ok(
                param(store, &format!("backbone.{layer}.bn.{name}"), &[Some(c)])?
                    .0
                    .to_vec(),
            )
        };
        Ok(Self {
            gamma: get("weight")?,
            beta: get("bias")?,
            running_mean: get("_mean")?,
            running_var: get("_variance")?,
        })
    }

    pub(super) fn input<'a>(&'a self, z: &'a [f32], norm: &'a Norm) -> BnInput<'a> {
        BnInput {
            z,
            norm,
            gamma: &self.gamma,
            beta: &self.beta,
        }
    }
}

/// A 1x1 ConvBN + ReLU (also the stem's conv, as a product over 3x3 patches).
pub(super) struct PwLayer {
    /// PaddleVideo name without `backbone.`, e.g. `stages.2.0.pw_conv_1`.
    pub(super) name: String,
    pub(super) matrix: Pointwise,
    pub(super) bn: BatchNormW,
}

impl PwLayer {
    /// `[c_out, c_in, 1, 1]` weights, or `[c_out, 3, 3, 3]` for the stem (`c_in` 27).
    pub(super) fn load(
        store: &ParamStore,
        name: &str,
        tail: [usize; 3],
    ) -> Result<Self, NhwcTrainError> {
        let key = format!("backbone.{name}.conv.weight");
        let [a, b, c] = tail.map(Some);
        let (w, shape) = param(store, &key, &[None, a, b, c])?;
        let (c_out, c_in) = (shape[0], tail.iter().product());
        Ok(Self {
            name: name.to_string(),
            matrix: Pointwise::new(&ops::transpose(w, c_out, c_in), c_in, c_out),
            bn: BatchNormW::load(store, name, c_out)?,
        })
    }
}

/// A depthwise ConvBN (no activation of its own: the block's ReLU follows the branches' sum).
pub(super) struct DwLayer {
    pub(super) name: String,
    /// `[k * k, c]`, tap-major.
    pub(super) weight: Vec<f32>,
    pub(super) kernel: usize,
    pub(super) stride: usize,
    pub(super) bn: BatchNormW,
}

impl DwLayer {
    pub(super) fn load(
        store: &ParamStore,
        name: &str,
        c: usize,
        stride: usize,
    ) -> Result<Self, NhwcTrainError> {
        let key = format!("backbone.{name}.conv.weight");
        let (w, shape) = param(store, &key, &[Some(c), Some(1), None, None])?;
        let kernel = shape[2];
        if shape[3] != kernel || kernel % 2 == 0 {
            return Err(NhwcTrainError::Shape {
                key,
                got: shape.to_vec(),
                expected: "[c, 1, k, k] with k odd".to_string(),
            });
        }
        Ok(Self {
            name: name.to_string(),
            weight: ops::transpose(w, c, kernel * kernel),
            kernel,
            stride,
            bn: BatchNormW::load(store, name, c)?,
        })
    }
}

/// `SEModule`: per-frame channel means -> 1x1 conv, ReLU -> 1x1 conv, sigmoid -> rescale.
pub(super) struct SeW {
    pub(super) name: String,
    /// `[c, c / 4]` and `[c / 4, c]` (input x output).
    pub(super) w1: Vec<f32>,
    pub(super) b1: Vec<f32>,
    pub(super) w2: Vec<f32>,
    pub(super) b2: Vec<f32>,
    pub(super) squeezed: usize,
}

impl SeW {
    pub(super) fn load(store: &ParamStore, name: &str, c: usize) -> Result<Self, NhwcTrainError> {
        let key = |s: &str| format!("backbone.{name}.se.{s}");
        let (w1, s1) = param(
            store,
            &key("conv1.weight"),
            &[None, Some(c), Some(1), Some(1)],
        )?;
        let squeezed = s1[0];
        let sq = Some(squeezed);
        let (w2, _) = param(
            store,
            &key("conv2.weight"),
            &[Some(c), sq, Some(1), Some(1)],
        )?;
        Ok(Self {
            name: format!("{name}.se"),
            w1: ops::transpose(w1, squeezed, c),
            b1: param(store, &key("conv1.bias"), &[sq])?.0.to_vec(),
            w2: ops::transpose(w2, c, squeezed),
            b2: param(store, &key("conv2.bias"), &[Some(c)])?.0.to_vec(),
            squeezed,
        })
    }

    pub(super) fn forward(&self, act: &[f32], shape: Shape) -> SeTape {
        let means = kernels::channel_means(act, shape);
        let mut hidden = Vec::with_capacity(shape.frames * self.squeezed);
        let mut scales = Vec::with_capacity(shape.frames * shape.c);
        for mean in means.chunks_exact(shape.c) {
            let h = kernels::dense(mean, &self.w1, Some(&self.b1), self.squeezed);
            let h: Vec<f32> = h.into_iter().map(|v| v.max(0.0)).collect();
            let s = kernels::dense(&h, &self.w2, Some(&self.b2), shape.c);
            scales.extend(s.into_iter().map(kernels::sigmoid));
            hidden.extend(h);
        }
        SeTape {
            means,
            hidden,
            scales,
        }
    }

    /// From the gradient of the rescaled maps to the gradient of `act`; the parameters'
    /// gradients go to `grads`.
    pub(super) fn backward(
        &self,
        mut d: Vec<f32>,
        act: &[f32],
        shape: Shape,
        tape: &SeTape,
        grads: &mut Grads,
    ) -> Vec<f32> {
        let (c, sq) = (shape.c, self.squeezed);
        let dscale = ops::frame_channel_dots(&d, act, shape);
        let (mut dw1, mut db1) = (vec![0.0f32; c * sq], vec![0.0f32; sq]);
        let (mut dw2, mut db2) = (vec![0.0f32; sq * c], vec![0.0f32; c]);
        let mut dmeans = Vec::with_capacity(shape.frames * c);
        let frames = dscale
            .chunks_exact(c)
            .zip(tape.scales.chunks_exact(c))
            .zip(tape.hidden.chunks_exact(sq))
            .zip(tape.means.chunks_exact(c));
        for (((ds, s), h), m) in frames {
            let da2: Vec<f32> = ds.iter().zip(s).map(|(d, g)| d * g * (1.0 - g)).collect();
            outer_add(&mut dw2, h, &da2);
            ops::add_into(&mut db2, &da2);
            let da1: Vec<f32> = matvec_t(&self.w2, &da2, sq)
                .into_iter()
                .zip(h)
                .map(|(g, &hv)| if hv > 0.0 { g } else { 0.0 })
                .collect();
            outer_add(&mut dw1, m, &da1);
            ops::add_into(&mut db1, &da1);
            dmeans.extend(matvec_t(&self.w1, &da1, c));
        }
        let inv_pixels = 1.0 / (shape.h * shape.w) as f32;
        let frame_len = shape.h * shape.w * c;
        d[..shape.values()]
            .par_chunks_mut(frame_len)
            .zip(tape.scales.par_chunks(c))
            .zip(dmeans.par_chunks(c))
            .for_each(|((frame, s), dm)| {
                for px in frame.chunks_exact_mut(c) {
                    for ((v, &g), &m) in px.iter_mut().zip(s).zip(dm) {
                        *v = *v * g + m * inv_pixels;
                    }
                }
            });
        let name = &self.name;
        grads.insert(
            format!("backbone.{name}.conv1.weight"),
            ops::transpose(&dw1, c, sq),
        );
        grads.insert(format!("backbone.{name}.conv1.bias"), db1);
        grads.insert(
            format!("backbone.{name}.conv2.weight"),
            ops::transpose(&dw2, sq, c),
        );
        grads.insert(format!("backbone.{name}.conv2.bias"), db2);
        d
    }
}

/// `acc[i, j] += a[i] · b[j]`.
pub(super) fn outer_add(acc: &mut [f32], a: &[f32], b: &[f32]) {
    for (row, &av) in acc.chunks_exact_mut(b.len()).zip(a) {
        for (r, &bv) in row.iter_mut().zip(b) {
            *r += av * bv;
        }
    }
}

/// `W · v` of `w` (`[rows, v.len()]`): the input gradient of `x ↦ x · W`.
pub(super) fn matvec_t(w: &[f32], v: &[f32], rows: usize) -> Vec<f32> {
    w.chunks_exact(v.len())
        .take(rows)
        .map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum())
        .collect()
}

/// `RepDepthwiseSeparable` in the training form.
pub(super) struct BlockW {
    /// `None` for `stem.1`.
    pub(super) stage: Option<usize>,
    /// One plain branch (`dw_conv`) or the rep branches (`dw_conv_list`), summed, then ReLU.
    pub(super) dw: Vec<DwLayer>,
    pub(super) se: Option<SeW>,
    pub(super) pw: PwLayer,
    /// Stage 3's split pointwise: `pw` is `pw_conv_1`, this is `pw_conv_2`.
    pub(super) pw2: Option<PwLayer>,
    pub(super) shortcut: bool,
    /// The temporal attention and shift run on this block's input (`stages.2.0`).
    pub(super) shift_before: bool,
}

impl BlockW {
    pub(super) fn load(
        store: &ParamStore,
        name: &str,
        stage: Option<usize>,
        c_in: usize,
        stride: usize,
    ) -> Result<Self, NhwcTrainError> {
        let dw = if store.contains(&format!("backbone.{name}.dw_conv_list.0.conv.weight")) {
            let mut branches = Vec::new();
            while has_prefix(
                store,
                &format!("backbone.{name}.dw_conv_list.{}.", branches.len()),
            ) {
                let branch = format!("{name}.dw_conv_list.{}", branches.len());
                branches.push(DwLayer::load(store, &branch, c_in, stride)?);
            }
            branches
        } else {
            vec![DwLayer::load(
                store,
                &format!("{name}.dw_conv"),
                c_in,
                stride,
            )?]
        };
        let se = if has_prefix(store, &format!("backbone.{name}.se.")) {
            Some(SeW::load(store, name, c_in)?)
        } else {
            None
        };
        let (pw, pw2) = if has_prefix(store, &format!("backbone.{name}.pw_conv_1.")) {
            let first = PwLayer::load(store, &format!("{name}.pw_conv_1"), [c_in, 1, 1])?;
            let mid = first.matrix.n();
            let second = PwLayer::load(store, &format!("{name}.pw_conv_2"), [mid, 1, 1])?;
            (first, Some(second))
        } else {
            let layer = PwLayer::load(store, &format!("{name}.pw_conv"), [c_in, 1, 1])?;
            (layer, None)
        };
        let c_out = pw2.as_ref().unwrap_or(&pw).matrix.n();
        Ok(Self {
            stage,
            dw,
            se,
            pw,
            pw2,
            shortcut: stage == Some(SHORTCUT_STAGE) && stride == 1 && c_in == c_out,
            shift_before: false,
        })
    }

    pub(super) fn c_out(&self) -> usize {
        self.pw2.as_ref().unwrap_or(&self.pw).matrix.n()
    }

    /// The pointwise layers in forward order.
    pub(super) fn pointwise(&self) -> Vec<&PwLayer> {
        std::iter::once(&self.pw).chain(self.pw2.as_ref()).collect()
    }

    /// Whether the block is in the frozen prefix.
    pub(super) fn frozen(&self, frozen: usize) -> bool {
        match self.stage {
            None => frozen > 0,
            Some(s) => s < frozen,
        }
    }
}

/// `GlobalAttention` in place: each frame scaled by sigmoid(fc(its clip's per-frame means)).
/// Keeps the input, means and gates when the attention is trainable.
pub(super) fn attention_forward(
    x: &mut [f32],
    shape: Shape,
    num_seg: usize,
    weight: &[f32],
    bias: &[f32],
    trainable: bool,
) -> Option<AttentionTape> {
    let frame_len = shape.h * shape.w * shape.c;
    let means: Vec<f32> = x[..shape.values()]
        .par_chunks(frame_len)
        .map(|f| (f.iter().map(|&v| f64::from(v)).sum::<f64>() / frame_len as f64) as f32)
        .collect();
    let gates: Vec<f32> = means
        .chunks_exact(num_seg)
        .flat_map(|clip| kernels::dense(clip, weight, Some(bias), num_seg))
        .map(kernels::sigmoid)
        .collect();
    let input = trainable.then(|| x.to_vec());
    x[..shape.values()]
        .par_chunks_mut(frame_len)
        .zip(gates.par_iter())
        .for_each(|(f, &g)| f.iter_mut().for_each(|v| *v *= g));
    input.map(|input| AttentionTape {
        input,
        means,
        gates,
    })
}

pub(super) struct SeTape {
    /// `[frames, c]`, `[frames, c / 4]` (after ReLU), `[frames, c]` (after sigmoid).
    pub(super) means: Vec<f32>,
    pub(super) hidden: Vec<f32>,
    pub(super) scales: Vec<f32>,
}

pub(super) struct AttentionTape {
    pub(super) input: Vec<f32>,
    /// Per frame.
    pub(super) means: Vec<f32>,
    pub(super) gates: Vec<f32>,
}

/// From the gradient of the attention's output to that of its input; the fc's gradients go to
/// `grads`.
pub(super) fn attention_backward(
    mut d: Vec<f32>,
    shape: Shape,
    num_seg: usize,
    weight: &[f32],
    tape: AttentionTape,
    grads: &mut Grads,
) -> Vec<f32> {
    let frame_len = shape.h * shape.w * shape.c;
    let dgates: Vec<f32> = d[..shape.values()]
        .par_chunks(frame_len)
        .zip(tape.input.par_chunks(frame_len))
        .map(|(g, x)| {
            g.iter()
                .zip(x)
                .map(|(&a, &b)| f64::from(a * b))
                .sum::<f64>() as f32
        })
        .collect();
    let dlogits: Vec<f32> = dgates
        .iter()
        .zip(&tape.gates)
        .map(|(d, g)| d * g * (1.0 - g))
        .collect();
    let mut dweight = vec![0.0f32; num_seg * num_seg];
    let mut dbias = vec![0.0f32; num_seg];
    let mut dmeans = Vec::with_capacity(dlogits.len());
    for (da, m) in dlogits
        .chunks_exact(num_seg)
        .zip(tape.means.chunks_exact(num_seg))
    {
        outer_add(&mut dweight, m, da);
        ops::add_into(&mut dbias, da);
        dmeans.extend(matvec_t(weight, da, num_seg));
    }
    let inv = 1.0 / frame_len as f32;
    d[..shape.values()]
        .par_chunks_mut(frame_len)
        .zip(tape.gates.par_iter().zip(&dmeans))
        .for_each(|(g, (&gate, &dm))| {
            g.iter_mut().for_each(|v| *v = *v * gate + dm * inv);
        });
    grads.insert("backbone.global_attention.fc.weight".to_string(), dweight);
    grads.insert("backbone.global_attention.fc.bias".to_string(), dbias);
    d
}
