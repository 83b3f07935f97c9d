//! Classify and timeline results as a table, JSON and CSV (the CLI's output and the app's
//! exports share these).

use std::fmt::Write as _;

use crate::infer::classify::ClassifyRecord;
use crate::infer::topk::Ranked;

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
}
