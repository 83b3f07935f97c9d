//! PaddleVideo's frame format ("rawframes"): a clip is a folder of JPEGs named by a Python
//! format string, `img_{:05}.jpg` by default (`FrameDataset(suffix=...)`), numbered from 1:
//! 0-based frame `i` is file `i + 1` (`loader/pipelines/sample.py`, the `frame` branch adds 1 to
//! every sampled index). Each file is read as Pillow's `Image.open(p).convert('RGB')` reads it
//! (`jpeg.rs`: the same libjpeg-turbo, bit-exact). A folder of `img_{:05}.png` (lossless, what
//! `kineto extract-frames --format png` writes; `png.rs`) is read the same way.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::VideoError;
use super::frame::RgbFrame;
use super::probe::VideoInfo;
use super::{jpeg, png};

/// PaddleVideo's default file name (`FrameDataset(suffix='img_{:05}.jpg')`).
pub const DEFAULT_SUFFIX: &str = "img_{:05}.jpg";

/// The image format of a clip's frames, told by the file name's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// Lossy: PaddleVideo's format (`cv2.imwrite` or Pillow).
    Jpeg,
    /// Lossless: frames read back equal to the video's.
    Png,
}

impl ImageFormat {
    /// Width and height from the file's header.
    fn size(self, data: &[u8]) -> Result<(u32, u32), String> {
        match self {
            ImageFormat::Jpeg => jpeg::size(data).map_err(|e| e.to_string()),
            ImageFormat::Png => png::size(data).map_err(|e| e.to_string()),
        }
    }

    /// The file decoded to packed RGB, as Pillow's `convert('RGB')`.
    fn decode_rgb(self, data: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
        match self {
            ImageFormat::Jpeg => jpeg::decode_rgb(data).map_err(|e| e.to_string()),
            ImageFormat::Png => png::decode_rgb(data).map_err(|e| e.to_string()),
        }
    }
}

/// A parsed frame-name pattern: `prefix`, the 1-based number zero-padded to `width`, `suffix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameNames {
    prefix: String,
    width: usize,
    suffix: String,
}

impl Default for FrameNames {
    fn default() -> Self {
        FrameNames {
            prefix: "img_".into(),
            width: 5,
            suffix: ".jpg".into(),
        }
    }
}

impl FrameNames {
    /// PaddleVideo's naming with PNG files: `img_{:05}.png`.
    pub fn png() -> FrameNames {
        FrameNames {
            suffix: ".png".into(),
            ..FrameNames::default()
        }
    }

    /// The names for frames of `format`, PaddleVideo's `img_{:05}` numbering.
    pub fn for_format(format: ImageFormat) -> FrameNames {
        match format {
            ImageFormat::Jpeg => FrameNames::default(),
            ImageFormat::Png => FrameNames::png(),
        }
    }

    /// The naming of the frame folder `dir`: `img_{:05}.jpg` (PaddleVideo's default) if it
    /// holds frame 1 so named, else `img_{:05}.png` if it holds that, else the default.
    pub fn detect(dir: &Path) -> FrameNames {
        [FrameNames::default(), FrameNames::png()]
            .into_iter()
            .find(|names| dir.join(names.name(1)).is_file())
            .unwrap_or_default()
    }

    /// The format of the files, by the suffix's extension (JPEG unless it is `.png`).
    pub fn format(&self) -> ImageFormat {
        if self.suffix.to_ascii_lowercase().ends_with(".png") {
            ImageFormat::Png
        } else {
            ImageFormat::Jpeg
        }
    }

    /// Whether `file_name` is frame 1 in one of the default namings (`img_00001.jpg`,
    /// `img_00001.png`), which stands for its folder in a walk.
    pub fn is_default_first(file_name: &str) -> bool {
        [FrameNames::default(), FrameNames::png()]
            .iter()
            .any(|names| names.name(1) == file_name)
    }

    /// Parses a Python format string with one field: `{}`, `{:05}`, `{:05d}`, `{:d}`.
    pub fn parse(pattern: &str) -> Result<FrameNames, String> {
        let bad = || {
            format!(
                "frame name pattern {pattern:?}: expected one field like {{:05}}, e.g. {DEFAULT_SUFFIX:?}"
            )
        };
        let (prefix, rest) = pattern.split_once('{').ok_or_else(bad)?;
        let (field, suffix) = rest.split_once('}').ok_or_else(bad)?;
        if prefix.contains('}') || suffix.contains('{') || suffix.contains('}') {
            return Err(bad());
        }
        if prefix.contains('/') || suffix.contains('/') {
            return Err(format!("frame name pattern {pattern:?}: no '/' allowed"));
        }
        let spec = field.strip_prefix(':').unwrap_or(field);
        let spec = spec.strip_suffix('d').unwrap_or(spec);
        let width = if spec.is_empty() {
            0
        } else if let Some(digits) = spec.strip_prefix('0') {
            if digits.is_empty() {
                0
            } else {
                digits.parse::<usize>().map_err(|_| bad())?
            }
        } else {
            return Err(bad());
        };
        if width > 12 {
            return Err(bad());
        }
        Ok(FrameNames {
            prefix: prefix.to_string(),
            width,
            suffix: suffix.to_string(),
        })
    }

    /// The naming as PaddleVideo's `suffix` format string, e.g. `img_{:05}.jpg`.
    pub fn pattern(&self) -> String {
        if self.width == 0 {
            format!("{}{{}}{}", self.prefix, self.suffix)
        } else {
            format!("{}{{:0{}}}{}", self.prefix, self.width, self.suffix)
        }
    }

    /// The file name of 1-based frame number `n`.
    pub fn name(&self, n: u64) -> String {
        format!(
            "{}{:0width$}{}",
            self.prefix,
            n,
            self.suffix,
            width = self.width
        )
    }
}

/// True when `path` is a folder holding frame 1 in PaddleVideo's default naming (`.jpg`) or
/// its PNG variant.
pub fn is_frame_folder(path: &Path) -> bool {
    path.is_dir() && path.join(FrameNames::detect(path).name(1)).is_file()
}

/// A clip stored as a folder of numbered JPEGs (or PNGs).
#[derive(Clone, Debug)]
pub struct FrameFolder {
    info: VideoInfo,
    names: FrameNames,
}

impl FrameFolder {
    /// Opens `dir`: its frame count is the number of consecutive files from 1 (`img_00001.jpg`,
    /// `img_00002.jpg`, ...); with `listed` (a list file's `num_frames`) the folder must hold at
    /// least that many, and the clip has exactly `listed` frames (as PaddleVideo, which trusts
    /// the list). The size is read from frame 1's header.
    pub fn open(dir: &Path, names: &FrameNames, listed: Option<u32>) -> Result<Self, VideoError> {
        let unreadable = |reason: String| VideoError::Unreadable {
            path: dir.to_path_buf(),
            reason,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| {
            unreadable(if e.kind() == std::io::ErrorKind::NotFound {
                "no such frame folder".into()
            } else {
                e.to_string()
            })
        })?;
        let present: HashSet<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let mut count: u32 = 0;
        while present.contains(&names.name(u64::from(count) + 1)) {
            count += 1;
        }
        if count == 0 {
            return Err(VideoError::NoFrames {
                path: dir.to_path_buf(),
            });
        }
        let frame_count = match listed {
            Some(0) => {
                return Err(VideoError::NoFrames {
                    path: dir.to_path_buf(),
                });
            }
            Some(n) if n > count => {
                return Err(VideoError::FewerFrames {
                    path: dir.to_path_buf(),
                    listed: n,
                    found: count,
                    first_missing: names.name(u64::from(count) + 1),
                });
            }
            Some(n) => n,
            None => count,
        };
        let first = dir.join(names.name(1));
        let data = crate::files::read(&first).map_err(|e| VideoError::Unreadable {
            path: first.clone(),
            reason: e.to_string(),
        })?;
        let format = names.format();
        let (width, height) = format.size(&data).map_err(|detail| VideoError::Corrupt {
            path: first.clone(),
            detail,
        })?;
        Ok(FrameFolder {
            info: VideoInfo {
                path: dir.to_path_buf(),
                duration_s: 0.0,
                fps_num: 0,
                fps_den: 1,
                frame_count,
                width,
                height,
                codec: match format {
                    ImageFormat::Jpeg => "JPEG frames".into(),
                    ImageFormat::Png => "PNG frames".into(),
                },
            },
            names: names.clone(),
        })
    }

    /// The folder as a video: `frame_count` frames, the size of frame 1, no frame rate.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// The file of 0-based frame `index`.
    pub fn file(&self, index: u32) -> PathBuf {
        self.info.path.join(self.names.name(u64::from(index) + 1))
    }

    /// Reads and decodes 0-based frame `index` (file `index + 1`).
    pub fn frame(&self, index: u32) -> Result<RgbFrame, VideoError> {
        if index >= self.info.frame_count {
            return Err(VideoError::FrameOutOfRange {
                path: self.info.path.clone(),
                index,
                count: self.info.frame_count,
            });
        }
        let file = self.file(index);
        let data = crate::files::read(&file).map_err(|e| VideoError::Unreadable {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        let (width, height, data) =
            self.names
                .format()
                .decode_rgb(&data)
                .map_err(|detail| VideoError::Corrupt {
                    path: file.clone(),
                    detail,
                })?;
        Ok(RgbFrame {
            index,
            pts_ns: None,
            width,
            height,
            data,
        })
    }

    /// Decodes each distinct frame of `indices`, in ascending order, on the calling thread
    /// (as a video decoder delivers them) and hands it to `on_frame`. The first failure ends
    /// it. (Not on the rayon pool: `infer::classify` blocks in `on_frame` until pool threads
    /// free up, which would deadlock a decoder running on that same pool.)
    pub fn decode_each(
        &self,
        indices: &[u32],
        on_frame: &mut dyn FnMut(RgbFrame),
    ) -> Result<(), VideoError> {
        let distinct: BTreeSet<u32> = indices.iter().copied().collect();
        for i in distinct {
            on_frame(self.frame(i)?);
        }
        Ok(())
    }
}

/// How `kineto extract-frames` writes a clip's frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractOptions {
    /// The frames' format: JPEG (PaddleVideo's) or PNG (lossless).
    pub format: ImageFormat,
    /// JPEG quality, 1..=100 (95: `cv2.imwrite`'s default, PaddleVideo's extraction scripts).
    pub quality: u8,
    /// Scale each frame first, as PaddleVideo's `Scale(short_size)` does (Pillow bilinear).
    pub short_side: Option<u32>,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            format: ImageFormat::Jpeg,
            quality: 95,
            short_side: None,
        }
    }
}

/// A clip extracted (or found finished) by [`extract_clip`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extracted {
    pub frames: u32,
    /// The folder existed already (a finished clip is never rewritten).
    pub skipped: bool,
}

/// The hidden folder a clip is written into before it is renamed to `out`.
pub fn partial_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.partial"))
}

/// Writes every frame of `video` (decord's frames: decode order, all of them) as
/// `out/img_00001.jpg`, `img_00002.jpg`, ... (`.png` for PNG): first into a hidden folder beside `out` (a stale
/// one from an interrupted run is cleared), renamed to `out` once complete, so that `out`
/// existing means a finished clip; such a folder is left as it is and counted.
pub fn extract_clip(
    video: &Path,
    out: &Path,
    options: &ExtractOptions,
    cancel: Option<&crate::progress::CancelToken>,
) -> Result<Extracted, VideoError> {
    let names = FrameNames::for_format(options.format);
    if out.is_dir() {
        let done = FrameFolder::open(out, &FrameNames::detect(out), None)?;
        return Ok(Extracted {
            frames: done.info().frame_count,
            skipped: true,
        });
    }
    let write_err = |path: &Path, e: std::io::Error| VideoError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let partial = partial_dir(out);
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| write_err(&partial, e))?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| write_err(parent, e))?;
    }
    std::fs::create_dir(&partial).map_err(|e| write_err(&partial, e))?;
    let result = write_frames(video, &partial, &names, options, cancel);
    let frames = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, out).map_err(|e| write_err(out, e))?;
    Ok(Extracted {
        frames,
        skipped: false,
    })
}

fn write_frames(
    video: &Path,
    dir: &Path,
    names: &FrameNames,
    options: &ExtractOptions,
    cancel: Option<&crate::progress::CancelToken>,
) -> Result<u32, VideoError> {
    let mut decoder = super::decode::FrameDecoder::open(video)?;
    let count = decoder.info().frame_count;
    if count == 0 {
        return Err(VideoError::NoFrames {
            path: video.to_path_buf(),
        });
    }
    let all: Vec<u32> = (0..count).collect();
    let mut failure: Option<VideoError> = None;
    let mut written = 0u32;
    decoder.for_each_frame(&all, &mut |frame| {
        if failure.is_some() {
            return;
        }
        if cancel.is_some_and(|c| c.is_cancelled()) {
            failure = Some(VideoError::Write {
                path: dir.to_path_buf(),
                reason: "cancelled".into(),
            });
            return;
        }
        let file = dir.join(names.name(u64::from(frame.index) + 1));
        let frame = match options.short_side {
            Some(s) => match super::transform::scale_short_side(&frame, s) {
                Ok(f) => f,
                Err(e) => {
                    failure = Some(VideoError::Write {
                        path: file,
                        reason: e.to_string(),
                    });
                    return;
                }
            },
            None => frame,
        };
        let encoded = match options.format {
            ImageFormat::Jpeg => {
                jpeg::encode_rgb(frame.width, frame.height, &frame.data, options.quality)
                    .map_err(|e| e.to_string())
            }
            ImageFormat::Png => {
                png::encode_rgb(frame.width, frame.height, &frame.data).map_err(|e| e.to_string())
            }
        };
        let bytes = match encoded {
            Ok(b) => b,
            Err(reason) => {
                failure = Some(VideoError::Write { path: file, reason });
                return;
            }
        };
        match std::fs::write(&file, bytes) {
            Ok(()) => written += 1,
            Err(e) => {
                failure = Some(VideoError::Write {
                    path: file,
                    reason: e.to_string(),
                })
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if written != count {
        return Err(VideoError::FrameUnavailable {
            path: video.to_path_buf(),
            index: written,
            detail: format!("{written} of {count} frames decoded"),
        });
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_python_format() {
        let d = FrameNames::parse(DEFAULT_SUFFIX).unwrap();
        assert_eq!(d, FrameNames::default());
        assert_eq!(d.name(1), "img_00001.jpg");
        assert_eq!(d.name(123_456), "img_123456.jpg");
        assert_eq!(
            FrameNames::parse("{:06d}.jpg").unwrap().name(7),
            "000007.jpg"
        );
        assert_eq!(FrameNames::parse("f{}.jpg").unwrap().name(12), "f12.jpg");
        for bad in [
            "img.jpg",
            "{:5}.jpg",
            "{}{}.jpg",
            "a/{}.jpg",
            "{:0x}.jpg",
            "{",
        ] {
            assert!(FrameNames::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folder_counts_consecutive_frames_and_checks_the_list() {
        let tmp = crate::files::TempDir::new("rawframes");
        let dir = tmp.0.as_path();
        let names = FrameNames::default();
        let rgb = vec![128u8; 16 * 8 * 3];
        let jpg = jpeg::encode_rgb(16, 8, &rgb, 90).unwrap();
        for n in [1, 2, 3, 5] {
            std::fs::write(dir.join(names.name(n)), &jpg).unwrap();
        }
        let f = FrameFolder::open(dir, &names, None).unwrap();
        assert_eq!(f.info().frame_count, 3);
        assert_eq!((f.info().width, f.info().height), (16, 8));
        assert_eq!(f.frame(2).unwrap().width, 16);
        assert!(matches!(
            f.frame(3),
            Err(VideoError::FrameOutOfRange { .. })
        ));
        let listed = FrameFolder::open(dir, &names, Some(2)).unwrap();
        assert_eq!(listed.info().frame_count, 2);
        let fewer = FrameFolder::open(dir, &names, Some(5)).unwrap_err();
        assert!(matches!(
            fewer,
            VideoError::FewerFrames {
                listed: 5,
                found: 3,
                ..
            }
        ));
        assert!(fewer.to_string().contains("img_00004.jpg"), "{fewer}");
        let missing = FrameFolder::open(&dir.join("nope"), &names, None).unwrap_err();
        assert!(
            missing.to_string().contains("no such frame folder"),
            "{missing}"
        );
        std::fs::write(dir.join(names.name(2)), b"broken").unwrap();
        let e = f.decode_each(&[0, 1, 2], &mut |_| {}).unwrap_err();
        assert!(matches!(e, VideoError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("img_00002.jpg"), "{e}");
    }

    #[test]
    fn png_folders_are_detected_and_read_losslessly() {
        assert_eq!(FrameNames::default().pattern(), DEFAULT_SUFFIX);
        assert_eq!(FrameNames::png().pattern(), "img_{:05}.png");
        assert_eq!(FrameNames::parse("f{}.jpg").unwrap().pattern(), "f{}.jpg");
        let tmp = crate::files::TempDir::new("rawframes-png");
        let dir = tmp.0.as_path();
        assert_eq!(FrameNames::detect(dir), FrameNames::default());
        assert!(!is_frame_folder(dir));
        let rgb: Vec<u8> = (0..16 * 8 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let bytes = png::encode_rgb(16, 8, &rgb).unwrap();
        for n in [1, 2] {
            std::fs::write(dir.join(FrameNames::png().name(n)), &bytes).unwrap();
        }
        assert!(is_frame_folder(dir));
        let names = FrameNames::detect(dir);
        assert_eq!(names.format(), ImageFormat::Png);
        let f = FrameFolder::open(dir, &names, None).unwrap();
        assert_eq!(f.info().frame_count, 2);
        assert_eq!(f.info().codec, "PNG frames");
        assert_eq!(f.frame(1).unwrap().data, rgb);
        assert!(FrameNames::is_default_first("img_00001.png"));
        assert!(!FrameNames::is_default_first("img_00002.png"));
    }
}
