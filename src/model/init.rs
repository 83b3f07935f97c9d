//! Random weights for a given architecture (benchmarks and tests): He-uniform convs, identity
//! BatchNorms, zero biases, from a seeded generator, so timings run on realistic magnitudes
//! without any download.

use burn::tensor::Device;

use super::load::store_from_module;
use super::params::{ParamStore, ParamTensor};
use super::{Arch, Form, Recognizer, paddle_key};

/// SplitMix64: tiny, seedable, good enough for weights.
struct SplitMix(u64);

impl SplitMix {
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A canonical store for `arch` (in `arch.form`) filled with seeded random weights.
pub fn random_store(arch: Arch, seed: u64) -> ParamStore {
    // The skeleton's key set and shapes are the model's own: build it on the CPU and read them.
    let skeleton = match Recognizer::skeleton(arch, &Device::flex()) {
        Ok(model) => store_from_module(&model.network, |p| paddle_key(arch.model, p)),
        Err(_) => return ParamStore::new(),
    };
    let mut rng = SplitMix(seed);
    let mut store = ParamStore::new();
    for (key, t) in skeleton.iter() {
        let n = t.data.len();
        let uniform = |rng: &mut SplitMix, bound: f64| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.next_unit() * 2.0 - 1.0) * bound) as f32)
                .collect()
        };
        let data = if key.ends_with("._variance") || is_bn_scale(key) {
            vec![1.0; n]
        } else if t.shape.len() == 4 {
            let fan_in = (t.shape[1] * t.shape[2] * t.shape[3]).max(1) as f64;
            uniform(&mut rng, (6.0 / fan_in).sqrt())
        } else if t.shape.len() == 2 {
            uniform(&mut rng, (6.0 / t.shape[0].max(1) as f64).sqrt())
        } else if arch.form == Form::Fused && key.ends_with(".bias") {
            uniform(&mut rng, 0.05)
        } else {
            vec![0.0; n]
        };
        store.insert(
            key,
            ParamTensor {
                shape: t.shape.clone(),
                data,
            },
        );
    }
    store
}

fn is_bn_scale(key: &str) -> bool {
    key.ends_with(".bn.weight") || key.ends_with("._batch_norm.weight")
}
