//! Which network a checkpoint holds, read from its keys and shapes (canonical layout:
//! `backbone.*`, `head.*`).

use serde::Serialize;

use super::params::ParamStore;
use super::resnet_tsm::stage_depths;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// PP-TSMv2 (`PPTSM_v2`, PP-LCNetV2 base).
    PptsmV2,
    /// PP-TSM (`ResNetTweaksTSM` + `ppTSMHead`).
    PptsmResnet,
    /// PP-TSM MobileNetV2 (`PPTSM_MobileNetV2`, classifier in the backbone).
    PptsmMv2,
    /// PP-TSM MobileNetV3 (`PPTSM_MobileNetV3`, large, classifier in the backbone).
    PptsmMv3,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::PptsmV2 => "pptsm_v2",
            ModelKind::PptsmResnet => "pptsm_resnet",
            ModelKind::PptsmMv2 => "pptsm_mv2",
            ModelKind::PptsmMv3 => "pptsm_mv3",
        }
    }

    /// The width of the pre-fc features (the classifier's input).
    pub fn feature_dim(self) -> usize {
        match self {
            ModelKind::PptsmV2 => super::pptsm_v2::CLASS_EXPAND,
            ModelKind::PptsmResnet => super::resnet_tsm::FEATURE_CHANNELS,
            ModelKind::PptsmMv2 => super::pptsm_mv2::FEATURE_CHANNELS,
            ModelKind::PptsmMv3 => super::pptsm_mv3::FEATURE_CHANNELS,
        }
    }

    /// The checkpoint keys of the classifier (weight, bias): PP-TSM ResNet's is its head's,
    /// the others keep it in the backbone.
    pub fn fc_keys(self) -> (&'static str, &'static str) {
        match self {
            ModelKind::PptsmV2 | ModelKind::PptsmMv3 => ("backbone.fc.weight", "backbone.fc.bias"),
            ModelKind::PptsmResnet => ("head.fc.weight", "head.fc.bias"),
            ModelKind::PptsmMv2 => ("backbone.out.weight", "backbone.out.bias"),
        }
    }
}

/// Training form: BatchNorm layers and rep branches as PaddleVideo trains them. Fused form:
/// BatchNorm folded into the convolutions and the rep branches merged (what inference runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    Training,
    Fused,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Training => "training",
            Form::Fused => "fused",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Arch {
    pub model: ModelKind,
    /// ResNet depth (50, 101, 152); `None` for PP-TSMv2.
    pub depth: Option<usize>,
    /// The num_seg the temporal attention fixes; `None` when any num_seg works.
    pub num_seg: Option<usize>,
    pub num_classes: usize,
    pub attention: bool,
    pub form: Form,
}

impl Arch {
    /// A short human name, e.g. "PP-TSMv2 16f+att" or "PP-TSM R50".
    pub fn display_name(&self) -> String {
        match self.model {
            ModelKind::PptsmV2 => match self.num_seg {
                Some(t) => format!("PP-TSMv2 {t}f+att"),
                None => "PP-TSMv2".to_string(),
            },
            ModelKind::PptsmResnet => format!("PP-TSM R{}", self.depth.unwrap_or(50)),
            ModelKind::PptsmMv2 => "PP-TSM MobileNetV2".to_string(),
            ModelKind::PptsmMv3 => "PP-TSM MobileNetV3".to_string(),
        }
    }
}

fn shape<'a>(store: &'a ParamStore, key: &str) -> Option<&'a [usize]> {
    store.get(key).map(|t| t.shape.as_slice())
}

/// Reads the architecture from a canonical store. The error says what was looked for.
pub fn detect(store: &ParamStore) -> Result<Arch, String> {
    let has_bn = store
        .names()
        .any(|k| k.contains(".bn.") || k.contains("._batch_norm."));
    let form = if has_bn { Form::Training } else { Form::Fused };

    if store.contains("backbone.stem.0.conv.weight") {
        let num_classes = match shape(store, "backbone.fc.weight") {
            Some([1280, c]) if *c > 0 => *c,
            Some(other) => {
                return Err(format!(
                    "backbone.fc.weight has shape {other:?}, PP-TSMv2 needs [1280, classes] with at least one class"
                ));
            }
            None => return Err("PP-TSMv2 checkpoint without backbone.fc.weight".into()),
        };
        let num_seg = match shape(store, "backbone.global_attention.fc.weight") {
            Some([t, t2]) if t == t2 && *t > 0 => Some(*t),
            Some(other) => {
                return Err(format!(
                    "backbone.global_attention.fc.weight has shape {other:?}, expected [T, T]"
                ));
            }
            None => None,
        };
        return Ok(Arch {
            model: ModelKind::PptsmV2,
            depth: None,
            num_seg,
            num_classes,
            attention: num_seg.is_some(),
            form,
        });
    }

    if store.contains("backbone.conv1_1._conv.weight") {
        let blocks_in_stage = |s: usize| {
            (0..)
                .take_while(|i| store.contains(&block_key(s, *i)))
                .count()
        };
        let counts = [0, 1, 2, 3].map(blocks_in_stage);
        let depth = [50, 101, 152]
            .into_iter()
            .find(|&d| stage_depths(d) == Some(counts))
            .ok_or_else(|| {
                format!("ResNet stages have {counts:?} bottleneck blocks; supported depths are 50, 101, 152")
            })?;
        let num_classes = match shape(store, "head.fc.weight") {
            Some([2048, c]) if *c > 0 => *c,
            Some(other) => {
                return Err(format!(
                    "head.fc.weight has shape {other:?}, PP-TSM needs [2048, classes] with at least one class"
                ));
            }
            None => return Err("PP-TSM checkpoint without head.fc.weight".into()),
        };
        return Ok(Arch {
            model: ModelKind::PptsmResnet,
            depth: Some(depth),
            num_seg: None,
            num_classes,
            attention: false,
            form,
        });
    }

    for (model, stem, (fc, _)) in [
        (ModelKind::PptsmMv2, MV2_STEM, ModelKind::PptsmMv2.fc_keys()),
        (ModelKind::PptsmMv3, MV3_MARK, ModelKind::PptsmMv3.fc_keys()),
    ] {
        if !store.contains(stem) {
            continue;
        }
        let dim = model.feature_dim();
        let name = Arch {
            model,
            depth: None,
            num_seg: None,
            num_classes: 0,
            attention: false,
            form,
        }
        .display_name();
        let num_classes = match shape(store, fc) {
            Some([d, c]) if *d == dim && *c > 0 => *c,
            Some(other) => {
                return Err(format!(
                    "{fc} has shape {other:?}, {name} needs [{dim}, classes] with at least one class"
                ));
            }
            None => return Err(format!("{name} checkpoint without {fc}")),
        };
        return Ok(Arch {
            model,
            depth: None,
            num_seg: None,
            num_classes,
            attention: false,
            form,
        });
    }

    Err(format!(
        "not a PP-TSMv2, PP-TSM ResNet or PP-TSM MobileNet checkpoint: none of \
         backbone.stem.0.conv.weight, backbone.conv1_1._conv.weight, {MV2_STEM} or {MV3_MARK} \
         is present"
    ))
}

/// PP-TSM MobileNetV2's stem conv, present in both forms.
const MV2_STEM: &str = "backbone.conv1._conv.weight";
/// PP-TSM MobileNetV3's penultimate conv, present in both forms (its stem `conv.conv` is too
/// generic a name to tell it by).
const MV3_MARK: &str = "backbone.last_second_conv.conv.weight";

/// The key of a bottleneck's first conv, present in both forms.
fn block_key(stage: usize, block: usize) -> String {
    format!("backbone.bb_{stage}_{block}.conv0._conv.weight")
}
