//! Shared frame and clip types of the video preprocessing.

/// One decoded RGB8 frame, rows tightly packed (width*3 bytes per row).
#[derive(Clone, Debug, PartialEq)]
pub struct RgbFrame {
    /// 0-based index of the frame in the decoded stream.
    pub index: u32,
    /// Presentation time, when the decoder knows it.
    pub pts_ns: Option<u64>,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// Checks that the frame is non-empty and `data` holds exactly `width*height*3` bytes.
    pub fn validate(&self) -> Result<(), FrameError> {
        check_rgb_buffer(self.data.len(), self.width, self.height)
    }

    /// A frame with the same index and timestamp but other pixels.
    pub(crate) fn with_pixels(&self, width: u32, height: u32, data: Vec<u8>) -> RgbFrame {
        RgbFrame {
            index: self.index,
            pts_ns: self.pts_ns,
            width,
            height,
            data,
        }
    }
}

/// f32 [T, 3, H, W] normalised clip
#[derive(Clone, Debug, PartialEq)]
pub struct ClipTensor {
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// Why a frame or clip cannot be transformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("image size {width}x{height} is empty")]
    ZeroSize { width: u32, height: u32 },
    #[error("RGB image {width}x{height} needs {expected} bytes, buffer has {found}")]
    BufferSize {
        width: u32,
        height: u32,
        expected: usize,
        found: usize,
    },
    #[error("image size {width}x{height} is too large to address")]
    TooLarge { width: u32, height: u32 },
    #[error("crop {w}x{h} at ({x},{y}) does not fit in a {width}x{height} image")]
    CropOutOfBounds {
        x: u32,
        y: u32,
        w: u32,
        h: u32,
        width: u32,
        height: u32,
    },
    #[error("clip has no frames")]
    EmptyClip,
    #[error("clip frames differ in size: {first_w}x{first_h} and {other_w}x{other_h}")]
    MixedSizes {
        first_w: u32,
        first_h: u32,
        other_w: u32,
        other_h: u32,
    },
}

/// Byte length of a `width x height` RGB8 image, or an error when it is empty or overflows.
pub(crate) fn rgb_len(width: u32, height: u32) -> Result<usize, FrameError> {
    if width == 0 || height == 0 {
        return Err(FrameError::ZeroSize { width, height });
    }
    (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(3))
        .ok_or(FrameError::TooLarge { width, height })
}

/// Checks a `width x height` RGB8 buffer length.
pub(crate) fn check_rgb_buffer(len: usize, width: u32, height: u32) -> Result<(), FrameError> {
    let expected = rgb_len(width, height)?;
    if len != expected {
        return Err(FrameError::BufferSize {
            width,
            height,
            expected,
            found: len,
        });
    }
    Ok(())
}
