//! Recording a live source to a Matroska file (`kineto watch --record`, the window's Record).
//!
//! The file is created at once under the name given (an existing file is refused, the name is
//! taken with `create_new`, so two recorders never share one) and written as the stream
//! arrives: Matroska needs no index to be read, so a recording cut short by a kill plays up to
//! its last cluster; a recording that is finished ([`Recorder::finish`], on the end of the
//! stream, `--duration`, Ctrl-C or Stop) gets its duration and index written at the end.
//!
//! The recorder is its own pipeline (`appsrc ! matroskamux ! filesink`) fed by the source's
//! pipeline, so it outlives reconnections: each new connection's timestamps continue after the
//! last buffer of the one before. The source's pipeline tees the compressed stream before its
//! decoder and remuxes it (H.264, H.265, VP8, VP9, MJPEG, through their parsers); a raw stream
//! (a camera giving raw frames) or another codec is encoded with `x264enc` (see
//! [`RecordBranch`]). Every buffer that reaches the tee is recorded: the recorder never waits
//! on the decoder, and the decoder waits on nothing but its own consumer.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::VideoError;
use super::pipeline::{self, BusEvent, BusState};
use crate::progress::lock;

/// How long finishing a recording may take (the muxer writes its index).
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a finished recording holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    pub path: PathBuf,
    /// Video buffers written (frames, for every codec Kineto records).
    pub frames: u64,
    /// Whether the stream was remuxed as it came (`false`: encoded with x264enc).
    pub remuxed: bool,
}

/// Timestamps of the connection being recorded, moved to follow the ones before.
#[derive(Default)]
struct Timing {
    /// The first timestamp of this connection.
    base: Option<u64>,
    /// Where this connection starts in the recording.
    offset: u64,
    /// One past the last timestamp written so far (pts + duration).
    end: u64,
    caps: Option<gst::Caps>,
    frames: u64,
    remuxed: Option<bool>,
}

/// A recording being written; shared with the source pipeline's streaming threads.
pub struct Recorder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    path: PathBuf,
    timing: Mutex<Timing>,
}

impl Recorder {
    /// Creates `path` (refusing an existing file) and starts the muxer. The name must end in
    /// `.mkv`: the file is Matroska whatever it is called, and a name that says otherwise
    /// would mislead.
    pub fn create(path: &Path) -> Result<Arc<Recorder>, VideoError> {
        let write_error = |reason: String| VideoError::Write {
            path: path.to_path_buf(),
            reason,
        };
        let is_mkv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("mkv"));
        if !is_mkv {
            return Err(write_error(
                "a recording is Matroska: give a name ending in .mkv".into(),
            ));
        }
        pipeline::init(path)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    write_error("the file exists (a recording never replaces a file)".into())
                }
                _ => write_error(crate::files::io_problem(&e)),
            })?;
        let built = Self::build(path);
        if built.is_err() {
            let _ = std::fs::remove_file(path);
        }
        built
    }

    fn build(path: &Path) -> Result<Arc<Recorder>, VideoError> {
        let gerr = |detail: String| VideoError::Gstreamer {
            path: path.to_path_buf(),
            detail,
        };
        let pl = gst::Pipeline::new();
        let src = pipeline::make("appsrc", path)?;
        let mux = pipeline::make("matroskamux", path)?;
        let sink = pipeline::make("filesink", path)?;
        sink.set_property("location", path);
        sink.set_property("sync", false);
        sink.set_property("async", false);
        // Each buffer reaches the file at once: a kill loses at most the cluster being built.
        sink.set_property_from_str("buffer-mode", "unbuffered");
        pl.add_many([&src, &mux, &sink])
            .map_err(|e| gerr(e.to_string()))?;
        gst::Element::link_many([&src, &mux, &sink]).map_err(|e| gerr(e.to_string()))?;
        let appsrc = src
            .dynamic_cast::<gst_app::AppSrc>()
            .map_err(|_| gerr("appsrc is not an AppSrc".into()))?;
        appsrc.set_format(gst::Format::Time);
        appsrc.set_is_live(false);
        // Never drop: the queue grows while the muxer is behind (it writes a file; it is not).
        appsrc.set_max_bytes(0);
        appsrc.set_block(false);
        Ok(Arc::new(Recorder {
            pipeline: pl,
            appsrc,
            path: path.to_path_buf(),
            timing: Mutex::new(Timing::default()),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection begins: its timestamps will follow the last one written.
    pub fn new_connection(&self) {
        let mut t = lock(&self.timing);
        t.base = None;
        t.offset = t.end;
    }

    /// Appends one compressed buffer (called on the source pipeline's streaming thread).
    pub(crate) fn push(&self, sample: &gst::Sample, remuxed: bool) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let mut t = lock(&self.timing);
        if t.remuxed.is_none() {
            t.remuxed = Some(remuxed);
            // The muxer starts with the first caps.
            let _ = self.pipeline.set_state(gst::State::Playing);
        }
        if let Some(caps) = sample.caps()
            && t.caps.as_ref() != Some(&caps.to_owned())
        {
            self.appsrc.set_caps(Some(&caps.to_owned()));
            t.caps = Some(caps.to_owned());
        }
        // A connection joined between key frames: what comes before its first key frame
        // cannot be decoded by itself, so the recording of each connection starts there.
        if t.base.is_none() && buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            return;
        }
        let first = buffer.dts().or(buffer.pts()).map(|c| c.nseconds());
        let base = match (t.base, first) {
            (Some(b), _) => b,
            (None, Some(f)) => {
                t.base = Some(f);
                f
            }
            (None, None) => 0,
        };
        let offset = t.offset;
        let shift = |c: Option<gst::ClockTime>| {
            c.map(|c| gst::ClockTime::from_nseconds(c.nseconds().saturating_sub(base) + offset))
        };
        let mut out = buffer.copy();
        {
            let Some(b) = out.get_mut() else {
                return;
            };
            b.set_pts(shift(buffer.pts()));
            b.set_dts(shift(buffer.dts()));
        }
        if let Some(pts) = out.pts() {
            let end = pts.nseconds() + buffer.duration().map_or(1, |d| d.nseconds());
            t.end = t.end.max(end);
        }
        t.frames += 1;
        let _ = self.appsrc.push_buffer(out);
    }

    /// Ends the stream through the muxer (it writes the duration and the index) and closes the
    /// file. A recording that got nothing is removed and reported as such.
    pub fn finish(&self) -> Result<Recording, VideoError> {
        let (frames, remuxed) = {
            let t = lock(&self.timing);
            (t.frames, t.remuxed)
        };
        let Some(remuxed) = remuxed else {
            let _ = self.pipeline.set_state(gst::State::Null);
            let _ = std::fs::remove_file(&self.path);
            return Err(VideoError::NoFrames {
                path: self.path.clone(),
            });
        };
        let _ = self.appsrc.end_of_stream();
        let mut bus_state = BusState::new(&self.path);
        let result = match self.pipeline.bus() {
            Some(bus) => match bus_state.poll_until(&bus, FINISH_TIMEOUT) {
                Some(BusEvent::Eos) => Ok(()),
                Some(BusEvent::Error(e)) => Err(e),
                None => Err(VideoError::Timeout {
                    path: self.path.clone(),
                    what: "finishing the recording".into(),
                    secs: FINISH_TIMEOUT.as_secs(),
                }),
            },
            None => Ok(()),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result.map(|()| Recording {
            path: self.path.clone(),
            frames,
            remuxed,
        })
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .finish()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        // A recorder that never got a buffer leaves no empty file behind.
        if lock(&self.timing).remuxed.is_none() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The recording branch a decoding pipeline hangs on its video pad, chosen by the pad's caps.
pub(crate) enum RecordBranch {
    /// The compressed stream, through its parser, into the file as it is.
    Remux {
        parser: Option<&'static str>,
        caps: Option<&'static str>,
    },
    /// Decoded video: encoded with x264enc.
    Encode,
}

/// Compressed video formats recorded as they come; anything else is decoded (then encoded).
pub(crate) const REMUXED: &str = "video/x-h264; video/x-h265; video/x-vp8; video/x-vp9; image/jpeg";

impl RecordBranch {
    pub fn for_media(media: &str) -> RecordBranch {
        match media {
            "video/x-h264" => RecordBranch::Remux {
                parser: Some("h264parse"),
                caps: Some("video/x-h264,stream-format=avc,alignment=au"),
            },
            "video/x-h265" => RecordBranch::Remux {
                parser: Some("h265parse"),
                caps: Some("video/x-h265,stream-format=hvc1,alignment=au"),
            },
            "video/x-vp8" | "video/x-vp9" => RecordBranch::Remux {
                parser: None,
                caps: None,
            },
            "image/jpeg" => RecordBranch::Remux {
                parser: Some("jpegparse"),
                caps: None,
            },
            _ => RecordBranch::Encode,
        }
    }

    pub fn is_compressed(media: &str) -> bool {
        matches!(Self::for_media(media), RecordBranch::Remux { .. })
    }

    /// The branch's elements, in order, ending in an appsink that hands every buffer to
    /// `recorder`. The caller adds and links them after a `queue`.
    pub fn elements(
        &self,
        recorder: &Arc<Recorder>,
        path: &Path,
    ) -> Result<Vec<gst::Element>, VideoError> {
        let mut chain = Vec::new();
        let (remuxed, caps) = match self {
            RecordBranch::Remux { parser, caps } => {
                if let Some(p) = parser {
                    chain.push(pipeline::make(p, path)?);
                }
                (true, *caps)
            }
            RecordBranch::Encode => {
                chain.push(pipeline::make("videoconvert", path)?);
                let enc = pipeline::make("x264enc", path)?;
                enc.set_property_from_str("tune", "zerolatency");
                enc.set_property_from_str("speed-preset", "ultrafast");
                chain.push(enc);
                chain.push(pipeline::make("h264parse", path)?);
                (false, Some("video/x-h264,stream-format=avc,alignment=au"))
            }
        };
        let sink = gst_app::AppSink::builder().sync(false).build();
        if let Some(caps) = caps.and_then(|c| c.parse::<gst::Caps>().ok()) {
            sink.set_caps(Some(&caps));
        }
        let recorder = recorder.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    // In this callback a sample is ready: pull_sample does not wait.
                    if let Ok(sample) = sink.pull_sample() {
                        recorder.push(&sample, remuxed);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        chain.push(sink.upcast());
        Ok(chain)
    }
}
