//! A bit-exact port of Pillow's `Image.resize(size, Image.BILINEAR)` for RGB8 images
//! (Pillow 13, `reducing_gap=None`, whole-image box), written from the algorithm of
//! `libImaging/Resample.c`.
//!
//! The resize is separable: a horizontal and a vertical pass, each an antialiased triangle
//! filter whose support grows with the downscale factor. Each output sample's weights are
//! computed in f64, normalised to sum 1, converted to 22-bit fixed point and applied to the
//! u8 samples with integer arithmetic; each pass rounds and clips to u8, so the order of the
//! passes and the skipping of unchanged dimensions change the result and follow Pillow.

use super::frame::{FrameError, check_rgb_buffer, rgb_len};

/// Fixed-point fraction bits of the coefficients (Pillow: 32 - 8 - 2).
const PRECISION_BITS: u32 = 22;
/// Support of the bilinear (triangle) filter at scale 1.
const BILINEAR_SUPPORT: f64 = 1.0;

/// Pillow's `Image.resize((new_w, new_h), Image.BILINEAR)` for a tightly packed RGB8 image.
///
/// Returns a copy when the size is unchanged (Pillow does the same). Errors on a zero size
/// or a buffer whose length is not `w*h*3`.
pub fn resize_bilinear(
    src: &[u8],
    w: u32,
    h: u32,
    new_w: u32,
    new_h: u32,
) -> Result<Vec<u8>, FrameError> {
    check_rgb_buffer(src.len(), w, h)?;
    rgb_len(new_w, new_h)?;
    let need_horizontal = new_w != w;
    let need_vertical = new_h != h;
    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice
    // what the width shrinks (to make the horizontal pass cheaper); rounding follows the order.
    let dh = i64::from(h) - i64::from(new_h);
    let dw = i64::from(w) - i64::from(new_w);
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let (w, h) = (w as usize, h as usize);
    let (new_w, new_h) = (new_w as usize, new_h as usize);

    if !need_horizontal && !need_vertical {
        return Ok(src.to_vec());
    }
    if horizontal_first {
        let vert = Coeffs::new(h, new_h);
        if !need_horizontal {
            return Ok(vertical_pass(src, w, &vert, 0));
        }
        // Only the source rows that the vertical pass reads are resampled horizontally.
        let (first_row, last_row) = vert.span();
        let horiz = Coeffs::new(w, new_w);
        let tmp = horizontal_pass(src, w, first_row..last_row, &horiz);
        if !need_vertical {
            return Ok(tmp);
        }
        Ok(vertical_pass(&tmp, new_w, &vert, first_row))
    } else {
        let tmp = vertical_pass(src, w, &Coeffs::new(h, new_h), 0);
        if !need_horizontal {
            return Ok(tmp);
        }
        Ok(horizontal_pass(&tmp, w, 0..new_h, &Coeffs::new(w, new_w)))
    }
}

/// Fixed-point filter weights of one pass: for output sample `i`, the input window starts at
/// `start[i]` and its weights are `weights[i * ksize..][..len[i]]`.
struct Coeffs {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
}

impl Coeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter over the
    /// whole input (box 0..in_size).
    fn new(in_size: usize, out_size: usize) -> Coeffs {
        // Pillow passes the box edges as C floats, so the span goes through f32.
        let span = f64::from(in_size as f32);
        let scale = span / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = BILINEAR_SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv_filterscale = 1.0 / filterscale;
        let one = f64::from(1u32 << PRECISION_BITS);

        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut window = Vec::with_capacity(ksize);
        for (i, row) in weights.chunks_exact_mut(ksize).enumerate() {
            let center = (i as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero; `as` does the same for these values.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            window.clear();
            let mut total = 0.0f64;
            for x in 0..n {
                let wgt = triangle(((x + xmin) as f64 - center + 0.5) * inv_filterscale);
                window.push(wgt);
                total += wgt;
            }
            for (dst, &wgt) in row.iter_mut().zip(&window) {
                let normalised = if total != 0.0 { wgt / total } else { wgt };
                // Weights are never negative for the triangle filter: round half up.
                *dst = (0.5 + normalised * one) as i32;
            }
            start.push(xmin);
            len.push(n);
        }
        Coeffs {
            ksize,
            start,
            len,
            weights,
        }
    }

    fn window(&self, i: usize) -> (usize, &[i32]) {
        let w = &self.weights[i * self.ksize..];
        (self.start[i], &w[..self.len[i]])
    }

    /// First input index used and one past the last one.
    fn span(&self) -> (usize, usize) {
        let first = self.start.first().copied().unwrap_or(0);
        let last = match (self.start.last(), self.len.last()) {
            (Some(s), Some(n)) => s + n,
            _ => 0,
        };
        (first, last)
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Rounds (the accumulator starts at one half) and clips a fixed-point sum to u8.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The accumulator's start value: one half in fixed point, so the final shift rounds.
const HALF: i64 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass over the source rows `rows`; output is `coeffs.len() x rows.len()`.
///
/// Sums are kept in i64: identical to Pillow's int sums wherever those do not overflow.
fn horizontal_pass(
    src: &[u8],
    src_w: usize,
    rows: std::ops::Range<usize>,
    coeffs: &Coeffs,
) -> Vec<u8> {
    let out_w = coeffs.start.len();
    let mut out = Vec::with_capacity(out_w * rows.len() * 3);
    for y in rows {
        let line = &src[y * src_w * 3..(y + 1) * src_w * 3];
        for xx in 0..out_w {
            let (xmin, k) = coeffs.window(xx);
            let px = &line[xmin * 3..(xmin + k.len()) * 3];
            let mut acc = [HALF; 3];
            for (p, &kx) in px.chunks_exact(3).zip(k) {
                let kx = i64::from(kx);
                acc[0] += i64::from(p[0]) * kx;
                acc[1] += i64::from(p[1]) * kx;
                acc[2] += i64::from(p[2]) * kx;
            }
            out.extend(acc.map(clip8));
        }
    }
    out
}

/// Vertical pass; `row0` is the source row that `src`'s first row stands for (the
/// horizontal pass may have kept only the rows the vertical pass reads).
fn vertical_pass(src: &[u8], width: usize, coeffs: &Coeffs, row0: usize) -> Vec<u8> {
    let out_h = coeffs.start.len();
    let stride = width * 3;
    let mut out = vec![0u8; stride * out_h];
    let mut acc = vec![0i64; stride];
    for (yy, out_line) in out.chunks_exact_mut(stride).enumerate() {
        let (ymin, k) = coeffs.window(yy);
        acc.fill(HALF);
        for (dy, &ky) in k.iter().enumerate() {
            let y = ymin + dy - row0;
            let line = &src[y * stride..(y + 1) * stride];
            let ky = i64::from(ky);
            for (a, &p) in acc.iter_mut().zip(line) {
                *a += i64::from(p) * ky;
            }
        }
        for (o, &a) in out_line.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic test image (a hash of the byte index); kind 1 is 0/255 only, which
    /// exercises the clipping. The same formula generated the Pillow references.
    pub(crate) fn pattern(w: u32, h: u32, kind: u8, seed: u64) -> Vec<u8> {
        (0..u64::from(w) * u64::from(h) * 3)
            .map(|i| {
                let mut x = i
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed * 97_531 + 1)
                    & 0xffff_ffff;
                x ^= x >> 15;
                x = x.wrapping_mul(2_246_822_519) & 0xffff_ffff;
                x ^= x >> 13;
                let b = (x >> 24) as u8;
                match kind {
                    1 => {
                        if b & 1 == 1 {
                            255
                        } else {
                            0
                        }
                    }
                    _ => b,
                }
            })
            .collect()
    }

    pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// A resize of `pattern(size, kind, seed)` and Pillow 13.0.0's output for it.
    struct Small {
        size: (u32, u32),
        new_size: (u32, u32),
        kind: u8,
        seed: u64,
        want: &'static [u8],
    }

    const PILLOW_SMALL: &[Small] = &[
        Small {
            size: (1, 1),
            new_size: (5, 3),
            kind: 0,
            seed: 1,
            want: &[
                224, 170, 59, 224, 170, 59, 224, 170, 59, 224, 170, 59, 224, 170, 59, 224, 170, 59,
                224, 170, 59, 224, 170, 59, 224, 170, 59, 224, 170, 59, 224, 170, 59, 224, 170, 59,
                224, 170, 59, 224, 170, 59, 224, 170, 59,
            ],
        },
        Small {
            size: (7, 1),
            new_size: (3, 1),
            kind: 0,
            seed: 2,
            want: &[166, 150, 159, 163, 65, 122, 138, 171, 137],
        },
        Small {
            size: (1, 9),
            new_size: (1, 4),
            kind: 0,
            seed: 3,
            want: &[66, 101, 146, 110, 88, 100, 135, 99, 130, 167, 203, 76],
        },
        Small {
            size: (5, 4),
            new_size: (11, 9),
            kind: 0,
            seed: 4,
            want: &[
                23, 198, 235, 40, 192, 209, 83, 177, 143, 107, 170, 103, 59, 193, 164, 10, 217,
                225, 84, 146, 185, 157, 75, 145, 137, 89, 159, 93, 124, 187, 75, 138, 198, 33, 167,
                238, 47, 166, 215, 80, 165, 156, 102, 169, 120, 75, 196, 170, 48, 223, 221, 94,
                159, 191, 138, 94, 162, 124, 105, 162, 95, 134, 169, 83, 146, 172, 60, 84, 245, 64,
                98, 230, 74, 133, 192, 88, 168, 165, 119, 203, 187, 149, 239, 209, 119, 192, 208,
                87, 145, 206, 90, 147, 169, 100, 161, 122, 104, 167, 103, 86, 20, 248, 81, 46, 241,
                70, 109, 222, 77, 168, 207, 155, 208, 202, 234, 248, 198, 142, 218, 218, 48, 188,
                239, 63, 180, 174, 103, 179, 87, 120, 179, 51, 108, 96, 212, 101, 110, 214, 83,
                144, 219, 81, 174, 219, 142, 190, 203, 202, 206, 186, 147, 188, 191, 91, 170, 196,
                84, 152, 167, 90, 135, 131, 92, 128, 116, 129, 172, 176, 120, 173, 187, 95, 178,
                215, 84, 179, 230, 128, 171, 203, 170, 164, 174, 151, 158, 163, 133, 151, 152, 105,
                124, 160, 76, 90, 174, 64, 76, 180, 180, 155, 113, 161, 155, 132, 115, 156, 179,
                82, 158, 213, 99, 166, 194, 116, 173, 174, 103, 136, 142, 91, 98, 110, 101, 96,
                133, 118, 102, 171, 125, 105, 185, 234, 126, 45, 206, 126, 72, 136, 127, 139, 78,
                133, 190, 69, 162, 183, 59, 190, 175, 48, 115, 122, 36, 41, 69, 94, 68, 104, 168,
                122, 160, 198, 144, 182, 255, 115, 20, 223, 115, 50, 144, 116, 124, 76, 124, 182,
                57, 160, 179, 37, 196, 175, 27, 107, 115, 16, 19, 54, 91, 58, 93, 187, 130, 156,
                225, 159, 181,
            ],
        },
        Small {
            size: (13, 11),
            new_size: (4, 3),
            kind: 0,
            seed: 5,
            want: &[
                129, 106, 140, 125, 88, 150, 101, 126, 135, 123, 107, 156, 148, 128, 116, 129, 124,
                118, 108, 154, 121, 118, 144, 142, 165, 139, 141, 146, 111, 163, 102, 107, 116,
                109, 114, 121,
            ],
        },
        Small {
            size: (17, 3),
            new_size: (17, 3),
            kind: 0,
            seed: 6,
            want: &[
                55, 33, 219, 247, 54, 38, 135, 163, 28, 133, 139, 167, 116, 72, 28, 30, 231, 26,
                219, 129, 227, 25, 13, 176, 238, 87, 125, 203, 221, 181, 109, 2, 191, 48, 247, 129,
                69, 14, 165, 166, 169, 157, 89, 204, 48, 151, 99, 241, 47, 101, 225, 62, 1, 205,
                83, 6, 61, 115, 225, 93, 34, 126, 183, 71, 75, 24, 5, 169, 136, 227, 123, 51, 224,
                159, 12, 149, 103, 99, 103, 104, 86, 79, 243, 78, 30, 200, 247, 104, 141, 12, 250,
                31, 165, 141, 26, 212, 76, 81, 137, 152, 225, 149, 248, 102, 157, 209, 157, 112,
                164, 194, 107, 21, 210, 22, 47, 58, 90, 53, 195, 144, 176, 17, 130, 208, 230, 252,
                215, 253, 177, 198, 76, 250, 184, 179, 255, 172, 178, 104, 36, 223, 53, 186, 25,
                69, 36, 254, 116, 190, 33, 166, 228, 164, 17,
            ],
        },
        Small {
            size: (9, 30),
            new_size: (8, 7),
            kind: 0,
            seed: 7,
            want: &[
                119, 151, 100, 167, 135, 127, 156, 132, 145, 141, 121, 152, 97, 111, 114, 117, 146,
                105, 139, 135, 99, 113, 87, 112, 105, 127, 159, 153, 104, 92, 139, 96, 109, 155,
                114, 96, 147, 148, 135, 120, 127, 159, 108, 98, 104, 123, 120, 149, 132, 111, 156,
                127, 109, 131, 125, 126, 110, 170, 120, 118, 137, 120, 157, 120, 152, 115, 132,
                171, 111, 164, 118, 156, 170, 131, 129, 98, 144, 120, 123, 91, 138, 133, 121, 128,
                128, 146, 141, 146, 125, 90, 155, 176, 112, 161, 104, 102, 151, 140, 156, 157, 114,
                130, 128, 118, 133, 135, 131, 127, 103, 165, 143, 136, 139, 120, 130, 120, 119,
                111, 92, 123, 120, 92, 135, 110, 71, 162, 144, 141, 105, 109, 150, 143, 110, 108,
                166, 137, 115, 136, 131, 107, 110, 107, 104, 139, 107, 104, 143, 113, 120, 143,
                126, 121, 129, 116, 135, 132, 93, 126, 153, 127, 105, 104, 140, 97, 128, 56, 83,
                111,
            ],
        },
        Small {
            size: (2, 2),
            new_size: (1, 1),
            kind: 1,
            seed: 8,
            want: &[64, 64, 64],
        },
        Small {
            size: (6, 5),
            new_size: (6, 2),
            kind: 1,
            seed: 9,
            want: &[
                0, 197, 174, 139, 58, 162, 81, 93, 104, 70, 0, 185, 162, 93, 104, 139, 70, 162, 81,
                116, 255, 58, 58, 151, 0, 104, 93, 162, 81, 93, 151, 104, 12, 139, 162, 151,
            ],
        },
        Small {
            size: (4, 3),
            new_size: (9, 3),
            kind: 1,
            seed: 10,
            want: &[
                0, 0, 255, 0, 43, 212, 0, 156, 99, 14, 241, 0, 128, 128, 0, 241, 14, 0, 156, 99,
                99, 43, 212, 212, 0, 255, 255, 0, 0, 255, 43, 43, 212, 156, 156, 99, 241, 241, 0,
                128, 128, 0, 14, 14, 0, 99, 99, 99, 212, 212, 212, 255, 255, 255, 255, 255, 255,
                255, 212, 255, 255, 99, 255, 241, 0, 241, 128, 0, 128, 14, 0, 14, 0, 99, 0, 0, 212,
                0, 0, 255, 0,
            ],
        },
    ];

    /// (w, h, new_w, new_h, kind, seed, output length, byte sum, FNV-1a 64) from Pillow 13.0.0.
    type Large = (u32, u32, u32, u32, u8, u64, usize, u64, u64);
    const PILLOW_LARGE: &[Large] = &[
        (
            3840,
            2160,
            341,
            256,
            0,
            11,
            261888,
            33389220,
            0xcb93a099fa27aa3b,
        ),
        (
            320,
            240,
            341,
            256,
            0,
            12,
            261888,
            33441031,
            0x6a914a852783cc22,
        ),
        (
            300,
            2000,
            299,
            100,
            0,
            13,
            89700,
            11445289,
            0x766485a1e5bd6380,
        ),
        (101, 37, 50, 75, 1, 14, 11250, 1443255, 0xe668ef685a7ed5a0),
        (
            1920,
            1080,
            341,
            256,
            1,
            15,
            261888,
            33400370,
            0x5d639a1d6bd9b231,
        ),
        (
            256,
            341,
            256,
            341,
            0,
            16,
            261888,
            33424933,
            0x963dea8dc0947e34,
        ),
        (
            240,
            320,
            256,
            341,
            0,
            17,
            261888,
            33370155,
            0x25fed52ab80b153a,
        ),
    ];

    #[test]
    fn matches_pillow_on_small_images() {
        for c in PILLOW_SMALL {
            let ((w, h), (nw, nh)) = (c.size, c.new_size);
            let (kind, seed, want) = (c.kind, c.seed, c.want);
            let got = resize_bilinear(&pattern(w, h, kind, seed), w, h, nw, nh).expect("resize");
            assert_eq!(got, want, "{w}x{h} -> {nw}x{nh}");
        }
    }

    #[test]
    fn matches_pillow_on_large_images() {
        for &(w, h, nw, nh, kind, seed, len, sum, hash) in PILLOW_LARGE {
            let got = resize_bilinear(&pattern(w, h, kind, seed), w, h, nw, nh).expect("resize");
            let got_sum: u64 = got.iter().map(|&b| u64::from(b)).sum();
            assert_eq!(
                (got.len(), got_sum, fnv1a(&got)),
                (len, sum, hash),
                "{w}x{h} -> {nw}x{nh}"
            );
        }
    }

    #[test]
    fn hand_worked_cases() {
        // 2x1 -> 1x1: two weights of 0.5 (2^21 each); (10 + 21) / 2 = 15.5 rounds up.
        let got = resize_bilinear(&[10, 20, 30, 21, 41, 61], 2, 1, 1, 1).expect("resize");
        assert_eq!(got, [16, 31, 46]);
        // A single pixel upscaled is that pixel everywhere (weights renormalised to 1).
        let got = resize_bilinear(&[7, 8, 9], 1, 1, 3, 2).expect("resize");
        assert_eq!(got, [7, 8, 9].repeat(6));
        // Identity size is a copy.
        let src = pattern(5, 3, 0, 1);
        assert_eq!(resize_bilinear(&src, 5, 3, 5, 3).expect("copy"), src);
        // 1x2 -> 1x4 upscaling: centres at 0.25, 0.75, 1.25, 1.75 source rows.
        let got = resize_bilinear(&[0, 0, 0, 200, 100, 40], 1, 2, 1, 4).expect("resize");
        assert_eq!(got, [0, 0, 0, 50, 25, 10, 150, 75, 30, 200, 100, 40]);
    }

    #[test]
    fn coefficients_follow_pillow() {
        // 4 -> 2: scale 2, support 2, windows [0, 3) and [1, 4) with weights 1/8, 3/8, ...
        let c = Coeffs::new(4, 2);
        assert_eq!(c.ksize, 5);
        assert_eq!((c.start.clone(), c.len.clone()), (vec![0, 1], vec![3, 3]));
        let (_, k0) = c.window(0);
        let w = |f: f64| (0.5 + f * f64::from(1u32 << 22)) as i32;
        assert_eq!(k0, [w(3.0 / 7.0), w(3.0 / 7.0), w(1.0 / 7.0)]);
        // Upscaling keeps support 1: two taps per output sample, one at each edge.
        let c = Coeffs::new(3, 7);
        assert_eq!(c.len, [1, 2, 2, 2, 2, 2, 1]);
        assert_eq!(c.span(), (0, 3));
    }

    #[test]
    fn rejects_bad_sizes_without_panicking() {
        assert!(matches!(
            resize_bilinear(&[], 0, 5, 2, 2),
            Err(FrameError::ZeroSize { .. })
        ));
        assert!(matches!(
            resize_bilinear(&[1, 2, 3], 1, 1, 0, 4),
            Err(FrameError::ZeroSize { .. })
        ));
        assert!(matches!(
            resize_bilinear(&[1, 2, 3, 4], 1, 1, 2, 2),
            Err(FrameError::BufferSize {
                expected: 3,
                found: 4,
                ..
            })
        ));
    }
}
