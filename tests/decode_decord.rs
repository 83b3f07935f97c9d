//! Frames are addressed by their index in decode order, as decord (PaddleVideo's reader) counts
//! them, whatever the clip's timestamps: a clip joined from four clips (its timestamps jump and
//! repeat at the joins, as in edited footage) and variable-frame-rate clips give the same frames
//! at the same indices as decord 0.6.0.
//!
//! decord is run by `tests/python/decord_frames.py` with the interpreter `KINETO_PADDLE_PYTHON`
//! names, a venv with `decord==0.6.0` (`.ci/run` installs it). Without it the tests fail. The
//! clips are made with GStreamer at test time.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{ScratchDir, fixture, kineto, s, stderr};
use kineto::npy::read_npy_u8;
use kineto::video::decode::FrameDecoder;
use kineto::video::frame::RgbFrame;
use kineto::video::sample::{dense_indices, uniform_indices};
use kineto::video::synth::{
    ClipSpec, Codec, Container, EncodeOptions, SourceOptions, SourceValue, join_clips,
    synth_clip_with_source,
};

/// decord's frames: all of them read in order (`indices` empty), or one `get_batch(indices)`
/// on a fresh reader. Returns (`len(VideoReader)`, frames as [N, H, W, 3] bytes, frame size).
fn decord_frames(video: &Path, out: &Path, indices: &[u32]) -> (u32, Vec<u8>, usize) {
    let mut args = vec![video.as_os_str().to_owned(), out.as_os_str().to_owned()];
    args.extend(
        indices
            .iter()
            .map(|i| std::ffi::OsString::from(i.to_string())),
    );
    let output = common::python_script("decord_frames.py", args);
    assert!(
        output.status.success(),
        "decord_frames.py failed on {} (is decord==0.6.0 installed in KINETO_PADDLE_PYTHON's \
         venv?):\n{}",
        video.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let len = report["len"].as_u64().expect("len") as u32;
    let frames = read_npy_u8(out).expect("decord frames");
    let frame_len = frames.shape[1..].iter().product();
    (len, frames.data, frame_len)
}

/// Index of the decord frame (of `all`) equal to `frame`, for the failure message.
fn which(all: &[u8], frame_len: usize, frame: &RgbFrame) -> Option<usize> {
    all.chunks(frame_len)
        .position(|f| f == frame.data.as_slice())
}

/// Kineto's frames at `indices` equal decord's frames at the same indices in `all` (decord's
/// frames read in order).
fn assert_same_frames(frames: &[RgbFrame], indices: &[u32], all: &[u8], frame_len: usize) {
    assert_eq!(frames.len(), indices.len());
    for (f, &i) in frames.iter().zip(indices) {
        assert_eq!(f.index, i);
        let want = &all[i as usize * frame_len..(i as usize + 1) * frame_len];
        assert!(
            f.data == want,
            "frame {i} differs from decord's frame {i} (it is decord's frame {:?})",
            which(all, frame_len, f)
        );
    }
}

/// A clip whose ball moves over a background of its own colour, so that every frame differs.
fn part(path: &Path, frames: u32, background: u32) {
    let mut spec = ClipSpec::new(Container::Mp4, Codec::H264, frames);
    (spec.width, spec.height) = (96, 72);
    let source = SourceOptions {
        properties: vec![("background-color".into(), SourceValue::UInt(background))],
        ..Default::default()
    };
    let opts = EncodeOptions {
        fast: true,
        ..Default::default()
    };
    synth_clip_with_source(path, &spec, &source, &opts).unwrap_or_else(|e| panic!("{e}"));
}

/// Four clips joined with GStreamer's `concat`: every index reads decord's frame, the sparse
/// requests of classify, preprocess (uniform and dense) and the timeline included, and the
/// commands that failed on it ("frame 38 could not be decoded", "a frame without a usable
/// timestamp") succeed.
#[test]
fn a_joined_clip_reads_decords_frames_at_decords_indices() {
    let dir = ScratchDir::new("decord-joined");
    let colours = [0xff00_0080u32, 0xff00_8000, 0xff80_0000, 0xff80_8000];
    let parts: Vec<PathBuf> = (0..4u32)
        .map(|i| {
            let p = dir.join(format!("part{i}.mp4"));
            part(&p, 150 + 5 * i, colours[i as usize]);
            p
        })
        .collect();
    let joined = dir.join("joined.mp4");
    join_clips(&parts, &joined).unwrap_or_else(|e| panic!("{e}"));

    let (len, all, frame_len) = decord_frames(&joined, &dir.join("all.npy"), &[]);
    assert_eq!(len, 630, "decord counts every frame of the four parts");

    let mut dec = FrameDecoder::open(&joined).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dec.info().frame_count, len);
    let n = len as usize;
    let mut requests: Vec<Vec<u32>> = vec![
        uniform_indices(n, 8),
        uniform_indices(n, 16),
        dense_indices(n, 8).views.concat(),
        // Backwards, repeated, and across the joins.
        vec![600, 3, 3, 149, 150, 151, 300, 299, 465, 629],
    ];
    requests.push((0..len).collect());
    for indices in &requests {
        let frames = dec.frames_at(indices).unwrap_or_else(|e| panic!("{e}"));
        assert_same_frames(&frames, indices, &all, frame_len);
    }
    // A fresh decoder for each sparse request, as `classify` opens one per clip.
    for indices in &requests[..3] {
        let frames = FrameDecoder::open(&joined)
            .and_then(|mut d| d.frames_at(indices))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_same_frames(&frames, indices, &all, frame_len);
    }

    // The commands of the report.
    let weights = fixture("pptsmv2/w8.pdparams");
    let raw = dir.join("raw.npy");
    let out = kineto(&[
        "preprocess",
        s(&joined),
        "--frames",
        "8",
        "--output",
        s(&dir.join("x.npy")),
        "--frames-output",
        s(&raw),
    ]);
    assert!(out.status.success(), "preprocess: {}", stderr(&out));
    let raw = read_npy_u8(&raw).expect("frames");
    for (k, &i) in uniform_indices(n, 8).iter().enumerate() {
        let want = &all[i as usize * frame_len..(i as usize + 1) * frame_len];
        assert!(
            raw.data[k * frame_len..(k + 1) * frame_len] == *want,
            "frame {i}"
        );
    }
    let out = kineto(&[
        "preprocess",
        s(&joined),
        "--frames",
        "8",
        "--dense",
        "--output",
        s(&dir.join("d.npy")),
    ]);
    assert!(out.status.success(), "preprocess --dense: {}", stderr(&out));
    for args in [
        vec!["classify", "--device", "cpu", "--format", "json"],
        vec!["timeline", "--device", "cpu"],
    ] {
        let mut args = args;
        args.extend(["--weights", s(&weights), s(&joined)]);
        let out = kineto(&args);
        assert!(out.status.success(), "{}: {}", args[0], stderr(&out));
    }
}

/// Variable frame rate (frame durations of 20 to 80 ms) in MP4 and Matroska, with key frames
/// every 25 frames so that sparse requests seek: decord's frames in order and its `get_batch`
/// of a sparse request are Kineto's.
#[test]
fn variable_frame_rate_clips_read_decords_frames() {
    let dir = ScratchDir::new("decord-vfr");
    for container in [Container::Mp4, Container::Mkv] {
        let ext = if container == Container::Mp4 {
            "mp4"
        } else {
            "mkv"
        };
        let clip = dir.join(format!("vfr.{ext}"));
        let mut spec = ClipSpec::new(container, Codec::H264, 400);
        (spec.width, spec.height) = (96, 72);
        let source = SourceOptions {
            frame_durations_ms: vec![40, 20, 80, 40, 60, 20, 20],
            ..Default::default()
        };
        let opts = EncodeOptions {
            keyframe_interval: Some(25),
            fast: true,
            ..Default::default()
        };
        synth_clip_with_source(&clip, &spec, &source, &opts).unwrap_or_else(|e| panic!("{e}"));

        let (len, all, frame_len) = decord_frames(&clip, &dir.join(format!("{ext}.npy")), &[]);
        assert_eq!(len, 400, "{ext}");
        let mut dec = FrameDecoder::open(&clip).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dec.info().frame_count, len, "{ext}");
        let sparse = uniform_indices(len as usize, 8);
        let frames = dec.frames_at(&sparse).unwrap_or_else(|e| panic!("{e}"));
        assert!(dec.stats().seeks > 0, "{ext}: {:?}", dec.stats());
        assert_same_frames(&frames, &sparse, &all, frame_len);
        // decord's own sparse read (it seeks too) gives the same frames.
        let (_, batch, _) = decord_frames(&clip, &dir.join(format!("{ext}-b.npy")), &sparse);
        for (k, f) in frames.iter().enumerate() {
            assert!(
                f.data == batch[k * frame_len..(k + 1) * frame_len],
                "{ext}: frame {} differs from decord's get_batch",
                f.index
            );
        }
        let every: Vec<u32> = (0..len).collect();
        let frames = dec.frames_at(&every).unwrap_or_else(|e| panic!("{e}"));
        assert_same_frames(&frames, &every, &all, frame_len);
    }
}
