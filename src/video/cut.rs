//! Cutting `[start_s, end_s)` out of a video into a new file, with GStreamer.
//!
//! **On key frames** ([`CutMode::KeyFrames`], the default): the video stream is demuxed and
//! parsed (`filesrc ! parsebin`), never decoded, and remuxed into the same kind of container
//! (MP4 `mp4mux`, MOV `qtmux`, Matroska `matroskamux`, WebM `webmmux`, AVI `avimux`). The cut
//! starts at the last key frame at or before `start_s` (it may move earlier, see
//! [`CutOutcome::start_s`]) and keeps the frames up to `end_s`, plus the frames after it that
//! come earlier in decode order (the references of B-frames; at most a few). Frames are told by
//! their timestamps, matched against the demux pass of [`super::probe`]; a file whose
//! timestamps cannot be trusted (missing or repeated) is refused: cut it with `--reencode`.
//!
//! **Frame-accurate** ([`CutMode::Reencode`]): decoded (`decodebin`), frames counted in decode
//! output order as [`super::decode::FrameDecoder`] counts them, those in
//! `[round(start_s * fps), round(end_s * fps))` kept, stamped from zero, and encoded with the
//! container's natural encoder: H.264 (`x264enc`) for MP4, MOV and Matroska, VP8 for WebM,
//! MJPEG for AVI.
//!
//! Audio is not kept (the cuts are training clips). Once the last frame wanted has passed, the
//! muxer gets its end of stream and the pipeline stops: the rest of the file is never read.
//! The file is written to a hidden temporary name beside `dest` and renamed when complete.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

use super::VideoError;
use super::pipeline;
use super::probe::scan;

/// The containers a cut can be written to (the source's kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutContainer {
    Mp4,
    Mov,
    Mkv,
    Webm,
    Avi,
}

impl CutContainer {
    /// The container of `path`, by its extension; one that Kineto cannot write is an error
    /// naming the file.
    pub fn of(path: &Path) -> Result<Self, VideoError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "mp4" | "m4v" => Ok(Self::Mp4),
            "mov" | "qt" => Ok(Self::Mov),
            "mkv" => Ok(Self::Mkv),
            "webm" => Ok(Self::Webm),
            "avi" => Ok(Self::Avi),
            other => Err(VideoError::CannotCut {
                path: path.to_path_buf(),
                reason: format!(
                    "the container {} cannot be written (cuts are written as mp4, mov, mkv, \
                     webm or avi)",
                    if other.is_empty() {
                        "of a file without an extension".to_string()
                    } else {
                        format!(".{other}")
                    }
                ),
            }),
        }
    }

    /// The extension a cut of this container gets.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4",
            Self::Mov => "mov",
            Self::Mkv => "mkv",
            Self::Webm => "webm",
            Self::Avi => "avi",
        }
    }

    fn muxer(self) -> &'static str {
        match self {
            Self::Mp4 => "mp4mux",
            Self::Mov => "qtmux",
            Self::Mkv => "matroskamux",
            Self::Webm => "webmmux",
            Self::Avi => "avimux",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CutMode {
    /// Remux from the key frame at or before the start, no re-encoding.
    #[default]
    KeyFrames,
    /// Decode and encode again: exactly the frames asked for.
    Reencode,
}

/// What a cut holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CutOutcome {
    /// Where the cut starts in the source (seconds, `frame / fps`): at most `start_s`.
    pub start_s: f64,
    /// Where it ends in the source: `end_s` (on a frame), or a few frames later for a key-frame
    /// cut that keeps the B-frames' references.
    pub end_s: f64,
    /// Frames written.
    pub frames: u32,
}

impl CutOutcome {
    /// How far the cut moved from `[start_s, end_s)`: the larger of the two shifts, seconds.
    pub fn shift_s(&self, start_s: f64, end_s: f64) -> f64 {
        (start_s - self.start_s)
            .abs()
            .max((self.end_s - end_s).abs())
    }
}

fn cannot(path: &Path, reason: impl Into<String>) -> VideoError {
    VideoError::CannotCut {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn gst_err(path: &Path, detail: impl Into<String>) -> VideoError {
    VideoError::Gstreamer {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Cuts `[start_s, end_s)` of `src` into `dest` (written whole or not at all). The container
/// is `src`'s (see [`CutContainer::of`]); `dest` should carry its extension.
pub fn cut_video(
    src: &Path,
    dest: &Path,
    start_s: f64,
    end_s: f64,
    mode: CutMode,
) -> Result<CutOutcome, VideoError> {
    CutSource::open(src)?.cut(dest, start_s, end_s, mode)
}

/// A video to cut, read once: its container and its demux pass (every frame's timestamp and
/// key-frame flag), kept for the many cuts of one long recording (a demux pass over a 2-hour
/// file per segment is what it saves).
pub struct CutSource {
    path: std::path::PathBuf,
    container: CutContainer,
    found: super::probe::Scan,
}

impl CutSource {
    pub fn open(src: &Path) -> Result<Self, VideoError> {
        let container = CutContainer::of(src)?;
        let found = scan(src)?;
        Ok(Self {
            path: src.to_path_buf(),
            container,
            found,
        })
    }

    /// The video's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cuts `[start_s, end_s)` into `dest`, as [`cut_video`].
    pub fn cut(
        &self,
        dest: &Path,
        start_s: f64,
        end_s: f64,
        mode: CutMode,
    ) -> Result<CutOutcome, VideoError> {
        cut_scanned(
            &self.path,
            self.container,
            &self.found,
            dest,
            start_s,
            end_s,
            mode,
        )
    }
}

fn cut_scanned(
    src: &Path,
    container: CutContainer,
    found: &super::probe::Scan,
    dest: &Path,
    start_s: f64,
    end_s: f64,
    mode: CutMode,
) -> Result<CutOutcome, VideoError> {
    if !(start_s.is_finite() && end_s.is_finite() && start_s >= 0.0 && end_s > start_s) {
        return Err(cannot(
            src,
            format!("the range {start_s} s to {end_s} s is empty or not a range of time"),
        ));
    }
    let info = &found.info;
    let fps = if info.fps() > 0.0 {
        info.fps()
    } else if info.duration_s > 0.0 {
        f64::from(info.frame_count) / info.duration_s
    } else {
        0.0
    };
    let count = info.frame_count;
    if count == 0 || fps <= 0.0 {
        return Err(VideoError::NoFrames {
            path: src.to_path_buf(),
        });
    }
    let first = ((start_s * fps).round().max(0.0) as u64).min(u64::from(count)) as u32;
    let end = ((end_s * fps).round().max(0.0) as u64).min(u64::from(count)) as u32;
    if end <= first {
        return Err(cannot(
            src,
            format!(
                "{start_s:.3} s to {end_s:.3} s holds no frame (the video has {count} frames, \
                 {:.3} s)",
                f64::from(count) / fps
            ),
        ));
    }
    let tmp = temp_path_for(dest)?;
    let written = match mode {
        CutMode::KeyFrames => remux(
            src,
            &tmp,
            container,
            &found.pts,
            &found.keyframes,
            first,
            end,
        ),
        CutMode::Reencode => reencode(src, &tmp, container, fps, first, end),
    };
    let result = written.and_then(|(from, to, frames)| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, dest))
            .map_err(|e| VideoError::Unreadable {
                path: dest.to_path_buf(),
                reason: format!("cannot write: {e}"),
            })?;
        // Best effort: the rename is made durable where the folder can be opened.
        if let Ok(dir) = std::fs::File::open(folder_of(dest)) {
            let _ = dir.sync_all();
        }
        Ok(CutOutcome {
            start_s: f64::from(from) / fps,
            end_s: f64::from(to) / fps,
            frames,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The folder holding `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A hidden temporary name beside `dest`, unique per process and call (`kineto train` skips
/// hidden files, so a cut being written is never read as a clip).
fn temp_path_for(dest: &Path) -> Result<std::path::PathBuf, VideoError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = dest.file_name().ok_or_else(|| VideoError::Unreadable {
        path: dest.to_path_buf(),
        reason: "cannot write: the path has no file name".to_string(),
    })?;
    Ok(folder_of(dest).join(format!(
        ".{}.cut-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )))
}

/// The index of the timestamp in `sorted` nearest to `pts`, if within half a frame.
fn index_of(sorted: &[u64], half: u64, pts: u64) -> Option<u32> {
    let i = sorted.partition_point(|&t| t < pts);
    let near = [i.checked_sub(1), Some(i)]
        .into_iter()
        .flatten()
        .filter(|&j| j < sorted.len())
        .min_by_key(|&j| sorted[j].abs_diff(pts))?;
    (sorted[near].abs_diff(pts) <= half).then_some(near as u32)
}

/// What the remux probe saw.
#[derive(Default)]
struct RemuxState {
    started: bool,
    /// Timestamp shift (the start key frame's earliest timestamp).
    offset: u64,
    /// Start of the stream's time segment.
    base: u64,
    /// Wanted frames passed so far.
    wanted_passed: u32,
    /// Highest frame index passed.
    last: Option<u32>,
    passed: u32,
    /// The end of stream was sent downstream.
    done: bool,
    /// A buffer without a timestamp came after the start.
    untimed: bool,
}

/// Sends the end of stream to `pad`'s peer (once) and stops the upstream element (its push
/// returns EOS), dropping what the probe holds.
fn finish(pad: &gst::Pad, info: &mut gst::PadProbeInfo, sent: &mut bool) -> gst::PadProbeReturn {
    if !*sent {
        *sent = true;
        if let Some(peer) = pad.peer() {
            let _ = peer.send_event(gst::event::Eos::new());
        }
    }
    drop(info.take_buffer());
    drop(info.take_buffer_list());
    info.flow_res = Err(gst::FlowError::Eos);
    gst::PadProbeReturn::Handled
}

/// The start of the time segment an event opens, if it is one. Timestamps written by the
/// probes are placed from it: a decoder's segment starts where the source's first frame is
/// shown (0.08 s for H.264 with B-frames), and an encoder drops frames stamped before it (the
/// last two of 35 were lost when the frames were stamped from zero).
fn segment_start(info: &gst::PadProbeInfo) -> Option<u64> {
    let ev = info.event()?;
    let gst::EventView::Segment(seg) = ev.view() else {
        return None;
    };
    let seg = seg.segment().downcast_ref::<gst::ClockTime>()?;
    Some(seg.start().map_or(0, |t| t.nseconds()))
}

/// Drops every buffer and event on a stream that is not cut (audio, subtitles).
fn drop_stream(pad: &gst::Pad) {
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        |_, info| pipeline::discard(info),
    );
}

fn is_video_pad(pad: &gst::Pad) -> bool {
    pad.current_caps()
        .or_else(|| Some(pad.query_caps(None)))
        .and_then(|c| c.structure(0).map(|s| pipeline::is_video_media(s.name())))
        .unwrap_or(false)
}

/// The key-frame cut: frames `[k, end)` in presentation order (k: the last key frame at or
/// before `first`), remuxed. Returns (first frame, end frame, frames written).
fn remux(
    src: &Path,
    tmp: &Path,
    container: CutContainer,
    pts: &[u64],
    keyframes: &[u32],
    first: u32,
    end: u32,
) -> Result<(u32, u32, u32), VideoError> {
    let untrusted = pts.is_empty() || pts.windows(2).any(|w| w[0] == w[1]);
    if untrusted {
        return Err(cannot(
            src,
            "its timestamps are missing or repeated, so key frames cannot be found by time; \
             cut it with --reencode",
        ));
    }
    let Some(&key) = keyframes.iter().rev().find(|&&k| k <= first) else {
        return Err(cannot(
            src,
            "no key frame at or before the start; cut it with --reencode",
        ));
    };
    let end = end.min(pts.len() as u32);
    let key_pts = pts[key as usize];
    let gaps: Vec<u64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
    let half = gaps.iter().copied().min().unwrap_or(1_000_000) / 2;
    let wanted = end - key;

    pipeline::init(src)?;
    let pl = gst::Pipeline::new();
    let gerr = |e: glib::BoolError| gst_err(src, e.to_string());
    let filesrc = pipeline::make("filesrc", src)?;
    filesrc.set_property("location", src);
    let parse = pipeline::make("parsebin", src)?;
    let mux = pipeline::make(container.muxer(), src)?;
    let sink = pipeline::make("filesink", src)?;
    sink.set_property("location", tmp);
    pl.add_many([&filesrc, &parse, &mux, &sink]).map_err(gerr)?;
    filesrc.link(&parse).map_err(gerr)?;
    mux.link(&sink).map_err(gerr)?;

    let state = Arc::new(Mutex::new(RemuxState::default()));
    let link_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    {
        let state = state.clone();
        let link_error = link_error.clone();
        let mux_weak = mux.downgrade();
        let sorted: Arc<Vec<u64>> = Arc::new(pts.to_vec());
        parse.connect_pad_added(move |_, pad| {
            let Some(mux) = mux_weak.upgrade() else {
                return;
            };
            let linked = mux
                .pads()
                .iter()
                .any(|p| p.direction() == gst::PadDirection::Sink);
            if !is_video_pad(pad) || linked {
                drop_stream(pad);
                return;
            }
            let Some(slot) = mux.request_pad_simple("video_%u") else {
                if let Ok(mut e) = link_error.lock() {
                    *e = Some(format!("{} takes no video stream", container.muxer()));
                }
                drop_stream(pad);
                return;
            };
            if let Err(e) = pad.link(&slot) {
                if let Ok(mut le) = link_error.lock() {
                    *le = Some(format!(
                        "the video stream cannot go into {} ({e:?})",
                        container.muxer()
                    ));
                }
                drop_stream(pad);
                return;
            }
            let state = state.clone();
            let sorted = sorted.clone();
            let types = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
            pad.add_probe(types, move |pad, info| {
                let Ok(mut st) = state.lock() else {
                    return gst::PadProbeReturn::Ok;
                };
                if let Some(start) = segment_start(info) {
                    st.base = start;
                    return gst::PadProbeReturn::Ok;
                }
                if info.buffer().is_none() {
                    return gst::PadProbeReturn::Ok;
                }
                if st.done || (st.started && st.wanted_passed >= wanted) {
                    let mut sent = st.done;
                    let ret = finish(pad, info, &mut sent);
                    st.done = sent;
                    return ret;
                }
                let Some(buf) = info.buffer() else {
                    return gst::PadProbeReturn::Ok;
                };
                let ts = buf.pts().map(|t| t.nseconds());
                let index = ts.and_then(|t| index_of(&sorted, half, t));
                if !st.started {
                    let is_key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
                    if index != Some(key) || !is_key {
                        return pipeline::discard(info);
                    }
                    st.started = true;
                    let dts = buf.dts().map(|t| t.nseconds());
                    st.offset = dts.map_or(key_pts, |d| d.min(key_pts));
                }
                match index {
                    // Leading frames of an open GOP that belong before the cut.
                    Some(i) if i < key => return pipeline::discard(info),
                    Some(i) => {
                        if i < end {
                            st.wanted_passed += 1;
                        }
                        st.last = Some(st.last.map_or(i, |l| l.max(i)));
                    }
                    None => st.untimed = true,
                }
                st.passed += 1;
                let offset = st.offset;
                if let Some(buf) = info.buffer_mut() {
                    let b = buf.make_mut();
                    let shift = |t: Option<gst::ClockTime>| {
                        t.map(|t| {
                            gst::ClockTime::from_nseconds(t.nseconds().saturating_sub(offset))
                        })
                    };
                    let (p, d) = (shift(b.pts()), shift(b.dts()));
                    b.set_pts(p);
                    b.set_dts(d);
                }
                gst::PadProbeReturn::Ok
            });
        });
    }
    let frames_left = pts.len().saturating_sub(key as usize) as u64;
    let limit = Duration::from_secs(60 + frames_left / 200);
    let ran = pipeline::run_to_end(&pl, tmp, "cutting", limit);
    drop(pl);
    if let Ok(Some(e)) = link_error.lock().map(|e| e.clone()) {
        return Err(cannot(src, e));
    }
    ran.map_err(|e| rename_error(e, tmp, src))?;
    let st = state
        .lock()
        .map_err(|_| gst_err(src, "the cut's state was lost"))?;
    if !st.started {
        return Err(cannot(
            src,
            "the key frame before the start was not found in the stream; cut it with --reencode",
        ));
    }
    if st.untimed || st.wanted_passed < wanted {
        return Err(cannot(
            src,
            format!(
                "only {} of the {wanted} frames were found by their timestamps; cut it with \
                 --reencode",
                st.wanted_passed
            ),
        ));
    }
    let last = st.last.map_or(end, |l| l + 1).max(end);
    Ok((key, last, st.passed))
}

/// Errors of a writing pipeline name the temporary file: name the source instead.
fn rename_error(e: VideoError, tmp: &Path, src: &Path) -> VideoError {
    if e.path() == tmp {
        let text = e.to_string();
        let prefix = format!("{}: ", tmp.display());
        gst_err(src, text.strip_prefix(&prefix).unwrap_or(&text).to_string())
    } else {
        e
    }
}

/// What the re-encode probe saw.
#[derive(Default)]
struct EncodeState {
    /// Start of the stream's time segment.
    base: u64,
    next: u32,
    passed: u32,
    done: bool,
}

/// The frame-accurate cut: decoded frames `[first, end)` encoded again.
fn reencode(
    src: &Path,
    tmp: &Path,
    container: CutContainer,
    fps: f64,
    first: u32,
    end: u32,
) -> Result<(u32, u32, u32), VideoError> {
    pipeline::init(src)?;
    let pl = gst::Pipeline::new();
    let gerr = |e: glib::BoolError| gst_err(src, e.to_string());
    let filesrc = pipeline::make("filesrc", src)?;
    filesrc.set_property("location", src);
    let decode = pipeline::make("decodebin", src)?;
    let convert = pipeline::make("videoconvert", src)?;
    let capsf = pipeline::make("capsfilter", src)?;
    capsf.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .build(),
    );
    let mut chain = vec![convert, capsf];
    match container {
        CutContainer::Webm => {
            let enc = pipeline::make("vp8enc", src)?;
            enc.set_property("deadline", 1i64);
            enc.set_property("target-bitrate", 2_000_000i32);
            chain.push(enc);
        }
        CutContainer::Avi => chain.push(pipeline::make("jpegenc", src)?),
        CutContainer::Mp4 | CutContainer::Mov | CutContainer::Mkv => {
            let enc = pipeline::make("x264enc", src)?;
            enc.set_property_from_str("speed-preset", "veryfast");
            chain.push(enc);
            chain.push(pipeline::make("h264parse", src)?);
        }
    }
    chain.push(pipeline::make(container.muxer(), src)?);
    let sink = pipeline::make("filesink", src)?;
    sink.set_property("location", tmp);
    chain.push(sink);
    pl.add(&filesrc).map_err(gerr)?;
    pl.add(&decode).map_err(gerr)?;
    for e in &chain {
        pl.add(e).map_err(gerr)?;
    }
    filesrc.link(&decode).map_err(gerr)?;
    gst::Element::link_many(chain.iter()).map_err(gerr)?;
    let head = chain[0]
        .static_pad("sink")
        .ok_or_else(|| gst_err(src, "no sink pad"))?;

    let frame_ns = (1e9 / fps).round().max(1.0) as u64;
    let state = Arc::new(Mutex::new(EncodeState::default()));
    {
        let state = state.clone();
        decode.connect_pad_added(move |_, pad| {
            if !is_video_pad(pad) || head.is_linked() {
                drop_stream(pad);
                return;
            }
            if pad.link(&head).is_err() {
                drop_stream(pad);
                return;
            }
            let state = state.clone();
            let types = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
            pad.add_probe(types, move |pad, info| {
                let Ok(mut st) = state.lock() else {
                    return gst::PadProbeReturn::Ok;
                };
                if let Some(start) = segment_start(info) {
                    st.base = start;
                    return gst::PadProbeReturn::Ok;
                }
                if info.buffer().is_none() {
                    return gst::PadProbeReturn::Ok;
                }
                if st.done || st.next >= end {
                    let mut sent = st.done;
                    let ret = finish(pad, info, &mut sent);
                    st.done = sent;
                    return ret;
                }
                let index = st.next;
                st.next += 1;
                if index < first {
                    return pipeline::discard(info);
                }
                let k = u64::from(index - first);
                st.passed += 1;
                if let Some(buf) = info.buffer_mut() {
                    let b = buf.make_mut();
                    b.set_pts(gst::ClockTime::from_nseconds(st.base + k * frame_ns));
                    b.set_dts(gst::ClockTime::NONE);
                    b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
                }
                gst::PadProbeReturn::Ok
            });
        });
    }
    let limit = Duration::from_secs(60 + u64::from(end) / 20);
    let ran = pipeline::run_to_end(&pl, tmp, "cutting", limit);
    drop(pl);
    ran.map_err(|e| rename_error(e, tmp, src))?;
    let st = state
        .lock()
        .map_err(|_| gst_err(src, "the cut's state was lost"))?;
    if st.passed == 0 {
        return Err(cannot(src, "no frame of the range was decoded"));
    }
    Ok((first, first + st.passed, st.passed))
}

/// `dest`'s folder and name for a cut of `src` (the caller names the file; this gives the
/// extension).
pub fn cut_file_name(stem: &str, start_s: f64, end_s: f64, container: CutContainer) -> String {
    format!(
        "{stem}_{}-{}.{}",
        time_tag(start_s),
        time_tag(end_s),
        container.extension()
    )
}

/// Seconds as a file-name tag: millisecond precision, no trailing zeros (`12.5`, `3`, `0.04`).
pub fn time_tag(t: f64) -> String {
    let ms = (t.max(0.0) * 1000.0).round() as u64;
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        let text = format!("{}.{:03}", ms / 1000, ms % 1000);
        text.trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::TempDir;
    use crate::video::decode::FrameDecoder;
    use crate::video::synth::{ClipSpec, Codec, Container, EncodeOptions, synth_clip_with};

    #[test]
    fn names_and_containers() {
        assert_eq!(time_tag(12.5), "12.5");
        assert_eq!(time_tag(3.0), "3");
        assert_eq!(time_tag(0.04), "0.04");
        assert_eq!(time_tag(1.0 / 3.0), "0.333");
        assert_eq!(
            cut_file_name("a", 0.0, 2.0, CutContainer::Webm),
            "a_0-2.webm"
        );
        assert_eq!(
            CutContainer::of(Path::new("x.MP4")).ok(),
            Some(CutContainer::Mp4)
        );
        let err = CutContainer::of(Path::new("dir/x.flv")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "dir/x.flv: cannot cut: the container .flv cannot be written (cuts are written as \
             mp4, mov, mkv, webm or avi)"
        );
        assert!(CutContainer::of(Path::new("noext")).is_err());
        assert_eq!(index_of(&[0, 40, 80], 20, 41), Some(1));
        assert_eq!(index_of(&[0, 40, 80], 20, 200), None);
    }

    /// The frames the project's decoder counts in `path`.
    fn frame_count(path: &Path) -> u32 {
        FrameDecoder::open(path)
            .unwrap_or_else(|e| panic!("{e}"))
            .info()
            .frame_count
    }

    #[test]
    fn key_frame_cuts_move_to_the_key_frame_and_reencoded_cuts_are_exact() {
        let dir = TempDir::new("cut");
        // 100 frames at 25 fps, a key frame every 20: 0, 20, 40, 60, 80.
        let opts = EncodeOptions {
            keyframe_interval: Some(20),
            fast: true,
            ..EncodeOptions::default()
        };
        for (container, codec, ext) in [
            (Container::Mp4, Codec::H264, "mp4"),
            (Container::Mkv, Codec::H264, "mkv"),
            (Container::Webm, Codec::Vp8, "webm"),
            (Container::Avi, Codec::Mjpeg, "avi"),
        ] {
            let src = dir.path().join(format!("src.{ext}"));
            let mut spec = ClipSpec::new(container, codec, 100);
            spec.width = 160;
            spec.height = 120;
            // The ball moves every frame: a frame is told from its neighbours.
            synth_clip_with(&src, &spec, &opts).unwrap_or_else(|e| panic!("{e}"));
            // 1.0 s to 2.4 s = frames 25..60.
            let dest = dir.path().join(format!("key.{ext}"));
            let out = cut_video(&src, &dest, 1.0, 2.4, CutMode::KeyFrames)
                .unwrap_or_else(|e| panic!("{ext}: {e}"));
            let all_key = codec == Codec::Mjpeg;
            let want_start = if all_key { 1.0 } else { 0.8 };
            assert!(
                (out.start_s - want_start).abs() < 1e-9,
                "{ext}: starts at {} s",
                out.start_s
            );
            assert!(
                out.end_s >= 2.4 - 1e-9 && out.end_s <= 2.4 + 0.2,
                "{ext}: {out:?}"
            );
            let n = frame_count(&dest);
            assert_eq!(n, out.frames, "{ext}: the file holds what the cut says");
            let expect = ((out.end_s - out.start_s) * 25.0).round() as u32;
            assert!(n.abs_diff(expect) <= 3, "{ext}: {n} frames for {out:?}");
            assert!((out.shift_s(1.0, 2.4) - (1.0 - want_start)).abs() < 0.2);

            // Re-encoded: exactly frames 25..60, the same pictures.
            let dest = dir.path().join(format!("exact.{ext}"));
            let out = cut_video(&src, &dest, 1.0, 2.4, CutMode::Reencode)
                .unwrap_or_else(|e| panic!("{ext}: {e}"));
            assert_eq!((out.start_s, out.frames), (1.0, 35), "{ext}");
            assert!((out.end_s - 2.4).abs() < 1e-9);
            let mut cut = FrameDecoder::open(&dest).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cut.info().frame_count, 35, "{ext}");
            let mut whole = FrameDecoder::open(&src).unwrap_or_else(|e| panic!("{e}"));
            for (a, b) in [(0u32, 25u32), (17, 42), (34, 59)] {
                let fa = cut.frames_at(&[a]).unwrap_or_else(|e| panic!("{e}"));
                let near = whole
                    .frames_at(&[b - 1, b, b + 1])
                    .unwrap_or_else(|e| panic!("{e}"));
                let d: Vec<f64> = near
                    .iter()
                    .map(|f| mean_abs_diff(&fa[0].data, &f.data))
                    .collect();
                assert!(
                    d[1] < d[0] && d[1] < d[2] && d[1] < 4.0,
                    "{ext}: cut frame {a} vs source {b} and its neighbours: {d:?}"
                );
            }
        }

        // A range outside the video, an unknown container: one line naming the file.
        let src = dir.path().join("src.mp4");
        let err = cut_video(
            &src,
            &dir.path().join("x.mp4"),
            10.0,
            12.0,
            CutMode::KeyFrames,
        )
        .unwrap_err();
        assert!(err.to_string().contains("src.mp4: cannot cut"), "{err}");
        let flv = dir.path().join("a.flv");
        std::fs::write(&flv, b"x").unwrap();
        let err = cut_video(
            &flv,
            &dir.path().join("x.flv"),
            0.0,
            1.0,
            CutMode::KeyFrames,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot cut", flv.display()))
        );
        // Nothing left behind but the sources and the cuts.
        let hidden: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "temporary files left: {hidden:?}");
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let sum: u64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        sum as f64 / a.len().max(1) as f64
    }
}
