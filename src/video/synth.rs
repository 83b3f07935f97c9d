//! Test clips made with GStreamer (`videotestsrc` -> encoder -> muxer), and a
//! set of broken files that every reader must reject cleanly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

use super::VideoError;
use super::pipeline::{self, BusEvent, BusState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Mp4,
    Avi,
    Mkv,
    Mov,
    Webm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    H264,
    Mpeg4,
    Mjpeg,
    Vp8,
    Vp9,
}

/// What clip to make.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipSpec {
    pub container: Container,
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    /// Frame rate as (numerator, denominator).
    pub fps: (u32, u32),
    pub frames: u32,
    /// `videotestsrc` pattern nick, e.g. "ball", "smpte", "snow".
    pub pattern: String,
    /// Add an audio track (as long as the video).
    pub audio: bool,
}

impl ClipSpec {
    /// A small default: 320x240, 25 fps, "ball", no audio.
    pub fn new(container: Container, codec: Codec, frames: u32) -> Self {
        ClipSpec {
            container,
            codec,
            width: 320,
            height: 240,
            fps: (25, 1),
            frames,
            pattern: "ball".into(),
            audio: false,
        }
    }
}

/// Encoder knobs beyond [`ClipSpec`] (benchmarks need long/short GOPs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Maximum distance between key frames (encoder default when None;
    /// x264enc's default is 250).
    pub keyframe_interval: Option<u32>,
    /// Target bitrate in kbit/s (encoder default when None).
    pub bitrate_kbps: Option<u32>,
    /// Fastest encoder settings (x264 `veryfast`, VPx realtime).
    pub fast: bool,
}

/// Write a test clip.
pub fn synth_clip(path: &Path, spec: &ClipSpec) -> Result<(), VideoError> {
    synth_clip_with(path, spec, &EncodeOptions::default())
}

fn encode_err(path: &Path, detail: impl Into<String>) -> VideoError {
    VideoError::Gstreamer {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// Write a test clip with extra encoder options.
pub fn synth_clip_with(
    path: &Path,
    spec: &ClipSpec,
    opts: &EncodeOptions,
) -> Result<(), VideoError> {
    synth_clip_impl(path, spec, opts, None)
}

/// A typed `videotestsrc` property value (checked against the property's type before it is
/// set, so a wrong one is an error, not a panic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceValue {
    Int(i32),
    UInt(u32),
    /// An enum property by nick, e.g. `motion` = "sweep", `animation-mode` = "running-time".
    Nick(String),
}

/// Foreground/background colours (`0xAARRGGBB`) that move from `from` to `to` and back over
/// `period_frames` generated frames (a triangle wave; linear in RGB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColourSweep {
    pub from: (u32, u32),
    pub to: (u32, u32),
    pub period_frames: u32,
}

impl ColourSweep {
    /// (foreground, background) for generated frame `n`.
    pub fn at(&self, n: u64) -> (u32, u32) {
        let period = u64::from(self.period_frames.max(2));
        let phase = (n % period) as f64 / period as f64;
        let w = if phase < 0.5 {
            phase * 2.0
        } else {
            2.0 - phase * 2.0
        };
        (
            lerp_argb(self.from.0, self.to.0, w),
            lerp_argb(self.from.1, self.to.1, w),
        )
    }
}

fn lerp_argb(a: u32, b: u32, w: f64) -> u32 {
    let mut out = 0u32;
    for shift in [0u32, 8, 16, 24] {
        let ca = f64::from((a >> shift) & 0xff);
        let cb = f64::from((b >> shift) & 0xff);
        let c = (ca + (cb - ca) * w).round().clamp(0.0, 255.0) as u32;
        out |= c << shift;
    }
    out
}

/// What `videotestsrc` draws beyond [`ClipSpec::pattern`]: used to make labelled sets of
/// clips that differ by motion and colour (`kineto demo-data`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceOptions {
    /// Extra `videotestsrc` properties, set in order: `motion`, `animation-mode`,
    /// `horizontal-speed`, `foreground-color`, `kx2`, `kt`, ...
    pub properties: Vec<(String, SourceValue)>,
    /// Frames generated and dropped before the first written one (a start offset into the
    /// animation); the written timestamps still start at zero.
    pub skip_frames: u32,
    /// Keep every `frame_step`-th generated frame (0 and 1: all of them): patterns animated by
    /// the frame counter (the ball, scrolling, zone plates) then move `frame_step` times faster.
    pub frame_step: u32,
    /// Colours that change from frame to frame (overrides the colour properties).
    pub colour_sweep: Option<ColourSweep>,
    /// x264 `speed-preset` for H.264 clips (e.g. "ultrafast"); `None`: [`EncodeOptions`]
    /// decides.
    pub x264_preset: Option<String>,
    /// Encode with one thread (x264, VPx): the bitstream then depends only on the frames, so
    /// the same clip comes out the same (make several clips in parallel instead). With
    /// x264's frame threads it varies from run to run.
    pub single_thread: bool,
    /// Variable frame rate: written frame `k` lasts `frame_durations_ms[k % len]` ms, and
    /// its timestamp is the sum of the durations before it (empty: `1 / fps` each). The
    /// caps keep [`ClipSpec::fps`] as the nominal rate.
    pub frame_durations_ms: Vec<u32>,
}

/// Write a test clip whose `videotestsrc` gets the extra settings of `source`. With
/// `SourceOptions::default()` this is [`synth_clip_with`].
pub fn synth_clip_with_source(
    path: &Path,
    spec: &ClipSpec,
    source: &SourceOptions,
    opts: &EncodeOptions,
) -> Result<(), VideoError> {
    synth_clip_impl(path, spec, opts, Some(source))
}

fn set_source_property(
    el: &gst::Element,
    name: &str,
    value: &SourceValue,
    path: &Path,
) -> Result<(), VideoError> {
    let pspec = el
        .find_property(name)
        .ok_or_else(|| encode_err(path, format!("videotestsrc has no property {name}")))?;
    let (want, got) = match value {
        SourceValue::Nick(nick) => return set_enum_by_nick(el, name, nick, path),
        SourceValue::Int(v) => (glib::Type::I32, v.to_value()),
        SourceValue::UInt(v) => (glib::Type::U32, v.to_value()),
    };
    if pspec.value_type() != want {
        return Err(encode_err(
            path,
            format!(
                "videotestsrc property {name} is a {}, not a {want}",
                pspec.value_type()
            ),
        ));
    }
    el.set_property_from_value(name, &got);
    Ok(())
}

/// Apply `source` to a `videotestsrc`: properties, start colours, and a probe on its output
/// that drops the first `skip_frames`, keeps every `frame_step`-th frame after them, stamps
/// the kept ones `k / fps` from zero, and moves the colours.
fn apply_source(
    src: &gst::Element,
    source: &SourceOptions,
    fps: (u32, u32),
    path: &Path,
) -> Result<(), VideoError> {
    for (name, value) in &source.properties {
        set_source_property(src, name, value, path)?;
    }
    if let Some(sweep) = source.colour_sweep {
        let (fg, bg) = sweep.at(0);
        src.set_property("foreground-color", fg);
        src.set_property("background-color", bg);
    }
    let step = u64::from(source.frame_step.max(1));
    let durations: Vec<u64> = source
        .frame_durations_ms
        .iter()
        .map(|&ms| u64::from(ms.max(1)) * 1_000_000)
        .collect();
    if source.skip_frames == 0 && step == 1 && source.colour_sweep.is_none() && durations.is_empty()
    {
        return Ok(());
    }
    let pad = src
        .static_pad("src")
        .ok_or_else(|| encode_err(path, "videotestsrc has no src pad"))?;
    let weak = src.downgrade();
    let skip = u64::from(source.skip_frames);
    let sweep = source.colour_sweep;
    let (num, den) = (u64::from(fps.0.max(1)), u64::from(fps.1));
    let at = move |k: u64| {
        let ns = if durations.is_empty() {
            k * den * 1_000_000_000 / num
        } else {
            let len = durations.len() as u64;
            let cycle: u64 = durations.iter().sum();
            let rest: u64 = durations.iter().take((k % len) as usize).sum();
            k / len * cycle + rest
        };
        gst::ClockTime::from_nseconds(ns)
    };
    let restamp = skip > 0 || step > 1 || !source.frame_durations_ms.is_empty();
    let counter = std::sync::atomic::AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The property takes effect on the next frame the source paints.
        if let Some(sweep) = sweep
            && let Some(el) = weak.upgrade()
        {
            let (fg, bg) = sweep.at(n + 1);
            el.set_property("foreground-color", fg);
            el.set_property("background-color", bg);
        }
        if n < skip || !(n - skip).is_multiple_of(step) {
            return super::pipeline::discard(info);
        }
        let k = (n - skip) / step;
        if restamp && let Some(buf) = info.buffer_mut() {
            let b = buf.make_mut();
            b.set_pts(at(k));
            b.set_dts(at(k));
            b.set_duration(at(k + 1) - at(k));
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

fn synth_clip_impl(
    path: &Path,
    spec: &ClipSpec,
    opts: &EncodeOptions,
    source: Option<&SourceOptions>,
) -> Result<(), VideoError> {
    pipeline::init(path)?;
    if spec.width == 0 || spec.height == 0 || spec.fps.0 == 0 || spec.fps.1 == 0 {
        return Err(encode_err(
            path,
            "clip size and frame rate must be non-zero",
        ));
    }
    if spec.container == Container::Webm && !matches!(spec.codec, Codec::Vp8 | Codec::Vp9) {
        return Err(encode_err(path, "WebM holds only VP8/VP9 video"));
    }
    let pl = gst::Pipeline::new();
    let gerr = |e: glib::BoolError| encode_err(path, e.to_string());

    let src = pipeline::make("videotestsrc", path)?;
    let (skip, step) = source.map_or((0, 1), |s| (s.skip_frames, s.frame_step.max(1)));
    let buffers = spec
        .frames
        .saturating_mul(step)
        .saturating_add(skip)
        .min(i32::MAX as u32);
    src.set_property("num-buffers", buffers as i32);
    set_enum_by_nick(&src, "pattern", &spec.pattern, path)?;
    if let Some(source) = source {
        apply_source(&src, source, spec.fps, path)?;
    }
    let capsf = pipeline::make("capsfilter", path)?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", spec.width as i32)
        .field("height", spec.height as i32)
        .field(
            "framerate",
            gst::Fraction::new(spec.fps.0 as i32, spec.fps.1 as i32),
        )
        .build();
    capsf.set_property("caps", &caps);

    let mut chain = vec![src, capsf];
    match spec.codec {
        Codec::H264 => {
            let enc = pipeline::make("x264enc", path)?;
            if let Some(k) = opts.keyframe_interval {
                enc.set_property("key-int-max", k);
            }
            if let Some(b) = opts.bitrate_kbps {
                enc.set_property("bitrate", b);
            }
            if let Some(preset) = source.and_then(|s| s.x264_preset.as_deref()) {
                set_enum_by_nick(&enc, "speed-preset", preset, path)?;
            } else if opts.fast {
                enc.set_property_from_str("speed-preset", "veryfast");
            }
            if source.is_some_and(|s| s.single_thread) {
                enc.set_property("threads", 1u32);
            }
            chain.push(enc);
            chain.push(pipeline::make("h264parse", path)?);
        }
        Codec::Mpeg4 => {
            // No mpeg4videoparse: with mp4mux it fails ("Buffer has no PTS").
            let enc = pipeline::make("avenc_mpeg4", path)?;
            if let Some(k) = opts.keyframe_interval {
                enc.set_property("gop-size", k as i32);
            }
            enc.set_property(
                "bitrate",
                opts.bitrate_kbps
                    .map(|b| b as i32 * 1000)
                    .unwrap_or(1_000_000),
            );
            // gst-libav 1.22's avenc_mpeg4 emits buffers without timestamps
            // (harmless in AVI, but MP4/MKV then get zero durations): stamp
            // them from the frame counter (no B-frames, so PTS = DTS).
            if let Some(pad) = enc.static_pad("src") {
                let (num, den) = (spec.fps.0 as u64, spec.fps.1 as u64);
                let counter = std::sync::atomic::AtomicU64::new(0);
                // Timestamps must lie inside the encoder's segment (it may
                // start at 1000 h, GstVideoEncoder's DTS headroom).
                let base = std::sync::atomic::AtomicU64::new(0);
                let types = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
                pad.add_probe(types, move |_, info| {
                    use std::sync::atomic::Ordering::Relaxed;
                    if let Some(ev) = info.event()
                        && let gst::EventView::Segment(seg) = ev.view()
                        && let Some(seg) = seg.segment().downcast_ref::<gst::ClockTime>()
                    {
                        base.store(seg.start().map(|t| t.nseconds()).unwrap_or(0), Relaxed);
                    }
                    if let Some(buf) = info.buffer_mut() {
                        let n = counter.fetch_add(1, Relaxed);
                        let b0 = base.load(Relaxed);
                        let t = |k: u64| {
                            gst::ClockTime::from_nseconds(b0 + k * den * 1_000_000_000 / num)
                        };
                        let b = buf.make_mut();
                        b.set_pts(t(n));
                        b.set_dts(t(n));
                        b.set_duration(t(n + 1) - t(n));
                    }
                    gst::PadProbeReturn::Ok
                });
            }
            chain.push(enc);
        }
        Codec::Mjpeg => chain.push(pipeline::make("jpegenc", path)?),
        Codec::Vp8 | Codec::Vp9 => {
            let name = if spec.codec == Codec::Vp8 {
                "vp8enc"
            } else {
                "vp9enc"
            };
            let enc = pipeline::make(name, path)?;
            if let Some(k) = opts.keyframe_interval {
                enc.set_property("keyframe-max-dist", k as i32);
            }
            if let Some(b) = opts.bitrate_kbps {
                enc.set_property("target-bitrate", b as i32 * 1000);
            }
            enc.set_property("deadline", 1i64); // realtime: fast, no frame lag
            if source.is_some_and(|s| s.single_thread) {
                enc.set_property("threads", 1i32);
            }
            chain.push(enc);
        }
    }
    let mux_name = match spec.container {
        Container::Mp4 => "mp4mux",
        Container::Mov => "qtmux",
        Container::Avi => "avimux",
        Container::Mkv => "matroskamux",
        Container::Webm => "webmmux",
    };
    let mux = pipeline::make(mux_name, path)?;
    let sink = pipeline::make("filesink", path)?;
    sink.set_property("location", path);
    for e in chain.iter().chain([&mux, &sink]) {
        pl.add(e).map_err(gerr)?;
    }
    gst::Element::link_many(chain.iter()).map_err(gerr)?;
    if let Some(last) = chain.last() {
        last.link(&mux).map_err(gerr)?;
    }
    mux.link(&sink).map_err(gerr)?;

    if spec.audio {
        let asrc = pipeline::make("audiotestsrc", path)?;
        let rate = 44_100u64;
        let spb = 1024u64;
        let secs_num = spec.frames as u64 * spec.fps.1 as u64;
        let buffers = (secs_num * rate).div_ceil(spec.fps.0 as u64 * spb).max(1);
        asrc.set_property("num-buffers", buffers as i32);
        asrc.set_property("samplesperbuffer", spb as i32);
        let aconv = pipeline::make("audioconvert", path)?;
        let mut achain = vec![asrc, aconv];
        match spec.container {
            Container::Mp4 | Container::Mov => achain.push(pipeline::make("avenc_aac", path)?),
            Container::Mkv | Container::Webm => achain.push(pipeline::make("vorbisenc", path)?),
            Container::Avi => {
                let f = pipeline::make("capsfilter", path)?;
                f.set_property(
                    "caps",
                    gst::Caps::builder("audio/x-raw")
                        .field("format", "S16LE")
                        .build(),
                );
                achain.push(f);
            }
        }
        for e in &achain {
            pl.add(e).map_err(gerr)?;
        }
        gst::Element::link_many(achain.iter()).map_err(gerr)?;
        if let Some(last) = achain.last() {
            last.link(&mux).map_err(gerr)?;
        }
    }

    let pixels = spec.width as u64 * spec.height as u64 * spec.frames as u64;
    // ~1 s per 20 Mpixel on 2 busy cores, plus slack.
    let limit = Duration::from_secs(60 + pixels / 20_000_000);
    pipeline::run_to_end(&pl, path, "encoding", limit)
}

/// Set an enum property from its nick without panicking on a bad value.
fn set_enum_by_nick(
    el: &gst::Element,
    prop: &str,
    nick: &str,
    path: &Path,
) -> Result<(), VideoError> {
    let pspec = el
        .find_property(prop)
        .ok_or_else(|| encode_err(path, format!("no property {prop}")))?;
    let class = glib::EnumClass::with_type(pspec.value_type())
        .ok_or_else(|| encode_err(path, format!("{prop} is not an enum")))?;
    let value = class
        .value_by_nick(nick)
        .or_else(|| class.value_by_name(nick))
        .ok_or_else(|| {
            let known: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
            encode_err(
                path,
                format!("unknown {prop} '{nick}' (known: {})", known.join(", ")),
            )
        })?;
    el.set_property_from_value(prop, &value.to_value(&class));
    Ok(())
}

/// Join clips end to end the way an editor's cut does: `parts` decoded in order, played one
/// after the other by GStreamer's `concat`, and encoded again as one H.264 stream in MP4
/// (`x264enc`, `mp4mux`). The joined file's timestamps jump and repeat at the joins (what
/// `mp4mux` makes of `concat`'s segments), as in concatenated footage.
pub fn join_clips(parts: &[PathBuf], path: &Path) -> Result<(), VideoError> {
    join_impl(parts, path, None)
}

/// One frame size and rate for [`join_clips_uniform`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinFormat {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Maximum distance between key frames (x264's default, 250, when None).
    pub keyframe_interval: Option<u32>,
}

/// [`join_clips`] with every part scaled to one frame size and converted to one frame rate
/// (`videoscale`, `videorate`): a long clip of a constant rate whose part `k` starts where the
/// parts before it end (each part keeps its duration, to a frame).
pub fn join_clips_uniform(
    parts: &[PathBuf],
    path: &Path,
    format: JoinFormat,
) -> Result<(), VideoError> {
    join_impl(parts, path, Some(format))
}

fn join_impl(parts: &[PathBuf], path: &Path, format: Option<JoinFormat>) -> Result<(), VideoError> {
    pipeline::init(path)?;
    if parts.is_empty() {
        return Err(encode_err(path, "no clips to join"));
    }
    let pl = gst::Pipeline::new();
    let gerr = |e: glib::BoolError| encode_err(path, e.to_string());
    let concat = pipeline::make("concat", path)?;
    let convert = pipeline::make("videoconvert", path)?;
    // 4:2:0, as footage is (x264enc would otherwise pick 4:4:4 for some inputs).
    let capsf = pipeline::make("capsfilter", path)?;
    capsf.set_property(
        "caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .build(),
    );
    let enc = pipeline::make("x264enc", path)?;
    enc.set_property_from_str("speed-preset", "veryfast");
    let mux = pipeline::make("mp4mux", path)?;
    let sink = pipeline::make("filesink", path)?;
    sink.set_property("location", path);
    let mut chain = vec![concat.clone(), convert];
    if let Some(f) = format {
        capsf.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", f.width as i32)
                .field("height", f.height as i32)
                .field("framerate", gst::Fraction::new(f.fps as i32, 1))
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        );
        chain.push(pipeline::make("videoscale", path)?);
        chain.push(pipeline::make("videorate", path)?);
        if let Some(k) = f.keyframe_interval {
            enc.set_property("key-int-max", k);
        }
        restamp_constant(&capsf, f.fps, path)?;
    }
    chain.extend([capsf, enc, mux, sink]);
    for e in &chain {
        pl.add(e).map_err(gerr)?;
    }
    gst::Element::link_many(chain.iter()).map_err(gerr)?;
    for part in parts {
        // concat plays its sink pads in the order they were requested.
        let slot = concat
            .request_pad_simple("sink_%u")
            .ok_or_else(|| encode_err(path, "concat gave no sink pad"))?;
        let src = pipeline::make("filesrc", path)?;
        src.set_property("location", part);
        let decode = pipeline::make("decodebin", path)?;
        pl.add_many([&src, &decode]).map_err(gerr)?;
        src.link(&decode).map_err(gerr)?;
        decode.connect_pad_added(move |_, pad| {
            let video = pad
                .current_caps()
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                .unwrap_or(false);
            if video && !slot.is_linked() {
                let _ = pad.link(&slot);
            }
        });
    }
    pipeline::run_to_end(&pl, path, "joining clips", Duration::from_secs(120))
}

/// On `el`'s output: one time segment from zero (`concat` opens one per part) and frame `k`
/// stamped `k / fps`, so that a joined clip's timestamps neither jump nor repeat.
fn restamp_constant(el: &gst::Element, fps: u32, path: &Path) -> Result<(), VideoError> {
    let pad = el
        .static_pad("src")
        .ok_or_else(|| encode_err(path, "capsfilter has no src pad"))?;
    let fps = u64::from(fps.max(1));
    let counter = std::sync::atomic::AtomicU64::new(0);
    let segments = std::sync::atomic::AtomicU64::new(0);
    let types = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
    pad.add_probe(types, move |_, info| {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(ev) = info.event()
            && ev.type_() == gst::EventType::Segment
        {
            if segments.fetch_add(1, Relaxed) > 0 {
                return gst::PadProbeReturn::Drop;
            }
            let seg = gst::FormattedSegment::<gst::ClockTime>::new();
            info.data = Some(gst::PadProbeData::Event(gst::event::Segment::new(&seg)));
            return gst::PadProbeReturn::Ok;
        }
        if let Some(buf) = info.buffer_mut() {
            let n = counter.fetch_add(1, Relaxed);
            let t = |k: u64| gst::ClockTime::from_nseconds(k * 1_000_000_000 / fps);
            let b = buf.make_mut();
            b.set_pts(t(n));
            b.set_dts(t(n));
            b.set_duration(t(n + 1) - t(n));
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Write broken or hostile files into `dir`; returns (description, path).
/// Every one of them must make `probe` and `FrameDecoder::open` fail with a
/// one-line error naming the file. Variants whose making needs a missing
/// encoder are left out.
pub fn broken_variants(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut put = |name: &str, desc: &str, bytes: &[u8]| {
        let p = dir.join(name);
        if std::fs::write(&p, bytes).is_ok() {
            out.push((desc.to_string(), p));
        }
    };
    put("empty.mp4", "empty file", b"");
    put(
        "text_named.mp4",
        "text file named .mp4",
        b"This is not a video.\nJust some text that happens to end in .mp4\n",
    );
    // Deterministic noise.
    let mut x: u32 = 0x1234_5678;
    let noise: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    put("noise.avi", "random bytes named .avi", &noise);
    // A RIFF/AVI header and nothing else.
    let mut riff = b"RIFF\x00\x10\x00\x00AVI LIST\x00\x01\x00\x00hdrlavih".to_vec();
    riff.extend_from_slice(&[0u8; 40]);
    put("header_only.avi", "AVI header without streams", &riff);

    // Real files, damaged.
    let tmp = dir.join("whole_for_cutting.mp4");
    let spec = ClipSpec::new(Container::Mp4, Codec::H264, 50);
    if synth_clip(&tmp, &spec).is_ok()
        && let Ok(bytes) = std::fs::read(&tmp)
    {
        // mp4mux writes moov at the end: cutting loses the index.
        put(
            "truncated_moov_at_end.mp4",
            "mp4 cut in half (moov at the end lost)",
            &bytes[..bytes.len() / 2],
        );
        put(
            "truncated_40_bytes.mp4",
            "mp4 cut after 40 bytes",
            &bytes[..bytes.len().min(40)],
        );
    }
    let _ = std::fs::remove_file(&tmp);
    let tmp = dir.join("whole_for_cutting.avi");
    let spec = ClipSpec::new(Container::Avi, Codec::Mpeg4, 30);
    if synth_clip(&tmp, &spec).is_ok()
        && let Ok(bytes) = std::fs::read(&tmp)
    {
        put(
            "truncated_header.avi",
            "avi cut inside its header",
            &bytes[..bytes.len().min(300)],
        );
    }
    let _ = std::fs::remove_file(&tmp);

    for (name, desc) in [
        ("audio_only.m4a", "audio-only .m4a"),
        ("audio_only.mp4", "audio-only file named .mp4"),
    ] {
        let p = dir.join(name);
        if synth_audio_only(&p).is_ok() {
            out.push((desc.to_string(), p));
        }
    }
    let p = dir.join("zero_frames.mp4");
    if synth_clip(&p, &ClipSpec::new(Container::Mp4, Codec::H264, 0)).is_ok() && p.exists() {
        out.push(("mp4 with zero video frames".into(), p));
    }
    let p = dir.join("directory.mp4");
    if std::fs::create_dir_all(&p).is_ok() {
        out.push(("directory named .mp4".into(), p));
    }
    out.push((
        "file that does not exist".into(),
        dir.join("does_not_exist.mp4"),
    ));
    out
}

/// One second of AAC audio in an MP4 container, no video.
fn synth_audio_only(path: &Path) -> Result<(), VideoError> {
    pipeline::init(path)?;
    let pl = gst::Pipeline::new();
    let gerr = |e: glib::BoolError| encode_err(path, e.to_string());
    let src = pipeline::make("audiotestsrc", path)?;
    src.set_property("num-buffers", 43);
    let conv = pipeline::make("audioconvert", path)?;
    let enc = pipeline::make("avenc_aac", path)?;
    let mux = pipeline::make("mp4mux", path)?;
    let sink = pipeline::make("filesink", path)?;
    sink.set_property("location", path);
    let els = [&src, &conv, &enc, &mux, &sink];
    pl.add_many(els).map_err(gerr)?;
    gst::Element::link_many(els).map_err(gerr)?;
    let mut bus_state = BusState::new(path);
    let res = pipeline::set_state_and_wait(&pl, gst::State::Playing, &mut bus_state, "encoding")
        .and_then(|eos| {
            if eos {
                return Ok(());
            }
            let bus = pl.bus().ok_or_else(|| encode_err(path, "no bus"))?;
            let deadline = Instant::now() + pipeline::STEP_TIMEOUT;
            loop {
                match bus_state.poll(&bus, Duration::from_millis(50)) {
                    Some(BusEvent::Eos) => return Ok(()),
                    Some(BusEvent::Error(e)) => return Err(e),
                    None if Instant::now() > deadline => {
                        return Err(VideoError::Timeout {
                            path: path.to_path_buf(),
                            what: "encoding audio".into(),
                            secs: pipeline::STEP_TIMEOUT.as_secs(),
                        });
                    }
                    None => {}
                }
            }
        });
    pipeline::shutdown(&pl);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::decode::FrameDecoder;
    use crate::video::probe::probe;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kineto-video-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        d
    }

    fn spec(container: Container, codec: Codec, w: u32, h: u32, frames: u32) -> ClipSpec {
        ClipSpec {
            width: w,
            height: h,
            ..ClipSpec::new(container, codec, frames)
        }
    }

    /// Probe, then check that sparse/unordered/duplicated requests give
    /// exactly the frames of a straight-through decode.
    fn check_clip(path: &Path, s: &ClipSpec) {
        let t0 = Instant::now();
        let info = probe(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.frame_count, s.frames, "{}", path.display());
        assert_eq!(
            (info.width, info.height),
            (s.width, s.height),
            "{}",
            path.display()
        );
        assert!(
            (info.fps() - s.fps.0 as f64 / s.fps.1 as f64).abs() < 1e-6,
            "{}: fps {}",
            path.display(),
            info.fps()
        );
        let all: Vec<u32> = (0..s.frames).collect();
        let mut dec = FrameDecoder::open(path).unwrap_or_else(|e| panic!("{e}"));
        let straight = dec.frames_at(&all).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(straight.len(), s.frames as usize);
        for (i, f) in straight.iter().enumerate() {
            assert_eq!(f.index, i as u32);
            assert_eq!((f.width, f.height), (s.width, s.height));
            assert_eq!(f.data.len(), (s.width * s.height * 3) as usize);
        }
        if s.frames > 2 && s.pattern == "ball" {
            assert_ne!(
                straight[0].data,
                straight[s.frames as usize / 2].data,
                "frames do not move"
            );
        }
        // Sparse, descending, duplicated; fresh decoder and the same one.
        let n = s.frames;
        let ask: Vec<u32> = [n - 1, 0, n / 2, n / 3, n - 1, 1.min(n - 1)].to_vec();
        for reuse in [false, true] {
            let got = if reuse {
                dec.frames_at(&ask)
            } else {
                FrameDecoder::open(path).and_then(|mut d| d.frames_at(&ask))
            }
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.len(), ask.len());
            for (g, &i) in got.iter().zip(&ask) {
                assert_eq!(g.index, i);
                assert!(
                    g.data == straight[i as usize].data,
                    "{}: frame {i} differs",
                    path.display()
                );
            }
        }
        eprintln!(
            "{}: ok in {:?} ({})",
            path.display(),
            t0.elapsed(),
            info.codec
        );
    }

    #[test]
    fn containers_and_codecs() {
        let dir = tmpdir("matrix");
        let cases = [
            (Container::Mp4, Codec::H264, "h264.mp4"),
            (Container::Mp4, Codec::Mpeg4, "mpeg4.mp4"),
            (Container::Avi, Codec::Mpeg4, "mpeg4.avi"),
            (Container::Avi, Codec::Mjpeg, "mjpeg.avi"),
            (Container::Webm, Codec::Vp8, "vp8.webm"),
            (Container::Webm, Codec::Vp9, "vp9.webm"),
            (Container::Mkv, Codec::H264, "h264.mkv"),
            (Container::Mov, Codec::H264, "h264.mov"),
        ];
        for (c, k, name) in cases {
            let s = spec(c, k, 96, 64, 30);
            let p = dir.join(name);
            synth_clip(&p, &s).unwrap_or_else(|e| panic!("{e}"));
            check_clip(&p, &s);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn odd_sizes_portrait_and_short_clips() {
        let dir = tmpdir("sizes");
        let cases = [
            (
                spec(Container::Webm, Codec::Vp8, 35, 25, 12),
                "odd_vp8.webm",
            ),
            (
                spec(Container::Avi, Codec::Mpeg4, 35, 25, 12),
                "odd_mpeg4.avi",
            ),
            (
                spec(Container::Avi, Codec::Mjpeg, 33, 17, 12),
                "odd_mjpeg.avi",
            ),
            (
                spec(Container::Mp4, Codec::H264, 32, 24, 12),
                "small_h264.mp4",
            ),
            (
                spec(Container::Mp4, Codec::H264, 240, 320, 16),
                "portrait.mp4",
            ),
            (
                spec(Container::Mp4, Codec::H264, 64, 48, 1),
                "one_frame.mp4",
            ),
            (
                spec(Container::Mkv, Codec::Vp9, 64, 48, 5),
                "five_frames.mkv",
            ),
            (
                spec(Container::Avi, Codec::Mpeg4, 64, 48, 7),
                "seven_frames.avi",
            ),
        ];
        for (s, name) in cases {
            let p = dir.join(name);
            synth_clip(&p, &s).unwrap_or_else(|e| panic!("{e}"));
            check_clip(&p, &s);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn audio_track_does_not_change_frames() {
        let dir = tmpdir("audio");
        for (c, k, name) in [
            (Container::Mp4, Codec::H264, "av.mp4"),
            (Container::Mkv, Codec::H264, "av.mkv"),
            (Container::Avi, Codec::Mjpeg, "av.avi"),
        ] {
            let s = ClipSpec {
                audio: true,
                ..spec(c, k, 64, 48, 20)
            };
            let p = dir.join(name);
            synth_clip(&p, &s).unwrap_or_else(|e| panic!("{e}"));
            check_clip(&p, &s);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn broken_files_fail_fast_with_one_line_errors() {
        let dir = tmpdir("broken");
        let variants = broken_variants(&dir);
        assert!(
            variants.len() >= 10,
            "only {} variants made",
            variants.len()
        );
        for (desc, p) in &variants {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let t0 = Instant::now();
            let probed = probe(p);
            let opened = FrameDecoder::open(p).map(|_| ());
            let took = t0.elapsed();
            for r in [probed.map(|_| ()), opened] {
                match r {
                    Ok(()) => panic!("{desc}: accepted"),
                    Err(e) => {
                        let msg = e.to_string();
                        assert!(!msg.contains('\n'), "{desc}: multi-line: {msg}");
                        assert!(msg.contains(&name), "{desc}: no file name: {msg}");
                        assert_eq!(e.path(), p.as_path());
                        eprintln!("{desc}: {msg}");
                    }
                }
            }
            assert!(took < Duration::from_secs(12), "{desc}: took {took:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The matrix/range decord (FFmpeg's `scale` filter) uses, checked with
    /// decord 0.6.0 on these very clips: x264 writes BT.709 into the VUI of
    /// HD streams and vp9enc into the VP9 header; MPEG-4 part 2 and VP8
    /// carry none (FFmpeg: BT.601, although GStreamer defaults HD to BT.709);
    /// JPEG is full range.
    #[test]
    fn colour_matrix_follows_the_stream_like_ffmpeg() {
        use crate::video::yuv::{Matrix, YuvColor};
        let dir = tmpdir("colour");
        let cases = [
            (Container::Mp4, Codec::H264, 1280, 720, Matrix::Bt709, false),
            (Container::Mp4, Codec::H264, 320, 240, Matrix::Bt601, false),
            (
                Container::Avi,
                Codec::Mpeg4,
                1280,
                720,
                Matrix::Bt601,
                false,
            ),
            (Container::Webm, Codec::Vp8, 1280, 720, Matrix::Bt601, false),
            (Container::Webm, Codec::Vp9, 1280, 720, Matrix::Bt709, false),
            (Container::Avi, Codec::Mjpeg, 320, 240, Matrix::Bt601, true),
        ];
        for (i, (c, k, w, h, matrix, full_range)) in cases.into_iter().enumerate() {
            let p = dir.join(format!(
                "c{i}.{}",
                if c == Container::Webm { "webm" } else { "bin" }
            ));
            synth_clip(&p, &spec(c, k, w, h, 3)).unwrap_or_else(|e| panic!("{e}"));
            let dec = FrameDecoder::open(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                dec.color(),
                Some(YuvColor { matrix, full_range }),
                "{c:?}/{k:?} {w}x{h}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_specs_are_errors() {
        let dir = tmpdir("badspec");
        let mut s = ClipSpec::new(Container::Webm, Codec::H264, 3);
        assert!(synth_clip(&dir.join("a.webm"), &s).is_err());
        s = ClipSpec::new(Container::Mp4, Codec::H264, 3);
        s.pattern = "no-such-pattern".into();
        let e = synth_clip(&dir.join("b.mp4"), &s)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("unknown pattern"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
