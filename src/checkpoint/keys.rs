//! Checkpoint key layouts and their canonical form (`backbone.*`, `head.*`):
//! - plain `Recognizer2D` (`backbone.*`, `head.*`);
//! - DML `RecognizerDistillation`: each model an `nn.Sequential(backbone, head)` under its
//!   name, `Teacher.0.*`, `Teacher.1.*`, `Student.0.*` (`Student.1.*` when the head has weights);
//! - an extracted student (`*_student.pdparams`): `Student.` cut, so `0.*` and `1.*`.
//!
//! Non-parameter entries such as `StructuredToParameterName@@` never reach the store.

use serde::Serialize;

use super::ParamStore;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Plain,
    Dml,
    Student,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Plain => "plain",
            Layout::Dml => "dml",
            Layout::Student => "student",
        }
    }
}

/// Which model of a DML checkpoint to take. Other layouts hold one model only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Student,
    Teacher,
}

/// Reads the layout from the keys; `None` when no key fits any of them.
pub fn detect_layout(store: &ParamStore) -> Option<Layout> {
    let mut names = store.names();
    let first = names.next()?;
    let all = |prefixes: &[&str]| {
        store
            .names()
            .all(|k| prefixes.iter().any(|p| k.starts_with(p)))
    };
    if first.starts_with("backbone.") || first.starts_with("head.") {
        all(&["backbone.", "head."]).then_some(Layout::Plain)
    } else if first.starts_with("Student.") || first.starts_with("Teacher.") {
        all(&["Student.", "Teacher."]).then_some(Layout::Dml)
    } else if first.starts_with("0.") || first.starts_with("1.") {
        all(&["0.", "1."]).then_some(Layout::Student)
    } else {
        None
    }
}

/// The store in canonical keys, for the chosen model; an error names what is wrong.
pub fn canonicalize(store: &ParamStore, role: Role) -> Result<(Layout, ParamStore), String> {
    let layout = detect_layout(store).ok_or_else(|| {
        let first = store.names().next().unwrap_or("");
        if first.is_empty() {
            "the checkpoint holds no parameters".to_string()
        } else {
            format!(
                "unknown key layout (first key {first}); expected backbone.*/head.*, \
                 Student.*/Teacher.* (DML) or 0.*/1.* (extracted student)"
            )
        }
    })?;
    let prefix = match (layout, role) {
        (Layout::Plain, Role::Teacher) | (Layout::Student, Role::Teacher) => {
            return Err(format!(
                "--teacher needs a DML checkpoint; this one has the {} layout",
                layout.as_str()
            ));
        }
        (Layout::Plain, Role::Student) => return Ok((layout, store.clone())),
        (Layout::Student, Role::Student) => "",
        (Layout::Dml, Role::Student) => "Student.",
        (Layout::Dml, Role::Teacher) => "Teacher.",
    };
    let mut out = ParamStore::new();
    for (key, tensor) in store.iter() {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        let canonical = if let Some(k) = rest.strip_prefix("0.") {
            format!("backbone.{k}")
        } else if let Some(k) = rest.strip_prefix("1.") {
            format!("head.{k}")
        } else {
            return Err(format!(
                "unexpected key {key} in a {} checkpoint",
                layout.as_str()
            ));
        };
        out.insert(canonical, tensor.clone());
    }
    if out.is_empty() {
        return Err(format!(
            "the DML checkpoint has no {}",
            prefix.trim_end_matches('.')
        ));
    }
    Ok((layout, out))
}

/// `store` with its keys in `order` (PaddleVideo's state-dict order of the model). Keys that
/// `order` lacks follow: a rep block's training-form `P.dw_conv.{weight,bias}` right after that
/// block's `P.dw_conv_list.*` keys (where PaddleVideo keeps them), any other at the end in their
/// own order.
pub fn reorder(store: &ParamStore, order: &[String]) -> ParamStore {
    let mut keys: Vec<&str> = order
        .iter()
        .map(String::as_str)
        .filter(|k| store.contains(k))
        .collect();
    for key in store.names() {
        if keys.contains(&key) {
            continue;
        }
        let block = key
            .strip_suffix(".dw_conv.weight")
            .or_else(|| key.strip_suffix(".dw_conv.bias"));
        // PaddleVideo's order is the branches, then `dw_conv.weight`, then `dw_conv.bias`.
        let after = block.and_then(|p| {
            let list = format!("{p}.dw_conv_list.");
            let weight = format!("{p}.dw_conv.weight");
            let is_bias = key.ends_with(".bias");
            keys.iter()
                .rposition(|k| k.starts_with(&list) || (is_bias && *k == weight))
        });
        match after {
            Some(i) => keys.insert(i + 1, key),
            None => keys.push(key),
        }
    }
    let mut out = ParamStore::new();
    for key in keys {
        if let Some(t) = store.get(key) {
            out.insert(key, t.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::ParamTensor;

    fn store(keys: &[&str]) -> ParamStore {
        let mut s = ParamStore::new();
        for k in keys {
            s.insert(
                *k,
                ParamTensor {
                    shape: vec![1],
                    data: vec![0.0],
                },
            );
        }
        s
    }

    #[test]
    fn layouts_are_recognised_and_mapped() {
        let dml = store(&[
            "Teacher.0.conv1_1._conv.weight",
            "Teacher.1.fc.bias",
            "Student.0.stem.0.conv.weight",
        ]);
        assert_eq!(detect_layout(&dml), Some(Layout::Dml));
        let (_, s) = canonicalize(&dml, Role::Student).unwrap();
        assert_eq!(
            s.names().collect::<Vec<_>>(),
            ["backbone.stem.0.conv.weight"]
        );
        let (_, t) = canonicalize(&dml, Role::Teacher).unwrap();
        assert_eq!(
            t.names().collect::<Vec<_>>(),
            ["backbone.conv1_1._conv.weight", "head.fc.bias"]
        );

        let student = store(&["0.stem.0.conv.weight", "0.fc.bias"]);
        assert_eq!(detect_layout(&student), Some(Layout::Student));
        let (_, s) = canonicalize(&student, Role::Student).unwrap();
        assert_eq!(
            s.names().collect::<Vec<_>>(),
            ["backbone.stem.0.conv.weight", "backbone.fc.bias"]
        );
        assert!(canonicalize(&student, Role::Teacher).is_err());

        assert!(canonicalize(&store(&["backbone.a", "weird.b"]), Role::Student).is_err());
        assert!(canonicalize(&ParamStore::new(), Role::Student).is_err());
    }

    #[test]
    fn reorder_follows_the_model_and_places_rep_dw_conv() {
        let s = store(&[
            "b.x",
            "b.s.dw_conv.bias",
            "b.s.dw_conv.weight",
            "b.s.dw_conv_list.1.w",
            "b.s.dw_conv_list.0.w",
            "b.s.se.w",
            "z.extra",
            "a.first",
        ]);
        let order: Vec<String> = [
            "a.first",
            "b.s.dw_conv_list.0.w",
            "b.s.dw_conv_list.1.w",
            "b.s.se.w",
            "b.x",
            "not.in.store",
        ]
        .map(String::from)
        .to_vec();
        let r = reorder(&s, &order);
        assert_eq!(
            r.names().collect::<Vec<_>>(),
            [
                "a.first",
                "b.s.dw_conv_list.0.w",
                "b.s.dw_conv_list.1.w",
                "b.s.dw_conv.weight",
                "b.s.dw_conv.bias",
                "b.s.se.w",
                "b.x",
                "z.extra"
            ]
        );
    }
}
