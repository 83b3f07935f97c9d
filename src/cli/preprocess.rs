//! `kineto preprocess VIDEO --frames N --output X.npy [--dense] [--frames-output F.npy]`:
//! the exact tensor classify feeds the model.

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::infer::classify::{Sampling, prepare};
use kineto::npy::{write_npy_f32, write_npy_u8};
use serde_json::json;

use super::{CliResult, Failure, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct PreprocessArgs {
    pub video: PathBuf,
    /// Frames per clip (num_seg).
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Where the f32 tensor goes: [N, 3, 224, 224] (dense: [30, N, 3, 224, 224]).
    #[arg(long)]
    pub output: PathBuf,
    /// PaddleVideo's dense test mode (10 clips x 3 crops, crop-major).
    #[arg(long)]
    pub dense: bool,
    /// Also write the sampled RGB frames, u8 [N, H, W, 3] (uniform mode).
    #[arg(long)]
    pub frames_output: Option<PathBuf>,
}

pub fn run(args: &PreprocessArgs, _global: &GlobalArgs) -> CliResult {
    if args.frames == 0 {
        return Err(Failure::fatal(anyhow!("--frames must be at least 1")));
    }
    if args.dense && args.frames_output.is_some() {
        return Err(Failure::fatal(anyhow!(
            "--frames-output is for uniform mode, not --dense"
        )));
    }
    let sampling = Sampling {
        num_seg: args.frames,
        dense: args.dense,
    };
    let clip =
        prepare(&args.video, sampling, args.frames_output.is_some()).map_err(Failure::input)?;
    let shape: Vec<usize> = if args.dense {
        clip.dims.to_vec()
    } else {
        clip.dims[1..].to_vec()
    };
    write_npy_f32(&args.output, &shape, &clip.tensor).map_err(Failure::fatal)?;
    if let (Some(path), Some(frames)) = (&args.frames_output, &clip.frames) {
        let (w, h) = frames
            .first()
            .map_or((0, 0), |f| (f.width as usize, f.height as usize));
        let data: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
        write_npy_u8(path, &[frames.len(), h, w, 3], &data).map_err(Failure::fatal)?;
    }
    let indices: serde_json::Value = if args.dense {
        json!(clip.view_indices)
    } else {
        json!(clip.view_indices.first())
    };
    let report = json!({
        "path": args.video.display().to_string(),
        "frame_count": clip.info.frame_count,
        "fps": clip.info.fps(),
        "indices": indices,
        "shape": shape,
        "decode_ms": (clip.decode_ms * 100.0).round() / 100.0,
        "preprocess_ms": (clip.preprocess_ms * 100.0).round() / 100.0,
    });
    println!("{report}");
    Ok(())
}
