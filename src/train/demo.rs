//! `kineto demo-data`: a labelled set of synthetic clips, one folder per class, made with
//! GStreamer's `videotestsrc`, ready for `kineto train DIR`.
//!
//! Classes differ clearly by pattern and motion (a ball moving in different ways, scrolling
//! colour bars, expanding zone-plate rings, a spinning pinwheel, ...), so that the pooled
//! features of a frozen Kinetics backbone separate them. Within a class the clips vary in
//! length (±20% of `seconds`), frame size (portrait included), frame rate (24/25/30),
//! container and codec (MP4/H.264, WebM/VP8, AVI/MJPEG, MKV/H.264, MOV/H.264), colours, speed
//! and start offset. Everything is drawn from a seeded RNG per clip, so the same seed gives the
//! same clips (and a clip does not change when `--clips-per-class` or `--classes` does).
//!
//! The folder gets a manifest, `kineto-demo-data.json`, written before the first clip and again
//! when all are done: it marks the folder as demo-data output (a later run may replace it) and
//! lists every clip with its parameters.

use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;

use super::TrainError;
use crate::checkpoint::write_file_atomic;
use crate::video::synth::{
    ClipSpec, Codec, ColourSweep, Container, EncodeOptions, SourceOptions, SourceValue,
    synth_clip_with_source,
};

/// The manifest file in the output folder.
pub const MANIFEST: &str = "kineto-demo-data.json";

/// How many classes `demo-data` can make.
pub const MAX_CLASSES: usize = CLASSES.len();

/// Limits on the options (larger values are refused as a usage error).
pub const MAX_CLIPS_PER_CLASS: usize = 1000;
pub const MAX_SECONDS: f64 = 600.0;

/// What to make.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoOptions {
    /// Number of classes, 2..=[`MAX_CLASSES`] (the first ones of [`class_names`]).
    pub classes: usize,
    pub clips_per_class: usize,
    /// Mean clip length; each clip is within ±20% of it.
    pub seconds: f64,
    pub seed: u64,
    /// Write into a non-empty folder that is not a previous demo-data output.
    pub force: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            classes: 4,
            clips_per_class: 12,
            seconds: 3.0,
            seed: 0,
            force: false,
        }
    }
}

impl DemoOptions {
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(2..=MAX_CLASSES).contains(&self.classes) {
            return Err(TrainError::bad_option(
                "--classes",
                format!("must be between 2 and {MAX_CLASSES}, not {}", self.classes),
            ));
        }
        if !(1..=MAX_CLIPS_PER_CLASS).contains(&self.clips_per_class) {
            return Err(TrainError::bad_option(
                "--clips-per-class",
                format!(
                    "must be between 1 and {MAX_CLIPS_PER_CLASS}, not {}",
                    self.clips_per_class
                ),
            ));
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= MAX_SECONDS) {
            return Err(TrainError::bad_option(
                "--seconds",
                format!(
                    "must be more than 0 and at most {MAX_SECONDS}, not {}",
                    self.seconds
                ),
            ));
        }
        Ok(())
    }
}

/// One clip to make.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoClip {
    pub class: String,
    pub label: usize,
    /// Relative to the output folder: `<class>/<class>_<k>.<ext>`.
    pub file: PathBuf,
    pub spec: ClipSpec,
    pub source: SourceOptions,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DemoClassSummary {
    pub name: String,
    pub clips: usize,
}

/// What `demo-data` prints: `{dir, classes: [{name, clips}], clips, elapsed_s}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DemoSummary {
    pub dir: PathBuf,
    pub classes: Vec<DemoClassSummary>,
    pub clips: usize,
    pub elapsed_s: f64,
}

/// How a class looks: pattern, `videotestsrc` properties, changing colours, and how many
/// generated frames make one written frame (the speed of patterns animated by the frame
/// counter).
struct Look {
    pattern: &'static str,
    properties: Vec<(&'static str, SourceValue)>,
    sweep: Option<ColourSweep>,
    step: u32,
}

struct ClassDef {
    name: &'static str,
    /// Draws one clip's look from the clip's RNG, given its frame rate.
    look: fn(&mut StdRng, u32) -> Look,
}

/// The classes, in the order `--classes N` takes them: the first four are the most distinct.
const CLASSES: [ClassDef; 10] = [
    ClassDef {
        name: "ball_wavy",
        look: ball_wavy,
    },
    ClassDef {
        name: "bars_scroll",
        look: bars_scroll,
    },
    ClassDef {
        name: "zoneplate_rings",
        look: zoneplate_rings,
    },
    ClassDef {
        name: "checkers_scroll",
        look: checkers_scroll,
    },
    ClassDef {
        name: "pinwheel_spin",
        look: pinwheel_spin,
    },
    ClassDef {
        name: "snow",
        look: snow,
    },
    ClassDef {
        name: "gradient_colours",
        look: gradient_colours,
    },
    ClassDef {
        name: "ball_sweep",
        look: ball_sweep,
    },
    ClassDef {
        name: "circular_scroll",
        look: circular_scroll,
    },
    ClassDef {
        name: "ball_hsweep",
        look: ball_hsweep,
    },
];

/// All class names `demo-data` can make, in order.
pub fn class_names() -> Vec<&'static str> {
    CLASSES.iter().map(|c| c.name).collect()
}

/// Frame sizes (width, height); one portrait. Multiples of 16: jpegenc reads past the end of
/// a frame whose size is not a whole number of 16x16 blocks, which makes MJPEG clips differ
/// from run to run.
const SIZES: [(u32, u32); 6] = [
    (320, 240),
    (256, 192),
    (352, 240),
    (240, 320),
    (288, 224),
    (320, 176),
];

const RATES: [u32; 3] = [24, 25, 30];

/// (container, codec, extension); each class starts at a random place in this list and takes
/// the next one for each clip, so every class gets several.
const FORMATS: [(Container, Codec, &str); 5] = [
    (Container::Mp4, Codec::H264, "mp4"),
    (Container::Webm, Codec::Vp8, "webm"),
    (Container::Avi, Codec::Mjpeg, "avi"),
    (Container::Mkv, Codec::H264, "mkv"),
    (Container::Mov, Codec::H264, "mov"),
];

fn hsv(h: f64, s: f64, v: f64) -> u32 {
    let h = h.rem_euclid(360.0) / 60.0;
    let c = v * s;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    let byte = |f: f64| ((f + m) * 255.0).round().clamp(0.0, 255.0) as u32;
    0xff00_0000 | (byte(r) << 16) | (byte(g) << 8) | byte(b)
}

fn bright(rng: &mut StdRng) -> u32 {
    hsv(
        rng.random_range(0.0..360.0),
        rng.random_range(0.4..1.0),
        rng.random_range(0.85..1.0),
    )
}

fn dark(rng: &mut StdRng) -> u32 {
    hsv(
        rng.random_range(0.0..360.0),
        rng.random_range(0.0..0.8),
        rng.random_range(0.0..0.3),
    )
}

fn colours(rng: &mut StdRng) -> Vec<(&'static str, SourceValue)> {
    vec![
        ("foreground-color", SourceValue::UInt(bright(rng))),
        ("background-color", SourceValue::UInt(dark(rng))),
    ]
}

fn nick(s: &str) -> SourceValue {
    SourceValue::Nick(s.to_string())
}

fn signed(rng: &mut StdRng, lo: i32, hi: i32) -> i32 {
    let v = rng.random_range(lo..=hi);
    if rng.random_bool(0.5) { v } else { -v }
}

/// The ball's position follows the frame counter, one period per 200 generated frames
/// (`animation-mode=running-time` does not move it in GStreamer 1.22's non-live source): keep
/// every 3rd..6th frame, so that a period takes 1.3-2.7 s at 25 fps.
fn ball(rng: &mut StdRng, motion: &str) -> Look {
    let mut properties = vec![("motion", nick(motion))];
    properties.extend(colours(rng));
    Look {
        pattern: "ball",
        properties,
        sweep: None,
        step: rng.random_range(3..=6),
    }
}

fn ball_wavy(rng: &mut StdRng, _fps: u32) -> Look {
    ball(rng, "wavy")
}

fn ball_sweep(rng: &mut StdRng, _fps: u32) -> Look {
    ball(rng, "sweep")
}

fn ball_hsweep(rng: &mut StdRng, _fps: u32) -> Look {
    ball(rng, "hsweep")
}

fn bars_scroll(rng: &mut StdRng, fps: u32) -> Look {
    // Not "smpte": its noise patch differs from run to run in GStreamer 1.22.
    let pattern = if rng.random_bool(0.5) {
        "smpte100"
    } else {
        "smpte75"
    };
    // 100..240 pixels per second, left or right.
    let speed = signed(rng, 100, 240) / fps as i32;
    Look {
        pattern,
        properties: vec![("horizontal-speed", SourceValue::Int(speed))],
        sweep: None,
        step: 1,
    }
}

fn zoneplate_rings(rng: &mut StdRng, _fps: u32) -> Look {
    let k2 = rng.random_range(12..=40);
    let mut properties = vec![
        ("kx2", SourceValue::Int(k2)),
        ("ky2", SourceValue::Int(k2)),
        // Phase change per frame (of 256): rings that move in or out.
        ("kt", SourceValue::Int(signed(rng, 6, 14))),
    ];
    properties.extend(colours(rng));
    Look {
        pattern: "zone-plate",
        properties,
        sweep: None,
        step: 1,
    }
}

fn checkers_scroll(rng: &mut StdRng, _fps: u32) -> Look {
    let pattern = if rng.random_bool(0.5) {
        "checkers-8"
    } else {
        "checkers-4"
    };
    Look {
        pattern,
        properties: vec![("horizontal-speed", SourceValue::Int(signed(rng, 1, 3)))],
        sweep: None,
        step: 1,
    }
}

fn pinwheel_spin(rng: &mut StdRng, fps: u32) -> Look {
    // theta grows by kt/1000 rad per frame: 0.15..0.4 rad per second (the spokes repeat every
    // 0.33 rad, so faster would alias between the frames a model samples).
    let per_second = rng.random_range(150..=400);
    let mut properties = vec![(
        "kt",
        SourceValue::Int(signed(rng, per_second, per_second) / fps as i32),
    )];
    properties.extend(colours(rng));
    Look {
        pattern: "pinwheel",
        properties,
        sweep: None,
        step: 1,
    }
}

fn snow(rng: &mut StdRng, _fps: u32) -> Look {
    Look {
        pattern: "snow",
        properties: colours(rng),
        sweep: None,
        step: 1,
    }
}

fn gradient_colours(rng: &mut StdRng, fps: u32) -> Look {
    let period = (f64::from(fps) * rng.random_range(0.6..1.6)).round() as u32;
    Look {
        pattern: "gradient",
        properties: Vec::new(),
        sweep: Some(ColourSweep {
            from: (bright(rng), dark(rng)),
            to: (bright(rng), bright(rng)),
            period_frames: period.max(4),
        }),
        step: 1,
    }
}

fn circular_scroll(rng: &mut StdRng, fps: u32) -> Look {
    let mut properties = vec![(
        "horizontal-speed",
        SourceValue::Int(signed(rng, 60, 150) / fps as i32),
    )];
    properties.extend(colours(rng));
    Look {
        pattern: "circular",
        properties,
        sweep: None,
        step: 1,
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG of clip `k` of class `label` (`k = u64::MAX`: the class's own).
fn rng_for(seed: u64, label: usize, k: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix(seed ^ splitmix(((label as u64) << 40) ^ k)))
}

/// Every clip of a run, drawn from the seed (no I/O).
pub fn plan(opts: &DemoOptions) -> Result<Vec<DemoClip>, TrainError> {
    opts.validate()?;
    let mut clips = Vec::new();
    for (label, class) in CLASSES.iter().enumerate().take(opts.classes) {
        let first_format = rng_for(opts.seed, label, u64::MAX).random_range(0..FORMATS.len());
        for k in 0..opts.clips_per_class {
            let mut rng = rng_for(opts.seed, label, k as u64);
            let (width, height) = SIZES[rng.random_range(0..SIZES.len())];
            let fps = RATES[rng.random_range(0..RATES.len())];
            let seconds = opts.seconds * rng.random_range(0.8..=1.2);
            let frames = ((seconds * f64::from(fps)).round() as u32).max(8);
            // A start offset into the animation (the ball's period is 200 frames).
            let skip_frames = rng.random_range(0..200);
            let look = (class.look)(&mut rng, fps);
            let (container, codec, ext) = FORMATS[(first_format + k) % FORMATS.len()];
            let name = format!("{}_{:03}.{ext}", class.name, k);
            clips.push(DemoClip {
                class: class.name.to_string(),
                label,
                file: Path::new(class.name).join(name),
                spec: ClipSpec {
                    container,
                    codec,
                    width,
                    height,
                    fps: (fps, 1),
                    frames,
                    pattern: look.pattern.to_string(),
                    audio: false,
                },
                source: SourceOptions {
                    properties: look
                        .properties
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    skip_frames,
                    frame_step: look.step,
                    colour_sweep: look.sweep,
                    x264_preset: Some("ultrafast".into()),
                    single_thread: true,
                    frame_durations_ms: Vec::new(),
                },
            });
        }
    }
    Ok(clips)
}

fn manifest(opts: &DemoOptions, clips: &[DemoClip], complete: bool) -> serde_json::Value {
    let classes: Vec<serde_json::Value> = CLASSES
        .iter()
        .take(opts.classes)
        .enumerate()
        .map(|(label, class)| {
            let files: Vec<serde_json::Value> = clips
                .iter()
                .filter(|c| c.label == label)
                .map(|c| {
                    json!({
                        "file": c.file.to_string_lossy().replace('\\', "/"),
                        "container": format!("{:?}", c.spec.container).to_lowercase(),
                        "codec": format!("{:?}", c.spec.codec).to_lowercase(),
                        "width": c.spec.width,
                        "height": c.spec.height,
                        "fps": c.spec.fps.0,
                        "frames": c.spec.frames,
                        "pattern": c.spec.pattern,
                        "skip_frames": c.source.skip_frames,
                        "frame_step": c.source.frame_step,
                    })
                })
                .collect();
            json!({"name": class.name, "label": label, "clips": files})
        })
        .collect();
    json!({
        "format": "kineto-demo-data",
        "version": 1,
        "complete": complete,
        "seed": opts.seed,
        "seconds": opts.seconds,
        "clips_per_class": opts.clips_per_class,
        "classes": classes,
    })
}

fn write_manifest(dir: &Path, value: &serde_json::Value) -> Result<(), TrainError> {
    let path = dir.join(MANIFEST);
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    write_file_atomic(&path, text.as_bytes()).map_err(|e| TrainError::io(path, e))
}

/// A manifest's clip path is used for deleting only if it is `<class>/<file>`, nothing else.
fn safe_relative(file: &str) -> Option<PathBuf> {
    let path = PathBuf::from(file);
    let parts: Vec<Component> = path.components().collect();
    (parts.len() == 2 && parts.iter().all(|c| matches!(c, Component::Normal(_)))).then_some(path)
}

/// Remove the clips a previous run listed in its manifest (and their class folders when
/// that leaves them empty). An unreadable manifest is an error unless `force`.
fn remove_previous(dir: &Path, force: bool) -> Result<(), TrainError> {
    let path = dir.join(MANIFEST);
    let parsed = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|v| v["format"] == "kineto-demo-data");
    let Some(old) = parsed else {
        if force {
            return Ok(());
        }
        return Err(TrainError::Target {
            path,
            problem: "not a readable demo-data manifest; pass --force to write into the folder \
                      anyway"
                .into(),
        });
    };
    let empty = Vec::new();
    for class in old["classes"].as_array().unwrap_or(&empty) {
        let mut folders = Vec::new();
        for clip in class["clips"].as_array().unwrap_or(&empty) {
            let Some(rel) = clip["file"].as_str().and_then(safe_relative) else {
                continue;
            };
            let file = dir.join(&rel);
            if file.is_file() {
                std::fs::remove_file(&file).map_err(|e| TrainError::io(&file, e))?;
            }
            let _ = std::fs::remove_file(part_path(&file));
            if let Some(parent) = file.parent()
                && !folders.contains(&parent.to_path_buf())
            {
                folders.push(parent.to_path_buf());
            }
        }
        for folder in folders {
            // Only when empty: anything the user put there stays.
            let _ = std::fs::remove_dir(folder);
        }
    }
    Ok(())
}

/// Make sure `dir` may be written: create it, or accept an empty folder or a previous
/// demo-data output (whose clips are removed first), or any folder with `force`.
pub fn prepare_dir(dir: &Path, force: bool) -> Result<(), TrainError> {
    if !dir.exists() {
        return std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e));
    }
    if !dir.is_dir() {
        return Err(TrainError::Target {
            path: dir.to_path_buf(),
            problem: "exists and is not a folder".into(),
        });
    }
    if dir.join(MANIFEST).is_file() {
        return remove_previous(dir, force);
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    if entries.next().is_some() && !force {
        return Err(TrainError::Target {
            path: dir.to_path_buf(),
            problem: "folder is not empty and is not a previous `kineto demo-data` output; \
                      choose another folder or pass --force to write into it"
                .into(),
        });
    }
    Ok(())
}

fn part_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    file.with_file_name(name)
}

/// Encode one clip under a temporary name, fsync, rename.
fn write_clip(dir: &Path, clip: &DemoClip) -> Result<(), TrainError> {
    let file = dir.join(&clip.file);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    }
    let part = part_path(&file);
    let encode = EncodeOptions {
        keyframe_interval: Some(clip.spec.fps.0),
        bitrate_kbps: None,
        fast: true,
    };
    let result = synth_clip_with_source(&part, &clip.spec, &clip.source, &encode)
        .map_err(TrainError::from)
        .and_then(|()| {
            std::fs::File::open(&part)
                .and_then(|f| f.sync_all())
                .and_then(|()| std::fs::rename(&part, &file))
                .map_err(|e| TrainError::io(&file, e))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

/// Write the demo set into `dir` (see [`prepare_dir`] for which folders are accepted). Clips
/// of a class are encoded in parallel on rayon's current pool; `on_class(class, clips done,
/// clips in all)` is called after each class.
pub fn generate(
    dir: &Path,
    opts: &DemoOptions,
    mut on_class: impl FnMut(&DemoClassSummary, usize, usize),
) -> Result<DemoSummary, TrainError> {
    let start = Instant::now();
    let clips = plan(opts)?;
    prepare_dir(dir, opts.force)?;
    write_manifest(dir, &manifest(opts, &clips, false))?;
    let total = clips.len();
    let mut done = 0;
    let mut classes = Vec::new();
    for (label, class) in CLASSES.iter().enumerate().take(opts.classes) {
        let mine: Vec<&DemoClip> = clips.iter().filter(|c| c.label == label).collect();
        let results: Vec<Result<(), TrainError>> =
            mine.par_iter().map(|c| write_clip(dir, c)).collect();
        for r in results {
            r?;
        }
        done += mine.len();
        let summary = DemoClassSummary {
            name: class.name.to_string(),
            clips: mine.len(),
        };
        on_class(&summary, done, total);
        classes.push(summary);
    }
    write_manifest(dir, &manifest(opts, &clips, true))?;
    Ok(DemoSummary {
        dir: dir.to_path_buf(),
        classes,
        clips: total,
        elapsed_s: (start.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_seeded_and_varied() {
        let opts = DemoOptions {
            classes: MAX_CLASSES,
            clips_per_class: 12,
            ..DemoOptions::default()
        };
        let a = plan(&opts).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, plan(&opts).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(a.len(), MAX_CLASSES * 12);
        let other = plan(&DemoOptions {
            seed: 1,
            ..opts.clone()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a, other);
        // Fewer clips or classes: the same first clips.
        let fewer = plan(&DemoOptions {
            classes: 3,
            clips_per_class: 5,
            ..opts.clone()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        for c in &fewer {
            assert!(a.contains(c), "{c:?}");
        }
        let names = class_names();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for (label, name) in names.iter().enumerate() {
            let mine: Vec<&DemoClip> = a.iter().filter(|c| c.label == label).collect();
            assert!(
                mine.iter()
                    .all(|c| c.class == *name && c.file.starts_with(name))
            );
            let formats: std::collections::BTreeSet<String> = mine
                .iter()
                .map(|c| format!("{:?}", c.spec.container))
                .collect();
            assert_eq!(formats.len(), FORMATS.len(), "{name}");
            let sizes: std::collections::BTreeSet<(u32, u32)> =
                mine.iter().map(|c| (c.spec.width, c.spec.height)).collect();
            assert!(sizes.len() >= 3, "{name}: {sizes:?}");
            for c in &mine {
                let fps = f64::from(c.spec.fps.0);
                let (lo, hi) = ((0.8 * 3.0 * fps).round(), (1.2 * 3.0 * fps).round());
                let n = f64::from(c.spec.frames);
                assert!((lo..=hi).contains(&n), "{name}: {n} frames at {fps}");
            }
        }
    }

    #[test]
    fn options_are_checked() {
        for (classes, clips, seconds) in [
            (1, 12, 3.0),
            (MAX_CLASSES + 1, 12, 3.0),
            (4, 0, 3.0),
            (4, 12, 0.0),
            (4, 12, f64::NAN),
        ] {
            let opts = DemoOptions {
                classes,
                clips_per_class: clips,
                seconds,
                ..DemoOptions::default()
            };
            let e = plan(&opts).err();
            assert!(
                matches!(e, Some(TrainError::BadOption { .. })),
                "{opts:?}: {e:?}"
            );
        }
    }

    #[test]
    fn colours_and_sweep() {
        assert_eq!(hsv(0.0, 1.0, 1.0), 0xffff_0000);
        assert_eq!(hsv(120.0, 1.0, 1.0), 0xff00_ff00);
        assert_eq!(hsv(240.0, 1.0, 1.0), 0xff00_00ff);
        assert_eq!(hsv(77.0, 0.0, 0.0), 0xff00_0000);
        let s = ColourSweep {
            from: (0xff00_0000, 0xffff_ffff),
            to: (0xffff_ffff, 0xff00_0000),
            period_frames: 10,
        };
        assert_eq!(s.at(0), s.from);
        assert_eq!(s.at(5), s.to);
        assert_eq!(s.at(10), s.from);
    }

    #[test]
    fn manifest_paths_must_be_class_slash_file() {
        assert!(safe_relative("ball_wavy/ball_wavy_000.mp4").is_some());
        for bad in [
            "../x/y.mp4",
            "/etc/passwd",
            "a/b/c.mp4",
            "a.mp4",
            "a/../b.mp4",
        ] {
            assert!(safe_relative(bad).is_none(), "{bad}");
        }
    }
}
