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
    resize_bilinear_region(src, w, h, new_w, new_h, (0, 0, new_w, new_h))
}

/// The `(x, y, cw, ch)` window of [`resize_bilinear`]'s output, computing only what the
/// window holds: the same bytes as resizing and then cropping, at the cost of the window.
///
/// Each output sample depends only on its own filter window, so leaving out samples (and
/// the source rows/columns that only they read) changes nothing in the others; the pass
/// order and the skipping of unchanged dimensions are those of the whole resize.
pub fn resize_bilinear_region(
    src: &[u8],
    w: u32,
    h: u32,
    new_w: u32,
    new_h: u32,
    window: (u32, u32, u32, u32),
) -> Result<Vec<u8>, FrameError> {
    check_rgb_buffer(src.len(), w, h)?;
    rgb_len(new_w, new_h)?;
    let (x0, y0, cw, ch) = window;
    rgb_len(cw, ch)?;
    let fits = |o: u32, n: u32, total: u32| o.checked_add(n).is_some_and(|end| end <= total);
    if !fits(x0, cw, new_w) || !fits(y0, ch, new_h) {
        return Err(FrameError::CropOutOfBounds {
            x: x0,
            y: y0,
            w: cw,
            h: ch,
            width: new_w,
            height: new_h,
        });
    }
    let need_horizontal = new_w != w;
    let need_vertical = new_h != h;
    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice
    // what the width shrinks (to make the horizontal pass cheaper); rounding follows the order.
    let dh = i64::from(h) - i64::from(new_h);
    let dw = i64::from(w) - i64::from(new_w);
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let (w, h) = (w as usize, h as usize);
    let (new_w, new_h) = (new_w as usize, new_h as usize);
    let cols = x0 as usize..(x0 + cw) as usize;
    let rows = y0 as usize..(y0 + ch) as usize;

    let vert = need_vertical.then(|| Coeffs::new(h, new_h));
    let horiz = need_horizontal.then(|| Coeffs::new(w, new_w));
    match (horiz, vert) {
        (None, None) => Ok(crop_rows(src, w, rows, cols)),
        // Only the vertical pass runs; columns map one to one.
        (None, Some(vert)) => Ok(vertical_pass(src, w, cols, &vert, rows, 0)),
        // Only the horizontal pass runs; rows map one to one.
        (Some(horiz), None) => Ok(horizontal_pass(src, w, rows, &horiz, cols, 0)),
        (Some(horiz), Some(vert)) if horizontal_first => {
            // Only the source rows that the vertical pass reads are resampled horizontally.
            let (first_row, last_row) = vert.span(rows.clone());
            let tmp = horizontal_pass(src, w, first_row..last_row, &horiz, cols.clone(), 0);
            Ok(vertical_pass(
                &tmp,
                cols.len(),
                0..cols.len(),
                &vert,
                rows,
                first_row,
            ))
        }
        (Some(horiz), Some(vert)) => {
            // Vertical first; only the source columns that the horizontal pass reads are
            // resampled vertically.
            let (first_col, last_col) = horiz.span(cols.clone());
            let tmp = vertical_pass(src, w, first_col..last_col, &vert, rows.clone(), 0);
            Ok(horizontal_pass(
                &tmp,
                last_col - first_col,
                0..rows.len(),
                &horiz,
                cols,
                first_col,
            ))
        }
    }
}

/// Rows `rows`, columns `cols` of a `width`-pixel-wide RGB8 image.
fn crop_rows(
    src: &[u8],
    width: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * cols.len() * 3);
    for y in rows {
        out.extend_from_slice(&src[(y * width + cols.start) * 3..(y * width + cols.end) * 3]);
    }
    out
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

    #[inline(always)]
    fn window(&self, i: usize) -> (usize, &[i32]) {
        let w = &self.weights[i * self.ksize..];
        (self.start[i], &w[..self.len[i]])
    }

    /// First input index used by the outputs `out` and one past the last one.
    fn span(&self, out: std::ops::Range<usize>) -> (usize, usize) {
        if out.is_empty() {
            return (0, 0);
        }
        // Windows move monotonically with the output index.
        let first = self.start[out.start];
        let last = self.start[out.end - 1] + self.len[out.end - 1];
        (first, last)
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Rounds (the accumulator starts at one half) and clips a fixed-point sum to u8.
#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The accumulator's start value: one half in fixed point, so the final shift rounds.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

// Sums are i32 like Pillow's `int` accumulators, and never overflow: the weights are
// non-negative and sum to about 2^22, so a sum stays below 255 * 2^22 + 2^21 + 255 * ksize
// < 2^31.

/// Horizontal pass over the source rows `rows`, for the output columns `cols`; output is
/// `cols.len() x rows.len()`. `col0` is the source column that `src`'s first column stands
/// for (a vertical pass before this one may have kept only the columns read here).
fn horizontal_pass(
    src: &[u8],
    src_w: usize,
    rows: std::ops::Range<usize>,
    coeffs: &Coeffs,
    cols: std::ops::Range<usize>,
    col0: usize,
) -> Vec<u8> {
    let out_w = cols.len();
    let mut out = vec![0u8; out_w * rows.len() * 3];
    for (y, out_line) in rows.zip(out.chunks_exact_mut(out_w * 3)) {
        let line = &src[y * src_w * 3..(y + 1) * src_w * 3];
        for (xx, o) in cols.clone().zip(out_line.chunks_exact_mut(3)) {
            let (xmin, k) = coeffs.window(xx);
            let px = &line[(xmin - col0) * 3..(xmin - col0 + k.len()) * 3];
            let acc = match (k, px) {
                // Upscaling (e.g. 320 -> 341): two taps almost everywhere.
                (&[k0, k1], &[r0, g0, b0, r1, g1, b1]) => [
                    HALF + i32::from(r0) * k0 + i32::from(r1) * k1,
                    HALF + i32::from(g0) * k0 + i32::from(g1) * k1,
                    HALF + i32::from(b0) * k0 + i32::from(b1) * k1,
                ],
                _ => {
                    let mut acc = [HALF; 3];
                    for (p, &kx) in px.chunks_exact(3).zip(k) {
                        acc[0] += i32::from(p[0]) * kx;
                        acc[1] += i32::from(p[1]) * kx;
                        acc[2] += i32::from(p[2]) * kx;
                    }
                    acc
                }
            };
            o[0] = clip8(acc[0]);
            o[1] = clip8(acc[1]);
            o[2] = clip8(acc[2]);
        }
    }
    out
}

/// Vertical pass for the output rows `rows` over the source columns `cols`; output is
/// `cols.len() x rows.len()`. `row0` is the source row that `src`'s first row stands for
/// (the horizontal pass may have kept only the rows the vertical pass reads).
fn vertical_pass(
    src: &[u8],
    width: usize,
    cols: std::ops::Range<usize>,
    coeffs: &Coeffs,
    rows: std::ops::Range<usize>,
    row0: usize,
) -> Vec<u8> {
    let stride = width * 3;
    let out_stride = cols.len() * 3;
    let mut out = vec![0u8; out_stride * rows.len()];
    let mut acc = vec![0i32; out_stride];
    let line_at = |y: usize| &src[y * stride + cols.start * 3..y * stride + cols.end * 3];
    for (yy, out_line) in rows.zip(out.chunks_exact_mut(out_stride)) {
        let (ymin, k) = coeffs.window(yy);
        if let &[k0, k1] = k {
            // Upscaling (e.g. 240 -> 256): two taps almost everywhere, one sweep.
            let (a, b) = (line_at(ymin - row0), line_at(ymin + 1 - row0));
            for ((o, &p0), &p1) in out_line.iter_mut().zip(a).zip(b) {
                *o = clip8(HALF + i32::from(p0) * k0 + i32::from(p1) * k1);
            }
            continue;
        }
        acc.fill(HALF);
        for (dy, &ky) in k.iter().enumerate() {
            let line = line_at(ymin + dy - row0);
            for (a, &p) in acc.iter_mut().zip(line) {
                *a += i32::from(p) * ky;
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
        assert_eq!(c.span(0..7), (0, 3));
        assert_eq!(c.span(2..4), (0, 3));
    }

    /// The window of a resize equals the same window cropped from the whole resize, for both
    /// pass orders, skipped passes and windows touching every edge.
    #[test]
    fn region_equals_crop_of_whole_resize() {
        let sizes: &[(u32, u32, u32, u32)] = &[
            (320, 240, 341, 256), // both passes, horizontal first (upscale)
            (240, 320, 256, 341),
            (1280, 720, 341, 256), // downscale
            (300, 2000, 299, 100), // vertical first
            (60, 400, 60, 41),     // vertical first, no horizontal pass
            (50, 30, 80, 30),      // horizontal only
            (40, 30, 40, 55),      // vertical only, horizontal first
            (256, 341, 256, 341),  // no pass
            (7, 5, 3, 2),
        ];
        for (n, &(w, h, nw, nh)) in sizes.iter().enumerate() {
            let src = pattern(w, h, (n % 2) as u8, 40 + n as u64);
            let whole = resize_bilinear(&src, w, h, nw, nh).expect("resize");
            let windows = [
                (0, 0, nw, nh),
                (0, 0, 1, 1),
                (nw - 1, nh - 1, 1, 1),
                (nw / 3, nh / 4, nw - nw / 3, nh / 2),
                (nw / 5, nh / 3, (nw / 2).max(1), nh - nh / 3),
            ];
            for (x, y, cw, ch) in windows {
                let got =
                    resize_bilinear_region(&src, w, h, nw, nh, (x, y, cw, ch)).expect("region");
                let want = crop_rows(
                    &whole,
                    nw as usize,
                    y as usize..(y + ch) as usize,
                    x as usize..(x + cw) as usize,
                );
                assert_eq!(got, want, "{w}x{h} -> {nw}x{nh}, window {x},{y} {cw}x{ch}");
            }
        }
        assert!(matches!(
            resize_bilinear_region(&pattern(4, 4, 0, 1), 4, 4, 8, 8, (5, 0, 4, 4)),
            Err(FrameError::CropOutOfBounds { .. })
        ));
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
