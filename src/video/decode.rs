//! Decode RGB frames by index, the way decord (PaddleVideo's reader) does.
//!
//! Pipeline: `filesrc ! decodebin ! videoconvert ! appsink`, where the appsink
//! accepts the planar YUV layouts that [`super::yuv`] converts exactly
//! (I420, YV12, Y42B, Y444), so `videoconvert` stays in passthrough and we
//! get the decoder's own planes. Only streams in other layouts (NV12, 10-bit,
//! ...) are converted by `videoconvert` (to one of those, or to RGB as the
//! last resort) and are then not guaranteed to match decord exactly.
//! Audio and subtitle streams are not decoded (`autoplug-continue` stops
//! them) and their buffers are dropped at decodebin's pad.
//!
//! **Which frame is index `i`:** the frame whose presentation timestamp is
//! the `i`-th smallest of the video packets (see [`super::probe`]); decoded
//! frames are matched to indices by timestamp, so this holds after seeks and
//! for variable frame rates too. Files whose packets carry no timestamps are
//! decoded straight through from the start and counted.
//!
//! **Seek or decode straight through.** Frames are fetched in ascending
//! order. To reach target `t` from the current position `c` (the next frame
//! the decoder will produce), a seek lands on the key frame `k <= t` and
//! decodes `k..t`; going on decodes `c..t`. A seek therefore saves `k - c`
//! frame decodes and costs one flush plus decoder restart. We seek when
//! `k - c > SEEK_GAIN_FRAMES` and otherwise keep decoding. The per-gap rule
//! makes dense requests (every 8th frame, or everything) decode straight
//! through, and sparse requests in long videos seek — *but only when a key
//! frame lies in between*: with x264's default GOP (250 frames) 16 uniformly
//! spaced frames of a 10-minute clip are ~940 frames apart, so each seek
//! skips ~800 frames; with a 25-frame GOP the same request skips ~920 per
//! seek. `SEEK_GAIN_FRAMES` was measured on a 10-minute 720p H.264 clip (see
//! the constant). A seek lands on the key frame itself (`KEY_UNIT |
//! SNAP_BEFORE` at its timestamp); should a demuxer land past the target,
//! the request is retried once from the start, decoding straight through.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::VideoError;
use super::frame::RgbFrame;
use super::pipeline::{self, BusEvent, BusState};
use super::probe::{Scan, VideoInfo, scan};
use super::yuv::{self, Chroma, Matrix, YuvColor, YuvPlanes};

/// A seek costs about as much as decoding this many frames (flush, demuxer
/// restart, decoder reset and its frame-threading latency, plus the key
/// frame itself). Measured on 10-minute 1280x720 25 fps H.264 clips
/// (x264 `veryfast`, 2 Mbit/s, B-frames; 2 shared cores, release build):
/// decoding straight on costs 2.5-3.2 ms per frame; a seek to a key frame
/// plus its decode costs 42-80 ms, i.e. 15-28 frames (GOP 25: 15.5, 16.7,
/// 23; GOP 250: 28). Below that gain, decoding on is cheaper.
///
/// Effect (open + `frames_at`, median of 5, same machine): 8 uniformly
/// spaced frames of the GOP-250 clip 3.1 s (8 seeks, 1225 frames decoded)
/// instead of 43 s straight through; GOP 25: 0.9 s instead of 40 s.
/// example.avi (131 frames, key frames far apart) never seeks: 8 frames
/// 0.04 s, 16 frames 0.08 s.
pub const SEEK_GAIN_FRAMES: u32 = 24;

/// Decodes frames of one file on demand.
pub struct FrameDecoder {
    scan: Scan,
    pipeline: gst::Pipeline,
    appsink: gst_app::AppSink,
    bus: gst::Bus,
    bus_state: BusState,
    color: Option<YuvColor>,
    /// Index of the frame the pipeline will deliver next (None: unknown).
    next_index: Option<u32>,
    pending: Option<gst::Sample>,
    /// Counters for reports/benchmarks.
    stats: DecodeStats,
    seek_gain: u32,
}

/// What a `FrameDecoder` has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub seeks: u32,
    pub frames_decoded: u32,
    pub frames_converted: u32,
}

impl FrameDecoder {
    /// Open `path`: count frames (demux pass), then start decoding and wait
    /// for the first frame, so that an undecodable file fails here.
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        let scan = scan(path)?;
        let (pipeline, appsink) = build(path)?;
        let bus = pipeline.bus().ok_or_else(|| VideoError::Gstreamer {
            path: path.to_path_buf(),
            detail: "pipeline has no bus".into(),
        })?;
        let mut dec = FrameDecoder {
            scan,
            pipeline,
            appsink,
            bus,
            bus_state: BusState::new(path),
            color: None,
            next_index: Some(0),
            pending: None,
            stats: DecodeStats::default(),
            seek_gain: SEEK_GAIN_FRAMES,
        };
        pipeline::set_state_and_wait(
            &dec.pipeline,
            gst::State::Playing,
            &mut dec.bus_state,
            "starting the decoder",
        )?;
        match dec.next_sample()? {
            Some(s) => {
                dec.adopt_caps(&s)?;
                dec.pending = Some(s);
            }
            None => {
                return Err(VideoError::FrameUnavailable {
                    path: path.to_path_buf(),
                    index: 0,
                    detail: "the decoder produced no frame".into(),
                });
            }
        }
        Ok(dec)
    }

    /// Size, frame count, ... (width/height are those of the decoded frames).
    pub fn info(&self) -> &VideoInfo {
        &self.scan.info
    }

    /// Counters (seeks, decoded and converted frames) since `open`.
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Override [`SEEK_GAIN_FRAMES`] (benchmarks: 0 = seek whenever a key
    /// frame lies between, `u32::MAX` = never seek forward).
    pub fn set_seek_gain(&mut self, frames: u32) {
        self.seek_gain = frames;
    }

    /// The colour matrix/range used for YUV -> RGB (decided from the stream
    /// the way FFmpeg's `scale` filter in decord does).
    pub fn color(&self) -> Option<YuvColor> {
        self.color
    }

    /// RGB frames at these 0-based indices (any order, duplicates allowed;
    /// returned in the order asked). Seeks when indices are sparse in a long
    /// video, decodes straight through when dense (see the module docs).
    pub fn frames_at(&mut self, indices: &[u32]) -> Result<Vec<RgbFrame>, VideoError> {
        let count = self.scan.info.frame_count;
        if let Some(&bad) = indices.iter().find(|&&i| i >= count) {
            return Err(VideoError::FrameOutOfRange {
                path: self.path().to_path_buf(),
                index: bad,
                count,
            });
        }
        let wanted: BTreeSet<u32> = indices.iter().copied().collect();
        let mut got: HashMap<u32, RgbFrame> = HashMap::with_capacity(wanted.len());
        let can_seek = !self.scan.pts.is_empty();
        for &t in &wanted {
            if got.contains_key(&t) {
                continue;
            }
            let k = self.keyframe_at_or_before(t);
            let must_restart = match self.next_index {
                None => true,
                Some(c) => c > t,
            };
            let worth_seeking = match self.next_index {
                Some(c) if c <= t => k > c && k - c > self.seek_gain,
                _ => true,
            };
            if must_restart || (can_seek && worth_seeking) {
                if can_seek {
                    self.seek_to(t, k)?;
                } else {
                    self.seek_to(0, 0)?;
                }
            }
            if let Err(e) = self.decode_until(t, &wanted, &mut got) {
                // A demuxer that landed past the target (or a decoder that
                // dropped it): retry once from the very start, straight.
                if !matches!(e, VideoError::FrameUnavailable { .. }) || self.next_index.is_none() {
                    return Err(e);
                }
                self.seek_to(0, 0)?;
                self.decode_until(t, &wanted, &mut got)?;
            }
        }
        indices
            .iter()
            .map(|i| {
                got.get(i)
                    .cloned()
                    .ok_or_else(|| VideoError::FrameUnavailable {
                        path: self.path().to_path_buf(),
                        index: *i,
                        detail: "not produced by the decoder".into(),
                    })
            })
            .collect()
    }

    fn path(&self) -> &Path {
        &self.scan.info.path
    }

    fn keyframe_at_or_before(&self, t: u32) -> u32 {
        let kf = &self.scan.keyframes;
        match kf.binary_search(&t) {
            Ok(i) => kf[i],
            Err(0) => 0,
            Err(i) => kf[i - 1],
        }
    }

    /// Seek so that decoding resumes at key frame `k` (<= `t`).
    fn seek_to(&mut self, t: u32, k: u32) -> Result<(), VideoError> {
        let target = if self.scan.pts.is_empty() {
            0
        } else {
            let first = self.scan.pts.first().copied().unwrap_or(0);
            // Seek by the key frame's own timestamp relative to the stream
            // start; SNAP_BEFORE guards against rounding in the demuxer.
            self.scan
                .pts
                .get(k.min(t) as usize)
                .copied()
                .unwrap_or(first)
        };
        self.pending = None;
        let flags = gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT | gst::SeekFlags::SNAP_BEFORE;
        self.pipeline
            .seek_simple(flags, gst::ClockTime::from_nseconds(target))
            .map_err(|_| VideoError::Corrupt {
                path: self.path().to_path_buf(),
                detail: format!("seek to frame {t} failed"),
            })?;
        self.stats.seeks += 1;
        self.next_index = Some(k);
        Ok(())
    }

    /// Pull frames until frame `t` has been produced; keep (convert) every
    /// wanted frame seen on the way.
    fn decode_until(
        &mut self,
        t: u32,
        wanted: &BTreeSet<u32>,
        got: &mut HashMap<u32, RgbFrame>,
    ) -> Result<(), VideoError> {
        let mut seq = self.next_index;
        loop {
            let Some(sample) = self.next_sample()? else {
                self.next_index = None;
                return Err(VideoError::FrameUnavailable {
                    path: self.path().to_path_buf(),
                    index: t,
                    detail: "the stream ended first".into(),
                });
            };
            self.stats.frames_decoded += 1;
            let pts = sample.buffer().and_then(|b| b.pts()).map(|p| p.nseconds());
            let idx = match self.index_of(pts) {
                Some(i) => i,
                None => seq.unwrap_or(0),
            };
            seq = Some(idx + 1);
            self.next_index = Some(idx + 1);
            if wanted.contains(&idx) && !got.contains_key(&idx) {
                let frame = self.convert(&sample, idx, pts)?;
                got.insert(idx, frame);
            }
            if got.contains_key(&t) {
                return Ok(());
            }
            if idx > t {
                // Passed the target without seeing it (a frame the decoder
                // dropped, or a timestamp mismatch).
                return Err(VideoError::FrameUnavailable {
                    path: self.path().to_path_buf(),
                    index: t,
                    detail: format!("decoder skipped from before it to frame {idx}"),
                });
            }
        }
    }

    /// Index of the frame with this timestamp (exact, else nearest within
    /// half a frame interval).
    fn index_of(&self, pts: Option<u64>) -> Option<u32> {
        let pts = pts?;
        let list = &self.scan.pts;
        if list.is_empty() {
            return None;
        }
        let i = match list.binary_search(&pts) {
            Ok(i) => return Some(i as u32),
            Err(i) => i,
        };
        let mut best: Option<(u64, usize)> = None;
        for j in [i.wrapping_sub(1), i] {
            if let Some(&v) = list.get(j) {
                let d = v.abs_diff(pts);
                if best.is_none_or(|(bd, _)| d < bd) {
                    best = Some((d, j));
                }
            }
        }
        let (d, j) = best?;
        let info = &self.scan.info;
        let half = if info.fps_num > 0 {
            (500_000_000u64 * info.fps_den as u64) / info.fps_num as u64
        } else {
            20_000_000
        };
        (d <= half).then_some(j as u32)
    }

    fn next_sample(&mut self) -> Result<Option<gst::Sample>, VideoError> {
        if let Some(s) = self.pending.take() {
            return Ok(Some(s));
        }
        let deadline = Instant::now() + pipeline::STEP_TIMEOUT;
        loop {
            if let Some(s) = self.appsink.try_pull_sample(gst::ClockTime::from_nseconds(
                pipeline::POLL.as_nanos() as u64,
            )) {
                return Ok(Some(s));
            }
            if self.appsink.is_eos() {
                return Ok(None);
            }
            if let Some(BusEvent::Error(e)) = self.bus_state.poll(&self.bus, Duration::ZERO) {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(VideoError::Timeout {
                    path: self.path().to_path_buf(),
                    what: "waiting for the next frame".into(),
                    secs: pipeline::STEP_TIMEOUT.as_secs(),
                });
            }
        }
    }

    /// Learn size and colour from the first decoded frame.
    fn adopt_caps(&mut self, sample: &gst::Sample) -> Result<(), VideoError> {
        let info = self.video_info(sample)?;
        self.scan.info.width = info.width();
        self.scan.info.height = info.height();
        self.color = Some(decide_color(&self.scan.caps, &info));
        Ok(())
    }

    fn video_info(&self, sample: &gst::Sample) -> Result<gst_video::VideoInfo, VideoError> {
        sample
            .caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
            .ok_or_else(|| VideoError::Gstreamer {
                path: self.path().to_path_buf(),
                detail: "decoded frame without video caps".into(),
            })
    }

    fn convert(
        &mut self,
        sample: &gst::Sample,
        index: u32,
        pts: Option<u64>,
    ) -> Result<RgbFrame, VideoError> {
        let info = self.video_info(sample)?;
        let color = match self.color {
            Some(c) => c,
            None => {
                let c = decide_color(&self.scan.caps, &info);
                self.color = Some(c);
                c
            }
        };
        let path = self.path().to_path_buf();
        let gerr = |detail: String| VideoError::Gstreamer {
            path: path.clone(),
            detail,
        };
        let buffer = sample
            .buffer()
            .ok_or_else(|| gerr("sample without buffer".into()))?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|e| gerr(format!("cannot map frame: {e}")))?;
        let data = frame_to_rgb(&frame, color).map_err(gerr)?;
        self.stats.frames_converted += 1;
        Ok(RgbFrame {
            index,
            pts_ns: pts,
            width: info.width(),
            height: info.height(),
            data,
        })
    }
}

impl Drop for FrameDecoder {
    fn drop(&mut self) {
        pipeline::shutdown(&self.pipeline);
    }
}

/// Formats the appsink accepts, in order of preference.
const YUV_FORMATS: [&str; 5] = ["I420", "YV12", "Y42B", "Y444", "RGB"];

fn build(path: &Path) -> Result<(gst::Pipeline, gst_app::AppSink), VideoError> {
    let gerr = |detail: String| VideoError::Gstreamer {
        path: path.to_path_buf(),
        detail,
    };
    let pl = gst::Pipeline::new();
    let src = pipeline::make("filesrc", path)?;
    src.set_property("location", path);
    let decodebin = pipeline::make("decodebin", path)?;
    let convert = pipeline::make("videoconvert", path)?;
    let sink_el = pipeline::make("appsink", path)?;
    let appsink = sink_el
        .clone()
        .dynamic_cast::<gst_app::AppSink>()
        .map_err(|_| gerr("appsink is not an AppSink".into()))?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", gst::List::new(YUV_FORMATS))
        .build();
    appsink.set_caps(Some(&caps));
    appsink.set_property("sync", false);
    appsink.set_max_buffers(3);
    appsink.set_drop(false);
    appsink.set_property("enable-last-sample", false);
    pl.add_many([&src, &decodebin, &convert, &sink_el])
        .map_err(|e| gerr(e.to_string()))?;
    src.link(&decodebin).map_err(|e| gerr(e.to_string()))?;
    convert.link(&sink_el).map_err(|e| gerr(e.to_string()))?;

    // Do not decode audio/subtitles: expose them encoded, into a fakesink.
    decodebin.connect("autoplug-continue", false, |args| {
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        let media = caps
            .as_ref()
            .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
            .unwrap_or_default();
        let go_on = !(media.starts_with("audio/")
            || media.starts_with("text/")
            || media.starts_with("subpicture/")
            || media.starts_with("application/x-ssa")
            || media.starts_with("application/x-ass"));
        Some(go_on.to_value())
    });
    let linked = Arc::new(Mutex::new(false));
    let convert_weak = convert.downgrade();
    decodebin.connect_pad_added(move |_, pad| {
        let caps = pad.current_caps();
        let is_raw_video = caps
            .as_ref()
            .and_then(|c| c.structure(0))
            .map(|s| s.name() == "video/x-raw")
            .unwrap_or(false);
        if is_raw_video
            && let Ok(mut l) = linked.lock()
            && !*l
            && let Some(conv) = convert_weak.upgrade()
            && let Some(sinkpad) = conv.static_pad("sink")
            && pad.link(&sinkpad).is_ok()
        {
            *l = true;
            return;
        }
        // Anything else (audio, subtitles, a second video): drop it at the
        // pad; adding sinks from this streaming thread could race with the
        // state change.
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            |_, _| gst::PadProbeReturn::Drop,
        );
    });
    Ok((pl, appsink))
}

fn matrix_of(m: gst_video::VideoColorMatrix) -> Option<Matrix> {
    use gst_video::VideoColorMatrix as M;
    match m {
        M::Bt601 => Some(Matrix::Bt601),
        M::Bt709 => Some(Matrix::Bt709),
        M::Fcc => Some(Matrix::Fcc),
        M::Smpte240m => Some(Matrix::Smpte240m),
        M::Bt2020 => Some(Matrix::Bt2020),
        _ => None,
    }
}

/// Choose matrix and range the way FFmpeg's `scale` filter would for this
/// stream: the matrix the stream signals (seen by GStreamer's parser or
/// demuxer in the decoder's input caps), BT.601 when it signals none;
/// the range the decoder reports (full only when signalled, e.g. JPEG).
///
/// GStreamer fills unsignalled colorimetry with a size-based default (BT.709
/// above 576 lines) where FFmpeg would use BT.601, so the decoder's output
/// matrix is only trusted when it differs from that default. FFmpeg's VP8
/// decoder always reports BT.601 (checked with decord on a 720p WebM whose
/// container said BT.709).
pub(crate) fn decide_color(parsed: &gst::Caps, decoded: &gst_video::VideoInfo) -> YuvColor {
    let s = parsed.structure(0);
    let media = s.map(|s| s.name().to_string()).unwrap_or_default();
    let signalled = s
        .and_then(|s| s.get::<String>("colorimetry").ok())
        .and_then(|c| c.parse::<gst_video::VideoColorimetry>().ok());
    let out = decoded.colorimetry();
    let full_range = out.range() == gst_video::VideoColorRange::Range0_255
        || signalled
            .as_ref()
            .is_some_and(|c| c.range() == gst_video::VideoColorRange::Range0_255);
    let size_default = if decoded.height() > 576 {
        Matrix::Bt709
    } else {
        Matrix::Bt601
    };
    let matrix = if media == "video/x-vp8" {
        Matrix::Bt601
    } else if let Some(m) = signalled.as_ref().and_then(|c| matrix_of(c.matrix())) {
        m
    } else {
        match matrix_of(out.matrix()) {
            Some(m) if m != size_default => m,
            _ => Matrix::Bt601,
        }
    };
    YuvColor { matrix, full_range }
}

/// Convert one mapped frame to packed RGB24.
fn frame_to_rgb(
    frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
    color: YuvColor,
) -> Result<Vec<u8>, String> {
    use gst_video::VideoFormat as F;
    let (w, h) = (frame.width(), frame.height());
    let strides = frame.plane_stride();
    let stride = |i: usize| strides.get(i).copied().unwrap_or(0).max(0) as usize;
    let plane = |i: u32| frame.plane_data(i).map_err(|e| e.to_string());
    let (chroma, u_plane, v_plane) = match frame.format() {
        F::I420 => (Chroma::Yuv420, 1, 2),
        F::Yv12 => (Chroma::Yuv420, 2, 1),
        F::Y42b => (Chroma::Yuv422, 1, 2),
        F::Y444 => (Chroma::Yuv444, 1, 2),
        F::Rgb => {
            let src = plane(0)?;
            let s = stride(0);
            let row = w as usize * 3;
            let mut out = Vec::with_capacity(row * h as usize);
            for y in 0..h as usize {
                let r = src
                    .get(y * s..y * s + row)
                    .ok_or_else(|| "RGB plane too small".to_string())?;
                out.extend_from_slice(r);
            }
            return Ok(out);
        }
        other => return Err(format!("unexpected decoded format {other:?}")),
    };
    let planes = YuvPlanes {
        width: w,
        height: h,
        chroma,
        y: plane(0)?,
        y_stride: stride(0),
        u: plane(u_plane)?,
        u_stride: stride(u_plane as usize),
        v: plane(v_plane)?,
        v_stride: stride(v_plane as usize),
    };
    yuv::yuv_to_rgb(&planes, color).map_err(|e| e.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    pub(crate) fn fixture(name: &str) -> PathBuf {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        for c in [
            root.join("../../shared/fixtures/video").join(name),
            root.join("../shared/fixtures/video").join(name),
            PathBuf::from("/work/shared/fixtures/video").join(name),
        ] {
            if c.exists() {
                return c;
            }
        }
        PathBuf::from("/work/shared/fixtures/video").join(name)
    }

    /// Minimal .npy reader for uint8 arrays: (shape, data).
    pub(crate) fn read_npy_u8(path: &Path) -> (Vec<usize>, Vec<u8>) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&bytes[..6], b"\x93NUMPY", "not an npy file");
        let (hlen, start) = if bytes[6] == 1 {
            (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
        } else {
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        };
        let header = String::from_utf8_lossy(&bytes[start..start + hlen]).to_string();
        assert!(header.contains("'|u1'"), "not uint8: {header}");
        assert!(header.contains("'fortran_order': False"), "{header}");
        let shape_txt = header
            .split("'shape': (")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap_or_default();
        let shape: Vec<usize> = shape_txt
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        (shape, bytes[start + hlen..].to_vec())
    }

    /// Mean/max absolute difference and count of differing values.
    pub(crate) fn diff(a: &[u8], b: &[u8]) -> (f64, u8, usize) {
        assert_eq!(a.len(), b.len());
        let mut sum = 0u64;
        let mut max = 0u8;
        let mut n = 0usize;
        for (&x, &y) in a.iter().zip(b) {
            let d = x.abs_diff(y);
            sum += d as u64;
            max = max.max(d);
            n += (d > 0) as usize;
        }
        (sum as f64 / a.len().max(1) as f64, max, n)
    }

    #[test]
    fn example_avi_is_bit_exact_with_decord() {
        let path = fixture("example.avi");
        let mut dec = FrameDecoder::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dec.info().frame_count, 131);
        let cases: [(&str, Vec<u32>); 2] = [
            (
                "example_8f_frames_rgb.npy",
                (0..8).map(|i| 7 + 16 * i).collect(),
            ),
            (
                "example_16f_frames_rgb.npy",
                (0..16).map(|i| 3 + 8 * i).collect(),
            ),
        ];
        let (mut total, mut max, mut ndiff, mut nvals) = (0.0f64, 0u8, 0usize, 0usize);
        for (file, idx) in cases {
            let (shape, want) = read_npy_u8(&fixture(file));
            assert_eq!(shape, vec![idx.len(), 240, 320, 3]);
            let frames = dec.frames_at(&idx).unwrap_or_else(|e| panic!("{e}"));
            let got: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
            for (f, &i) in frames.iter().zip(&idx) {
                assert_eq!((f.index, f.width, f.height), (i, 320, 240));
            }
            let (mean, mx, n) = diff(&got, &want);
            eprintln!("{file}: mean {mean:.6} max {mx} differing {n}");
            total += mean * got.len() as f64;
            nvals += got.len();
            max = max.max(mx);
            ndiff += n;
        }
        eprintln!(
            "all 24 frames: mean {:.6} max {max} differing {ndiff}",
            total / nvals as f64
        );
        assert_eq!(ndiff, 0, "RGB differs from decord");
    }
}
