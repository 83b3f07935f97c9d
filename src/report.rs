//! Prediction results and their text forms: a ranked class ([`Ranked`]), what `classify`
//! reports for one file ([`ClassifyRecord`]), as a table, JSON and CSV, and a labelled span of
//! a long video ([`Segment`]) with its CSV (the CLI's output and the app's exports share these). The data types live here, below `infer` (which produces them) and
//! `labels` (whose projects store predictions), so both can use them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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

/// What `classify` reports for one file (the JSON shape of DESIGN.md section 5). Read back
/// (`kineto merge`, `classify --resume`) from that same shape.
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub decode: f64,
    pub preprocess: f64,
    pub infer: f64,
}

/// A record as written, before its status is checked.
#[derive(Deserialize)]
struct RecordIn {
    path: String,
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    top_k: Vec<Ranked>,
    #[serde(default)]
    frames: usize,
    #[serde(default)]
    indices: Vec<u32>,
    #[serde(default)]
    timings_ms: Timings,
}

impl<'de> Deserialize<'de> for ClassifyRecord {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let record = RecordIn::deserialize(deserializer)?;
        Self::try_from(record).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<RecordIn> for ClassifyRecord {
    type Error = String;

    fn try_from(r: RecordIn) -> Result<Self, String> {
        let status = match r.status.as_str() {
            "ok" => "ok",
            "error" => "error",
            other => return Err(format!("status {other:?} is neither \"ok\" nor \"error\"")),
        };
        if status == "ok" && r.error.is_some() {
            return Err("status \"ok\" with an error".into());
        }
        Ok(Self {
            path: r.path,
            status,
            error: match (status, r.error) {
                ("error", None) => Some("no prediction".into()),
                (_, e) => e,
            },
            top_k: r.top_k,
            frames: r.frames,
            indices: r.indices,
            timings_ms: r.timings_ms,
        })
    }
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

/// One record as a JSON line, newline included (`classify --format jsonl`: written and flushed
/// as each clip finishes).
pub fn classify_jsonl_line(record: &ClassifyRecord) -> String {
    let mut line = serde_json::to_string(record).unwrap_or_else(|e| {
        let failed = ClassifyRecord::failed(
            Path::new(&record.path),
            record.frames,
            format!("cannot encode the record: {e}"),
        );
        serde_json::to_string(&failed).unwrap_or_default()
    });
    line.push('\n');
    line
}

pub fn classify_jsonl(records: &[ClassifyRecord]) -> String {
    records.iter().map(classify_jsonl_line).collect()
}

/// Why a file of classify records cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A line of a JSON-lines file that is not a record (the torn last line excepted).
    #[error("{}: line {line}: not a classify record: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    /// A JSON file that is not an array of classify records.
    #[error("{}: not classify output (a JSON array of records, or JSON lines): {problem}", path.display())]
    Json { path: PathBuf, problem: String },
}

/// The records of a JSON-lines file and where its complete part ends.
#[derive(Debug)]
pub struct JsonLines {
    pub records: Vec<ClassifyRecord>,
    /// Bytes up to the end of the last complete line: what a resumed run keeps.
    pub complete_len: usize,
    /// The number of a last line without its newline (a run killed while writing it): left out
    /// of `records`, whatever it holds.
    pub torn: Option<usize>,
}

/// Reads `classify --format jsonl` output: one record per line, blank lines ignored. A last
/// line without its newline is torn (see [`JsonLines::torn`]); any other line that is not a
/// record is an error naming it.
pub fn read_jsonl(text: &str, path: &Path) -> Result<JsonLines, ReportError> {
    let mut records = Vec::new();
    let mut complete_len = 0;
    let mut torn = None;
    for (i, piece) in text.split_inclusive('\n').enumerate() {
        if !piece.ends_with('\n') {
            // Torn only if it is the start of a record: a file of something else is an error.
            if !piece.trim().is_empty() && !piece.trim_start().starts_with('{') {
                return Err(ReportError::Line {
                    path: path.to_path_buf(),
                    line: i + 1,
                    problem: format!("expected a JSON object, found {:?}", one_line_start(piece)),
                });
            }
            torn = Some(i + 1);
            break;
        }
        complete_len += piece.len();
        let line = piece.trim();
        if line.is_empty() {
            continue;
        }
        let record = serde_json::from_str(line).map_err(|e| ReportError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            problem: e.to_string(),
        })?;
        records.push(record);
    }
    Ok(JsonLines {
        records,
        complete_len,
        torn,
    })
}

/// The first few characters of a line, for a message.
fn one_line_start(text: &str) -> String {
    let mut start: String = text.chars().take(40).filter(|c| !c.is_control()).collect();
    if text.chars().count() > 40 {
        start.push_str("...");
    }
    start
}

/// Classify output in either shape: a JSON array (`--format json`) or JSON lines (`--format
/// jsonl`, whose torn last line is reported in [`JsonLines::torn`]).
pub fn read_records(text: &str, path: &Path) -> Result<JsonLines, ReportError> {
    if text.trim_start().starts_with('[') {
        let records: Vec<ClassifyRecord> =
            serde_json::from_str(text).map_err(|e| ReportError::Json {
                path: path.to_path_buf(),
                problem: e.to_string(),
            })?;
        Ok(JsonLines {
            records,
            complete_len: text.len(),
            torn: None,
        })
    } else {
        read_jsonl(text, path)
    }
}

/// Records of several runs (the shards of one) as one list in the order one run over all
/// their files prints: sorted by path as `classify` sorts its inputs. A path met more than
/// once is kept once (its first successful record, else its first); the second value counts
/// the records left out so.
pub fn merge_records(runs: Vec<Vec<ClassifyRecord>>) -> (Vec<ClassifyRecord>, usize) {
    let mut all: Vec<ClassifyRecord> = runs.into_iter().flatten().collect();
    all.sort_by(|a, b| Path::new(&a.path).cmp(Path::new(&b.path)));
    let mut merged: Vec<ClassifyRecord> = Vec::with_capacity(all.len());
    let mut duplicates = 0;
    for record in all {
        match merged.last_mut() {
            Some(last) if last.path == record.path => {
                duplicates += 1;
                if !last.is_ok() && record.is_ok() {
                    *last = record;
                }
            }
            _ => merged.push(record),
        }
    }
    (merged, duplicates)
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

    fn ok(path: &str, label: &str) -> ClassifyRecord {
        ClassifyRecord {
            path: path.into(),
            status: "ok",
            error: None,
            top_k: vec![Ranked {
                rank: 1,
                label_id: 0,
                label: label.into(),
                score: 0.5,
            }],
            frames: 8,
            indices: vec![1, 2],
            timings_ms: Timings::default(),
        }
    }

    #[test]
    fn jsonl_reads_back_and_drops_a_torn_last_line() {
        let failed = ClassifyRecord::failed(Path::new("b.mp4"), 8, "broken".into());
        let text = classify_jsonl(&[ok("a.mp4", "run"), failed]);
        let read = read_jsonl(&text, Path::new("o.jsonl")).unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.records[1].error.as_deref(), Some("broken"));
        assert_eq!(read.records[1].status, "error");
        assert_eq!(read.complete_len, text.len());
        assert_eq!(read.torn, None);
        let torn = format!("{text}{{\"path\":\"c.mp4\",\"sta");
        let read = read_jsonl(&torn, Path::new("o.jsonl")).unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!((read.complete_len, read.torn), (text.len(), Some(3)));
        // A complete record without its newline is torn too: the run never finished it.
        let unterminated = text.trim_end();
        let read = read_jsonl(unterminated, Path::new("o.jsonl")).unwrap();
        assert_eq!((read.records.len(), read.torn), (1, Some(2)));
        assert!(read_jsonl("not a record", Path::new("o.jsonl")).is_err());
        let bad = format!("{text}nonsense\n");
        let err = read_jsonl(&bad, Path::new("o.jsonl")).unwrap_err();
        assert!(err.to_string().starts_with("o.jsonl: line 3: "), "{err}");
        let odd = text.replace("\"ok\"", "\"maybe\"");
        assert!(read_jsonl(&odd, Path::new("o.jsonl")).is_err());
    }

    #[test]
    fn json_arrays_and_lines_both_read() {
        let records = [ok("a.mp4", "run")];
        let array = read_records(&classify_json(&records), Path::new("o.json")).unwrap();
        let lines = read_records(&classify_jsonl(&records), Path::new("o.jsonl")).unwrap();
        assert_eq!(array.records[0].path, "a.mp4");
        assert_eq!(lines.records[0].top_k, records[0].top_k);
        assert!(read_records("[{", Path::new("o.json")).is_err());
    }

    #[test]
    fn merge_orders_by_path_as_classify_does_and_keeps_each_path_once() {
        // Path order, not string order: "a/b.mp4" (components a, b.mp4) sorts before
        // "a-b.mp4", though '-' < '/' as characters.
        let shard0 = vec![ok("a-b.mp4", "x"), ok("c.mp4", "x")];
        let shard1 = vec![
            ok("a/b.mp4", "x"),
            ClassifyRecord::failed(Path::new("c.mp4"), 8, "e".into()),
        ];
        let shard2 = vec![ClassifyRecord::failed(Path::new("b.mp4"), 8, "e".into())];
        let (merged, duplicates) = merge_records(vec![shard1, shard0, shard2]);
        let paths: Vec<&str> = merged.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["a/b.mp4", "a-b.mp4", "b.mp4", "c.mp4"]);
        assert!(merged[3].is_ok());
        assert_eq!(duplicates, 1);
    }
}
