//! Video in: probing and decoding with GStreamer (decord-exact RGB), PaddleVideo's samplers and
//! transforms (an exact port of its preprocessing, Pillow's resampling included), test clips.

pub mod cut;
pub mod decode;
pub mod frame;
pub mod jpeg;
pub mod live_source;
pub mod pillow;
pub mod pipeline;
pub mod player;
pub mod png;
pub mod probe;
pub mod rawframes;
pub mod record;
pub mod sample;
pub mod source;
pub mod synth;
pub mod transform;
pub mod yuv;

use std::path::PathBuf;

/// Why a video could not be probed, decoded or written. Every variant names
/// the file; `Display` is one line: `"<path>: <problem>"`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VideoError {
    /// The file cannot be opened (missing, permission, a directory ...).
    #[error("{}: cannot read: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// Zero bytes.
    #[error("{}: empty file (0 bytes)", path.display())]
    EmptyFile { path: PathBuf },
    /// No container or stream type could be recognised.
    #[error("{}: not a video file ({detail})", path.display())]
    NotVideo { path: PathBuf, detail: String },
    /// The file has streams, none of them video.
    #[error("{}: no video stream ({found})", path.display())]
    NoVideoStream { path: PathBuf, found: String },
    /// A video stream exists but there is no decoder for it.
    #[error("{}: no decoder for {codec} (install {package})", path.display())]
    MissingDecoder {
        path: PathBuf,
        codec: String,
        package: String,
    },
    /// A GStreamer element (demuxer, encoder, ...) is not installed.
    #[error("{}: GStreamer element '{element}' is missing (install {package})", path.display())]
    MissingElement {
        path: PathBuf,
        element: String,
        package: String,
    },
    /// The container or stream is damaged or truncated.
    #[error("{}: damaged or unsupported video ({detail})", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// The video stream holds no frames.
    #[error("{}: video stream has no frames", path.display())]
    NoFrames { path: PathBuf },
    /// A frame index past the end.
    #[error("{}: frame {index} out of range (video has {count} frames)", path.display())]
    FrameOutOfRange {
        path: PathBuf,
        index: u32,
        count: u32,
    },
    /// The stream ended (or broke) before a requested frame was decoded.
    #[error("{}: frame {index} could not be decoded ({detail})", path.display())]
    FrameUnavailable {
        path: PathBuf,
        index: u32,
        detail: String,
    },
    /// A frame folder holds fewer consecutive frames than its list file says.
    #[error("{}: the list says {listed} frames, the folder has {found} ({first_missing} is missing)", path.display())]
    FewerFrames {
        path: PathBuf,
        listed: u32,
        found: u32,
        first_missing: String,
    },
    /// A file or folder that could not be written (frame extraction).
    #[error("{}: cannot write: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    /// GStreamer stopped answering.
    #[error("{}: timed out after {secs} s while {what}", path.display())]
    Timeout {
        path: PathBuf,
        what: String,
        secs: u64,
    },
    /// A cut that cannot be made (a container Kineto cannot write, an empty range, timestamps
    /// a key-frame cut cannot go by).
    #[error("{}: cannot cut: {reason}", path.display())]
    CannotCut { path: PathBuf, reason: String },
    /// A URL whose scheme is not on the allow-list (`live_source::ALLOWED_SCHEMES`).
    #[error(
        "{}: the {scheme}:// scheme is not allowed (use a file, /dev/video*, or file, http(s), rtsp(s), srt or udp URLs)",
        path.display()
    )]
    SchemeNotAllowed { path: PathBuf, scheme: String },
    /// A live source dropped and did not come back.
    #[error("{}: the source dropped and {attempts} reconnection attempts failed ({detail})", path.display())]
    SourceLost {
        path: PathBuf,
        attempts: u32,
        detail: String,
    },
    /// GStreamer could not be initialised, or another internal failure.
    #[error("{}: GStreamer error: {detail}", path.display())]
    Gstreamer { path: PathBuf, detail: String },
}

impl VideoError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            VideoError::Unreadable { path, .. }
            | VideoError::EmptyFile { path }
            | VideoError::NotVideo { path, .. }
            | VideoError::NoVideoStream { path, .. }
            | VideoError::MissingDecoder { path, .. }
            | VideoError::MissingElement { path, .. }
            | VideoError::Corrupt { path, .. }
            | VideoError::NoFrames { path }
            | VideoError::FrameOutOfRange { path, .. }
            | VideoError::FrameUnavailable { path, .. }
            | VideoError::FewerFrames { path, .. }
            | VideoError::Write { path, .. }
            | VideoError::Timeout { path, .. }
            | VideoError::CannotCut { path, .. }
            | VideoError::SchemeNotAllowed { path, .. }
            | VideoError::SourceLost { path, .. }
            | VideoError::Gstreamer { path, .. } => path,
        }
    }

    /// True when installing a GStreamer plugin package would fix it.
    pub fn is_missing_plugin(&self) -> bool {
        matches!(
            self,
            VideoError::MissingDecoder { .. } | VideoError::MissingElement { .. }
        )
    }

    /// True when the file itself is the problem (not a video, damaged, empty,
    /// unreadable), as opposed to the installation or a bad request.
    pub fn is_bad_file(&self) -> bool {
        matches!(
            self,
            VideoError::Unreadable { .. }
                | VideoError::EmptyFile { .. }
                | VideoError::NotVideo { .. }
                | VideoError::NoVideoStream { .. }
                | VideoError::Corrupt { .. }
                | VideoError::NoFrames { .. }
                | VideoError::FewerFrames { .. }
        )
    }
}
