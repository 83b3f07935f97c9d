//! Shared GStreamer plumbing: initialisation, element creation with
//! "install this package" errors, bus polling with timeouts, and mapping of
//! GStreamer errors to [`VideoError`].
//!
//! Rules every pipeline here follows (see STACK-NOTES §5):
//! - elements are made one by one with `ElementFactory::make`, the file path
//!   only ever goes into `filesrc`'s `location` property;
//! - nobody calls the blocking `AppSink::pull_sample`; every wait is a
//!   `try_pull_sample`/`timed_pop` with a timeout and a deadline.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_pbutils as gst_pbutils;

use super::VideoError;

/// How long any single step (a state change, the next frame, a scan) may
/// take before we give up. Generous: a damaged file fails in milliseconds.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Poll interval for bus/appsink loops.
pub(crate) const POLL: Duration = Duration::from_millis(20);

static INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// Initialise GStreamer once per process.
///
/// Also ranks FFmpeg's MJPEG decoder (`avdec_mjpeg`) above `jpegdec`:
/// decord decodes with FFmpeg, `jpegdec` (libjpeg) uses another IDCT
/// (measured: up to 5 levels off after RGB conversion) and turns 4:2:2/4:4:4
/// JPEGs into 4:2:0. This changes the rank in this process only.
pub fn init(path: &Path) -> Result<(), VideoError> {
    let r = INIT.get_or_init(|| {
        gst::init().map_err(|e| e.to_string())?;
        let reg = gst::Registry::get();
        if let (Some(av), Some(_)) = (
            reg.lookup_feature("avdec_mjpeg"),
            reg.lookup_feature("jpegdec"),
        ) {
            av.set_rank(gst::Rank::PRIMARY + 1);
        }
        Ok(())
    });
    r.clone().map_err(|detail| VideoError::Gstreamer {
        path: path.to_path_buf(),
        detail: format!("cannot initialise GStreamer: {detail}"),
    })
}

/// Debian package that ships a GStreamer element (STACK-NOTES §5).
pub fn package_for_element(name: &str) -> &'static str {
    match name {
        n if n.starts_with("avdec_") || n.starts_with("avenc_") || n.starts_with("avmux_") => {
            "gstreamer1.0-libav"
        }
        "filesrc" | "fakesink" | "queue" | "typefind" | "capsfilter" | "identity" => {
            "libgstreamer1.0-0"
        }
        "decodebin" | "parsebin" | "uridecodebin" | "playbin" | "videoconvert" | "videoscale"
        | "appsink" | "appsrc" | "videotestsrc" | "audiotestsrc" | "audioconvert"
        | "audioresample" | "vorbisenc" | "vorbisdec" | "oggmux" | "oggdemux" | "theoraenc"
        | "theoradec" | "opusenc" | "opusdec" | "videorate" => "gstreamer1.0-plugins-base",
        "qtdemux" | "mp4mux" | "qtmux" | "avidemux" | "avimux" | "matroskademux"
        | "matroskamux" | "webmmux" | "vp8enc" | "vp8dec" | "vp9enc" | "vp9dec" | "jpegenc"
        | "jpegdec" | "flvdemux" | "flvmux" | "pulsesink" | "wavenc" => "gstreamer1.0-plugins-good",
        "x264enc" | "asfdemux" | "mpeg2dec" => "gstreamer1.0-plugins-ugly",
        "h264parse" | "h265parse" | "mpeg4videoparse" | "jpegparse" | "vp9parse" | "av1parse"
        | "openh264dec" | "openh264enc" | "tsdemux" | "mpegtsmux" | "dav1ddec" | "av1dec"
        | "av1enc" | "x265enc" | "fdkaacenc" => "gstreamer1.0-plugins-bad",
        _ => {
            "the GStreamer plugin packages (gstreamer1.0-plugins-base/good/bad/ugly, gstreamer1.0-libav)"
        }
    }
}

/// Debian package with a decoder for a stream of this media type.
pub fn package_for_caps(media_type: &str) -> &'static str {
    match media_type {
        "video/x-vp8" | "video/x-vp9" => "gstreamer1.0-plugins-good or gstreamer1.0-libav",
        "video/x-av1" => "gstreamer1.0-plugins-bad or gstreamer1.0-libav",
        "video/x-theora" => "gstreamer1.0-plugins-base",
        _ => "gstreamer1.0-libav",
    }
}

/// `ElementFactory::make(name)`, or an error naming the element and package.
pub fn make(name: &str, path: &Path) -> Result<gst::Element, VideoError> {
    gst::ElementFactory::make(name)
        .build()
        .map_err(|_| VideoError::MissingElement {
            path: path.to_path_buf(),
            element: name.to_string(),
            package: package_for_element(name).to_string(),
        })
}

/// Check that `path` is a readable, non-empty regular file before handing it
/// to GStreamer (whose messages for these cases are vaguer).
pub fn check_readable(path: &Path) -> Result<(), VideoError> {
    let unreadable = |reason: String| VideoError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    // The type is checked before anything opens the file: opening a FIFO blocks.
    let file = crate::files::open_regular(path).map_err(|e| unreadable(io_reason(&e)))?;
    let meta = file.metadata().map_err(|e| unreadable(io_reason(&e)))?;
    if meta.len() == 0 {
        return Err(VideoError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        _ => crate::files::io_problem(e),
    }
}

/// Something the bus said that ends a wait.
#[derive(Debug)]
pub(crate) enum BusEvent {
    Eos,
    Error(VideoError),
}

/// Records what the bus says: missing-plugin notes (they arrive before the
/// error that they explain) and the first error or EOS.
pub(crate) struct BusState {
    pub path: std::path::PathBuf,
    pub missing: Vec<(String, String)>, // (description, installer detail)
}

impl BusState {
    pub fn new(path: &Path) -> Self {
        BusState {
            path: path.to_path_buf(),
            missing: Vec::new(),
        }
    }

    /// Pop every pending message (waiting at most `wait` for the first);
    /// return the first EOS or error.
    pub fn poll(&mut self, bus: &gst::Bus, wait: Duration) -> Option<BusEvent> {
        let mut timeout = gst::ClockTime::from_nseconds(wait.as_nanos() as u64);
        while let Some(msg) = bus.timed_pop(timeout) {
            timeout = gst::ClockTime::ZERO;
            if let Some(ev) = self.handle(&msg) {
                return Some(ev);
            }
        }
        None
    }

    /// Like [`BusState::poll`], but keeps waiting through other messages until `wait` is over.
    pub fn poll_until(&mut self, bus: &gst::Bus, wait: Duration) -> Option<BusEvent> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(event) = self.poll(bus, left.min(POLL)) {
                return Some(event);
            }
            if left.is_zero() {
                return None;
            }
        }
    }

    fn handle(&mut self, msg: &gst::Message) -> Option<BusEvent> {
        use gst::MessageView;
        match msg.view() {
            MessageView::Eos(_) => Some(BusEvent::Eos),
            MessageView::Error(e) => Some(BusEvent::Error(self.map_error(e))),
            MessageView::Element(_) => {
                if let Ok(m) = gst_pbutils::MissingPluginMessage::parse(msg) {
                    self.missing.push((
                        m.description().to_string(),
                        m.installer_detail().to_string(),
                    ));
                }
                None
            }
            _ => None,
        }
    }

    /// Turn a GStreamer error message into a one-line [`VideoError`].
    pub fn map_error(&self, e: &gst::message::Error) -> VideoError {
        let path = self.path.clone();
        let err = e.error();
        let text = err.message().trim_end_matches('.').to_string();
        if let Some((desc, detail)) = self.missing.first() {
            // installer detail: gstreamer|1.0|app|desc|decoder-video/x-h265
            let what = detail.rsplit('|').next().unwrap_or_default();
            if let Some(caps) = what.strip_prefix("decoder-") {
                let media = caps.split(',').next().unwrap_or(caps).trim();
                return VideoError::MissingDecoder {
                    path,
                    codec: media.to_string(),
                    package: package_for_caps(media).to_string(),
                };
            }
            if let Some(name) = what.strip_prefix("element-") {
                return VideoError::MissingElement {
                    path,
                    element: name.to_string(),
                    package: package_for_element(name).to_string(),
                };
            }
            return VideoError::MissingElement {
                path,
                element: desc.clone(),
                package: package_for_element("").to_string(),
            };
        }
        if let Some(c) = err.kind::<gst::StreamError>() {
            return match c {
                gst::StreamError::TypeNotFound => VideoError::NotVideo {
                    path,
                    detail: text.to_lowercase(),
                },
                gst::StreamError::CodecNotFound => VideoError::MissingDecoder {
                    path,
                    codec: text,
                    package: package_for_caps("").to_string(),
                },
                _ => VideoError::Corrupt { path, detail: text },
            };
        }
        if let Some(c) = err.kind::<gst::ResourceError>()
            && matches!(
                c,
                gst::ResourceError::NotFound
                    | gst::ResourceError::OpenRead
                    | gst::ResourceError::Read
                    | gst::ResourceError::NotAuthorized
            )
        {
            return VideoError::Unreadable {
                path,
                reason: text.to_lowercase(),
            };
        }
        if let Some(gst::CoreError::MissingPlugin) = err.kind::<gst::CoreError>() {
            return VideoError::MissingElement {
                path,
                element: text,
                package: package_for_element("").to_string(),
            };
        }
        VideoError::Corrupt { path, detail: text }
    }
}

/// Set the state and wait (bounded) until it is reached or the bus reports
/// an error. EOS during the wait is returned as `Ok(true)`.
pub(crate) fn set_state_and_wait(
    pipeline: &gst::Pipeline,
    state: gst::State,
    bus_state: &mut BusState,
    what: &str,
) -> Result<bool, VideoError> {
    let path = bus_state.path.clone();
    let bus = pipeline.bus().ok_or_else(|| VideoError::Gstreamer {
        path: path.clone(),
        detail: "pipeline has no bus".into(),
    })?;
    if pipeline.set_state(state).is_err() {
        // The reason is on the bus.
        if let Some(BusEvent::Error(e)) = bus_state.poll(&bus, Duration::from_millis(200)) {
            return Err(e);
        }
        return Err(VideoError::Corrupt {
            path,
            detail: format!("cannot start pipeline while {what}"),
        });
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match bus_state.poll(&bus, POLL) {
            Some(BusEvent::Error(e)) => return Err(e),
            Some(BusEvent::Eos) => return Ok(true),
            None => {}
        }
        let (res, cur, _) = pipeline.state(gst::ClockTime::ZERO);
        if res.is_err() {
            if let Some(BusEvent::Error(e)) = bus_state.poll(&bus, Duration::from_millis(200)) {
                return Err(e);
            }
            return Err(VideoError::Corrupt {
                path,
                detail: format!("pipeline failed while {what}"),
            });
        }
        if cur == state {
            return Ok(false);
        }
        if Instant::now() > deadline {
            return Err(VideoError::Timeout {
                path,
                what: what.to_string(),
                secs: STEP_TIMEOUT.as_secs(),
            });
        }
    }
}

/// Plays a writing pipeline `pl` (writing `path`) until its end, its error or `limit` (`what`
/// names the work in the messages), then shuts it down.
pub(crate) fn run_to_end(
    pl: &gst::Pipeline,
    path: &Path,
    what: &str,
    limit: Duration,
) -> Result<(), VideoError> {
    let mut bus_state = BusState::new(path);
    let bus = pl.bus().ok_or_else(|| VideoError::Gstreamer {
        path: path.to_path_buf(),
        detail: "pipeline has no bus".into(),
    })?;
    let res = (|| {
        if pl.set_state(gst::State::Playing).is_err() {
            if let Some(BusEvent::Error(e)) = bus_state.poll(&bus, Duration::from_millis(500)) {
                return Err(e);
            }
            return Err(VideoError::Gstreamer {
                path: path.to_path_buf(),
                detail: format!("cannot start the {what} pipeline"),
            });
        }
        let deadline = Instant::now() + limit;
        loop {
            match bus_state.poll(&bus, Duration::from_millis(50)) {
                Some(BusEvent::Eos) => return Ok(()),
                Some(BusEvent::Error(e)) => return Err(e),
                None => {}
            }
            if Instant::now() > deadline {
                return Err(VideoError::Timeout {
                    path: path.to_path_buf(),
                    what: what.into(),
                    secs: limit.as_secs(),
                });
            }
        }
    })();
    shutdown(pl);
    res
}

/// Stop a pipeline (best effort; errors on the way down are irrelevant).
pub(crate) fn shutdown(pipeline: &gst::Pipeline) {
    let _ = pipeline.set_state(gst::State::Null);
}

/// Drop the buffer (or buffer list) a pad probe holds: released here and
/// reported as handled. (Returning `PadProbeReturn::Drop` instead makes
/// GStreamer 1.22 unref data that gstreamer-rs already released: a
/// `gst_mini_object_unref: assertion 'mini_object != NULL' failed` critical
/// per buffer.)
pub(crate) fn discard(info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
    drop(info.take_buffer());
    drop(info.take_buffer_list());
    gst::PadProbeReturn::Handled
}

/// True for caps of a video stream (MJPEG in AVI/MOV is `image/jpeg`).
pub(crate) fn is_video_media(name: &str) -> bool {
    name.starts_with("video/") || name == "image/jpeg"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages() {
        assert_eq!(package_for_element("x264enc"), "gstreamer1.0-plugins-ugly");
        assert_eq!(package_for_element("avdec_h264"), "gstreamer1.0-libav");
        assert_eq!(package_for_element("h264parse"), "gstreamer1.0-plugins-bad");
        assert_eq!(package_for_element("qtdemux"), "gstreamer1.0-plugins-good");
        assert_eq!(
            package_for_element("decodebin"),
            "gstreamer1.0-plugins-base"
        );
        assert_eq!(package_for_caps("video/x-h265"), "gstreamer1.0-libav");
    }

    #[test]
    fn missing_element_is_reported() {
        let p = Path::new("x.mp4");
        init(p).unwrap_or_else(|e| panic!("{e}"));
        match make("no_such_element_kineto", p) {
            Err(e) => {
                assert!(e.is_missing_plugin());
                assert!(e.to_string().starts_with("x.mp4: "), "{e}");
            }
            Ok(_) => panic!("made a missing element"),
        }
    }
}
