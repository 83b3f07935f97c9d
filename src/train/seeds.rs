//! The randomness of full fine-tuning as functions of (seed, epoch, clip / batch) rather than
//! of a stream, so that a run resumed from any checkpoint computes the same steps as an
//! uninterrupted one: the epoch's clip order, each clip's augmentation seed, each batch's Mixup.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// A 64-bit mix (SplitMix64's finaliser) of the run seed and a tuple of indices: the seed of
/// one clip's or one batch's random choices.
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut h = seed ^ 0x6b69_6e65_746f_0001;
    for &p in parts {
        h = h.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(p);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

pub const TAG_ORDER: u64 = 1;
pub const TAG_CLIP: u64 = 2;
pub const TAG_MIXUP: u64 = 3;
pub const TAG_TEACHER_HEAD: u64 = 4;

/// The epoch's clip order: a seeded shuffle that depends on (seed, epoch) only.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(derive_seed(seed, &[TAG_ORDER, epoch as u64]));
    order.shuffle(&mut rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_seeds_depend_on_seed_and_epoch_only() {
        assert_eq!(epoch_order(10, 3, 1), epoch_order(10, 3, 1));
        assert_ne!(epoch_order(10, 3, 1), epoch_order(10, 3, 2));
        assert_ne!(epoch_order(10, 3, 1), epoch_order(10, 4, 1));
        let mut sorted = epoch_order(10, 3, 1);
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(derive_seed(1, &[2, 0, 1]), derive_seed(1, &[2, 1, 0]));
    }
}
