//! `kineto export-segments DIR --format csv|activitynet|kinetics|clips --output OUT
//! [--include-predicted] [--reencode] [--split NAME]`: the segments labelled in a folder's
//! `kineto-project.json`, as the window's File > Export segments writes them.

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::labels::project::Project;
use kineto::labels::segment_export::{
    ClipStatus, export_activitynet, export_kinetics_csv, export_segment_clips, export_segments_csv,
    project_segment_rows,
};
use kineto::video::cut::CutMode;

use super::progress::Progress;
use super::{CliResult, Failure, GlobalArgs, interrupt_token};

#[derive(clap::Args, Debug)]
pub struct ExportSegmentsArgs {
    /// The folder holding `kineto-project.json`.
    pub project: PathBuf,
    #[arg(long, value_enum)]
    pub format: SegmentsFormat,
    /// The file to write (csv, activitynet, kinetics), or the folder of class folders (clips).
    #[arg(long)]
    pub output: PathBuf,
    /// Export predicted segments too, not only those a person accepted or corrected.
    #[arg(long)]
    pub include_predicted: bool,
    /// Clips: cut frame-accurately by re-encoding (default: on key frames, no re-encoding; a
    /// clip then starts at the key frame at or before the segment's start).
    #[arg(long)]
    pub reencode: bool,
    /// Kinetics CSV: the `split` column's value.
    #[arg(long, default_value = "train")]
    pub split: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentsFormat {
    /// `path,start_s,end_s,label_id,label,score`.
    Csv,
    /// `{"database": {VIDEO: {"duration", "annotations": [{"segment": [s, e], "label"}]}}}`.
    Activitynet,
    /// `label,youtube_id,time_start,time_end,split`.
    Kinetics,
    /// Trimmed clips in class folders `OUT/<label>/<stem>_<start>-<end>.<ext>`.
    Clips,
}

pub fn run(args: &ExportSegmentsArgs, global: &GlobalArgs) -> CliResult {
    if args.reencode && args.format != SegmentsFormat::Clips {
        return Err(Failure::fatal(anyhow!(
            "--reencode applies to --format clips only"
        )));
    }
    let project = match Project::load(&args.project).map_err(Failure::input)? {
        Some(project) => project,
        None => {
            return Err(Failure::input(anyhow!(
                "{}: no {} here (label a clip in the window first)",
                args.project.display(),
                Project::FILE_NAME
            )));
        }
    };
    for warning in &project.warnings {
        eprintln!("kineto: warning: {}: {warning}", project.path().display());
    }
    let rows = project_segment_rows(&project, args.include_predicted);
    if rows.is_empty() {
        return Err(Failure::input(anyhow!(
            "{}: no {}segments to export{}",
            project.path().display(),
            if args.include_predicted {
                ""
            } else {
                "labelled "
            },
            if args.include_predicted {
                ""
            } else {
                " (--include-predicted adds the model's)"
            }
        )));
    }
    let out = &args.output;
    let written = match args.format {
        SegmentsFormat::Csv => export_segments_csv(&rows, out),
        SegmentsFormat::Activitynet => export_activitynet(&rows, out),
        SegmentsFormat::Kinetics => export_kinetics_csv(&rows, out, &args.split),
        SegmentsFormat::Clips => {
            let mode = if args.reencode {
                CutMode::Reencode
            } else {
                CutMode::KeyFrames
            };
            let cancel = interrupt_token();
            let bar = Progress::new(rows.len() as u64, "clips", global.quiet);
            let mut progress = |done: usize, _total: usize| bar.update(done as u64, "");
            let outcome = export_segment_clips(&rows, out, mode, &cancel, &mut progress);
            if cancel.is_cancelled() {
                return Err(Failure::interrupted());
            }
            let summary = outcome.map_err(Failure::input)?;
            bar.finish();
            for clip in &summary.clips {
                if let ClipStatus::Failed(error) = &clip.status {
                    eprintln!("kineto: error: {error}");
                }
            }
            if !global.quiet {
                let existing = summary.clips.len() - summary.written() - summary.failed();
                eprintln!(
                    "kineto: {} clips in {} class folders under {}{}{}",
                    summary.written(),
                    summary.classes,
                    out.display(),
                    if existing > 0 {
                        format!("; {existing} already there, left as they were")
                    } else {
                        String::new()
                    },
                    if mode == CutMode::KeyFrames {
                        format!(
                            "; cut on key frames: starts moved up to {:.3} s earlier",
                            summary.max_shift_s(&rows)
                        )
                    } else {
                        String::new()
                    }
                );
                for renamed in &summary.renamed {
                    eprintln!(
                        "kineto: note: class folder renamed so that training reads it: {renamed}"
                    );
                }
            }
            if summary.failed() > 0 {
                return Err(Failure::input(anyhow!(
                    "{} of {} segments could not be cut",
                    summary.failed(),
                    rows.len()
                )));
            }
            return Ok(());
        }
    }
    .map_err(Failure::input)?;
    if !global.quiet {
        eprintln!("kineto: wrote {written} segments to {}", out.display());
    }
    Ok(())
}
