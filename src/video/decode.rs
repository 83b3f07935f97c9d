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
//! **Which frame is index `i`:** the `i`-th frame the decoder puts out when
//! it decodes the stream from its start, as decord counts (it decodes and
//! counts frames; `len` is the number of video packets, see [`super::probe`]).
//! Timestamps do not name frames: a pad probe in front of the appsink counts
//! every decoded frame (`FrameFilter`) and tags it with its index, so that
//! clips whose timestamps jump, repeat or are missing (joined or edited
//! footage) read the same frames at the same indices as decord.
//! Timestamps serve one purpose: after a seek to a key frame, the first
//! frame's timestamp tells which frame the decoder landed on (decord's
//! `CheckKeyFrame` does the same), and counting goes on from there. Seeking is
//! therefore used only while the file's timestamps can be trusted: every
//! packet has one, no two are equal, and every decoded frame's timestamp is
//! that of its counted index (checked as frames go by). Otherwise the decoder
//! never seeks forward, and going back restarts from the first frame.
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
//!
//! **Speed** (profiled with `perf` on example.avi, 8 frames: 120 decoded).
//! What cost the time was not decoding (libav: ~20 ms of CPU) but waiting and
//! handing over: the demux pass slept until its 20 ms poll timeout after the
//! last packet (it is now woken at once, see [`super::probe`]); the decoding
//! pipeline was set up only after that pass (it now prerolls meanwhile); every
//! decoded frame went through the appsink queue and woke this thread (a pad
//! probe now drops unwanted frames in the streaming thread, see
//! `FrameFilter`); libav's frame threads handed every frame over twice (one
//! thread where that cannot change the output, see `decoder_threads`).
//! [`decode_each`] hands frames out as they come, for transforms to overlap
//! decoding, and decodes a sparse request of a long video with two decoders.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
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
    /// Shared with the frame filter in front of the appsink.
    filter: Arc<Mutex<FrameFilter>>,
    /// Whether seeking forward is allowed: the timestamps are trustworthy (see the module
    /// docs). Cleared for good when a decoded frame's timestamp contradicts its index.
    seekable: bool,
    /// The (re)start generation: frames tagged with an older one were decoded before the
    /// last seek and are skipped.
    epoch: u64,
    /// True when the frames now coming were counted from the first frame (not from a key
    /// frame found by its timestamp after a seek).
    from_start: bool,
}

/// State of a pad probe in front of the appsink that counts the decoded frames (the index
/// of a frame is its position in the decoder's output, see the module docs), tags each with
/// its index, and drops in the streaming thread the frames that the request in progress does
/// not want, so that they cost neither an appsink hand-over nor a wake-up of the pulling
/// thread (on example.avi, 112 of the 120 frames decoded for 8 indices).
///
/// Only frames *below* the highest wanted index are dropped: the frame after the last wanted
/// one reaches the appsink and stalls the decoder there, as without the filter. Between
/// requests nothing is dropped.
///
/// The tag is written into the buffer's offset fields (`offset` = index, or
/// `OFFSET_NONE` when the landing after a seek could not be told; `offset_end` = the
/// generation of the (re)start it belongs to).
struct FrameFilter {
    /// Sorted frame timestamps and the matching tolerance (set after the demux pass, only for
    /// files whose timestamps can be trusted).
    timestamps: Option<(Arc<Vec<u64>>, u64)>,
    /// Distinct wanted indices of the request in progress, and the highest one.
    wanted: Option<(Arc<BTreeSet<u32>>, u32)>,
    dropped: u32,
    /// Index the next frame gets (None: unknown, a landing that could not be identified).
    next: Option<u32>,
    /// The next frame's index is to be found from its timestamp (first frame after a seek).
    identify: bool,
    /// Generation of the frames now passing.
    epoch: u64,
    /// The restart requested by a seek: adopted at its flush, so that frames still on their
    /// way from before the seek are counted and tagged as before.
    pending: Option<(u64, Landing)>,
    /// A counted frame's timestamp was not the one of its index.
    mismatch: bool,
}

/// Where counting resumes after a (re)start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Landing {
    /// The next frame is this one (the start of the stream).
    At(u32),
    /// Tell the next frame by its timestamp (after a seek to a key frame).
    ByTimestamp,
}

impl FrameFilter {
    fn new() -> Self {
        FrameFilter {
            timestamps: None,
            wanted: None,
            dropped: 0,
            next: Some(0),
            identify: false,
            epoch: 0,
            pending: None,
            mismatch: false,
        }
    }

    /// A flush ended: the seek that caused it takes effect.
    fn flushed(&mut self) {
        if let Some((epoch, landing)) = self.pending.take() {
            self.epoch = epoch;
            match landing {
                Landing::At(i) => {
                    self.next = Some(i);
                    self.identify = false;
                }
                Landing::ByTimestamp => {
                    self.next = None;
                    self.identify = true;
                }
            }
        }
    }

    /// The index of a frame with timestamp `pts` (the next one out of the decoder), and
    /// whether to keep it.
    fn count(&mut self, pts: Option<u64>) -> (Option<u32>, bool) {
        let ts = self.timestamps.as_ref();
        if self.identify {
            self.identify = false;
            self.next = ts.and_then(|(list, half)| index_in(list, *half, pts));
        }
        let index = self.next;
        if let Some(i) = index {
            self.next = i.checked_add(1);
            if let (Some((list, half)), Some(_)) = (ts, pts)
                && index_in(list, *half, pts) != Some(i)
            {
                self.mismatch = true;
            }
        }
        let keep = match (index, &self.wanted) {
            (Some(i), Some((wanted, last))) if i < *last && !wanted.contains(&i) => {
                self.dropped += 1;
                false
            }
            _ => true,
        };
        (index, keep)
    }
}

/// Index of the frame with this timestamp in the sorted list (exact, else the
/// nearest within `half` ns).
fn index_in(list: &[u64], half: u64, pts: Option<u64>) -> Option<u32> {
    let pts = pts?;
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
    (d <= half).then_some(j as u32)
}

/// Whether a file's packet timestamps can tell where a seek landed: every packet has one
/// (an empty list: some have none) and no two are equal.
fn trusted_timestamps(sorted_pts: &[u64]) -> bool {
    !sorted_pts.is_empty() && sorted_pts.windows(2).all(|w| w[0] < w[1])
}

/// The (generation, index) tag the frame filter put on a decoded frame.
fn tag_of(sample: &gst::Sample) -> (u64, Option<u32>) {
    let Some(buffer) = sample.buffer() else {
        return (u64::MAX, None);
    };
    let index = u32::try_from(buffer.offset()).ok();
    (buffer.offset_end(), index)
}

/// Why [`FrameDecoder::decode_until`] stopped short of its target.
enum Stop {
    /// Give up with this error.
    Fail(VideoError),
    /// The position after a seek was wrong or could not be told: decode again from the first
    /// frame, straight through (this error if that fails too).
    Retry(VideoError),
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
    ///
    /// The decoding pipeline is started *before* the demux pass and prerolls
    /// (typefind, autoplugging, first frames) while the pass counts packets:
    /// the two pipelines share nothing, and their set-up is mostly waiting
    /// on streaming threads, so this hides most of one set-up. Errors are
    /// still reported in the same order: the demux pass's first.
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        pipeline::check_readable(path)?;
        pipeline::init(path)?;
        let gate = ThreadGate::pending();
        let (pipeline, appsink, filter) = build(path, gate.clone())?;
        // A failure here shows on the pipeline's bus; it is read after the
        // demux pass (whose messages about a bad file come first).
        let _ = pipeline.set_state(gst::State::Playing);
        let scanned = scan(path);
        // Release the decoder (it may be waiting for this in a streaming thread).
        gate.decide(scanned.as_ref().map_or(0, decoder_threads));
        let scan = match scanned {
            Ok(scan) => scan,
            Err(e) => {
                pipeline::shutdown(&pipeline);
                return Err(e);
            }
        };
        Self::start(scan, pipeline, appsink, filter)
    }

    /// A second decoder on the same file that reuses this one's frame index
    /// (no second demux pass), for decoding two parts of a request at once.
    pub fn fork(&self) -> Result<Self, VideoError> {
        let (pipeline, appsink, filter) = build(self.path(), ThreadGate::decided(0))?;
        let mut dec = Self::start(self.scan.clone(), pipeline, appsink, filter)?;
        dec.seek_gain = self.seek_gain;
        Ok(dec)
    }

    /// Wait until the decoding pipeline plays and holds its first frame.
    fn start(
        scan: Scan,
        pipeline: gst::Pipeline,
        appsink: gst_app::AppSink,
        filter: Arc<Mutex<FrameFilter>>,
    ) -> Result<Self, VideoError> {
        let path = scan.info.path.clone();
        let bus = match pipeline.bus() {
            Some(bus) => bus,
            None => {
                pipeline::shutdown(&pipeline);
                return Err(VideoError::Gstreamer {
                    path,
                    detail: "pipeline has no bus".into(),
                });
            }
        };
        let mut dec = FrameDecoder {
            scan,
            pipeline,
            appsink,
            bus,
            bus_state: BusState::new(&path),
            color: None,
            next_index: Some(0),
            pending: None,
            stats: DecodeStats::default(),
            seek_gain: SEEK_GAIN_FRAMES,
            filter,
            seekable: false,
            epoch: 0,
            from_start: true,
        };
        dec.seekable = trusted_timestamps(&dec.scan.pts);
        if dec.seekable {
            let timestamps = (Arc::new(dec.scan.pts.clone()), dec.half_interval());
            if let Ok(mut f) = dec.filter.lock() {
                f.timestamps = Some(timestamps);
            }
        }
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
                    path,
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
        let dropped = self.filter.lock().map_or(0, |f| f.dropped);
        DecodeStats {
            frames_decoded: self.stats.frames_decoded + dropped,
            ..self.stats
        }
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
    ///
    /// Every distinct frame is held at full resolution until the call returns: for many
    /// frames of a large video, [`Self::for_each_frame`] (transform each as it comes) holds
    /// far less.
    pub fn frames_at(&mut self, indices: &[u32]) -> Result<Vec<RgbFrame>, VideoError> {
        let mut got: HashMap<u32, RgbFrame> = HashMap::with_capacity(indices.len());
        self.for_each_frame(indices, &mut |frame| {
            got.insert(frame.index, frame);
        })?;
        // Where each index is asked for the last time: that position takes the frame itself,
        // earlier repeats a copy.
        let mut last_use: HashMap<u32, usize> = HashMap::with_capacity(indices.len());
        for (pos, &i) in indices.iter().enumerate() {
            last_use.insert(i, pos);
        }
        indices
            .iter()
            .enumerate()
            .map(|(pos, i)| {
                let frame = if last_use.get(i) == Some(&pos) {
                    got.remove(i)
                } else {
                    got.get(i).cloned()
                };
                frame.ok_or_else(|| VideoError::FrameUnavailable {
                    path: self.path().to_path_buf(),
                    index: *i,
                    detail: "not produced by the decoder".into(),
                })
            })
            .collect()
    }

    /// Decode the frames at these indices and hand each distinct one to
    /// `on_frame` as soon as it is converted, in ascending index order (so
    /// that the caller can work on it while the next ones decode). Same
    /// seeking as [`Self::frames_at`]; on success every distinct index was
    /// delivered exactly once.
    pub fn for_each_frame(
        &mut self,
        indices: &[u32],
        on_frame: &mut dyn FnMut(RgbFrame),
    ) -> Result<(), VideoError> {
        self.check_range(indices)?;
        let wanted: BTreeSet<u32> = indices.iter().copied().collect();
        self.set_filter(Some(&wanted));
        let result = self.deliver(&wanted, on_frame);
        self.set_filter(None);
        result
    }

    fn deliver(
        &mut self,
        wanted: &BTreeSet<u32>,
        on_frame: &mut dyn FnMut(RgbFrame),
    ) -> Result<(), VideoError> {
        let mut done: BTreeSet<u32> = BTreeSet::new();
        for &t in wanted {
            if done.contains(&t) {
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
            if must_restart || (self.seekable && worth_seeking) {
                if self.seekable {
                    self.seek_to(t, k)?;
                } else {
                    self.restart()?;
                }
            }
            match self.decode_until(t, wanted, &mut done, on_frame) {
                Ok(()) => {}
                Err(Stop::Fail(e)) => return Err(e),
                Err(Stop::Retry(_)) => {
                    // A seek that landed elsewhere than the timestamps said (or past the
                    // target): once more from the very start, straight.
                    self.restart()?;
                    if let Err(Stop::Fail(e) | Stop::Retry(e)) =
                        self.decode_until(t, wanted, &mut done, on_frame)
                    {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    fn check_range(&self, indices: &[u32]) -> Result<(), VideoError> {
        let count = self.scan.info.frame_count;
        match indices.iter().find(|&&i| i >= count) {
            Some(&bad) => Err(VideoError::FrameOutOfRange {
                path: self.path().to_path_buf(),
                index: bad,
                count,
            }),
            None => Ok(()),
        }
    }

    /// Frames decoded to serve the ascending `targets` from position `from`
    /// (the next frame the decoder would give; `None`: a fresh decoder, which
    /// must seek) under the seek rule of [`Self::for_each_frame`]: a seek
    /// counts as `seek_gain` frames plus the frames from its key frame.
    fn plan_cost(&self, from: Option<u32>, targets: &[u32]) -> u64 {
        let can_seek = self.seekable;
        let gain = u64::from(self.seek_gain.min(1000));
        let mut cost = 0u64;
        let mut c = from;
        for &t in targets {
            let k = self.keyframe_at_or_before(t);
            let seek = match c {
                Some(c) if c <= t => can_seek && k > c && k - c > self.seek_gain,
                _ => true,
            };
            cost += if seek {
                let start = if can_seek { k } else { 0 };
                gain + u64::from(t - start) + 1
            } else {
                u64::from(t - c.unwrap_or(0)) + 1
            };
            c = Some(t + 1);
        }
        cost
    }

    /// Where to cut the ascending `targets` so that this decoder takes the
    /// first part and a fresh fork the rest, when that pays: both parts then
    /// decode at once. `None` when one decoder is about as fast (dense
    /// requests, short videos, no key frames to seek to, timestamps that cannot
    /// tell where a seek landed).
    fn split_point(&self, targets: &[u32]) -> Option<usize> {
        if targets.len() < 2 || !self.seekable {
            return None;
        }
        let whole = self.plan_cost(self.next_index, targets);
        // Opening a fork costs about a pipeline set-up and a seek.
        let fork_cost = 2 * u64::from(self.seek_gain.min(1000)) + 8;
        let (best, cut) = (1..targets.len())
            .map(|i| {
                let a = self.plan_cost(self.next_index, &targets[..i]);
                let b = self.plan_cost(Some(0), &targets[i..]) + fork_cost;
                (a.max(b), i)
            })
            .min()?;
        // Worth a second pipeline only when it saves a good part of the work.
        (best * 4 < whole * 3 && whole > 200).then_some(cut)
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

    /// Seek so that decoding resumes at key frame `k` (<= `t`); the frame
    /// filter tells the frame it lands on by its timestamp. Only for files
    /// whose timestamps can be trusted (`seekable`).
    fn seek_to(&mut self, t: u32, k: u32) -> Result<(), VideoError> {
        let k = k.min(t);
        if k == 0 {
            return self.restart();
        }
        // Seek by the key frame's own timestamp relative to the stream
        // start; SNAP_BEFORE guards against rounding in the demuxer.
        let first = self.scan.pts.first().copied().unwrap_or(0);
        let target = self.scan.pts.get(k as usize).copied().unwrap_or(first);
        self.seek(target, Landing::ByTimestamp, t)?;
        self.next_index = Some(k);
        self.from_start = false;
        Ok(())
    }

    /// Seek back to the first frame; frames are counted from 0 again.
    fn restart(&mut self) -> Result<(), VideoError> {
        let target = self.scan.pts.first().copied().unwrap_or(0);
        self.seek(target, Landing::At(0), 0)?;
        self.next_index = Some(0);
        self.from_start = true;
        Ok(())
    }

    /// A flushing seek to the key frame at or before `target` (ns); the frame filter adopts
    /// `landing` at the flush, under a new generation.
    fn seek(&mut self, target: u64, landing: Landing, t: u32) -> Result<(), VideoError> {
        self.pending = None;
        self.epoch += 1;
        if let Ok(mut f) = self.filter.lock() {
            f.pending = Some((self.epoch, landing));
        }
        let flags = gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT | gst::SeekFlags::SNAP_BEFORE;
        let sought = self
            .pipeline
            .seek_simple(flags, gst::ClockTime::from_nseconds(target));
        if sought.is_err() {
            if let Ok(mut f) = self.filter.lock() {
                f.pending = None;
            }
            self.next_index = None;
            return Err(VideoError::Corrupt {
                path: self.path().to_path_buf(),
                detail: format!("seek to frame {t} failed"),
            });
        }
        self.stats.seeks += 1;
        Ok(())
    }

    /// Pull frames until frame `t` has been produced; convert and deliver
    /// every wanted frame seen on the way (once each).
    fn decode_until(
        &mut self,
        t: u32,
        wanted: &BTreeSet<u32>,
        done: &mut BTreeSet<u32>,
        on_frame: &mut dyn FnMut(RgbFrame),
    ) -> Result<(), Stop> {
        let unavailable = |dec: &Self, detail: String| {
            let e = VideoError::FrameUnavailable {
                path: dec.path().to_path_buf(),
                index: t,
                detail,
            };
            if dec.from_start {
                Stop::Fail(e)
            } else {
                Stop::Retry(e)
            }
        };
        loop {
            let Some(sample) = self.next_sample().map_err(Stop::Fail)? else {
                let stop = unavailable(self, "the stream ended first".into());
                self.next_index = None;
                return Err(stop);
            };
            let (epoch, index) = tag_of(&sample);
            if epoch != self.epoch {
                // Decoded before the last seek.
                continue;
            }
            self.stats.frames_decoded += 1;
            if self.take_mismatch() {
                // A frame's timestamp is not the one of its index: timestamps cannot tell
                // where a seek lands in this file. Counting from the start stays right.
                self.seekable = false;
                if !self.from_start {
                    self.next_index = None;
                    return Err(unavailable(self, "timestamps out of order".into()));
                }
            }
            let Some(idx) = index else {
                self.seekable = false;
                self.next_index = None;
                return Err(unavailable(
                    self,
                    "a seek landed on a frame without a usable timestamp".into(),
                ));
            };
            self.next_index = Some(idx + 1);
            if wanted.contains(&idx) && !done.contains(&idx) {
                let pts = sample.buffer().and_then(|b| b.pts()).map(|p| p.nseconds());
                let frame = self.convert(&sample, idx, pts).map_err(Stop::Fail)?;
                drop(sample);
                done.insert(idx);
                on_frame(frame);
            }
            if done.contains(&t) {
                return Ok(());
            }
            if idx > t {
                // Passed the target without seeing it (a seek that landed past it).
                return Err(unavailable(
                    self,
                    format!("decoder skipped from before it to frame {idx}"),
                ));
            }
        }
    }

    /// Half a frame interval in ns (the timestamp matching tolerance).
    fn half_interval(&self) -> u64 {
        let info = &self.scan.info;
        if info.fps_num > 0 {
            (500_000_000u64 * info.fps_den as u64) / info.fps_num as u64
        } else {
            20_000_000
        }
    }

    /// Let the frame filter drop what a request for `wanted` does not need
    /// (`None`: drop nothing).
    fn set_filter(&mut self, wanted: Option<&BTreeSet<u32>>) {
        if let Ok(mut f) = self.filter.lock() {
            f.wanted = wanted.and_then(|w| w.last().map(|&last| (Arc::new(w.clone()), last)));
        }
    }

    /// Whether the filter saw a timestamp that contradicts its frame's index (and forget it).
    fn take_mismatch(&self) -> bool {
        self.filter
            .lock()
            .is_ok_and(|mut f| std::mem::take(&mut f.mismatch))
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

/// Decode the frames at `indices` (any order, duplicates allowed) and hand each distinct
/// one to `on_frame` as soon as it is converted, so that the caller can transform it while
/// the next ones decode. Returns once every distinct frame was delivered (exactly once).
///
/// With `workers >= 2`, a sparse request in a long video is cut in two
/// ([`FrameDecoder::split_point`]): `decoder` takes the earlier frames and a fork (same
/// file, same frame index, no second demux pass) the later ones on another thread, both
/// decoding at once. Each decoder seeks and decodes exactly as one decoder would for its
/// part, so the frames are the same. `on_frame` is then called from two threads.
pub fn decode_each(
    decoder: &mut FrameDecoder,
    indices: &[u32],
    workers: usize,
    on_frame: &(dyn Fn(RgbFrame) + Sync),
) -> Result<(), VideoError> {
    decoder.check_range(indices)?;
    let targets: Vec<u32> = indices
        .iter()
        .copied()
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .collect();
    let cut = if workers >= 2 {
        decoder.split_point(&targets)
    } else {
        None
    };
    let Some(cut) = cut else {
        return decoder.for_each_frame(&targets, &mut |f| on_frame(f));
    };
    let (first, rest) = targets.split_at(cut);
    let scan = decoder.scan.clone();
    let seek_gain = decoder.seek_gain;
    let path = decoder.path().to_path_buf();
    std::thread::scope(|s| {
        let other = s.spawn(move || -> Result<(), VideoError> {
            // Forks exist for seeking: libav's default threading (see `decoder_threads`).
            let (pipeline, appsink, filter) = build(&scan.info.path, ThreadGate::decided(0))?;
            let mut fork = FrameDecoder::start(scan, pipeline, appsink, filter)?;
            fork.seek_gain = seek_gain;
            fork.for_each_frame(rest, &mut |f| on_frame(f))
        });
        let mine = decoder.for_each_frame(first, &mut |f| on_frame(f));
        let theirs = other.join().unwrap_or_else(|_| {
            Err(VideoError::Gstreamer {
                path,
                detail: "the second decoding thread panicked".into(),
            })
        });
        mine.and(theirs)
    })
}

/// Formats the appsink accepts, in order of preference.
const YUV_FORMATS: [&str; 5] = ["I420", "YV12", "Y42B", "Y444", "RGB"];

/// libav decoders' `max-threads` (0: libav's default, one thread per core), decided after
/// the demux pass by [`decoder_threads`]. The decoding pipeline starts before that pass ends;
/// a libav decoder it creates meanwhile waits here (in the streaming thread that adds it,
/// before it has opened its codec) until the decision is made.
///
/// The thread that opens the file (and runs the demux pass) never waits: should GStreamer
/// add the decoder from inside `set_state` there, it keeps libav's default.
struct ThreadGate {
    decided: Mutex<Option<i32>>,
    ready: Condvar,
    opener: std::thread::ThreadId,
}

impl ThreadGate {
    /// Undecided; `decide` must follow (the decoder waits at most `STEP_TIMEOUT`).
    fn pending() -> Arc<Self> {
        Arc::new(ThreadGate {
            decided: Mutex::new(None),
            ready: Condvar::new(),
            opener: std::thread::current().id(),
        })
    }

    fn decided(threads: i32) -> Arc<Self> {
        let gate = Self::pending();
        gate.decide(threads);
        gate
    }

    fn decide(&self, threads: i32) {
        if let Ok(mut d) = self.decided.lock() {
            *d = Some(threads);
        }
        self.ready.notify_all();
    }

    /// The decision (libav's default after `STEP_TIMEOUT` without one, or at once on the
    /// opening thread).
    fn wait(&self) -> i32 {
        let Ok(guard) = self.decided.lock() else {
            return 0;
        };
        if std::thread::current().id() == self.opener {
            return guard.unwrap_or(0);
        }
        self.ready
            .wait_timeout_while(guard, pipeline::STEP_TIMEOUT, |d| d.is_none())
            .ok()
            .and_then(|(d, _)| *d)
            .unwrap_or(0)
    }
}

/// `max-threads` for a libav decoder of this file: 1 when decoding can only ever start at
/// the first frame (frame 0 is the only key frame, so every seek lands there), else 0
/// (libav's default: a thread per core, as in decord's FFmpeg).
///
/// From the start of a stream libav's output does not depend on its threading, and one
/// thread saves the frame-thread hand-overs: on example.avi (120 frames decoded, 2 shared
/// cores) decoding took about a quarter less wall time and CPU. From a key frame that is
/// not an IDR picture the output *does* depend on it (x264 puts non-IDR I-frames at scene
/// cuts; frames after one may reference frames before it): on a 10-minute x264 clip,
/// frame 12187 decoded after a seek to the I-frame 11967 differed from decord's with one
/// thread and matched it with libav's default. Files that can seek keep the default.
fn decoder_threads(scan: &Scan) -> i32 {
    if scan.keyframes.iter().all(|&k| k == 0) {
        1
    } else {
        0
    }
}

/// An appsink that takes decoded frames in [`YUV_FORMATS`] as fast as they come (not synced to
/// the clock), holding at most `max_buffers`; the element and its AppSink view.
pub(crate) fn yuv_appsink(
    path: &Path,
    max_buffers: u32,
) -> Result<(gst::Element, gst_app::AppSink), VideoError> {
    let sink_el = pipeline::make("appsink", path)?;
    let appsink = sink_el
        .clone()
        .dynamic_cast::<gst_app::AppSink>()
        .map_err(|_| VideoError::Gstreamer {
            path: path.to_path_buf(),
            detail: "appsink is not an AppSink".into(),
        })?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", gst::List::new(YUV_FORMATS))
        .build();
    appsink.set_caps(Some(&caps));
    appsink.set_property("sync", false);
    appsink.set_max_buffers(max_buffers);
    appsink.set_drop(false);
    appsink.set_property("enable-last-sample", false);
    Ok((sink_el, appsink))
}

type Built = (gst::Pipeline, gst_app::AppSink, Arc<Mutex<FrameFilter>>);

fn build(path: &Path, gate: Arc<ThreadGate>) -> Result<Built, VideoError> {
    let gerr = |detail: String| VideoError::Gstreamer {
        path: path.to_path_buf(),
        detail,
    };
    let pl = gst::Pipeline::new();
    let src = pipeline::make("filesrc", path)?;
    src.set_property("location", path);
    let decodebin = pipeline::make("decodebin", path)?;
    let convert = pipeline::make("videoconvert", path)?;
    let (sink_el, appsink) = yuv_appsink(path, 3)?;
    pl.add_many([&src, &decodebin, &convert, &sink_el])
        .map_err(|e| gerr(e.to_string()))?;
    src.link(&decodebin).map_err(|e| gerr(e.to_string()))?;
    convert.link(&sink_el).map_err(|e| gerr(e.to_string()))?;
    let filter = Arc::new(Mutex::new(FrameFilter::new()));
    let Some(pad) = sink_el.static_pad("sink") else {
        return Err(gerr("appsink has no sink pad".into()));
    };
    {
        let filter = filter.clone();
        let probe_types = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_FLUSH;
        pad.add_probe(probe_types, move |_, info| {
            if let Some(event) = info.event() {
                if event.type_() == gst::EventType::FlushStop
                    && let Ok(mut f) = filter.lock()
                {
                    f.flushed();
                }
                return gst::PadProbeReturn::Ok;
            }
            let pts = info.buffer().and_then(|b| b.pts()).map(|p| p.nseconds());
            let Ok(mut f) = filter.lock() else {
                return gst::PadProbeReturn::Ok;
            };
            let (index, keep) = f.count(pts);
            let epoch = f.epoch;
            drop(f);
            if !keep {
                return pipeline::discard(info);
            }
            if let Some(buffer) = info.buffer_mut() {
                let buffer = buffer.make_mut();
                buffer.set_offset(index.map_or(u64::MAX, u64::from));
                buffer.set_offset_end(epoch);
            }
            gst::PadProbeReturn::Ok
        });
    }

    pl.connect_deep_element_added(move |_, _, element| {
        let libav = element
            .factory()
            .is_some_and(|f| f.name().starts_with("avdec_"));
        if libav && element.has_property("max-threads") {
            let threads = gate.wait();
            if threads > 0 {
                element.set_property("max-threads", threads);
            }
        }
    });
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
            |_, info| pipeline::discard(info),
        );
    });
    Ok((pl, appsink, filter))
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
pub(crate) fn frame_to_rgb(
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

    /// A sparse request in a long clip is cut between two decoders; the frames are those of
    /// one decoder, and the drop filter leaves later requests on the same decoder intact.
    #[test]
    fn two_decoders_give_the_frames_of_one() {
        use crate::video::synth::{ClipSpec, Codec, Container, EncodeOptions, synth_clip_with};
        let dir = std::env::temp_dir().join(format!("kineto-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("long.mp4");
        let mut spec = ClipSpec::new(Container::Mp4, Codec::H264, 2500);
        (spec.width, spec.height) = (64, 48);
        let opts = EncodeOptions {
            keyframe_interval: Some(25),
            fast: true,
            ..Default::default()
        };
        synth_clip_with(&path, &spec, &opts).unwrap_or_else(|e| panic!("{e}"));

        let indices = crate::video::sample::uniform_indices(2500, 8);
        let mut one = FrameDecoder::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let want = one.frames_at(&indices).unwrap_or_else(|e| panic!("{e}"));
        assert!(one.stats().seeks >= 4, "{:?}", one.stats());

        let mut dec = FrameDecoder::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(dec.split_point(&indices).is_some(), "no split planned");
        let got = Mutex::new(HashMap::new());
        decode_each(&mut dec, &indices, 2, &|f: RgbFrame| {
            let prev = got.lock().map(|mut g| g.insert(f.index, f));
            assert!(matches!(prev, Ok(None)), "a frame came twice");
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let got = got.into_inner().unwrap_or_default();
        assert_eq!(got.len(), indices.len());
        for w in &want {
            assert!(got.get(&w.index) == Some(w), "frame {} differs", w.index);
        }
        // The same decoder again, backwards and dense: nothing was lost to the filter.
        let again: Vec<u32> = vec![indices[7], indices[0], 1, 2, 3, indices[7] + 1];
        let frames = dec.frames_at(&again).unwrap_or_else(|e| panic!("{e}"));
        let fresh = FrameDecoder::open(&path)
            .and_then(|mut d| d.frames_at(&again))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(frames == fresh);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn dense_requests_are_not_split() {
        let path = fixture("example.avi");
        let dec = FrameDecoder::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let idx: Vec<u32> = (0..16).map(|i| 3 + 8 * i).collect();
        assert_eq!(dec.split_point(&idx), None);
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
