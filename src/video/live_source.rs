//! Live sources: a local file, a URL of an allowed scheme, or a camera, decoded in stream order
//! into RGB frames on a named thread (`kineto-live-source`), for `kineto watch`.
//!
//! A URL never reaches GStreamer unchecked: its scheme must be in [`ALLOWED_SCHEMES`] and have a
//! source element installed. Credentials in a URL (`rtsp://user:pass@host/`) are used to connect
//! and never shown: [`Source::display`] and every error say `***` instead.
//!
//! A network source that drops after it has given frames is reconnected with back-off (0.5 s,
//! 1 s, 2 s, ...), at most `max_reconnects` times in a row; each attempt is reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::VideoError;
use super::decode::{decide_color, frame_to_rgb, yuv_appsink};
use super::frame::RgbFrame;
use super::pipeline::{self, BusEvent, BusState};
use super::record::{REMUXED, RecordBranch, Recorder, Recording};
use crate::progress::CancelToken;

/// URL schemes a source may use (`file://` and local paths are files).
pub const ALLOWED_SCHEMES: [&str; 8] = [
    "file", "http", "https", "rtsp", "rtsps", "rtspt", "srt", "udp",
];

/// Frames decoded ahead of the consumer.
const QUEUE: usize = 32;

/// Where frames come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// An allowed URL, as given (credentials included: only used to connect).
    Url {
        uri: String,
        scheme: String,
    },
    /// A V4L2 device (`/dev/videoN`).
    Camera(PathBuf),
}

impl Source {
    /// A source from the command line: a local path, a `/dev/video*` device or `v4l2://` URL,
    /// or a URL of an allowed scheme. A scheme outside the allow-list is
    /// [`VideoError::SchemeNotAllowed`].
    pub fn parse(text: &str) -> Result<Source, VideoError> {
        let text = text.trim();
        if let Some(device) = text.strip_prefix("v4l2://") {
            return Ok(Source::Camera(PathBuf::from(device)));
        }
        if text.starts_with("/dev/video") {
            return Ok(Source::Camera(PathBuf::from(text)));
        }
        let Some((scheme, _)) = text.split_once("://") else {
            return Ok(Source::File(PathBuf::from(text)));
        };
        let scheme = scheme.to_ascii_lowercase();
        let valid = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !valid || !ALLOWED_SCHEMES.contains(&scheme.as_str()) {
            return Err(VideoError::SchemeNotAllowed {
                path: PathBuf::from(redact(text)),
                scheme,
            });
        }
        if scheme == "file" {
            let (path, _) =
                gst::glib::filename_from_uri(text).map_err(|e| VideoError::Unreadable {
                    path: PathBuf::from(text),
                    reason: e.to_string(),
                })?;
            return Ok(Source::File(path));
        }
        Ok(Source::Url {
            uri: text.to_string(),
            scheme,
        })
    }

    /// How the source is shown: a path, or the URL with its credentials replaced by `***`.
    pub fn display(&self) -> String {
        match self {
            Source::File(p) | Source::Camera(p) => p.display().to_string(),
            Source::Url { uri, .. } => redact(uri),
        }
    }

    /// Live sources (cameras, RTSP, UDP, SRT) have no end and may be reconnected; files and
    /// HTTP downloads end.
    pub fn is_live(&self) -> bool {
        match self {
            Source::File(_) => false,
            Source::Camera(_) => true,
            Source::Url { scheme, .. } => !matches!(scheme.as_str(), "http" | "https"),
        }
    }

    fn can_reconnect(&self) -> bool {
        matches!(self, Source::Url { .. })
    }

    /// The name errors carry.
    fn error_path(&self) -> PathBuf {
        PathBuf::from(self.display())
    }
}

/// `scheme://user:pass@host/...` -> `scheme://***@host/...`; anything else unchanged.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}{tail}", &authority[at + 1..]),
        None => uri.to_string(),
    }
}

/// A video capture device GStreamer's device monitor lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Camera {
    pub name: String,
    /// The device path when the provider names one (`/dev/video0`).
    pub device: Option<String>,
}

/// The cameras GStreamer's `DeviceMonitor` sees (class `Video/Source`).
pub fn cameras() -> Result<Vec<Camera>, VideoError> {
    pipeline::init(Path::new("cameras"))?;
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    if monitor.start().is_err() {
        return Ok(Vec::new());
    }
    let found = monitor
        .devices()
        .iter()
        .map(|d| Camera {
            name: d.display_name().to_string(),
            device: d
                .properties()
                .and_then(|p| p.get::<String>("device.path").ok()),
        })
        .collect();
    monitor.stop();
    Ok(found)
}

/// What the source thread reports, in order.
#[derive(Debug)]
pub enum LiveEvent {
    /// A decoded frame; `index` counts frames from the first, across reconnections.
    Frame(RgbFrame),
    /// The frame rate the stream declares (0 when it declares none), before its first frame.
    Rate(f64),
    /// The source dropped; attempt `attempt` of `max` follows after `wait`.
    Reconnecting {
        attempt: u32,
        max: u32,
        wait: Duration,
        detail: String,
    },
    /// The stream ended (end of a file or download).
    End,
    /// The source cannot be opened, or dropped more often than allowed.
    Failed(VideoError),
}

#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub max_reconnects: u32,
    /// The first back-off; each next one doubles, up to 8 s.
    pub first_backoff: Duration,
    /// Records every buffer received (see `video::record`); finished when the source thread
    /// ends, whatever ends it.
    pub record: Option<Arc<Recorder>>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            max_reconnects: 5,
            first_backoff: Duration::from_millis(500),
            record: None,
        }
    }
}

/// A running source: its events, and its thread.
pub struct LiveHandle {
    pub events: Receiver<LiveEvent>,
    pub thread: LiveThread,
}

/// The source thread, joined by [`LiveThread::finish`].
pub struct LiveThread(JoinHandle<Option<Result<Recording, VideoError>>>);

impl LiveThread {
    /// Waits for the source thread to end (it ends once its `cancel` is cancelled or its
    /// events' receiver is dropped, after finishing the recording); the recording's outcome,
    /// if one was asked for.
    pub fn finish(self) -> Option<Result<Recording, VideoError>> {
        self.0.join().unwrap_or_else(|_| {
            Some(Err(VideoError::Gstreamer {
                path: PathBuf::from("kineto-live-source"),
                detail: "the source thread panicked".into(),
            }))
        })
    }
}

/// Starts decoding `source` on `kineto-live-source`; events arrive on the receiver until
/// [`LiveEvent::End`] or [`LiveEvent::Failed`], or until `cancel` is cancelled.
pub fn open_live(
    source: Source,
    options: LiveOptions,
    cancel: CancelToken,
) -> Result<LiveHandle, VideoError> {
    pipeline::init(&source.error_path())?;
    if let Source::File(path) = &source {
        pipeline::check_readable(path)?;
    }
    let (tx, rx) = sync_channel(QUEUE);
    let thread = std::thread::Builder::new()
        .name("kineto-live-source".into())
        .spawn(move || {
            run_source(&source, &options, &cancel, &tx);
            drop(tx);
            options.record.as_ref().map(|r| r.finish())
        })
        .map_err(|e| VideoError::Gstreamer {
            path: PathBuf::from("kineto-live-source"),
            detail: format!("cannot start the source thread: {e}"),
        })?;
    Ok(LiveHandle {
        events: rx,
        thread: LiveThread(thread),
    })
}

/// How one pipeline run ended.
enum RunEnd {
    Eos,
    Error(VideoError),
    Cancelled,
    /// The consumer is gone.
    Closed,
}

fn run_source(
    source: &Source,
    options: &LiveOptions,
    cancel: &CancelToken,
    tx: &SyncSender<LiveEvent>,
) {
    let mut next_index = 0u32;
    let mut failures = 0u32;
    loop {
        let before = next_index;
        if let Some(recorder) = &options.record {
            recorder.new_connection();
        }
        let end = run_pipeline(source, options.record.as_ref(), cancel, tx, &mut next_index);
        let got_frames = next_index > before;
        if got_frames {
            failures = 0;
        }
        let drop_detail = match end {
            RunEnd::Cancelled | RunEnd::Closed => return,
            RunEnd::Eos if !source.is_live() => {
                let _ = tx.send(LiveEvent::End);
                return;
            }
            RunEnd::Eos => "the stream ended".to_string(),
            RunEnd::Error(e) if !(source.can_reconnect() && next_index > 0) => {
                let _ = tx.send(LiveEvent::Failed(cannot_open(source, e)));
                return;
            }
            RunEnd::Error(e) => problem(&e),
        };
        if !source.can_reconnect() {
            let _ = tx.send(LiveEvent::End);
            return;
        }
        failures += 1;
        if failures > options.max_reconnects {
            let _ = tx.send(LiveEvent::Failed(VideoError::SourceLost {
                path: source.error_path(),
                attempts: options.max_reconnects,
                detail: drop_detail,
            }));
            return;
        }
        let wait = options
            .first_backoff
            .saturating_mul(1 << (failures - 1).min(4))
            .min(Duration::from_secs(8));
        let reconnecting = LiveEvent::Reconnecting {
            attempt: failures,
            max: options.max_reconnects,
            wait,
            detail: drop_detail,
        };
        if tx.send(reconnecting).is_err() {
            return;
        }
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            if cancel.is_cancelled() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An error's text without the `<source>: ` prefix.
fn problem(error: &VideoError) -> String {
    let text = error.to_string();
    let prefix = format!("{}: ", error.path().display());
    text.strip_prefix(&prefix)
        .map_or(text.clone(), str::to_string)
}

/// A network source that never gave a frame could not be reached, whatever the demuxer thought.
fn cannot_open(source: &Source, error: VideoError) -> VideoError {
    match (source, error) {
        (
            Source::Url { .. },
            VideoError::Corrupt { path, detail } | VideoError::NotVideo { path, detail },
        ) => VideoError::Unreadable {
            path,
            reason: format!("cannot open the stream ({detail})"),
        },
        (_, e) => e,
    }
}

fn build(
    source: &Source,
    record: Option<&Arc<Recorder>>,
) -> Result<(gst::Pipeline, gst_app::AppSink), VideoError> {
    let path = source.error_path();
    let gerr = |detail: String| VideoError::Gstreamer {
        path: path.clone(),
        detail,
    };
    let pl = gst::Pipeline::new();
    let convert = pipeline::make("videoconvert", &path)?;
    let (sink_el, appsink) = yuv_appsink(&path, 4)?;
    let decode = match source {
        Source::Url { uri, scheme } => {
            if gst::Element::make_from_uri(gst::URIType::Src, uri, None).is_err() {
                return Err(VideoError::MissingElement {
                    path,
                    element: format!("{scheme}:// source"),
                    package: pipeline::package_for_element(match scheme.as_str() {
                        "http" | "https" => "souphttpsrc",
                        "rtsp" | "rtsps" | "rtspt" => "rtspsrc",
                        "srt" => "srtsrc",
                        _ => "udpsrc",
                    })
                    .to_string(),
                });
            }
            let decode = pipeline::make("uridecodebin", &path)?;
            decode.set_property("uri", uri);
            pl.add(&decode).map_err(|e| gerr(e.to_string()))?;
            decode
        }
        Source::File(file) => {
            let src = pipeline::make("filesrc", &path)?;
            src.set_property("location", file);
            let decode = pipeline::make("decodebin", &path)?;
            pl.add_many([&src, &decode])
                .map_err(|e| gerr(e.to_string()))?;
            src.link(&decode).map_err(|e| gerr(e.to_string()))?;
            decode
        }
        Source::Camera(device) => {
            let src = pipeline::make("v4l2src", &path)?;
            src.set_property("device", device.display().to_string());
            let decode = pipeline::make("decodebin", &path)?;
            pl.add_many([&src, &decode])
                .map_err(|e| gerr(e.to_string()))?;
            src.link(&decode).map_err(|e| gerr(e.to_string()))?;
            decode
        }
    };
    pl.add_many([&convert, &sink_el])
        .map_err(|e| gerr(e.to_string()))?;
    convert.link(&sink_el).map_err(|e| gerr(e.to_string()))?;
    if let Some(recorder) = record {
        let path = path.clone();
        stop_at_compressed(&decode);
        let recorder = recorder.clone();
        let pl_weak = pl.downgrade();
        let convert_weak = convert.downgrade();
        decode.connect_pad_added(move |_, pad| {
            let media = pad
                .current_caps()
                .or_else(|| Some(pad.query_caps(None)))
                .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
                .unwrap_or_default();
            let is_video = media.starts_with("video/") || media == "image/jpeg";
            let (Some(pl), Some(convert)) = (pl_weak.upgrade(), convert_weak.upgrade()) else {
                return;
            };
            if let Some(sink) = convert.static_pad("sink")
                && is_video
                && !sink.is_linked()
                && let Err(e) = tee_record(&pl, pad, &media, &convert, &recorder, &path)
            {
                let _ = pl.post_message(gst::message::Error::new(
                    gst::CoreError::Failed,
                    &e.to_string(),
                ));
            }
        });
        return Ok((pl, appsink));
    }
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .or_else(|| Some(pad.query_caps(None)))
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        let Some(convert) = convert_weak.upgrade() else {
            return;
        };
        if let Some(sink) = convert.static_pad("sink")
            && is_video
            && !sink.is_linked()
        {
            let _ = pad.link(&sink);
        }
    });
    Ok((pl, appsink))
}

/// Makes a decodebin/uridecodebin expose the compressed formats the recorder remuxes, before
/// their decoder (raw formats still come out raw).
fn stop_at_compressed(decode: &gst::Element) {
    let raw = decode.property::<Option<gst::Caps>>("caps");
    let mut caps = REMUXED
        .parse::<gst::Caps>()
        .unwrap_or_else(|_| gst::Caps::new_empty());
    if let Some(raw) = raw {
        caps.merge(raw);
    }
    decode.set_property("caps", &caps);
}

/// Links a video pad to two branches: `queue ! [decodebin] ! convert` (decoding, into the
/// frames' appsink) and `queue ! <record branch> ! appsink` (into the recorder).
fn tee_record(
    pl: &gst::Pipeline,
    pad: &gst::Pad,
    media: &str,
    convert: &gst::Element,
    recorder: &Arc<Recorder>,
    path: &Path,
) -> Result<(), VideoError> {
    let gerr = |detail: String| VideoError::Gstreamer {
        path: path.to_path_buf(),
        detail,
    };
    let tee = pipeline::make("tee", path)?;
    let decode_queue = pipeline::make("queue", path)?;
    let record_queue = pipeline::make("queue", path)?;
    // The recording never holds up the decoder, however long the file takes to write.
    record_queue.set_property("max-size-buffers", 0u32);
    record_queue.set_property("max-size-bytes", 0u32);
    record_queue.set_property("max-size-time", 0u64);
    let branch = RecordBranch::for_media(media).elements(recorder, path)?;
    let compressed = RecordBranch::is_compressed(media);
    let decoder = if compressed {
        Some(pipeline::make("decodebin", path)?)
    } else {
        None
    };
    let mut all = vec![&tee, &decode_queue, &record_queue];
    all.extend(branch.iter());
    all.extend(decoder.iter());
    pl.add_many(all.iter().copied())
        .map_err(|e| gerr(e.to_string()))?;
    tee.link(&decode_queue).map_err(|e| gerr(e.to_string()))?;
    let mut record_chain = vec![&tee, &record_queue];
    record_chain.extend(branch.iter());
    gst::Element::link_many(record_chain).map_err(|e| gerr(e.to_string()))?;
    match &decoder {
        Some(decoder) => {
            decode_queue
                .link(decoder)
                .map_err(|e| gerr(e.to_string()))?;
            let convert_weak = convert.downgrade();
            decoder.connect_pad_added(move |_, pad| {
                if let Some(convert) = convert_weak.upgrade()
                    && let Some(sink) = convert.static_pad("sink")
                    && !sink.is_linked()
                {
                    let _ = pad.link(&sink);
                }
            });
        }
        None => decode_queue
            .link(convert)
            .map_err(|e| gerr(e.to_string()))?,
    }
    for element in all {
        element
            .sync_state_with_parent()
            .map_err(|e| gerr(e.to_string()))?;
    }
    let tee_sink = tee
        .static_pad("sink")
        .ok_or_else(|| gerr("tee without sink pad".into()))?;
    pad.link(&tee_sink).map_err(|e| gerr(e.to_string()))?;
    Ok(())
}

fn run_pipeline(
    source: &Source,
    record: Option<&Arc<Recorder>>,
    cancel: &CancelToken,
    tx: &SyncSender<LiveEvent>,
    next_index: &mut u32,
) -> RunEnd {
    let (pl, appsink) = match build(source, record) {
        Ok(built) => built,
        Err(e) => return RunEnd::Error(e),
    };
    let end = pump(
        source,
        &pl,
        &appsink,
        record.is_some(),
        cancel,
        tx,
        next_index,
    );
    let _ = pl.set_state(gst::State::Null);
    end
}

fn pump(
    source: &Source,
    pl: &gst::Pipeline,
    appsink: &gst_app::AppSink,
    recording: bool,
    cancel: &CancelToken,
    tx: &SyncSender<LiveEvent>,
    next_index: &mut u32,
) -> RunEnd {
    let path = source.error_path();
    let mut bus_state = BusState::new(&path);
    let Some(bus) = pl.bus() else {
        return RunEnd::Error(VideoError::Gstreamer {
            path,
            detail: "pipeline without bus".into(),
        });
    };
    if let Err(e) = pl.set_state(gst::State::Playing) {
        // The bus usually says why.
        return RunEnd::Error(match bus_state.poll(&bus, Duration::from_millis(200)) {
            Some(BusEvent::Error(err)) => err,
            _ => VideoError::Gstreamer {
                path,
                detail: format!("cannot start: {e}"),
            },
        });
    }
    let mut color = None;
    let mut rate_sent = false;
    loop {
        if cancel.is_cancelled() {
            return RunEnd::Cancelled;
        }
        match bus_state.poll(&bus, Duration::ZERO) {
            Some(BusEvent::Eos) => return RunEnd::Eos,
            Some(BusEvent::Error(e)) => return RunEnd::Error(e),
            None => {}
        }
        let Some(sample) = appsink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
            if appsink.is_eos() {
                // The recording branch may still be writing: the bus says EOS once every sink
                // has it.
                if recording
                    && let Some(BusEvent::Error(e)) =
                        bus_state.poll_until(&bus, Duration::from_secs(5))
                {
                    return RunEnd::Error(e);
                }
                return RunEnd::Eos;
            }
            continue;
        };
        let Some(info) = sample
            .caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
        else {
            continue;
        };
        if !rate_sent {
            rate_sent = true;
            let fps = info.fps();
            let rate = if fps.denom() > 0 {
                f64::from(fps.numer()) / f64::from(fps.denom())
            } else {
                0.0
            };
            if tx.send(LiveEvent::Rate(rate)).is_err() {
                return RunEnd::Closed;
            }
        }
        let yuv = *color.get_or_insert_with(|| {
            let caps = sample
                .caps()
                .map(|c| c.to_owned())
                .unwrap_or_else(gst::Caps::new_empty);
            decide_color(&caps, &info)
        });
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let Ok(frame) = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info) else {
            continue;
        };
        let data = match frame_to_rgb(&frame, yuv) {
            Ok(d) => d,
            Err(detail) => return RunEnd::Error(VideoError::Corrupt { path, detail }),
        };
        let rgb = RgbFrame {
            index: *next_index,
            pts_ns: buffer.pts().map(|p| p.nseconds()),
            width: info.width(),
            height: info.height(),
            data,
        };
        *next_index = next_index.saturating_add(1);
        if tx.send(LiveEvent::Frame(rgb)).is_err() {
            return RunEnd::Closed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_allow_listed_and_credentials_hidden() {
        assert_eq!(
            Source::parse("clip.mp4").unwrap(),
            Source::File("clip.mp4".into())
        );
        assert_eq!(
            Source::parse("/dev/video0").unwrap(),
            Source::Camera("/dev/video0".into())
        );
        assert_eq!(
            Source::parse("v4l2:///dev/video2").unwrap(),
            Source::Camera("/dev/video2".into())
        );
        let rtsp = Source::parse("RTSP://admin:s3cret@10.0.0.5:554/stream").unwrap();
        assert!(rtsp.is_live());
        assert_eq!(rtsp.display(), "RTSP://***@10.0.0.5:554/stream");
        assert!(
            !Source::parse("https://example.org/a.mp4")
                .unwrap()
                .is_live()
        );
        for bad in [
            "javascript://x",
            "smb://user:pw@host/share/a.mp4",
            "appsrc://",
            "fd://0",
        ] {
            let err = Source::parse(bad).unwrap_err();
            assert!(
                matches!(err, VideoError::SchemeNotAllowed { .. }),
                "{bad}: {err}"
            );
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
        assert_eq!(redact("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact("srt://u@h:9000?x=1"), "srt://***@h:9000?x=1");
    }
}
