//! Label sets: Kinetics-400 built in; files as `name` per line, `id name` per line, or CSV with
//! a header (`id,name` / `label_id,label`). Also the labelling project ([`project`]: clips, their
//! labels and stored predictions) and its export to training data ([`export`]).
//!
//! Below `infer`: a project's predictions are `report::Ranked`, which `infer` produces.

use std::path::{Path, PathBuf};

pub mod export;
pub mod project;
pub mod segment_export;

const KINETICS400: &str = include_str!("../../assets/labels/kinetics400.txt");

/// The 400 Kinetics-400 class names, line i = class i (PaddleVideo's label list).
pub fn kinetics400() -> Vec<String> {
    KINETICS400.lines().map(str::to_string).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: line {line}: {problem}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}: no labels in the file", path.display())]
    Empty { path: PathBuf },
}

/// Reads a label file. Lines `id name` must number the classes 0..n without gaps.
pub fn read_label_file(path: &Path) -> Result<Vec<String>, LabelsError> {
    let text = crate::files::read_to_string(path).map_err(|source| LabelsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_labels(&text, path)
}

pub fn parse_labels(text: &str, path: &Path) -> Result<Vec<String>, LabelsError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let Some(&(_, first)) = lines.first() else {
        return Err(LabelsError::Empty {
            path: path.to_path_buf(),
        });
    };
    let csv = first.contains(',') && first.chars().any(|c| c.is_ascii_alphabetic()) && {
        let head = first.to_ascii_lowercase();
        head.starts_with("id,") || head.starts_with("label_id,")
    };
    let body = if csv { &lines[1..] } else { &lines[..] };
    let numbered = body.iter().all(|(_, l)| {
        let sep = if csv { ',' } else { ' ' };
        l.split_once(sep)
            .is_some_and(|(id, _)| id.trim().parse::<usize>().is_ok())
    });
    if !(csv || numbered) {
        return Ok(body.iter().map(|(_, l)| l.to_string()).collect());
    }
    let sep = if csv { ',' } else { ' ' };
    let mut labels = Vec::with_capacity(body.len());
    for &(line, l) in body {
        let (id, name) = l.split_once(sep).unwrap_or((l, ""));
        let id: usize = id.trim().parse().map_err(|_| LabelsError::Line {
            path: path.to_path_buf(),
            line,
            problem: format!("expected `id{sep}name`, found {l:?}"),
        })?;
        if id != labels.len() {
            return Err(LabelsError::Line {
                path: path.to_path_buf(),
                line,
                problem: format!("class id {id} where {} was expected", labels.len()),
            });
        }
        labels.push(name.trim().trim_matches('"').to_string());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinetics_has_400_names() {
        let k = kinetics400();
        assert_eq!(k.len(), 400);
        assert_eq!(k[39], "building_shed");
    }

    #[test]
    fn label_files_in_three_shapes() {
        let p = Path::new("l.txt");
        assert_eq!(parse_labels("run\njump\n", p).unwrap(), ["run", "jump"]);
        assert_eq!(
            parse_labels("0 run fast\n1 jump\n", p).unwrap(),
            ["run fast", "jump"]
        );
        assert_eq!(
            parse_labels("id,name\n0,run\n1,\"jump\"\n", p).unwrap(),
            ["run", "jump"]
        );
        assert!(parse_labels("0 run\n2 jump\n", p).is_err());
        assert!(parse_labels("\n", p).is_err());
    }
}
