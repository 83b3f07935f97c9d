//! PaddleVideo's image transforms (`loader/pipelines/augmentations.py`, Pillow backend) on
//! RGB8 frames, and the float32 normalisation into the model's `[T, 3, H, W]` input; the test
//! pipeline's sizes and ImageNet statistics, which every PP-TSM config uses.

use rand::Rng;

use super::frame::{ClipTensor, FrameError, RgbFrame};
use super::pillow::{resize_bilinear, resize_bilinear_region};

/// PaddleVideo's test pipeline for every PP-TSM config: `Scale(SHORT_SIDE)`,
/// `CenterCrop(INPUT_SIZE)`, `Normalization(MEAN, STD)`.
pub const SHORT_SIDE: u32 = 256;
pub const INPUT_SIZE: u32 = 224;
/// ImageNet's per-channel (RGB) mean and std, on 0..1 values.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// PaddleVideo `Scale(short)` with its defaults (`fixed_ratio=True`, Pillow bilinear).
///
/// A frame whose short side already equals `short` is returned unchanged. Otherwise the
/// aspect ratio is ignored: the output is `short x int(short * 4 / 3)` (portrait, including
/// square frames) or `int(short * 4 / 3) x short` (landscape), e.g. 320x240 -> 341x256.
pub fn scale_short_side(frame: &RgbFrame, short: u32) -> Result<RgbFrame, FrameError> {
    frame.validate()?;
    let (w, h) = (frame.width, frame.height);
    if (w <= h && w == short) || (h <= w && h == short) {
        return Ok(frame.clone());
    }
    // Python: int(short * 4.0 / 3.0), in f64 then truncated.
    let long = (f64::from(short) * 4.0 / 3.0) as u32;
    let (ow, oh) = if w <= h { (short, long) } else { (long, short) };
    let data = resize_bilinear(&frame.data, w, h, ow, oh)?;
    Ok(frame.with_pixels(ow, oh, data))
}

/// `Scale(short)` followed by `CenterCrop(crop)`, computing only the pixels the crop keeps:
/// the same bytes as [`scale_short_side`] then [`center_crop`] (the resize is evaluated at
/// the kept output positions only), with about `crop^2 / (short * short * 4/3)` of the work.
pub fn scale_center_crop(frame: &RgbFrame, short: u32, crop: u32) -> Result<RgbFrame, FrameError> {
    frame.validate()?;
    let (w, h) = (frame.width, frame.height);
    let unchanged = (w <= h && w == short) || (h <= w && h == short);
    let (ow, oh) = if unchanged {
        (w, h)
    } else {
        let long = (f64::from(short) * 4.0 / 3.0) as u32;
        if w <= h { (short, long) } else { (long, short) }
    };
    let out_of_bounds = FrameError::CropOutOfBounds {
        x: 0,
        y: 0,
        w: crop,
        h: crop,
        width: ow,
        height: oh,
    };
    let dx = ow.checked_sub(crop).ok_or(out_of_bounds.clone())?;
    let dy = oh.checked_sub(crop).ok_or(out_of_bounds)?;
    let half = |d: u32| (f64::from(d) / 2.0).round_ties_even() as u32;
    if unchanged {
        return self::crop(frame, half(dx), half(dy), crop, crop);
    }
    let data = resize_bilinear_region(&frame.data, w, h, ow, oh, (half(dx), half(dy), crop, crop))?;
    Ok(frame.with_pixels(crop, crop, data))
}

/// PaddleVideo `CenterCrop(size)` (`do_round=True`): offsets `round((w - size) / 2)` with
/// Python's round half to even, e.g. (341 - 224) / 2 = 58.5 -> 58.
pub fn center_crop(frame: &RgbFrame, size: u32) -> Result<RgbFrame, FrameError> {
    frame.validate()?;
    let out_of_bounds = FrameError::CropOutOfBounds {
        x: 0,
        y: 0,
        w: size,
        h: size,
        width: frame.width,
        height: frame.height,
    };
    let dx = frame.width.checked_sub(size).ok_or(out_of_bounds.clone())?;
    let dy = frame.height.checked_sub(size).ok_or(out_of_bounds)?;
    let half = |d: u32| (f64::from(d) / 2.0).round_ties_even() as u32;
    crop(frame, half(dx), half(dy), size, size)
}

/// The `w x h` region at `(x, y)`; it must lie inside the frame.
pub fn crop(frame: &RgbFrame, x: u32, y: u32, w: u32, h: u32) -> Result<RgbFrame, FrameError> {
    frame.validate()?;
    if w == 0 || h == 0 {
        return Err(FrameError::ZeroSize {
            width: w,
            height: h,
        });
    }
    let fits = |o: u32, n: u32, total: u32| o.checked_add(n).is_some_and(|end| end <= total);
    if !fits(x, w, frame.width) || !fits(y, h, frame.height) {
        return Err(FrameError::CropOutOfBounds {
            x,
            y,
            w,
            h,
            width: frame.width,
            height: frame.height,
        });
    }
    let stride = frame.width as usize * 3;
    let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
    let mut data = Vec::with_capacity(w * h * 3);
    for row in frame.data.chunks_exact(stride).skip(y).take(h) {
        data.extend_from_slice(&row[x * 3..(x + w) * 3]);
    }
    Ok(frame.with_pixels(w as u32, h as u32, data))
}

/// `GroupFullResSample(size)` crop offsets (left, right, centre) for a `w x h` frame:
/// `w_step = (w - size) / 4`, `h_step = (h - size) / 4` (integer floor), offsets
/// `(0, 2 h_step)`, `(4 w_step, 2 h_step)`, `(2 w_step, 2 h_step)`. For 341x256 and 224:
/// (0,16), (116,16), (58,16); the right crop leaves the last column out.
///
/// A `size` larger than the frame gives zero steps; cropping then fails with
/// [`FrameError::CropOutOfBounds`].
pub fn three_crop_boxes(w: u32, h: u32, size: u32) -> [(u32, u32); 3] {
    let w_step = w.saturating_sub(size) / 4;
    let h_step = h.saturating_sub(size) / 4;
    [
        (0, 2 * h_step),
        (4 * w_step, 2 * h_step),
        (2 * w_step, 2 * h_step),
    ]
}

/// `MultiScaleCrop`'s default scales of the short side.
pub const MULTI_SCALE_SCALES: [f64; 4] = [1.0, 0.875, 0.75, 0.66];

/// `MultiScaleCrop(target)` candidate crop sizes `(w, h)` for a `w x h` frame, in
/// PaddleVideo's order: sizes `int(min(w, h) * s)`, each snapped to `target` when within 3 of
/// it, paired as `(size_j, size_i)` for `|i - j| <= 1` (`max_distort=1`), `i` outer.
pub fn multi_scale_crop_sizes(w: u32, h: u32, target: u32) -> Vec<(u32, u32)> {
    let base = f64::from(w.min(h));
    let sizes: Vec<u32> = MULTI_SCALE_SCALES
        .iter()
        .map(|s| {
            let size = (base * s) as u32;
            if size.abs_diff(target) < 3 {
                target
            } else {
                size
            }
        })
        .collect();
    let mut pairs = Vec::new();
    for (i, &ch) in sizes.iter().enumerate() {
        for (j, &cw) in sizes.iter().enumerate() {
            if i.abs_diff(j) <= 1 {
                pairs.push((cw, ch));
            }
        }
    }
    pairs
}

/// `MultiScaleCrop` candidate offsets (`fix_crop=True`, `more_fix_crop=True`,
/// `allow_duplication=False`) for a `cw x ch` crop of a `w x h` frame, in PaddleVideo's
/// order, in units of the float steps `w_step = (w - cw) / 4`, `h_step = (h - ch) / 4`:
/// (0,0); (4,0) if `w_step != 0`; (0,4) if `h_step != 0`; (4,4) if both are; (2,2) if either
/// is; then always (0,2), (4,2), (2,4), (2,0), (1,1), (3,1), (1,3), (3,3) (duplicates kept).
/// Offsets are negative when a snapped crop is larger than the frame.
pub fn multi_scale_crop_offsets(w: u32, h: u32, cw: u32, ch: u32) -> Vec<(f64, f64)> {
    let w_step = (f64::from(w) - f64::from(cw)) / 4.0;
    let h_step = (f64::from(h) - f64::from(ch)) / 4.0;
    let mut units: Vec<(f64, f64)> = vec![(0.0, 0.0)];
    if w_step != 0.0 {
        units.push((4.0, 0.0));
    }
    if h_step != 0.0 {
        units.push((0.0, 4.0));
    }
    if w_step != 0.0 && h_step != 0.0 {
        units.push((4.0, 4.0));
    }
    if w_step != 0.0 || h_step != 0.0 {
        units.push((2.0, 2.0));
    }
    units.extend([
        (0.0, 2.0),
        (4.0, 2.0),
        (2.0, 4.0),
        (2.0, 0.0),
        (1.0, 1.0),
        (3.0, 1.0),
        (1.0, 3.0),
        (3.0, 3.0),
    ]);
    units
        .into_iter()
        .map(|(a, b)| (a * w_step, b * h_step))
        .collect()
}

/// Pillow's `img.crop((ox, oy, ox + cw, oy + ch))` box for float offsets: each coordinate is
/// rounded half to even separately, so the crop can be one pixel wider or narrower than
/// `cw x ch` (e.g. ox = 2.5, cw = 3 gives 2..6).
pub fn pillow_crop_box(ox: f64, oy: f64, cw: u32, ch: u32) -> (i64, i64, i64, i64) {
    let r = |v: f64| v.round_ties_even() as i64;
    (r(ox), r(oy), r(ox + f64::from(cw)), r(oy + f64::from(ch)))
}

/// PaddleVideo `MultiScaleCrop(target)` with its defaults: one crop size and one offset drawn
/// uniformly from [`multi_scale_crop_sizes`] and [`multi_scale_crop_offsets`] for the whole
/// clip, the Pillow crop box of [`pillow_crop_box`] (area outside the frame is black, as
/// Pillow pads), then a Pillow bilinear resize to `target x target` (aspect not kept).
pub fn multi_scale_crop(
    frames: &[RgbFrame],
    rng: &mut impl Rng,
    target: u32,
) -> Result<Vec<RgbFrame>, FrameError> {
    let (w, h) = clip_size(frames)?;
    let pairs = multi_scale_crop_sizes(w, h, target);
    // Both candidate lists are never empty (10 sizes, at least 9 offsets).
    let (cw, ch) = pairs[rng.random_range(0..pairs.len())];
    let offsets = multi_scale_crop_offsets(w, h, cw, ch);
    let (ox, oy) = offsets[rng.random_range(0..offsets.len())];
    frames
        .iter()
        .map(|f| crop_and_resize(f, ox, oy, cw, ch, target))
        .collect()
}

/// One frame of `MultiScaleCrop`: Pillow's crop at float offsets, then the square resize.
fn crop_and_resize(
    frame: &RgbFrame,
    ox: f64,
    oy: f64,
    cw: u32,
    ch: u32,
    target: u32,
) -> Result<RgbFrame, FrameError> {
    let (x0, y0, x1, y1) = pillow_crop_box(ox, oy, cw, ch);
    let cropped = crop_padded(frame, x0, y0, x1, y1)?;
    let data = resize_bilinear(&cropped.data, cropped.width, cropped.height, target, target)?;
    Ok(frame.with_pixels(target, target, data))
}

/// Pillow's crop for any integer box: pixels outside the frame are zero.
fn crop_padded(
    frame: &RgbFrame,
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
) -> Result<RgbFrame, FrameError> {
    frame.validate()?;
    let size = |a: i64, b: i64| b.checked_sub(a).and_then(|n| u32::try_from(n).ok());
    let (w, h) = (size(x0, x1).unwrap_or(0), size(y0, y1).unwrap_or(0));
    if w == 0 || h == 0 {
        return Err(FrameError::ZeroSize {
            width: w,
            height: h,
        });
    }
    let inside =
        x0 >= 0 && y0 >= 0 && x1 <= i64::from(frame.width) && y1 <= i64::from(frame.height);
    if inside {
        return crop(frame, x0 as u32, y0 as u32, w, h);
    }
    let mut data = vec![0u8; super::frame::rgb_len(w, h)?];
    let (fw, fh) = (i64::from(frame.width), i64::from(frame.height));
    // Copy the part of each row that overlaps the frame.
    let (cx0, cx1) = (x0.clamp(0, fw), x1.clamp(0, fw));
    for (dy, out_row) in data.chunks_exact_mut(w as usize * 3).enumerate() {
        let sy = y0 + dy as i64;
        if !(0..fh).contains(&sy) || cx0 >= cx1 {
            continue;
        }
        let src = (sy * fw * 3) as usize;
        let dst = ((cx0 - x0) * 3) as usize;
        let n = ((cx1 - cx0) * 3) as usize;
        out_row[dst..dst + n]
            .copy_from_slice(&frame.data[src + cx0 as usize * 3..src + cx0 as usize * 3 + n]);
    }
    Ok(frame.with_pixels(w, h, data))
}

/// PaddleVideo `RandomCrop(size)`: `x = randint(0, w - size)`, `y = randint(0, h - size)`
/// (inclusive), one draw for the whole clip.
pub fn random_crop(
    frames: &[RgbFrame],
    size: u32,
    rng: &mut impl Rng,
) -> Result<Vec<RgbFrame>, FrameError> {
    let (w, h) = clip_size(frames)?;
    if size > w || size > h {
        return Err(FrameError::CropOutOfBounds {
            x: 0,
            y: 0,
            w: size,
            h: size,
            width: w,
            height: h,
        });
    }
    let x = rng.random_range(0..=w - size);
    let y = rng.random_range(0..=h - size);
    frames.iter().map(|f| crop(f, x, y, size, size)).collect()
}

/// PaddleVideo `RandomFlip()` (p = 0.5): one draw per clip; when it is below 0.5 every frame
/// is mirrored left-right.
pub fn random_flip(mut frames: Vec<RgbFrame>, rng: &mut impl Rng) -> Vec<RgbFrame> {
    if rng.random::<f64>() < 0.5 {
        for f in &mut frames {
            flip_left_right(f);
        }
    }
    frames
}

fn flip_left_right(frame: &mut RgbFrame) {
    let stride = frame.width as usize * 3;
    if stride == 0 {
        return;
    }
    for row in frame.data.chunks_exact_mut(stride) {
        row.reverse();
        // Reversing the bytes also reversed each pixel's RGB order: restore it.
        for px in row.chunks_exact_mut(3) {
            px.swap(0, 2);
        }
    }
}

/// Per-channel normalisation `(x / 255 - mean) / std`, all in float32 like PaddleVideo's
/// `Normalization` (numpy float32 arrays; a division by `std`, not a multiplication).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalize {
    /// ImageNet's [`MEAN`] and [`STD`].
    pub fn imagenet() -> Normalize {
        Normalize {
            mean: MEAN,
            std: STD,
        }
    }

    /// The normalised value of every u8 level, per channel (exactly the per-pixel formula).
    fn table(&self) -> [[f32; 256]; 3] {
        let mut t = [[0.0f32; 256]; 3];
        for (c, row) in t.iter_mut().enumerate() {
            for (v, out) in row.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        t
    }
}

/// PaddleVideo `Image2Array` + `Normalization`: frames of one size to f32 `[T, 3, H, W]`.
pub fn to_clip_tensor(frames: &[RgbFrame], norm: &Normalize) -> Result<ClipTensor, FrameError> {
    let (w, h) = clip_size(frames)?;
    let (w, h) = (w as usize, h as usize);
    let table = norm.table();
    let plane = w * h;
    let mut data = vec![0.0f32; frames.len() * 3 * plane];
    for (f, out) in frames.iter().zip(data.chunks_exact_mut(3 * plane)) {
        normalize_with(&table, &f.data, out);
    }
    Ok(ClipTensor {
        frames: frames.len(),
        height: h,
        width: w,
        data,
    })
}

/// `Image2Array` + `Normalization` of one frame into `out`, planar `[3, H, W]`
/// (`out.len()` must be `3 * width * height`).
pub fn normalize_into(
    frame: &RgbFrame,
    norm: &Normalize,
    out: &mut [f32],
) -> Result<(), FrameError> {
    frame.validate()?;
    if out.len() != frame.data.len() {
        return Err(FrameError::BufferSize {
            width: frame.width,
            height: frame.height,
            expected: frame.data.len(),
            found: out.len(),
        });
    }
    normalize_with(&norm.table(), &frame.data, out);
    Ok(())
}

fn normalize_with(table: &[[f32; 256]; 3], rgb: &[u8], out: &mut [f32]) {
    let plane = rgb.len() / 3;
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (((px, r), g), b) in rgb.chunks_exact(3).zip(r).zip(g).zip(b) {
        *r = table[0][usize::from(px[0])];
        *g = table[1][usize::from(px[1])];
        *b = table[2][usize::from(px[2])];
    }
}

/// One frame of the test pipeline: `Scale(short)` -> `CenterCrop(crop)` -> normalised
/// `[3, crop, crop]` written into `out` (the frame's slot of a clip tensor).
pub fn test_frame_into(
    frame: &RgbFrame,
    short: u32,
    crop: u32,
    norm: &Normalize,
    out: &mut [f32],
) -> Result<(), FrameError> {
    normalize_into(&scale_center_crop(frame, short, crop)?, norm, out)
}

/// The test/inference pipeline (`ppTSM_Inference_helper`): `Scale(short)` ->
/// `CenterCrop(crop)` -> `Image2Array` -> `Normalization`.
pub fn test_pipeline(
    frames: &[RgbFrame],
    short: u32,
    crop: u32,
    norm: &Normalize,
) -> Result<ClipTensor, FrameError> {
    let cropped = frames
        .iter()
        .map(|f| scale_center_crop(f, short, crop))
        .collect::<Result<Vec<_>, _>>()?;
    to_clip_tensor(&cropped, norm)
}

/// Validates a clip: at least one frame, every frame well-formed and of one size.
fn clip_size(frames: &[RgbFrame]) -> Result<(u32, u32), FrameError> {
    let first = frames.first().ok_or(FrameError::EmptyClip)?;
    for f in frames {
        f.validate()?;
        if (f.width, f.height) != (first.width, first.height) {
            return Err(FrameError::MixedSizes {
                first_w: first.width,
                first_h: first.height,
                other_w: f.width,
                other_h: f.height,
            });
        }
    }
    Ok((first.width, first.height))
}

#[cfg(test)]
mod tests {
    use super::super::pillow::tests::{fnv1a, pattern};
    use super::*;
    use crate::npy::{fixture_path, read_npy_f32, read_npy_u8};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::collections::BTreeSet;

    fn frame(width: u32, height: u32, data: Vec<u8>) -> RgbFrame {
        RgbFrame {
            index: 0,
            pts_ns: None,
            width,
            height,
            data,
        }
    }

    /// A frame whose pixel at (x, y) is (x, y, seed), to see where crops come from.
    fn coords(width: u32, height: u32, seed: u8) -> RgbFrame {
        let mut data = Vec::new();
        for y in 0..height {
            for x in 0..width {
                data.extend([x as u8, y as u8, seed]);
            }
        }
        frame(width, height, data)
    }

    fn load_frames(rel: &str) -> Vec<RgbFrame> {
        let a = read_npy_u8(&fixture_path(rel)).unwrap_or_else(|e| panic!("{e}"));
        let [t, h, w, 3] = a.shape[..] else {
            panic!("{rel}: shape {:?}", a.shape)
        };
        a.data
            .chunks_exact(h * w * 3)
            .take(t)
            .enumerate()
            .map(|(i, px)| RgbFrame {
                index: i as u32,
                pts_ns: None,
                width: w as u32,
                height: h as u32,
                data: px.to_vec(),
            })
            .collect()
    }

    fn json(rel: &str) -> serde_json::Value {
        let path = fixture_path(rel);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("valid json")
    }

    fn u8_sum(frames: &[RgbFrame]) -> u64 {
        frames
            .iter()
            .flat_map(|f| &f.data)
            .map(|&b| u64::from(b))
            .sum()
    }

    /// The uniform test pipeline on the fixture frames against PaddleVideo's model input.
    fn check_example(tag: &str) {
        let steps = &json("video/example_preprocess.json")[tag]["steps"];
        let frames = load_frames(&format!("video/example_{tag}_frames_rgb.npy"));
        let input_path = fixture_path(&format!("video/example_{tag}_input.npy"));
        let want = read_npy_f32(&input_path).unwrap_or_else(|e| panic!("{e}"));
        let norm = Normalize::imagenet();

        let scaled: Vec<RgbFrame> = frames
            .iter()
            .map(|f| scale_short_side(f, 256).expect("scale"))
            .collect();
        assert_eq!(
            (scaled[0].width, scaled[0].height),
            (
                steps["scale"]["size_wh"][0].as_u64().expect("w") as u32,
                steps["scale"]["size_wh"][1].as_u64().expect("h") as u32
            )
        );
        assert_eq!((scaled[0].width, scaled[0].height), (341, 256));
        assert_eq!(
            u8_sum(&scaled),
            steps["scale"]["sum"].as_u64().expect("sum"),
            "{tag}: sum after Scale(256)"
        );

        let cc = &steps["center_crop"];
        let (x1, y1) = (
            cc["x1"].as_u64().expect("x1"),
            cc["y1"].as_u64().expect("y1"),
        );
        assert_eq!((x1, y1), (58, 16));
        let cropped: Vec<RgbFrame> = scaled
            .iter()
            .map(|f| center_crop(f, 224).expect("crop"))
            .collect();
        for (c, s) in cropped.iter().zip(&scaled) {
            assert_eq!(c, &crop(s, 58, 16, 224, 224).expect("crop"));
        }
        assert_eq!(
            u8_sum(&cropped),
            cc["sum"].as_u64().expect("sum"),
            "{tag}: crop sum"
        );

        let got = test_pipeline(&frames, 256, 224, &norm).expect("pipeline");
        assert_eq!(got, to_clip_tensor(&cropped, &norm).expect("tensor"));
        assert_eq!(
            vec![got.frames, 3, got.height, got.width],
            want.shape,
            "{tag}: tensor shape"
        );
        let max_diff = got
            .data
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Recover the u8 crop PaddleVideo had from its float input (the normalisation is
        // strictly increasing per channel) and count differing bytes.
        let table = norm.table();
        let plane = 224 * 224;
        let mut u8_diffs = 0usize;
        for (t, f) in cropped.iter().enumerate() {
            for (i, px) in f.data.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    let v = want.data[(t * 3 + c) * plane + i];
                    let level = table[c].iter().position(|&x| x == v);
                    if level != Some(usize::from(px[c])) {
                        u8_diffs += 1;
                    }
                }
            }
        }
        println!("{tag}: max abs diff {max_diff:e}, differing u8 crop values {u8_diffs}");
        assert!(max_diff <= 1e-5, "{tag}: max abs diff {max_diff}");
        assert_eq!(max_diff, 0.0, "{tag}: expected a bit-exact input");
        assert_eq!(u8_diffs, 0, "{tag}: u8 values differ");

        // The statistics the fixture lists for the normalised tensor.
        let norm_step = &steps["normalization"];
        let n = got.data.len() as f64;
        let mean = got.data.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        assert!((mean - norm_step["mean"].as_f64().expect("mean")).abs() < 1e-9);
        for c in 0..3 {
            let channel: f64 = got
                .data
                .chunks_exact(plane)
                .skip(c)
                .step_by(3)
                .flatten()
                .map(|&x| f64::from(x))
                .sum();
            let want_c = norm_step["per_channel_mean"][c]
                .as_f64()
                .expect("channel mean");
            assert!((channel / (n / 3.0) - want_c).abs() < 1e-9, "channel {c}");
        }
        let min = got.data.iter().copied().fold(f32::INFINITY, f32::min);
        let max = got.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(f64::from(min), norm_step["min"].as_f64().expect("min"));
        assert_eq!(f64::from(max), norm_step["max"].as_f64().expect("max"));
    }

    #[test]
    fn scale_center_crop_equals_the_two_steps() {
        let norm = Normalize::imagenet();
        for (n, &(w, h)) in [
            (320, 240),
            (240, 320),
            (256, 256),
            (300, 300),
            (1280, 720),
            (341, 256),
            (256, 400),
            (600, 257),
            (224, 224),
            (3840, 2160),
        ]
        .iter()
        .enumerate()
        {
            let f = frame(w, h, pattern(w, h, (n % 2) as u8, 70 + n as u64));
            let two = scale_short_side(&f, 256).and_then(|s| center_crop(&s, 224));
            let one = scale_center_crop(&f, 256, 224);
            assert_eq!(one, two, "{w}x{h}");
            let mut slot = vec![0.0f32; 3 * 224 * 224];
            test_frame_into(&f, 256, 224, &norm, &mut slot).expect("into");
            let clip = to_clip_tensor(&[two.expect("two steps")], &norm).expect("tensor");
            assert_eq!(slot, clip.data, "{w}x{h}");
        }
        // Too small for the crop once scaled (short side already the target): same error.
        let f = frame(256, 200, pattern(256, 200, 0, 1));
        assert_eq!(
            scale_center_crop(&f, 200, 224),
            scale_short_side(&f, 200).and_then(|s| center_crop(&s, 224))
        );
        let mut short = vec![0.0f32; 5];
        assert!(normalize_into(&f, &norm, &mut short).is_err());
    }

    #[test]
    fn example_8f_pipeline_is_bit_exact() {
        check_example("8f");
    }

    #[test]
    fn example_16f_pipeline_is_bit_exact() {
        check_example("16f");
    }

    #[test]
    fn dense_crop_boxes_match_fixture() {
        let dense = json("video/example_dense.json");
        let boxes = three_crop_boxes(341, 256, 224);
        assert_eq!(boxes, [(0, 16), (116, 16), (58, 16)]);
        let want = dense["crops"]["boxes_xyxy"].as_array().expect("boxes");
        for ((x, y), b) in boxes.iter().zip(want) {
            let b: Vec<u64> = b
                .as_array()
                .expect("box")
                .iter()
                .map(|v| v.as_u64().expect("int"))
                .collect();
            assert_eq!(
                b,
                [
                    u64::from(*x),
                    u64::from(*y),
                    u64::from(x + 224),
                    u64::from(y + 224)
                ]
            );
        }
        // Steps are floored: the centre offset can differ from CenterCrop's rounding.
        assert_eq!(three_crop_boxes(343, 256, 224)[2], (58, 16));
        let f = coords(343, 256, 0);
        assert_eq!(center_crop(&f, 224).expect("crop").data[..2], [60, 16]);
    }

    #[test]
    fn scale_rules() {
        let cases = [
            ((256, 300), (256, 300)),
            ((300, 256), (300, 256)),
            ((256, 256), (256, 256)),
            ((200, 200), (256, 341)),
            ((400, 300), (341, 256)),
            ((240, 320), (256, 341)),
            ((320, 240), (341, 256)),
            ((1, 1), (256, 341)),
        ];
        for ((w, h), want) in cases {
            let f = frame(w, h, pattern(w, h, 0, 3));
            let s = scale_short_side(&f, 256).expect("scale");
            assert_eq!((s.width, s.height), want, "{w}x{h}");
            assert_eq!(s.data.len(), (want.0 * want.1 * 3) as usize);
            if (w, h) == want {
                assert_eq!(s, f);
            }
        }
        assert_eq!(
            scale_short_side(&frame(0, 5, vec![]), 256),
            Err(FrameError::ZeroSize {
                width: 0,
                height: 5
            })
        );
        assert!(matches!(
            scale_short_side(&frame(2, 2, vec![0; 5]), 256),
            Err(FrameError::BufferSize { .. })
        ));
        assert!(matches!(
            scale_short_side(&frame(4, 4, vec![0; 48]), 0),
            Err(FrameError::ZeroSize { .. })
        ));
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        for (w, want_x) in [
            (341, 58),
            (343, 60),
            (339, 58),
            (224, 0),
            (225, 0),
            (227, 2),
        ] {
            let c = center_crop(&coords(w, 230, 0), 224).expect("crop");
            assert_eq!((c.width, c.height), (224, 224));
            assert_eq!(c.data[..2], [want_x, 3], "width {w}");
        }
        assert!(matches!(
            center_crop(&coords(200, 300, 0), 224),
            Err(FrameError::CropOutOfBounds { .. })
        ));
    }

    #[test]
    fn crop_checks_bounds() {
        let f = coords(10, 8, 0);
        let c = crop(&f, 7, 5, 3, 3).expect("crop");
        assert_eq!(c.data[..3], [7, 5, 0]);
        assert_eq!(c.data[c.data.len() - 3..], [9, 7, 0]);
        for (x, y, w, h) in [(8, 0, 3, 1), (0, 6, 1, 3), (u32::MAX, 0, 2, 1)] {
            assert!(matches!(
                crop(&f, x, y, w, h),
                Err(FrameError::CropOutOfBounds { .. })
            ));
        }
        assert!(matches!(
            crop(&f, 0, 0, 0, 1),
            Err(FrameError::ZeroSize { .. })
        ));
    }

    #[test]
    fn multi_scale_candidates_for_341x256() {
        let sizes = multi_scale_crop_sizes(341, 256, 256);
        assert_eq!(
            sizes,
            [
                (256, 256),
                (224, 256),
                (256, 224),
                (224, 224),
                (192, 224),
                (224, 192),
                (192, 192),
                (168, 192),
                (192, 168),
                (168, 168)
            ]
        );
        assert_eq!(
            multi_scale_crop_offsets(341, 256, 256, 256),
            [
                (0.0, 0.0),
                (85.0, 0.0),
                (42.5, 0.0),
                (0.0, 0.0),
                (85.0, 0.0),
                (42.5, 0.0),
                (42.5, 0.0),
                (21.25, 0.0),
                (63.75, 0.0),
                (21.25, 0.0),
                (63.75, 0.0)
            ]
        );
        assert_eq!(
            multi_scale_crop_offsets(341, 256, 192, 168),
            [
                (0.0, 0.0),
                (149.0, 0.0),
                (0.0, 88.0),
                (149.0, 88.0),
                (74.5, 44.0),
                (0.0, 44.0),
                (149.0, 44.0),
                (74.5, 88.0),
                (74.5, 0.0),
                (37.25, 22.0),
                (111.75, 22.0),
                (37.25, 66.0),
                (111.75, 66.0)
            ]
        );
        // Pillow's boxes for those offsets (Python round on each coordinate).
        let boxes: Vec<_> = multi_scale_crop_offsets(341, 256, 192, 168)
            .into_iter()
            .map(|(x, y)| pillow_crop_box(x, y, 192, 168))
            .collect();
        assert_eq!(boxes[4], (74, 44, 266, 212));
        assert_eq!(boxes[10], (112, 22, 304, 190));
        // Every candidate of every size has 11 (one step zero) or 13 offsets.
        for (cw, ch) in sizes {
            let n = multi_scale_crop_offsets(341, 256, cw, ch).len();
            assert_eq!(n, if ch == 256 { 11 } else { 13 });
        }
    }

    #[test]
    fn multi_scale_snapping_and_negative_offsets() {
        // Short side 255: 255 snaps to 256, larger than the frame, so offsets go negative.
        assert_eq!(
            multi_scale_crop_sizes(255, 400, 256),
            [
                (256, 256),
                (223, 256),
                (256, 223),
                (223, 223),
                (191, 223),
                (223, 191),
                (191, 191),
                (168, 191),
                (191, 168),
                (168, 168)
            ]
        );
        let offsets = multi_scale_crop_offsets(255, 400, 256, 256);
        assert_eq!(
            offsets[..5],
            [
                (0.0, 0.0),
                (-1.0, 0.0),
                (0.0, 144.0),
                (-1.0, 144.0),
                (-0.5, 72.0)
            ]
        );
        // Odd crop widths: the rounded box is one pixel wider than asked.
        assert_eq!(pillow_crop_box(38.5, 32.0, 223, 191), (38, 32, 262, 223));
        assert_eq!(pillow_crop_box(-0.5, 72.0, 256, 256), (0, 72, 256, 328));
    }

    /// Pillow 13.0.0: `img.crop((ox, oy, ox + cw, oy + ch)).resize((256, 256), BILINEAR)`.
    /// (w, h, kind, seed, ox, oy, cw, ch, cropped size, output sum, FNV-1a 64)
    type CropCase = (u32, u32, u8, u64, f64, f64, u32, u32, (u32, u32), u64, u64);
    const PILLOW_CROP_RESIZE: &[CropCase] = &[
        (
            255,
            400,
            0,
            21,
            -1.0,
            144.0,
            256,
            256,
            (256, 256),
            24974325,
            0xf79c5c86a576ac34,
        ),
        (
            255,
            400,
            1,
            22,
            -0.5,
            72.0,
            256,
            256,
            (256, 256),
            25025700,
            0x55adc73170bbc11f,
        ),
        (
            341,
            256,
            0,
            23,
            43.25,
            16.0,
            168,
            192,
            (168, 192),
            25103260,
            0x43a76bf7986a5b91,
        ),
        (
            300,
            255,
            0,
            24,
            38.5,
            32.0,
            223,
            191,
            (224, 191),
            25074888,
            0xc26569ffa6d350bb,
        ),
    ];

    #[test]
    fn multi_scale_crop_step_matches_pillow() {
        for &(w, h, kind, seed, ox, oy, cw, ch, size, sum, hash) in PILLOW_CROP_RESIZE {
            let f = frame(w, h, pattern(w, h, kind, seed));
            let (x0, y0, x1, y1) = pillow_crop_box(ox, oy, cw, ch);
            assert_eq!(((x1 - x0) as u32, (y1 - y0) as u32), size);
            let out = crop_and_resize(&f, ox, oy, cw, ch, 256).expect("crop");
            assert_eq!((out.width, out.height), (256, 256));
            assert_eq!(u8_sum(std::slice::from_ref(&out)), sum);
            assert_eq!(fnv1a(&out.data), hash, "{w}x{h} at ({ox}, {oy})");
        }
        // Outside the frame Pillow pads with black.
        let padded = crop_padded(&coords(4, 3, 9), -1, 1, 3, 5).expect("crop");
        assert_eq!((padded.width, padded.height), (4, 4));
        assert_eq!(padded.data[..6], [0, 0, 0, 0, 1, 9]);
        assert!(padded.data[24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn multi_scale_crop_draws_one_candidate_per_clip() {
        let frames = [coords(43, 32, 1), coords(43, 32, 2)];
        let sizes = multi_scale_crop_sizes(43, 32, 32);
        for seed in 0..20 {
            let out = multi_scale_crop(&frames, &mut StdRng::seed_from_u64(seed), 32).expect("msc");
            assert_eq!(out.len(), 2);
            // Some candidate reproduces both frames with the same crop.
            let found = sizes.iter().any(|&(cw, ch)| {
                multi_scale_crop_offsets(43, 32, cw, ch)
                    .iter()
                    .any(|&(ox, oy)| {
                        frames.iter().zip(&out).all(|(f, o)| {
                            crop_and_resize(f, ox, oy, cw, ch, 32).expect("crop") == *o
                        })
                    })
            });
            assert!(found, "seed {seed}");
        }
        assert_eq!(
            multi_scale_crop(&[], &mut StdRng::seed_from_u64(0), 32),
            Err(FrameError::EmptyClip)
        );
        assert!(matches!(
            multi_scale_crop(
                &[coords(4, 4, 0), coords(5, 4, 0)],
                &mut StdRng::seed_from_u64(0),
                2
            ),
            Err(FrameError::MixedSizes { .. })
        ));
    }

    #[test]
    fn random_crop_shares_one_offset() {
        let frames = [coords(30, 20, 1), coords(30, 20, 2)];
        let mut rng = StdRng::seed_from_u64(5);
        let (mut seen_x, mut seen_y) = (BTreeSet::new(), BTreeSet::new());
        for _ in 0..400 {
            let out = random_crop(&frames, 14, &mut rng).expect("crop");
            assert_eq!((out[0].width, out[0].height), (14, 14));
            let (x, y) = (out[0].data[0], out[0].data[1]);
            assert_eq!(out[1].data[..3], [x, y, 2]);
            seen_x.insert(x);
            seen_y.insert(y);
        }
        // Both ranges are inclusive: x in 0..=16, y in 0..=6.
        assert_eq!(seen_x, (0..=16).collect());
        assert_eq!(seen_y, (0..=6).collect());
    }

    #[test]
    fn random_crop_checks_sizes() {
        let frames = [coords(30, 20, 1)];
        let mut rng = StdRng::seed_from_u64(5);
        assert!(matches!(
            random_crop(&frames, 21, &mut rng),
            Err(FrameError::CropOutOfBounds { .. })
        ));
        let out = random_crop(&frames, 20, &mut rng).expect("crop");
        assert_eq!(out[0].data[1], 0);
    }

    #[test]
    fn random_flip_mirrors_whole_clips() {
        let clip = vec![coords(5, 2, 1), coords(5, 2, 2)];
        let mut rng = StdRng::seed_from_u64(11);
        let mut flips = 0;
        for _ in 0..1000 {
            let out = random_flip(clip.clone(), &mut rng);
            if out == clip {
                continue;
            }
            flips += 1;
            for (o, f) in out.iter().zip(&clip) {
                // First pixel of each row is the old last one, channels in RGB order.
                assert_eq!(o.data[..3], [4, 0, f.data[2]]);
                assert_eq!(o.data[15..18], [4, 1, f.data[2]]);
            }
        }
        assert!((400..600).contains(&flips), "{flips} flips of 1000");
        let empty = vec![frame(0, 0, vec![])];
        assert_eq!(random_flip(empty.clone(), &mut rng), empty);
    }

    #[test]
    fn normalisation_constants_and_layout() {
        // np.float32(0.485).view(np.uint32) etc.
        let n = Normalize::imagenet();
        let bits = |v: [f32; 3]| v.map(f32::to_bits);
        assert_eq!(bits(n.mean), [0x3ef851ec, 0x3ee978d5, 0x3ecfdf3b]);
        assert_eq!(bits(n.std), [0x3e6a7efa, 0x3e656042, 0x3e666666]);

        let f = frame(2, 1, vec![0, 128, 255, 10, 20, 30]);
        let t = to_clip_tensor(&[f.clone(), f], &n).expect("tensor");
        assert_eq!((t.frames, t.height, t.width, t.data.len()), (2, 1, 2, 12));
        let v = |x: u8, c: usize| (f32::from(x) / 255.0 - n.mean[c]) / n.std[c];
        let one = [v(0, 0), v(10, 0), v(128, 1), v(20, 1), v(255, 2), v(30, 2)];
        assert_eq!(t.data[..6], one);
        assert_eq!(t.data[6..], one);
        assert_eq!(to_clip_tensor(&[], &n), Err(FrameError::EmptyClip));
        assert!(matches!(
            to_clip_tensor(&[frame(1, 1, vec![1, 2])], &n),
            Err(FrameError::BufferSize { .. })
        ));
    }
}
