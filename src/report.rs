//! Prediction results and their text forms: a ranked class ([`Ranked`]), what `classify`
//! reports for one file ([`ClassifyRecord`]), as a table, JSON and CSV, and a labelled span of
//! a long video ([`Segment`]) with its CSV (the CLI's output and the app's exports share these). The data types live here, below `infer` (which produces them) and
//! `labels` (whose projects store predictions), so both can use them.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One class of a prediction: its rank (1 = best), class id, name and softmax score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub rank: usize,
    pub label_id: usize,
    pub label: String,
    /// A score that is not a finite number (from NaN or infinite logits) is written as JSON
    /// `null` and read back as NaN, so that a file holding one still loads.
    #[serde(deserialize_with = "score_or_nan")]
    pub score: f32,
}

/// A score, or NaN where the JSON has `null`.
fn score_or_nan<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
    Ok(Option::<f32>::deserialize(deserializer)?.unwrap_or(f32::NAN))
}

/// What `classify` reports for one file (the JSON shape of DESIGN.md section 5).
#[derive(Clone, Debug, Serialize)]
pub struct ClassifyRecord {
    pub path: String,
    pub status: &'static str,
    pub error: Option<String>,
    pub top_k: Vec<Ranked>,
    pub frames: usize,
    pub indices: Vec<u32>,
    pub timings_ms: Timings,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timings {
    pub decode: f64,
    pub preprocess: f64,
    pub infer: f64,
}

impl ClassifyRecord {
    pub fn failed(path: &Path, frames: usize, error: String) -> Self {
        Self {
            path: path.display().to_string(),
            status: "error",
            error: Some(error),
            top_k: Vec::new(),
            frames,
            indices: Vec::new(),
            timings_ms: Timings::default(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A span `[start_s, end_s)` of a video with one label: what `infer::segments` proposes from a
/// timeline (`kineto segments`' JSON is a list of these). Times lie on frame boundaries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
    pub label_id: usize,
    pub label: String,
    /// The mean over the merged windows of this label's score (`null` in JSON when not finite).
    #[serde(deserialize_with = "score_or_nan")]
    pub score: f32,
    /// Each class's score averaged over the merged windows, best first.
    pub top_k: Vec<Ranked>,
}

impl Segment {
    pub fn duration_s(&self) -> f64 {
        self.end_s - self.start_s
    }
}

pub const SEGMENTS_CSV_HEADER: &str = "path,start_s,end_s,label_id,label,score";

/// Seconds as written in CSV files: six decimals (a microsecond; a frame boundary at any frame
/// rate below 1000 fps reads back to the same frame), trailing zeros dropped.
pub fn seconds_cell(t: f64) -> String {
    if t.abs() < 5e-7 {
        return "0".to_string();
    }
    let text = format!("{t:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `path,start_s,end_s,label_id,label,score`, one row per segment of the video at `path`.
pub fn segments_csv(path: &str, segments: &[Segment]) -> String {
    let mut out = format!("{SEGMENTS_CSV_HEADER}\n");
    for s in segments {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.6}",
            csv_field(path),
            seconds_cell(s.start_s),
            seconds_cell(s.end_s),
            s.label_id,
            csv_field(&s.label),
            s.score,
        );
    }
    out
}

/// `label:score` pairs joined by `;` (the CSV `top_k` column).
pub fn top_k_cell(top_k: &[Ranked]) -> String {
    top_k
        .iter()
        .map(|r| format!("{}:{:.6}", r.label, r.score))
        .collect::<Vec<_>>()
        .join(";")
}

/// RFC 4180 quoting where needed.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub const CLASSIFY_CSV_HEADER: &str =
    "path,status,label,label_id,score,top_k,decode_ms,preprocess_ms,infer_ms,error";

pub fn classify_csv(records: &[ClassifyRecord]) -> String {
    let mut out = format!("{CLASSIFY_CSV_HEADER}\n");
    for r in records {
        let top = r.top_k.first();
        let t = &r.timings_ms;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.2},{:.2},{:.2},{}",
            csv_field(&r.path),
            r.status,
            csv_field(top.map_or("", |t| t.label.as_str())),
            top.map_or(String::new(), |t| t.label_id.to_string()),
            top.map_or(String::new(), |t| format!("{:.6}", t.score)),
            csv_field(&top_k_cell(&r.top_k)),
            t.decode,
            t.preprocess,
            t.infer,
            csv_field(r.error.as_deref().unwrap_or("")),
        );
    }
    out
}

pub fn classify_json(records: &[ClassifyRecord]) -> String {
    serde_json::to_string_pretty(records).unwrap_or_else(|_| "[]".to_string())
}

/// Aligned `path  label  score  top-k`; error rows show `ERROR <message>`.
pub fn classify_table(records: &[ClassifyRecord]) -> String {
    let path_w = records
        .iter()
        .map(|r| r.path.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let label_w = records
        .iter()
        .filter_map(|r| r.top_k.first().map(|t| t.label.chars().count()))
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:path_w$}  {:label_w$}  {:>6}  top-k\n",
        "path", "label", "score"
    );
    for r in records {
        match (&r.error, r.top_k.first()) {
            (None, Some(top)) => {
                let rest = r
                    .top_k
                    .iter()
                    .skip(1)
                    .map(|t| format!("{} {:.3}", t.label, t.score))
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    out,
                    "{:path_w$}  {:label_w$}  {:>6.3}  {rest}",
                    r.path, top.label, top.score
                );
            }
            (error, _) => {
                let _ = writeln!(
                    out,
                    "{:path_w$}  ERROR {}",
                    r.path,
                    error.as_deref().unwrap_or("no prediction")
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn segments_csv_rows_and_json_round_trip() {
        let seg = Segment {
            start_s: 0.0,
            end_s: 2.0 / 3.0,
            label_id: 4,
            label: "a, b".to_string(),
            score: 0.5,
            top_k: vec![Ranked {
                rank: 1,
                label_id: 4,
                label: "a, b".to_string(),
                score: 0.5,
            }],
        };
        assert_eq!(
            segments_csv("dir/x.mp4", std::slice::from_ref(&seg)),
            "path,start_s,end_s,label_id,label,score\n\
             dir/x.mp4,0,0.666667,4,\"a, b\",0.500000\n"
        );
        assert_eq!(seconds_cell(12.5), "12.5");
        assert_eq!(seconds_cell(-0.0000001), "0");
        let json = serde_json::to_string(&seg).unwrap();
        let back: Segment = serde_json::from_str(&json).unwrap();
        assert_eq!(back, seg);
        let nan: Segment = serde_json::from_str(
            &json.replace("\"score\":0.5,\"top_k\"", "\"score\":null,\"top_k\""),
        )
        .unwrap();
        assert!(nan.score.is_nan());
    }
}
