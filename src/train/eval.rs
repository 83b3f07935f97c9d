//! `kineto eval`: a model measured on a labelled test set, as PaddleVideo's `main.py --test`
//! does. The test set is read by [`super::dataset`] (class folders, a PaddleVideo list file,
//! UCF-101's split files) and its classes put in the model's class ids; the clips are
//! classified by `infer::batch::classify_files` (the path `kineto classify` takes); the
//! metrics are [`super::metrics::RankedAccuracy`]'s. Broken clips are counted and listed, not
//! scored.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::TrainError;
use super::dataset::{Dataset, Sample};
use super::metrics::RankedAccuracy;
use crate::report::{ClassifyRecord, csv_field};

/// The k of top-k that PaddleVideo reports.
pub const TOP_K: usize = 5;

/// Where a test set comes from.
#[derive(Clone, Copy, Debug)]
pub struct TestSetSource<'a> {
    /// A folder of class folders, a PaddleVideo list file (`path label_id`, 0-based ids in the
    /// model's class order) or, with `class_index`, a UCF-101 split file.
    pub data: &'a Path,
    /// UCF-101's `classInd.txt`: DATA is then `trainlist0N.txt` / `testlist0N.txt`.
    pub class_index: Option<&'a Path>,
    /// The folder a list file's paths are relative to (default: the list file's folder).
    pub root: Option<&'a Path>,
}

/// A test set in the model's class ids.
#[derive(Clone, Debug, PartialEq)]
pub struct TestSet {
    /// Sorted by path (the order `classify` prints), `label` a class id of the model.
    pub clips: Vec<Sample>,
    /// Lines the user should see (ignored files and the like).
    pub notes: Vec<String>,
    /// Clips known broken before classification (a frame folder with fewer images than its
    /// list line says): reported broken whatever their classification gave.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl TestSet {
    /// Reads the test set and matches its classes to `model_classes` (the model's class names
    /// by id): class folders and UCF-101's classes by name, a list file's ids as they are.
    pub fn open(source: TestSetSource<'_>, model_classes: &[String]) -> Result<Self, TrainError> {
        let data = source.data;
        let (dataset, by_name) = if data.is_dir() {
            (Dataset::read_class_folders(data, None)?, true)
        } else if !data.is_file() {
            return Err(TrainError::NotFound {
                path: data.to_path_buf(),
            });
        } else if let Some(index) = source.class_index {
            (Dataset::from_ucf_split(data, index, source.root)?, true)
        } else {
            (
                Dataset::from_list_file_in(data, None, source.root, true)?,
                false,
            )
        };
        let mut to_model = Vec::with_capacity(dataset.classes.len());
        let counts = dataset.counts();
        for (label, name) in dataset.classes.iter().enumerate() {
            let used = counts.get(label).copied().unwrap_or(0) > 0;
            let id = if by_name {
                model_classes.iter().position(|c| c == name)
            } else {
                (label < model_classes.len()).then_some(label)
            };
            match id {
                Some(id) => to_model.push(id),
                None if !used => to_model.push(usize::MAX),
                None if by_name => {
                    return Err(TrainError::Classes {
                        path: source.class_index.unwrap_or(data).to_path_buf(),
                        problem: format!(
                            "class '{name}' is not a class of the model ({}{}); the model's \
                             class names come from its weights file or --labels",
                            preview(model_classes),
                            crate::text::nearest(name, model_classes.iter().map(String::as_str))
                                .map(|n| format!("; did you mean '{n}'?"))
                                .unwrap_or_default()
                        ),
                    });
                }
                None => {
                    return Err(TrainError::Classes {
                        path: data.to_path_buf(),
                        problem: format!(
                            "class id {label} is out of range: the model has {} classes \
                             (0..{})",
                            model_classes.len(),
                            model_classes.len()
                        ),
                    });
                }
            }
        }
        let mut clips: Vec<Sample> = dataset
            .items
            .into_iter()
            .map(|s| Sample {
                label: to_model[s.label],
                path: s.path,
            })
            .collect();
        clips.sort_by(|a, b| a.path.cmp(&b.path).then(a.label.cmp(&b.label)));
        Ok(TestSet {
            clips,
            notes: dataset.notes,
            unreadable: dataset.unreadable,
        })
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.clips.iter().map(|s| s.path.clone()).collect()
    }
}

/// The first few names, for a message.
fn preview(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = if names.len() > shown.len() {
        format!(", ... {} in all", names.len())
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

/// One class's line of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassAccuracy {
    pub id: usize,
    pub name: String,
    /// Test clips of this class that were classified.
    pub clips: u64,
    pub correct: u64,
    /// `correct / clips`; null for a class without clips.
    pub top1: Option<f64>,
}

/// A clip that could not be classified (not scored; listed).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BrokenClip {
    pub path: String,
    pub error: String,
}

/// One clip's line of the per-clip CSV.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipResult {
    pub path: String,
    pub truth: usize,
    /// The top class and its score; `None` for a broken clip.
    pub predicted: Option<(usize, f32)>,
    pub error: Option<String>,
}

/// What `kineto eval` reports (`--format json` writes this).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    /// Clips classified (what the accuracies are over).
    pub clips: usize,
    /// Clips that could not be classified (listed in `broken`).
    pub errors: usize,
    pub top1: f64,
    /// Top-`top5_k`: top-5, or top-N over all N classes when the model has fewer than 5.
    pub top5: f64,
    pub top5_k: usize,
    /// The mean over classes with clips of each class's top-1.
    pub mean_class_top1: f64,
    /// Every class of the model, by id.
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[truth][predicted]`, the model's classes by id.
    pub confusion: Vec<Vec<u64>>,
    pub broken: Vec<BrokenClip>,
    /// Clips of the test set not reached (an interrupted run).
    pub not_run: usize,
    #[serde(skip)]
    pub per_clip: Vec<ClipResult>,
}

impl EvalReport {
    /// Scores `records` (from classifying `test.clips` in order, with at least [`TOP_K`] or
    /// all classes ranked; fewer when interrupted) against the true classes. `names` are the
    /// model's classes.
    pub fn new(test: &TestSet, records: &[ClassifyRecord], names: &[String]) -> Self {
        let mut accuracy = RankedAccuracy::new(names.len(), TOP_K);
        let mut broken = Vec::new();
        let mut per_clip = Vec::with_capacity(records.len());
        for (sample, record) in test.clips.iter().zip(records) {
            let ranked: Vec<usize> = record.top_k.iter().map(|r| r.label_id).collect();
            let known = test.unreadable.iter().find(|(p, _)| *p == sample.path);
            let error = match (&record.error, record.top_k.first()) {
                _ if known.is_some() => known.map(|(_, e)| e.clone()),
                (Some(e), _) => Some(e.clone()),
                (None, None) => Some("no prediction".to_string()),
                (None, Some(_)) => None,
            };
            if let Some(error) = &error {
                broken.push(BrokenClip {
                    path: record.path.clone(),
                    error: error.clone(),
                });
            } else {
                accuracy.add(sample.label, &ranked);
            }
            per_clip.push(ClipResult {
                path: record.path.clone(),
                truth: sample.label,
                predicted: record
                    .top_k
                    .first()
                    .filter(|_| error.is_none())
                    .map(|r| (r.label_id, r.score)),
                error,
            });
        }
        let confusion = &accuracy.confusion;
        let support = confusion.support();
        let per_class = confusion
            .per_class_accuracy()
            .into_iter()
            .enumerate()
            .map(|(id, top1)| ClassAccuracy {
                id,
                name: names.get(id).cloned().unwrap_or_default(),
                clips: support[id],
                correct: confusion.get(id, id),
                top1,
            })
            .collect();
        EvalReport {
            clips: accuracy.clips,
            errors: broken.len(),
            top1: accuracy.top1(),
            top5: accuracy.topk(),
            top5_k: accuracy.k,
            mean_class_top1: confusion.mean_class_accuracy(),
            per_class,
            confusion: confusion.rows(),
            broken,
            not_run: test.clips.len().saturating_sub(records.len()),
            per_clip,
        }
    }

    /// "top-5", or "top-3 (of 3 classes)" when there are fewer than 5 classes.
    pub fn top5_name(&self) -> String {
        if self.top5_k < TOP_K {
            format!("top-{} (of {} classes)", self.top5_k, self.top5_k)
        } else {
            format!("top-{TOP_K}")
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report for a terminal: the accuracies, per-class accuracy (classes with clips), the
    /// confusion matrix (when it fits: up to 30 classes with clips or predictions), the broken
    /// clips.
    pub fn to_text(&self) -> String {
        let percent = |v: f64| format!("{:.2}%", 100.0 * v);
        let top1_hits: u64 = self.per_class.iter().map(|c| c.correct).sum();
        let mut out = format!(
            "{} clips scored{}\n",
            self.clips,
            match (self.errors, self.not_run) {
                (0, 0) => String::new(),
                (e, 0) => format!(", {e} broken (listed below, not scored)"),
                (e, n) => format!(", {e} broken, {n} not reached (interrupted)"),
            }
        );
        let top5_name = self.top5_name();
        let w = top5_name.chars().count().max(16);
        let top5_hits = (self.top5 * self.clips as f64).round();
        let _ = writeln!(
            out,
            "{:<w$} {:>8}  ({top1_hits}/{})",
            "top-1",
            percent(self.top1),
            self.clips
        );
        let _ = writeln!(
            out,
            "{top5_name:<w$} {:>8}  ({top5_hits}/{})",
            percent(self.top5),
            self.clips
        );
        let _ = writeln!(
            out,
            "{:<w$} {:>8}",
            "mean class top-1",
            percent(self.mean_class_top1)
        );
        let shown: Vec<&ClassAccuracy> = self.per_class.iter().filter(|c| c.clips > 0).collect();
        let name_w = shown
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        out.push_str("\nper-class top-1\n");
        for c in &shown {
            let _ = writeln!(
                out,
                "{:>4}  {:<name_w$}  {:>8}  ({}/{})",
                c.id,
                c.name,
                c.top1.map_or("-".to_string(), percent),
                c.correct,
                c.clips
            );
        }
        // Rows and columns of the classes that appear (as truth or prediction).
        let used: Vec<usize> = (0..self.confusion.len())
            .filter(|&i| {
                self.confusion[i].iter().any(|&n| n > 0)
                    || self
                        .confusion
                        .iter()
                        .any(|row| row.get(i).is_some_and(|&n| n > 0))
            })
            .collect();
        if !used.is_empty() && used.len() <= 30 {
            out.push_str("\nconfusion matrix (rows: true class, columns: predicted id)\n");
            let cell_w = self
                .confusion
                .iter()
                .flatten()
                .max()
                .map_or(1, |m| m.to_string().len())
                .max(used.iter().map(|i| i.to_string().len()).max().unwrap_or(1))
                .max(3);
            let names_w = used
                .iter()
                .map(|&i| self.per_class[i].name.chars().count())
                .max()
                .unwrap_or(5)
                .max(5);
            let _ = write!(out, "{:>4}  {:<names_w$}", "id", "class");
            for p in &used {
                let _ = write!(out, " {p:>cell_w$}");
            }
            out.push('\n');
            for &t in &used {
                let _ = write!(out, "{t:>4}  {:<names_w$}", self.per_class[t].name);
                for &p in &used {
                    let _ = write!(out, " {:>cell_w$}", self.confusion[t][p]);
                }
                out.push('\n');
            }
        } else if !used.is_empty() {
            let _ = writeln!(
                out,
                "\nconfusion matrix: {} classes, too wide to show (see --format json)",
                used.len()
            );
        }
        if !self.broken.is_empty() {
            out.push_str("\nbroken clips (not scored)\n");
            for b in &self.broken {
                let _ = writeln!(out, "{}: {}", b.path, b.error);
            }
        }
        out
    }

    /// `path,true,predicted,score,correct,error`: one line per clip, class names; a broken
    /// clip has its error and empty prediction cells.
    pub fn per_clip_csv(&self, names: &[String]) -> String {
        let name = |id: usize| csv_field(names.get(id).map_or("", String::as_str));
        let mut out = String::from("path,true,predicted,score,correct,error\n");
        for clip in &self.per_clip {
            let (predicted, score, correct) = match clip.predicted {
                Some((p, score)) => (
                    name(p),
                    format!("{score:.6}"),
                    (p == clip.truth).to_string(),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "{},{},{predicted},{score},{correct},{}",
                csv_field(&clip.path),
                name(clip.truth),
                csv_field(clip.error.as_deref().unwrap_or(""))
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Ranked, Timings};

    fn record(path: &str, ranked: &[usize]) -> ClassifyRecord {
        ClassifyRecord {
            path: path.into(),
            status: "ok",
            error: None,
            top_k: ranked
                .iter()
                .enumerate()
                .map(|(i, &id)| Ranked {
                    rank: i + 1,
                    label_id: id,
                    label: format!("c{id}"),
                    score: 0.5 / (i + 1) as f32,
                })
                .collect(),
            frames: 8,
            indices: Vec::new(),
            timings_ms: Timings::default(),
        }
    }

    #[test]
    fn a_report_scores_classified_clips_and_lists_broken_ones() {
        let names: Vec<String> = ["run", "jump", "swim"].map(String::from).to_vec();
        let sample = |p: &str, label| Sample {
            path: p.into(),
            label,
        };
        let test = TestSet {
            clips: vec![
                sample("a.mp4", 0),
                sample("b.mp4", 1),
                sample("c,d.mp4", 1),
                sample("e.mp4", 2),
                sample("f.mp4", 2),
            ],
            notes: Vec::new(),
            unreadable: Vec::new(),
        };
        let records = vec![
            record("a.mp4", &[0, 1, 2]),
            record("b.mp4", &[0, 1, 2]),
            ClassifyRecord::failed(Path::new("c,d.mp4"), 8, "cannot decode".into()),
            record("e.mp4", &[2, 1, 0]),
        ];
        let report = EvalReport::new(&test, &records, &names);
        assert_eq!((report.clips, report.errors, report.not_run), (3, 1, 1));
        assert!((report.top1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((report.top5, report.top5_k), (1.0, 3));
        assert_eq!(report.top5_name(), "top-3 (of 3 classes)");
        // Classes: run 1/1, jump 0/1, swim 1/1.
        assert!((report.mean_class_top1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(report.per_class[1].top1, Some(0.0));
        assert_eq!(
            report.confusion,
            vec![vec![1, 0, 0], vec![1, 0, 0], vec![0, 0, 1]]
        );
        assert_eq!(report.broken[0].path, "c,d.mp4");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for key in [
            "clips",
            "errors",
            "top1",
            "top5",
            "top5_k",
            "mean_class_top1",
            "per_class",
            "confusion",
            "broken",
        ] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
        let csv = report.per_clip_csv(&names);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "path,true,predicted,score,correct,error");
        assert_eq!(lines[1], "a.mp4,run,run,0.500000,true,");
        assert_eq!(lines[2], "b.mp4,jump,run,0.500000,false,");
        assert_eq!(lines[3], "\"c,d.mp4\",jump,,,,cannot decode");
        assert_eq!(lines.len(), 5);
        let text = report.to_text();
        assert!(text.contains("top-3 (of 3 classes)"), "{text}");
        assert!(text.contains("c,d.mp4: cannot decode"), "{text}");
        assert!(text.contains("1 not reached"), "{text}");
    }

    #[test]
    fn test_sets_match_classes_by_name_or_id() {
        let dir = crate::files::TempDir::new("eval-sets");
        let root = dir.path();
        for (class, clip) in [("jump", "j1.mp4"), ("run", "r1.mp4"), ("run", "r2.mp4")] {
            std::fs::create_dir_all(root.join("data").join(class)).unwrap();
            std::fs::write(root.join("data").join(class).join(clip), b"x").unwrap();
        }
        let data = root.join("data");
        let model: Vec<String> = ["run", "walk", "jump"].map(String::from).to_vec();
        let source = TestSetSource {
            data: &data,
            class_index: None,
            root: None,
        };
        let folders = TestSet::open(source, &model).unwrap();
        let labels: Vec<usize> = folders.clips.iter().map(|s| s.label).collect();
        assert_eq!(labels, [2, 0, 0]);
        // One class is a test set too (training needs two).
        let one = root.join("one");
        std::fs::create_dir_all(one.join("run")).unwrap();
        std::fs::write(one.join("run/r.mp4"), b"x").unwrap();
        let single = TestSet::open(
            TestSetSource {
                data: &one,
                class_index: None,
                root: None,
            },
            &model,
        )
        .unwrap();
        assert_eq!(single.clips[0].label, 0);
        // A list file: ids as they are, paths relative to --root; a missing clip stays (it
        // becomes a broken clip).
        let list = root.join("test.txt");
        std::fs::write(&list, "jump/j1.mp4 2\nrun/r1.mp4 0\nrun/gone.mp4 0\n").unwrap();
        let listed = TestSet::open(
            TestSetSource {
                data: &list,
                class_index: None,
                root: Some(&data),
            },
            &model,
        )
        .unwrap();
        assert_eq!(listed.clips.len(), 3);
        assert_eq!(listed.clips[1].path, data.join("run/gone.mp4"));
        std::fs::write(&list, "jump/j1.mp4 3\nrun/r1.mp4 0\n").unwrap();
        let err = TestSet::open(
            TestSetSource {
                data: &list,
                class_index: None,
                root: Some(&data),
            },
            &model,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("class id 3 is out of range"),
            "{err}"
        );
        // UCF-101's split files: 1-based ids, or the class from the folder.
        let index = root.join("classInd.txt");
        std::fs::write(&index, "1 jump\n2 run\n").unwrap();
        let train = root.join("trainlist01.txt");
        std::fs::write(&train, "jump/j1.mp4 1\nrun/r1.mp4 2\nrun/r2.mp4 2\n").unwrap();
        let test = root.join("testlist01.txt");
        std::fs::write(&test, "jump/j1.mp4\nrun/r1.mp4\r\nrun/r2.mp4\n").unwrap();
        for split in [&train, &test] {
            let ucf = TestSet::open(
                TestSetSource {
                    data: split,
                    class_index: Some(&index),
                    root: Some(&data),
                },
                &model,
            )
            .unwrap();
            assert_eq!(ucf.clips, folders.clips, "{}", split.display());
        }
        // A class the model lacks is named, with the nearest name.
        let short: Vec<String> = ["runs", "jump"].map(String::from).to_vec();
        let err = TestSet::open(source, &short).unwrap_err();
        assert!(
            err.to_string()
                .contains("class 'run' is not a class of the model"),
            "{err}"
        );
        assert!(err.to_string().contains("did you mean 'runs'?"), "{err}");
    }
}
