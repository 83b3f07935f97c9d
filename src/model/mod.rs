//! PaddleVideo's recognizers (PP-TSMv2, PP-TSM ResNet, PP-TSM MobileNetV2/V3) as burn modules, built from a checkpoint's weights by name.
//!
//! Every struct field is named after PaddleVideo's attribute, so a parameter's path in the module
//! tree is its checkpoint key; `paddle_key` maps the few places where Rust needs another name.
//!
//! The weights themselves are a [`params::ParamStore`] (named f32 arrays), filled into a module
//! and read back out by [`load`]. Reading and writing them as files is `checkpoint`'s, which
//! builds on this module; nothing here knows a file format.

pub mod arch;
pub mod fuse;
pub mod init;
pub mod layers;
pub mod load;
pub mod nhwc;
pub mod params;
pub mod pptsm_mv2;
pub mod pptsm_mv3;
pub mod pptsm_v2;
pub mod resnet_tsm;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use arch::{Arch, Form, ModelKind};
use layers::Trace;
use load::{StrictLoad, load_strict, store_from_module};
use params::ParamStore;
use pptsm_mv2::PpTsmMv2;
use pptsm_mv3::PpTsmMv3;
use pptsm_v2::PpTsmV2;
use resnet_tsm::ResNetTsm;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Arch(String),
    #[error("does not fit {model}: {problems}")]
    Mismatch { model: String, problems: String },
    #[error(
        "input has shape {0:?}; the model takes [N, T, 3, H, W] or [T, 3, H, W] with H, W >= 32"
    )]
    InputShape(Vec<usize>),
    #[error(
        "this checkpoint's temporal attention fixes num_seg = {expected}; the input has {got} frames"
    )]
    NumSeg { expected: usize, got: usize },
}

/// One of the networks. (Held once per engine, so the variants' size difference is moot.)
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Network {
    V2(PpTsmV2),
    Resnet(ResNetTsm),
    Mv2(PpTsmMv2),
    Mv3(PpTsmMv3),
}

/// A PaddleVideo recognizer ready to run: `[N, T, 3, H, W]` clips -> `[N, classes]` raw logits.
#[derive(Debug, Clone)]
pub struct Recognizer {
    pub arch: Arch,
    pub network: Network,
}

/// Internal module path -> PaddleVideo key (canonical layout, `backbone.*` / `head.*`).
pub fn paddle_key(model: ModelKind, path: &str) -> String {
    match model {
        ModelKind::PptsmV2 => {
            // Strip the enum variant segment that burn's derive adds.
            let path = path.strip_prefix("V2.").unwrap_or(path);
            let renamed: Vec<&str> = path
                .split('.')
                .map(|segment| match segment {
                    "stem_conv" => "stem.0",
                    "stem_dw" => "stem.1",
                    "rep_dw" => "dw_conv",
                    other => other,
                })
                .collect();
            format!("backbone.{}", renamed.join("."))
        }
        ModelKind::PptsmResnet => {
            let path = path.strip_prefix("Resnet.").unwrap_or(path);
            if let Some(rest) = path.strip_prefix("head.") {
                return format!("head.{rest}");
            }
            let mut parts = path.splitn(4, '.');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("stages"), Some(s), Some(i), Some(rest)) => {
                    format!("backbone.bb_{s}_{i}.{rest}")
                }
                _ => format!("backbone.{path}"),
            }
        }
        ModelKind::PptsmMv2 => {
            // `blocks.{g}._first_block.*` -> `conv{g+2}._first_block.*`,
            // `blocks.{g}.rest.{j}.*` -> `conv{g+2}.conv{g+2}_{j+2}.*`.
            let path = path.strip_prefix("Mv2.").unwrap_or(path);
            let mut parts = path.splitn(3, '.');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("blocks"), Some(g), Some(rest)) => {
                    let group = g.parse::<usize>().map(|g| g + 2).unwrap_or(0);
                    match rest.strip_prefix("rest.").and_then(|r| r.split_once('.')) {
                        Some((j, tail)) => {
                            let block = j.parse::<usize>().map(|j| j + 2).unwrap_or(0);
                            format!("backbone.conv{group}.conv{group}_{block}.{tail}")
                        }
                        None => format!("backbone.conv{group}.{rest}"),
                    }
                }
                _ => format!("backbone.{path}"),
            }
        }
        ModelKind::PptsmMv3 => {
            let path = path.strip_prefix("Mv3.").unwrap_or(path);
            format!("backbone.{path}")
        }
    }
}

/// Keys a checkpoint may carry that the given form deliberately does not use: in the training
/// form, the rep blocks' `dw_conv.{weight,bias}` (only filled by PaddleVideo's `rep()`).
pub fn ignored_key(arch: &Arch, key: &str) -> bool {
    arch.model == ModelKind::PptsmV2
        && arch.form == Form::Training
        && key.starts_with("backbone.stages.")
        && (key.ends_with(".dw_conv.weight") || key.ends_with(".dw_conv.bias"))
}

impl Recognizer {
    /// A zero-weight network of this architecture.
    pub fn skeleton(arch: Arch, device: &Device) -> Result<Self, ModelError> {
        let fused = arch.form == Form::Fused;
        let network = match arch.model {
            ModelKind::PptsmV2 => {
                Network::V2(PpTsmV2::new(device, arch.num_classes, arch.num_seg, fused))
            }
            ModelKind::PptsmResnet => {
                let depth = arch.depth.unwrap_or(50);
                let net = ResNetTsm::new(device, depth, arch.num_classes, fused)
                    .ok_or_else(|| ModelError::Arch(format!("unsupported ResNet depth {depth}")))?;
                Network::Resnet(net)
            }
            ModelKind::PptsmMv2 => Network::Mv2(PpTsmMv2::new(device, arch.num_classes, fused)),
            ModelKind::PptsmMv3 => Network::Mv3(PpTsmMv3::new(device, arch.num_classes, fused)),
        };
        Ok(Self { arch, network })
    }

    /// Builds the network a canonical store describes, in the store's own form. Every key must be
    /// used (bar documented exceptions) and every parameter found with its exact shape.
    pub fn from_store(store: &ParamStore, device: &Device) -> Result<Self, ModelError> {
        let arch = arch::detect(store).map_err(ModelError::Arch)?;
        let skeleton = Self::skeleton(arch, device)?;
        let model = arch.model;
        let StrictLoad { module, problems } = load_strict(
            skeleton.network,
            store,
            device,
            |path| paddle_key(model, path),
            |key| ignored_key(&arch, key),
        );
        if !problems.is_empty() {
            return Err(ModelError::Mismatch {
                model: arch.display_name(),
                problems: summarize(&problems),
            });
        }
        Ok(Self {
            arch,
            network: module,
        })
    }

    /// The store this network was loaded from (canonical keys, file order not kept).
    pub fn to_store(&self) -> ParamStore {
        let model = self.arch.model;
        store_from_module(&self.network, |path| paddle_key(model, path))
    }

    /// Checks a clip batch shape `[N, T, 3, H, W]` before it reaches burn.
    pub fn check_input(&self, dims: &[usize]) -> Result<(), ModelError> {
        let ok = dims.len() == 5
            && dims[0] > 0
            && dims[1] > 0
            && dims[2] == 3
            && dims[3] >= 32
            && dims[4] >= 32;
        if !ok {
            return Err(ModelError::InputShape(dims.to_vec()));
        }
        if let Some(expected) = self.arch.num_seg
            && dims[1] != expected
        {
            return Err(ModelError::NumSeg {
                expected,
                got: dims[1],
            });
        }
        Ok(())
    }

    /// Raw logits `[N, classes]`. Call `check_input` first: burn panics on bad shapes.
    pub fn forward(&self, clips: Tensor<5>) -> Tensor<2> {
        self.forward_traced(clips, &mut Trace::off())
    }

    /// The pooled pre-fc features `[N, C]` (C = 1280 for PP-TSMv2 and the MobileNets, 2048 for ResNet): what
    /// the classifier sees. Call `check_input` first.
    pub fn features(&self, clips: Tensor<5>) -> Tensor<2> {
        let [n, t, c, h, w] = clips.dims();
        let frames: Tensor<4> = clips.reshape([n * t, c, h, w]);
        let trace = &mut Trace::off();
        match &self.network {
            Network::V2(net) => net.features(frames, t, trace),
            Network::Resnet(net) => net.features(frames, t, trace),
            Network::Mv2(net) => net.features(frames, t, trace),
            Network::Mv3(net) => net.features(frames, t, trace),
        }
    }

    pub fn forward_traced(&self, clips: Tensor<5>, trace: &mut Trace) -> Tensor<2> {
        let [n, t, c, h, w] = clips.dims();
        let frames: Tensor<4> = clips.reshape([n * t, c, h, w]);
        match &self.network {
            Network::V2(net) => net.forward(frames, t, trace),
            Network::Resnet(net) => net.forward(frames, t, trace),
            Network::Mv2(net) => net.forward(frames, t, trace),
            Network::Mv3(net) => net.forward(frames, t, trace),
        }
    }
}

/// The checkpoint keys of `arch`'s network (in `arch.form`) in module order, which is
/// PaddleVideo's state-dict order. Empty when the architecture cannot be built.
/// (PaddleVideo's `PPTSM_v2` creates its temporal attention last, after the fc, so its keys go
/// to the end.)
pub fn key_order(arch: Arch) -> Vec<String> {
    let Ok(model) = Recognizer::skeleton(arch, &Device::flex()) else {
        return Vec::new();
    };
    let store = model.to_store();
    let (last, mut keys): (Vec<String>, Vec<String>) = store
        .names()
        .map(str::to_string)
        .partition(|k| k.starts_with("backbone.global_attention."));
    keys.extend(last);
    keys
}

/// One line from a list of problems: the first few, then a count.
fn summarize(problems: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut line = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        line.push_str(&format!(" (and {} more)", problems.len() - SHOWN));
    }
    line
}
