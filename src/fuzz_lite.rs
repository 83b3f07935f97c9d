//! Fuzz-lite for the readers of files users bring (`.pdparams`, safetensors, `.npy`, `.npz`):
//! deterministic mutations of valid seeds, run on stable Rust in every `cargo test`. Each
//! reader's test asserts that every mutant is parsed or refused with a one-line error, never a
//! panic. (`tests/fuzz/` holds the cargo-fuzz targets for longer, coverage-guided runs.)

use std::panic::{AssertUnwindSafe, catch_unwind};

/// A small deterministic generator (xorshift64).
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four random edits of `data`: bit flips, interesting bytes, insertions, deletions,
/// truncation, repeated chunks, a length field after one of `length_markers` overwritten with
/// an extreme value, or a run of ASCII digits (a size or shape in a text header) replaced by
/// an extreme number.
pub fn mutate(rng: &mut XorShift, data: &mut Vec<u8>, length_markers: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = [0, 1, 0x7f, 0x80, 0xff, b'(', b'.', b'h', b'R', b'b'][rng.below(10)];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(16)).min(len - i);
                data.drain(i..i + n);
            }
            4 => {
                let from = rng.below(len + 1);
                let found = (data.get(from..))
                    .and_then(|rest| rest.iter().position(|b| length_markers.contains(b)))
                    .map(|i| from + i + 1);
                if let Some(at) = found {
                    let v =
                        [0u64, 1, 3, 0x7fff_ffff, 0xffff_ffff, u64::MAX, rng.next()][rng.below(7)];
                    for (k, b) in v.to_le_bytes().iter().enumerate() {
                        if let Some(slot) = data.get_mut(at + k) {
                            *slot = *b;
                        }
                    }
                }
            }
            5 if len > 0 => data.truncate(rng.below(len)),
            6 => {
                let from = rng.below(len + 1);
                let start = (data.get(from..)).and_then(|r| r.iter().position(u8::is_ascii_digit));
                if let Some(start) = start.map(|s| from + s) {
                    let end = (data.get(start..))
                        .and_then(|r| r.iter().position(|b| !b.is_ascii_digit()))
                        .map_or(len, |e| start + e);
                    let number = [
                        "0",
                        "1",
                        "4294967296",
                        "18446744073709551615",
                        "99999999999999999999999",
                        "-1",
                    ][rng.below(6)];
                    data.splice(start..end, number.bytes());
                }
            }
            _ if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(64)).min(len - i);
                let chunk: Vec<u8> = data[i..i + n].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, chunk);
            }
            _ => {}
        }
    }
}

/// Feeds `iterations` mutants of `seeds` to `parse`, which returns `Ok` or the error's text.
/// Panics (with the input saved under the temp dir) if `parse` panics, or if an error is not
/// one line starting with `prefix`. Returns (parsed, refused).
pub fn run(
    name: &str,
    seeds: &[Vec<u8>],
    iterations: usize,
    length_markers: &[u8],
    prefix: &str,
    parse: impl Fn(&[u8]) -> Result<(), String>,
) -> (usize, usize) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut refused) = (0, 0);
    for it in 0..iterations {
        let mut data = seeds[it % seeds.len()].clone();
        mutate(&mut rng, &mut data, length_markers);
        match catch_unwind(AssertUnwindSafe(|| parse(&data))) {
            Ok(Ok(())) => ok += 1,
            Ok(Err(msg)) => {
                assert!(
                    msg.starts_with(prefix) && !msg.contains('\n'),
                    "{name} iteration {it}: {msg}"
                );
                refused += 1;
            }
            Err(_) => {
                let path = std::env::temp_dir().join(format!("kineto-fuzz-crash-{name}-{it}"));
                let _ = std::fs::write(&path, &data);
                panic!(
                    "{name}: iteration {it} panicked; input saved to {}",
                    path.display()
                );
            }
        }
    }
    eprintln!("fuzz-lite {name}: {iterations} inputs, {ok} parsed, {refused} refused");
    (ok, refused)
}
