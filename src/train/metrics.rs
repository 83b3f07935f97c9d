//! Training metrics: top-1/top-5 hits, the confusion matrix and per-class accuracy, the
//! evaluation of a set of logits, and the events a run emits (`kineto train --json`,
//! `metrics.jsonl`, the app's plots).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One event of a run (DESIGN.md section 5). Serialises as `{"event": "step", ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    /// One optimisation step (head-only: one per epoch, the epoch's mean loss).
    Step {
        epoch: usize,
        step: usize,
        loss: f64,
        /// `ce`, and `ce_teacher`, `dml`, `kd` when distilling.
        terms: BTreeMap<String, f64>,
        lr: f64,
        clips_per_s: f64,
        elapsed_s: f64,
    },
    /// End of an epoch; val fields are null without a validation set.
    Epoch {
        epoch: usize,
        train_loss: f64,
        train_top1: f64,
        val_loss: Option<f64>,
        val_top1: Option<f64>,
        val_top5: Option<f64>,
        elapsed_s: f64,
    },
    /// The run finished and its model was written.
    Done {
        output: PathBuf,
        run_dir: PathBuf,
        epochs: usize,
        best_val_top1: Option<f64>,
        elapsed_s: f64,
    },
}

impl TrainEvent {
    /// One JSON line (no newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"event\":\"error\",\"error\":\"{e}\"}}"))
    }
}

/// Rank of the label among the row's scores: 0 when it has the highest score. Ties count
/// against the label (a class scored equal to it and listed earlier ranks before it).
pub fn label_rank(row: &[f32], label: usize) -> usize {
    let Some(&target) = row.get(label) else {
        return usize::MAX;
    };
    row.iter()
        .enumerate()
        .filter(|&(i, &v)| v > target || (v == target && i < label))
        .count()
}

/// Index of the highest score (the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// `counts[truth * classes + predicted]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub classes: usize,
    pub counts: Vec<u64>,
}

impl Confusion {
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        if truth < self.classes && predicted < self.classes {
            self.counts[truth * self.classes + predicted] += 1;
        }
    }

    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// Clips of each true class.
    pub fn support(&self) -> Vec<u64> {
        self.counts
            .chunks_exact(self.classes.max(1))
            .map(|r| r.iter().sum())
            .collect()
    }

    /// Correct / support per true class; `None` for a class without clips.
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        self.support()
            .iter()
            .enumerate()
            .map(|(c, &n)| (n > 0).then(|| self.get(c, c) as f64 / n as f64))
            .collect()
    }

    /// The mean of [`Confusion::per_class_accuracy`] over the classes that have clips (0 when
    /// none has).
    pub fn mean_class_accuracy(&self) -> f64 {
        let accuracies: Vec<f64> = self.per_class_accuracy().into_iter().flatten().collect();
        if accuracies.is_empty() {
            0.0
        } else {
            accuracies.iter().sum::<f64>() / accuracies.len() as f64
        }
    }

    /// The matrix as rows (one per true class).
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks_exact(self.classes.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }

    /// CSV: header `truth\predicted,<names...>`, one row per true class.
    pub fn to_csv(&self, names: &[String]) -> String {
        let name = |i: usize| csv_field(names.get(i).map_or("", String::as_str));
        let mut out = String::from("truth\\predicted");
        for p in 0..self.classes {
            out.push(',');
            out.push_str(&name(p));
        }
        out.push('\n');
        for t in 0..self.classes {
            out.push_str(&name(t));
            for p in 0..self.classes {
                out.push_str(&format!(",{}", self.get(t, p)));
            }
            out.push('\n');
        }
        out
    }

    /// An aligned text table: rows are true classes, columns predicted class ids.
    pub fn to_text(&self, names: &[String]) -> String {
        let name_w = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let cell_w = self
            .counts
            .iter()
            .max()
            .map_or(1, |m| m.to_string().len())
            .max(self.classes.saturating_sub(1).to_string().len())
            .max(3);
        let mut header = format!("{:>3}  {:<name_w$}", "id", "class");
        for p in 0..self.classes {
            header.push_str(&format!(" {:>cell_w$}", p));
        }
        let mut out = header;
        out.push('\n');
        for t in 0..self.classes {
            out.push_str(&format!(
                "{:>3}  {:<name_w$}",
                t,
                names.get(t).map_or("", String::as_str)
            ));
            for p in 0..self.classes {
                out.push_str(&format!(" {:>cell_w$}", self.get(t, p)));
            }
            out.push('\n');
        }
        out
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Accuracy of ranked predictions against true classes, as PaddleVideo's test reports it
/// (`paddle.metric.accuracy`): top-k is the share of clips whose true class is among the first
/// k classes of their prediction, averaged over clips; plus the confusion matrix of the first
/// class, hence per-class and mean class accuracy.
#[derive(Clone, Debug, PartialEq)]
pub struct RankedAccuracy {
    /// The k of top-k: 5, or the number of classes when there are fewer (top-5 of 3 classes
    /// would be top-3, always 100%: it is reported as what it is).
    pub k: usize,
    pub clips: usize,
    pub top1_hits: usize,
    pub topk_hits: usize,
    pub confusion: Confusion,
}

impl RankedAccuracy {
    /// `k` is capped at `classes`.
    pub fn new(classes: usize, k: usize) -> Self {
        Self {
            k: k.min(classes).max(1),
            clips: 0,
            top1_hits: 0,
            topk_hits: 0,
            confusion: Confusion::new(classes),
        }
    }

    /// One clip: its true class and its prediction's class ids, best first.
    pub fn add(&mut self, truth: usize, ranked: &[usize]) {
        self.clips += 1;
        let first = ranked.first().copied();
        self.top1_hits += usize::from(first == Some(truth));
        self.topk_hits += usize::from(ranked.iter().take(self.k).any(|&c| c == truth));
        if let Some(first) = first {
            self.confusion.add(truth, first);
        }
    }

    pub fn top1(&self) -> f64 {
        share(self.top1_hits, self.clips)
    }

    pub fn topk(&self) -> f64 {
        share(self.topk_hits, self.clips)
    }
}

fn share(hits: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        hits as f64 / of as f64
    }
}

/// Loss and accuracy of a set of logits against labels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub clips: usize,
    /// Mean softmax cross-entropy.
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    pub confusion: Confusion,
}

impl Evaluation {
    /// `logits` `[N, classes]` row-major, `labels` `[N]`.
    pub fn of(logits: &[f32], classes: usize, labels: &[usize]) -> Self {
        let mut confusion = Confusion::new(classes);
        let (mut loss, mut top1, mut top5) = (0.0, 0usize, 0usize);
        for (row, &label) in logits.chunks_exact(classes.max(1)).zip(labels) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&z| (z as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            loss += lse - row.get(label).copied().unwrap_or(0.0) as f64;
            let rank = label_rank(row, label);
            top1 += usize::from(rank < 1);
            top5 += usize::from(rank < 5);
            confusion.add(label, argmax(row));
        }
        let n = labels.len().max(1) as f64;
        Self {
            clips: labels.len(),
            loss: loss / n,
            top1: top1 as f64 / n,
            top5: top5 as f64 / n,
            confusion,
        }
    }

    /// The final report: top-1/top-5, the confusion matrix, per-class accuracy.
    pub fn report(&self, names: &[String]) -> String {
        let mut out = format!(
            "val: {} clips, loss {:.4}, top-1 {:.1}%, top-5 {:.1}%\n\nconfusion matrix (rows: true class, columns: predicted id)\n",
            self.clips,
            self.loss,
            100.0 * self.top1,
            100.0 * self.top5
        );
        out.push_str(&self.confusion.to_text(names));
        out.push_str("\nper-class accuracy\n");
        let name_w = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let support = self.confusion.support();
        for (c, acc) in self.confusion.per_class_accuracy().iter().enumerate() {
            let name = names.get(c).map_or("", String::as_str);
            match acc {
                Some(a) => out.push_str(&format!(
                    "{c:>3}  {name:<name_w$}  {:>5.1}%  ({}/{})\n",
                    100.0 * a,
                    self.confusion.get(c, c),
                    support[c]
                )),
                None => out.push_str(&format!("{c:>3}  {name:<name_w$}      -  (no clips)\n")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_confusion() {
        let logits = [0.1, 0.9, 0.0, 2.0, 1.0, 0.5, 0.0, 0.0, 1.0];
        let e = Evaluation::of(&logits, 3, &[1, 1, 2]);
        assert_eq!(e.confusion.get(1, 1), 1);
        assert_eq!(e.confusion.get(1, 0), 1);
        assert_eq!(e.confusion.get(2, 2), 1);
        assert!((e.top1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.top5, 1.0);
        assert_eq!(
            e.confusion.per_class_accuracy(),
            vec![None, Some(0.5), Some(1.0)]
        );
        let csv = e.confusion.to_csv(&["a".into(), "b,c".into(), "d".into()]);
        assert!(csv.starts_with("truth\\predicted,a,\"b,c\",d\n"), "{csv}");
        let ev = TrainEvent::Epoch {
            epoch: 1,
            train_loss: 1.0,
            train_top1: 0.5,
            val_loss: None,
            val_top1: None,
            val_top5: None,
            elapsed_s: 0.1,
        };
        assert!(ev.to_json_line().starts_with("{\"event\":\"epoch\""));
    }

    #[test]
    fn ranked_accuracy_is_paddlevideos_top_k_averaged_over_clips() {
        let mut acc = RankedAccuracy::new(7, 5);
        assert_eq!(acc.k, 5);
        acc.add(0, &[0, 1, 2, 3, 4]); // top-1
        acc.add(1, &[0, 2, 3, 4, 1]); // 5th: a top-5 hit only
        acc.add(1, &[0, 2, 3, 4, 5, 1]); // 6th: neither
        acc.add(2, &[2, 0]); // top-1
        assert_eq!((acc.clips, acc.top1_hits, acc.topk_hits), (4, 2, 3));
        assert_eq!(acc.top1(), 0.5);
        assert_eq!(acc.topk(), 0.75);
        // Per class: 0 -> 1/1, 1 -> 0/2, 2 -> 1/1; the mean over classes with clips is 2/3,
        // unlike the clip average (1/2).
        assert_eq!(
            acc.confusion.per_class_accuracy()[..4],
            [Some(1.0), Some(0.0), Some(1.0), None]
        );
        assert!((acc.confusion.mean_class_accuracy() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(acc.confusion.rows()[1], [2, 0, 0, 0, 0, 0, 0]);
        // Fewer classes than 5: top-k over all of them.
        let mut three = RankedAccuracy::new(3, 5);
        assert_eq!(three.k, 3);
        three.add(2, &[0, 1, 2]);
        assert_eq!((three.top1(), three.topk()), (0.0, 1.0));
        // Nothing measured: zeros, not NaN.
        let none = RankedAccuracy::new(3, 5);
        assert_eq!((none.top1(), none.topk()), (0.0, 0.0));
        assert_eq!(none.confusion.mean_class_accuracy(), 0.0);
    }
}
