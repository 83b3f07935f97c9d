//! A clip as the samplers see it: a video file (decoded by GStreamer, decord-exact) or a frame
//! folder (PaddleVideo's `frame` format, `rawframes.rs`). Both give 0-based frames by index.

use std::path::Path;

use super::VideoError;
use super::decode::{FrameDecoder, decode_each};
use super::frame::RgbFrame;
use super::probe::VideoInfo;
use super::rawframes::{FrameFolder, FrameNames};
use super::sample::{DenseSample, dense_frame_indices, dense_indices};

/// A clip to sample frames from.
pub enum ClipSource {
    Video(FrameDecoder),
    Frames(FrameFolder),
}

impl ClipSource {
    /// A folder is a frame folder in PaddleVideo's default naming (`img_{:05}.jpg`, its frame
    /// count the consecutive files from 1); anything else is opened as a video.
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        if path.is_dir() {
            Ok(ClipSource::Frames(FrameFolder::open(
                path,
                &FrameNames::detect(path),
                None,
            )?))
        } else {
            Ok(ClipSource::Video(FrameDecoder::open(path)?))
        }
    }

    pub fn info(&self) -> &VideoInfo {
        match self {
            ClipSource::Video(d) => d.info(),
            ClipSource::Frames(f) => f.info(),
        }
    }

    /// PaddleVideo's dense sampler for this format: with decord the `+1` it adds for 1-based
    /// image files shifts every frame one later; a frame folder reads file `index + 1`, i.e.
    /// the 0-based offsets themselves.
    pub fn dense_indices(&self, num_seg: usize) -> DenseSample {
        let len = self.info().frame_count as usize;
        match self {
            ClipSource::Video(_) => dense_indices(len, num_seg),
            ClipSource::Frames(_) => dense_frame_indices(len, num_seg),
        }
    }

    /// Decodes each distinct frame of `indices` and hands it to `on_frame` (from two threads
    /// for a sparse request in a long video, see [`decode_each`]; from the calling thread for
    /// a frame folder, see [`FrameFolder::decode_each`]).
    pub fn decode_each(
        &mut self,
        indices: &[u32],
        workers: usize,
        on_frame: &(dyn Fn(RgbFrame) + Sync),
    ) -> Result<(), VideoError> {
        match self {
            ClipSource::Video(d) => decode_each(d, indices, workers, on_frame),
            ClipSource::Frames(f) => f.decode_each(indices, &mut |frame| on_frame(frame)),
        }
    }

    /// Decodes each distinct frame of `indices` on the calling thread and hands it to
    /// `on_frame`, one at a time, in ascending order.
    pub fn for_each_frame(
        &mut self,
        indices: &[u32],
        on_frame: &mut dyn FnMut(RgbFrame),
    ) -> Result<(), VideoError> {
        match self {
            ClipSource::Video(d) => d.for_each_frame(indices, on_frame),
            ClipSource::Frames(f) => f.decode_each(indices, on_frame),
        }
    }
}
