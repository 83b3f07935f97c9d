//! `kineto extract-frames DATA OUT [--labels FILE] [--format jpg|png] [--quality Q]
//! [--short-side S] [--jobs N]`: a video dataset (class folders or a list file) into
//! PaddleVideo's frame format (`OUT/<clip>/img_00001.jpg`, ..., `OUT/list.txt` with
//! `frame_dir num_frames label` lines, `OUT/labels.txt`), which `kineto train OUT/list.txt
//! --labels OUT/labels.txt`, `eval`, `classify` and `preprocess` read. Resumable: finished clip
//! folders are kept. Progress on stderr, one line per failed clip, a JSON summary on stdout.

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::train::dataset::Dataset;
use kineto::train::extract_frames::{LABELS_FILE, LIST_FILE, disk_usage, extract_dataset};
use kineto::video::rawframes::{ExtractOptions, FrameNames, ImageFormat};
use serde_json::json;

use super::progress::Progress;
use super::{CliResult, Failure, GlobalArgs, interrupt_token};

/// The image format of the frames.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameFormat {
    /// JPEG (`img_{:05}.jpg`, PaddleVideo's default suffix).
    Jpg,
    /// PNG (`img_{:05}.png`): lossless, so training from the frames gives the videos'
    /// metrics; on camera footage about 4x the disk of JPEG at 95 (PaddleVideo reads it with
    /// `suffix: 'img_{:05}.png'`).
    Png,
}

impl From<FrameFormat> for ImageFormat {
    fn from(format: FrameFormat) -> Self {
        match format {
            FrameFormat::Jpg => ImageFormat::Jpeg,
            FrameFormat::Png => ImageFormat::Png,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ExtractFramesArgs {
    /// The videos: a folder of class folders, or a PaddleVideo list file (`path label`).
    pub data: PathBuf,
    /// The output folder (created if missing; finished clips in it are kept).
    pub out: PathBuf,
    /// Class names of a list file (`id name` lines, as for `kineto train`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Image format of the frames.
    #[arg(long, value_enum, default_value_t = FrameFormat::Jpg)]
    pub format: FrameFormat,
    /// JPEG quality, 1 to 100 (95: OpenCV's `cv2.imwrite` default); PNG is lossless.
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Scale every frame so that its short side is S pixels (PaddleVideo's Scale, Pillow
    /// bilinear); default: the video's size.
    #[arg(long, value_name = "S")]
    pub short_side: Option<u32>,
    /// Clips extracted at once (default: the CPU count, or --threads).
    #[arg(long)]
    pub jobs: Option<usize>,
}

pub fn run(args: &ExtractFramesArgs, global: &GlobalArgs) -> CliResult {
    if args.short_side == Some(0) {
        return Err(Failure::fatal(anyhow!("--short-side must be at least 1")));
    }
    let dataset = Dataset::open(&args.data, args.labels.as_deref()).map_err(Failure::input)?;
    let options = ExtractOptions {
        format: args.format.into(),
        quality: args.quality,
        short_side: args.short_side,
    };
    let jobs = args.jobs.unwrap_or(if global.threads > 0 {
        global.threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    });
    let cancel = interrupt_token();
    let total = dataset.items.len();
    let progress = Progress::new(total as u64, "clips", global.quiet);
    let rows = extract_dataset(
        &dataset,
        &args.out,
        &options,
        jobs,
        Some(&cancel),
        &|done, _, row| {
            if let Err(problem) = &row.result
                && !cancel.is_cancelled()
            {
                eprintln!("kineto: {}: {problem}", row.video.display());
            }
            progress.update(done as u64, &row.frame_dir.display().to_string());
        },
    );
    progress.finish();
    let rows = rows.map_err(Failure::input)?;
    let failed = rows.iter().filter(|r| r.result.is_err()).count();
    let skipped = rows
        .iter()
        .filter(|r| r.result.as_ref().is_ok_and(|x| x.skipped))
        .count();
    let frames: u64 = rows
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .map(|x| u64::from(x.frames))
        .sum();
    let summary = json!({
        "clips": total,
        "written": total - failed - skipped,
        "skipped": skipped,
        "failed": failed,
        "frames": frames,
        "suffix": FrameNames::for_format(options.format).pattern(),
        "bytes": disk_usage(&args.out),
        "list": args.out.join(LIST_FILE).display().to_string(),
        "labels": args.out.join(LABELS_FILE).display().to_string(),
    });
    println!("{summary}");
    if cancel.is_cancelled() {
        eprintln!("kineto: interrupted; run the same command again to go on");
        return Err(Failure::interrupted());
    }
    if failed > 0 {
        return Err(Failure::input(anyhow!(
            "{failed} of {total} clips could not be extracted (the list file has the others)"
        )));
    }
    Ok(())
}
