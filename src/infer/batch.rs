//! Many files: expand folders; decode files on `kineto-decode-N` threads (a bounded queue)
//! while the model runs batches of what is decoded; records in input order; where the time
//! went ([`FeedStats`]).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, Instant};

use super::classify::{DENSE_VIEWS, PreparedClip, Sampling, classify_together, prepare};
use super::engine::Engine;
use crate::files::{Walk, walk};
use crate::progress::{CancelToken, panic_text};
use crate::report::ClassifyRecord;
use crate::video::rawframes::{FrameNames, is_frame_folder};

/// File extensions taken from folders (any case). Files named explicitly are always taken.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "avi", "mkv", "webm", "mpg", "mpeg", "wmv", "flv", "3gp", "ts",
];

pub fn is_video_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|v| v.eq_ignore_ascii_case(e)))
}

/// A video file by its extension, or frame 1 of a frame folder (`img_00001.jpg`, PaddleVideo's
/// naming, or `img_00001.png`), which stands for its folder (see [`clip_of`]).
pub fn is_clip_file(path: &Path) -> bool {
    is_video_file(path) || is_first_frame(path)
}

fn is_first_frame(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(FrameNames::is_default_first)
}

/// The clip a walked file stands for: a video itself, a frame folder's first frame its folder.
pub fn clip_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if is_first_frame(path) => dir.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

/// Files and folders -> the clips to classify: a frame folder (PaddleVideo's `img_00001.jpg`,
/// ...) is one clip; other folders are walked recursively (video extensions and frame folders,
/// each folder and clip once however links loop), everything sorted and de-duplicated. A path
/// that does not exist, or that is not a regular file, stays in the list, so that it becomes
/// an error row rather than vanishing (or blocking, for a FIFO).
pub fn expand_inputs(inputs: &[PathBuf], cancel: Option<&CancelToken>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        if is_frame_folder(input) {
            files.push(input.clone());
        } else if input.is_dir() {
            let how = Walk {
                wanted: &is_clip_file,
                skip_hidden: false,
                cancel,
            };
            files.extend(walk(input, how).iter().map(|f| clip_of(f.path())));
        } else {
            files.push(input.clone());
        }
    }
    files.sort();
    files.dedup();
    files
}

/// One part of a run split over several processes (`classify --shard I/N`): shard `index`
/// of `count` (0-based, as Slurm's `SLURM_ARRAY_TASK_ID` with `--array=0-(N-1)` and
/// Kubernetes' `JOB_COMPLETION_INDEX` count) takes the files at positions `index`, `index +
/// count`, ... of the sorted list, so that the shards are disjoint, cover every file, and each
/// gets a share of every folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || format!("expected I/N with 0 <= I < N (I 0-based), found {s:?}");
        let (i, n) = s.trim().split_once('/').ok_or_else(usage)?;
        let index: usize = i.trim().parse().map_err(|_| usage())?;
        let count: usize = n.trim().parse().map_err(|_| usage())?;
        if count == 0 {
            return Err(format!("{s:?}: the number of shards N must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "{s:?}: shard {index} does not exist; shards are numbered 0 to {} (I is 0-based)",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// This shard's files of `files` (already sorted), in their order.
    pub fn take<T: Clone>(&self, files: &[T]) -> Vec<T> {
        files
            .iter()
            .skip(self.index)
            .step_by(self.count.max(1))
            .cloned()
            .collect()
    }
}

/// How [`classify_files`] feeds the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feed {
    /// Views per forward at most (a uniform clip is one view, a dense one 30; a clip is never
    /// split): the forward takes what is decoded when the model is free, up to this.
    pub batch: usize,
    /// Files decoded at once, each on its own `kineto-decode-N` thread (at most two batches'
    /// worth: in dense mode, two).
    pub decoders: usize,
}

/// Views per forward on a GPU when not told otherwise. Not yet measured on a real GPU:
/// `scripts/device/gpu.py` sweeps batch sizes, so that a device session can set it where the
/// gain levels off.
pub const GPU_BATCH: usize = 16;

impl Feed {
    /// On the CPU path the model already uses every core: one clip per forward, one file
    /// decoding ahead. On a GPU: batches of [`GPU_BATCH`] and every core decoding.
    pub fn for_engine(engine: &Engine) -> Self {
        if engine.device.kind == "cpu" {
            Self {
                batch: 1,
                decoders: 1,
            }
        } else {
            Self {
                batch: GPU_BATCH,
                decoders: std::thread::available_parallelism().map_or(1, |n| n.get()),
            }
        }
    }
}

/// Where the time of a [`classify_files`] run went: enough to say what limits it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FeedStats {
    /// Clips classified (error rows not counted).
    pub clips: usize,
    /// Forward passes.
    pub forwards: usize,
    /// Wall time of the whole run.
    pub wall_s: f64,
    /// Time the model ran (the forwards, back to back).
    pub model_s: f64,
    /// Decoding and preprocessing time summed over the files (each decoder's busy time).
    pub decode_s: f64,
    pub decoders: usize,
}

impl FeedStats {
    pub fn clips_per_s(&self) -> f64 {
        rate(self.clips, self.wall_s)
    }

    /// What the model alone would do: clips over the time it ran.
    pub fn model_clips_per_s(&self) -> f64 {
        rate(self.clips, self.model_s)
    }

    /// What decoding alone would do with this many decoders.
    pub fn decode_clips_per_s(&self) -> f64 {
        rate(self.clips, self.decode_s / self.decoders.max(1) as f64)
    }

    /// The slower of the two stages, in words.
    pub fn bottleneck(&self) -> &'static str {
        if self.model_clips_per_s() <= self.decode_clips_per_s() {
            "the model"
        } else {
            "decoding"
        }
    }
}

fn rate(clips: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        clips as f64 / seconds
    } else {
        0.0
    }
}

/// How [`classify_files`] samples, ranks, names and feeds.
#[derive(Clone, Copy, Debug)]
pub struct ClassifyOptions<'a> {
    pub sampling: Sampling,
    /// Labels per record.
    pub top_k: usize,
    /// Class names by id (`class_<id>` past the end).
    pub labels: &'a [String],
    pub feed: Feed,
}

/// What [`classify_files`] returns: the records in input order and where the time went.
#[derive(Debug)]
pub struct Classified {
    pub records: Vec<ClassifyRecord>,
    pub stats: FeedStats,
}

/// One file's decoding outcome, from a decoder to the model's thread.
struct Decoded {
    index: usize,
    prepared: Result<Result<PreparedClip, String>, String>,
    busy: Duration,
}

/// Classifies `files`, calling `on_record` for each in input order. `feed.decoders` files
/// decode at once while the model runs; each forward takes the clips decoded by then (up to
/// `feed.batch` views), so the model never waits for a full batch. A failure (or a panic) in
/// one file becomes its error row. Once `cancel` is set no further file starts; the records
/// finished so far are returned (those before the first unfinished one, in order).
pub fn classify_files(
    engine: &Engine,
    files: &[PathBuf],
    how: &ClassifyOptions<'_>,
    cancel: &CancelToken,
    mut on_record: impl FnMut(usize, &ClassifyRecord),
) -> Classified {
    let ClassifyOptions {
        sampling,
        top_k: k,
        labels,
        feed,
    } = *how;
    let started = Instant::now();
    let batch = feed.batch.max(1);
    // Memory: at most about two batches of decoded views wait (a dense clip is 30 views,
    // 144 MB), so dense mode gets fewer decoders and a shorter queue.
    let views_per_clip = if sampling.dense { DENSE_VIEWS } else { 1 };
    let clips_per_batch = (batch / views_per_clip).max(1);
    let decoders = feed
        .decoders
        .min((2 * clips_per_batch).max(2))
        .clamp(1, files.len().max(1));
    let next_file = AtomicUsize::new(0);
    let (tx, rx) = sync_channel::<Decoded>(clips_per_batch);
    let mut stats = FeedStats {
        decoders,
        ..FeedStats::default()
    };
    let records = std::thread::scope(|scope| {
        // Owned here, so that it is dropped (and blocked decoders let go) before the scope
        // waits for them.
        let rx = rx;
        let (mut spawned_any, mut spawn_error) = (false, None);
        // Each decoder has its own pool for its clips' transforms: `prepare` blocks a pool
        // thread while it decodes, so decoders sharing one pool could take every thread and
        // leave none for the transforms they wait on.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads_each = (cores / decoders).max(1);
        for d in 0..decoders {
            let tx = tx.clone();
            let next_file = &next_file;
            let worker = move || {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads_each)
                    .thread_name(move |i| format!("kineto-decode-{d}.{i}"))
                    .build();
                match pool {
                    Ok(pool) => pool.install(|| {
                        decode_files(files, next_file, cancel, &tx, &|path: &Path| {
                            prepare(path, sampling, false).map_err(|e| e.problem(path))
                        })
                    }),
                    Err(e) => decode_files(files, next_file, cancel, &tx, &|_: &Path| {
                        Err(format!("cannot start decoding threads: {e}"))
                    }),
                }
            };
            let spawned = std::thread::Builder::new()
                .name(format!("kineto-decode-{d}"))
                .spawn_scoped(scope, worker);
            match spawned {
                Ok(_) => spawned_any = true,
                Err(e) => {
                    spawn_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let mut finished = InOrder::default();
        let mut emit = |index: usize, record: ClassifyRecord| {
            finished.insert(index, record, &mut on_record);
        };
        if let Some(e) = spawn_error.filter(|_| !spawned_any) {
            for (i, path) in files.iter().enumerate() {
                let problem = format!("cannot start a decoding thread: {e}");
                emit(i, ClassifyRecord::failed(path, sampling.num_seg, problem));
            }
        }
        while let Ok(first) = rx.recv() {
            // The model is free: take what is decoded by now, up to a batch of views.
            let mut ready = vec![first];
            let mut views = view_count(&ready[0]);
            while views < batch {
                match rx.try_recv() {
                    Ok(more) => {
                        views += view_count(&more);
                        ready.push(more);
                    }
                    Err(_) => break,
                }
            }
            if cancel.is_cancelled() {
                break;
            }
            let mut clips = Vec::with_capacity(ready.len());
            for decoded in ready {
                stats.decode_s += decoded.busy.as_secs_f64();
                let path = &files[decoded.index];
                let problem = match decoded.prepared {
                    Ok(Ok(clip)) => {
                        clips.push((decoded.index, path.as_path(), clip));
                        continue;
                    }
                    Ok(Err(problem)) => problem,
                    Err(panic) => format!("internal error while decoding: {panic}"),
                };
                emit(
                    decoded.index,
                    ClassifyRecord::failed(path, sampling.num_seg, problem),
                );
            }
            for group in forwards(clips, batch) {
                let indices: Vec<usize> = group.iter().map(|(i, _, _)| *i).collect();
                let together = group.into_iter().map(|(_, p, c)| (p, c)).collect();
                let start = Instant::now();
                let records = classify_together(engine, together, k, labels);
                stats.model_s += start.elapsed().as_secs_f64();
                stats.forwards += 1;
                stats.clips += records.iter().filter(|r| r.is_ok()).count();
                for (index, record) in indices.into_iter().zip(records) {
                    emit(index, record);
                }
            }
        }
        finished.records
    });
    stats.wall_s = started.elapsed().as_secs_f64();
    Classified { records, stats }
}

/// A decoder's loop: the next file not yet taken, until none is left, the run is cancelled or
/// the model's side has gone.
fn decode_files(
    files: &[PathBuf],
    next_file: &AtomicUsize,
    cancel: &CancelToken,
    tx: &SyncSender<Decoded>,
    prepare_one: &dyn Fn(&Path) -> Result<PreparedClip, String>,
) {
    while !cancel.is_cancelled() {
        let index = next_file.fetch_add(1, Ordering::Relaxed);
        let Some(path) = files.get(index) else {
            break;
        };
        let start = Instant::now();
        let prepared = catch_unwind(AssertUnwindSafe(|| prepare_one(path)))
            .map_err(|p| panic_text(p.as_ref()));
        let decoded = Decoded {
            index,
            prepared,
            busy: start.elapsed(),
        };
        if tx.send(decoded).is_err() {
            break;
        }
    }
}

/// Views a decoded file brings to a forward (an error row brings none).
fn view_count(decoded: &Decoded) -> usize {
    match &decoded.prepared {
        Ok(Ok(clip)) => clip.dims[0],
        _ => 0,
    }
}

/// Splits decoded clips into forwards of at most `batch` views (a clip larger than that goes
/// alone) with one frame shape each.
fn forwards(
    clips: Vec<(usize, &Path, PreparedClip)>,
    batch: usize,
) -> Vec<Vec<(usize, &Path, PreparedClip)>> {
    let mut groups: Vec<Vec<(usize, &Path, PreparedClip)>> = Vec::new();
    let mut views = 0;
    for clip in clips {
        let n = clip.2.dims[0];
        let fits = groups.last().is_some_and(|g| {
            views + n <= batch && g.first().is_some_and(|f| f.2.dims[1..] == clip.2.dims[1..])
        });
        if fits {
            views += n;
            if let Some(g) = groups.last_mut() {
                g.push(clip);
            }
        } else {
            views = n;
            groups.push(vec![clip]);
        }
    }
    groups
}

/// Records that finish out of order, handed on in input order.
#[derive(Default)]
struct InOrder {
    waiting: BTreeMap<usize, ClassifyRecord>,
    records: Vec<ClassifyRecord>,
}

impl InOrder {
    fn insert(
        &mut self,
        index: usize,
        record: ClassifyRecord,
        on_record: &mut impl FnMut(usize, &ClassifyRecord),
    ) {
        self.waiting.insert(index, record);
        while let Some(record) = self.waiting.remove(&self.records.len()) {
            on_record(self.records.len(), &record);
            self.records.push(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_finished_out_of_order_are_handed_on_in_input_order() {
        let mut in_order = InOrder::default();
        let mut seen = Vec::new();
        let record =
            |i: usize| ClassifyRecord::failed(Path::new(&format!("{i}.mp4")), 8, "x".into());
        for i in [2, 0, 3, 1] {
            in_order.insert(i, record(i), &mut |index, r: &ClassifyRecord| {
                seen.push((index, r.path.clone()));
            });
        }
        let paths: Vec<(usize, String)> = (0..4).map(|i| (i, format!("{i}.mp4"))).collect();
        assert_eq!(seen, paths);
        assert_eq!(in_order.records.len(), 4);
        assert!(in_order.waiting.is_empty());
    }

    #[test]
    fn shards_parse_and_partition_the_sorted_list() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "1/0", "-1/3", "1", "a/b", "1/3/4", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let files: Vec<usize> = (0..10).collect();
        let mut seen = Vec::new();
        for index in 0..3 {
            let part = Shard { index, count: 3 }.take(&files);
            assert!(part.windows(2).all(|w| w[0] < w[1]));
            seen.extend(part);
        }
        seen.sort();
        assert_eq!(seen, files);
        assert_eq!(Shard { index: 0, count: 1 }.take(&files), files);
        assert!(Shard { index: 4, count: 5 }.take(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn feed_stats_name_the_slower_stage() {
        let stats = FeedStats {
            clips: 100,
            forwards: 7,
            wall_s: 10.0,
            model_s: 1.0,
            decode_s: 160.0,
            decoders: 16,
        };
        assert_eq!(stats.clips_per_s(), 10.0);
        assert_eq!(stats.model_clips_per_s(), 100.0);
        assert_eq!(stats.decode_clips_per_s(), 10.0);
        assert_eq!(stats.bottleneck(), "decoding");
        let model_bound = FeedStats {
            model_s: 9.5,
            decode_s: 20.0,
            ..stats
        };
        assert_eq!(model_bound.bottleneck(), "the model");
    }
}
