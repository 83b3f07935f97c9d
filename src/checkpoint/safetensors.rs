//! safetensors, Kineto's native weights format: the canonical PaddleVideo tensor names
//! (`backbone.*`, `head.*`; the fused form's names are those of `model::fuse`), all float32, and
//! a `__metadata__` table of strings (DESIGN.md section 8):
//!
//! | key | value |
//! | --- | --- |
//! | `format`, `format_version` | `kineto`, `1` |
//! | `model` | `pptsm_v2` or `pptsm_resnet` |
//! | `depth` | ResNet depth (`50`); absent for PP-TSMv2 |
//! | `form` | `training` or `fused` |
//! | `num_seg` | frames per clip: fixed by attention, else the default the model was published with |
//! | `attention` | `true` or `false` |
//! | `num_classes` | number of classes |
//! | `class_names` | JSON array of `num_classes` strings (absent when unknown) |
//! | `label_set` | name of the label set (`kinetics400`, a labels file's name; absent when unknown) |
//! | `input_size`, `short_side` | `224`, `256` |
//! | `mean`, `std` | JSON arrays of three numbers (RGB, on 0..1 values) |
//! | `provenance` | JSON object: source, its file and sha256, fine-tuning data, epochs, date, version |
//!
//! A safetensors file without `format = kineto` (written by another tool) still loads: its tensors
//! are used and the architecture is read from their names and shapes, as for `.pdparams`.
#![deny(clippy::indexing_slicing)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

pub use ::safetensors::tensor::Dtype;
use ::safetensors::tensor::{SafeTensors, View};

use super::{CheckpointError, ParamStore, ParamTensor, printable, write_file_atomic};
use crate::model::arch::{Form, ModelKind};
use crate::video::transform::{INPUT_SIZE, MEAN, SHORT_SIDE, STD};

/// `format` value of Kineto's files.
pub const FORMAT: &str = "kineto";
/// The `format_version` this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Kineto's metadata, typed.
#[derive(Clone, Debug, PartialEq)]
pub struct KinetoMeta {
    pub model: ModelKind,
    pub depth: Option<usize>,
    pub form: Form,
    pub num_seg: usize,
    pub attention: bool,
    pub num_classes: usize,
    pub class_names: Option<Vec<String>>,
    pub label_set: Option<String>,
    pub input_size: usize,
    pub short_side: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub provenance: serde_json::Value,
}

/// `[0.485,0.456,0.406]`: each value in its shortest f32 form (serde_json would widen to f64).
fn f32_array(values: &[f32]) -> String {
    let parts: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn model_from_str(s: &str) -> Option<ModelKind> {
    match s {
        "pptsm_v2" => Some(ModelKind::PptsmV2),
        "pptsm_resnet" => Some(ModelKind::PptsmResnet),
        "pptsm_mv2" => Some(ModelKind::PptsmMv2),
        "pptsm_mv3" => Some(ModelKind::PptsmMv3),
        _ => None,
    }
}

fn form_from_str(s: &str) -> Option<Form> {
    match s {
        "training" => Some(Form::Training),
        "fused" => Some(Form::Fused),
        _ => None,
    }
}

impl KinetoMeta {
    /// The `__metadata__` table.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("format", FORMAT.into());
        put("format_version", FORMAT_VERSION.to_string());
        put("model", self.model.as_str().into());
        if let Some(depth) = self.depth {
            put("depth", depth.to_string());
        }
        put("form", self.form.as_str().into());
        put("num_seg", self.num_seg.to_string());
        put("attention", self.attention.to_string());
        put("num_classes", self.num_classes.to_string());
        if let Some(names) = &self.class_names {
            put(
                "class_names",
                serde_json::Value::from(names.clone()).to_string(),
            );
        }
        if let Some(set) = &self.label_set {
            put("label_set", set.clone());
        }
        put("input_size", self.input_size.to_string());
        put("short_side", self.short_side.to_string());
        put("mean", f32_array(&self.mean));
        put("std", f32_array(&self.std));
        put("provenance", self.provenance.to_string());
        m
    }

    /// Reads the table. `Ok(None)` when it is not Kineto's (no `format = kineto`); an error names
    /// the key that is missing or malformed, or a newer `format_version`.
    pub fn from_map(m: &HashMap<String, String>) -> Result<Option<Self>, String> {
        if m.get("format").map(String::as_str) != Some(FORMAT) {
            return Ok(None);
        }
        let get = |k: &str| {
            m.get(k)
                .map(String::as_str)
                .ok_or_else(|| format!("metadata has no {k}"))
        };
        let bad = |k: &str, v: &str| format!("metadata {k} = {:?} is not valid", printable(v));
        let number = |k: &str| -> Result<usize, String> {
            let v = get(k)?;
            v.trim().parse::<usize>().map_err(|_| bad(k, v))
        };
        let version = get("format_version")?;
        let version: u32 = version
            .trim()
            .parse()
            .map_err(|_| bad("format_version", version))?;
        if version > FORMAT_VERSION {
            return Err(format!(
                "written by a newer Kineto (format_version {version}); this one reads version \
                 {FORMAT_VERSION}"
            ));
        }
        let model = get("model")?;
        let model = model_from_str(model).ok_or_else(|| bad("model", model))?;
        let form = get("form")?;
        let form = form_from_str(form).ok_or_else(|| bad("form", form))?;
        let attention = match get("attention")? {
            "true" => true,
            "false" => false,
            other => return Err(bad("attention", other)),
        };
        let depth = match m.get("depth") {
            Some(v) => Some(v.trim().parse::<usize>().map_err(|_| bad("depth", v))?),
            None => None,
        };
        let class_names = match m.get("class_names") {
            Some(v) => Some(
                serde_json::from_str::<Vec<String>>(v)
                    .map_err(|_| "metadata class_names is not a JSON array of strings")?,
            ),
            None => None,
        };
        let triple = |k: &str, default: [f32; 3]| -> Result<[f32; 3], String> {
            match m.get(k) {
                Some(v) => serde_json::from_str::<[f32; 3]>(v).map_err(|_| bad(k, v)),
                None => Ok(default),
            }
        };
        let provenance = match m.get("provenance") {
            Some(v) => serde_json::from_str(v).map_err(|_| bad("provenance", v))?,
            None => serde_json::Value::Null,
        };
        let optional_number = |k: &str, default: usize| match m.get(k) {
            Some(_) => number(k),
            None => Ok(default),
        };
        let meta = KinetoMeta {
            model,
            depth,
            form,
            num_seg: number("num_seg")?,
            attention,
            num_classes: number("num_classes")?,
            class_names,
            label_set: m.get("label_set").cloned(),
            input_size: optional_number("input_size", INPUT_SIZE as usize)?,
            short_side: optional_number("short_side", SHORT_SIDE as usize)?,
            mean: triple("mean", MEAN)?,
            std: triple("std", STD)?,
            provenance,
        };
        if let Some(names) = &meta.class_names
            && names.len() != meta.num_classes
        {
            return Err(format!(
                "metadata has {} class_names for num_classes {}",
                names.len(),
                meta.num_classes
            ));
        }
        Ok(Some(meta))
    }
}

/// The prefix of the tensors of a quantized model's int8 layers (`checkpoint::int8`), which
/// may be int8, uint8 or float32 and are kept apart from the model's float tensors.
pub const INT8_PREFIX: &str = "int8.";

/// A tensor as stored: its dtype, shape and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// What a safetensors file holds.
#[derive(Clone, Debug)]
pub struct SafetensorsFile {
    /// Tensors in file (offset) order.
    pub store: ParamStore,
    /// The `int8.*` tensors, by name.
    pub int8: std::collections::BTreeMap<String, RawTensor>,
    /// Kineto's metadata, when the file is Kineto's.
    pub meta: Option<KinetoMeta>,
    /// The raw `__metadata__` table (empty when there is none).
    pub raw_metadata: HashMap<String, String>,
}

/// Reads and parses a `.safetensors` file.
pub fn read_safetensors(path: &Path) -> Result<SafetensorsFile, CheckpointError> {
    let bytes = crate::files::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    })?;
    parse_safetensors(&bytes, path)
}

/// Parses safetensors bytes; `path` is only used in messages. Every tensor must be float32.
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<SafetensorsFile, CheckpointError> {
    let layout = |problem: String| CheckpointError::Layout {
        path: path.to_path_buf(),
        problem,
    };
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| layout(format!("not a valid safetensors file: {e}")))?;
    let raw_metadata = header.metadata().clone().unwrap_or_default();
    let meta = KinetoMeta::from_map(&raw_metadata).map_err(layout)?;
    let tensors = SafeTensors::deserialize(bytes)
        .map_err(|e| layout(format!("not a valid safetensors file: {e}")))?;
    let mut store = ParamStore::new();
    let mut int8 = std::collections::BTreeMap::new();
    for name in header.offset_keys() {
        let entry = |problem: String| CheckpointError::Entry {
            path: path.to_path_buf(),
            key: printable(&name),
            problem,
        };
        let view = tensors
            .tensor(&name)
            .map_err(|e| entry(format!("cannot read: {e}")))?;
        if name.starts_with(INT8_PREFIX) {
            let raw = RawTensor {
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                bytes: view.data().to_vec(),
            };
            int8.insert(name, raw);
            continue;
        }
        if view.dtype() != Dtype::F32 {
            return Err(entry(format!(
                "dtype {:?}; Kineto's safetensors hold float32 tensors only",
                view.dtype()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| <[u8; 4]>::try_from(c).map_or(0.0, f32::from_le_bytes))
            .collect();
        let tensor =
            ParamTensor::new(view.shape().to_vec(), data).map_err(|e| entry(format!("{e}")))?;
        store.insert(name, tensor);
    }
    Ok(SafetensorsFile {
        store,
        int8,
        meta,
        raw_metadata,
    })
}

/// A `ParamTensor` as a safetensors view: little-endian f32 bytes made on demand, so encoding
/// holds at most one tensor's copy at a time beside the output.
struct F32View<'a>(&'a ParamTensor);

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.0.data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.0.data.len().saturating_mul(4)
    }
}

/// Encodes `store` (tensors sorted by name, as the format does) with `meta` as `__metadata__`.
pub fn encode_safetensors(
    store: &ParamStore,
    meta: Option<&KinetoMeta>,
) -> Result<Vec<u8>, String> {
    let views = store.iter().map(|(name, t)| (name, F32View(t)));
    ::safetensors::serialize(views, meta.map(KinetoMeta::to_map))
        .map_err(|e| format!("cannot encode safetensors: {e}"))
        .and_then(canonical_header)
}

/// The same file with its JSON header's keys sorted (the metadata table's included): the
/// encoder writes the metadata in a hash map's order, which changes from run to run, and the
/// same tensors and metadata should give the same bytes. The data section is unchanged (its
/// offsets are relative to its start).
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    use std::collections::BTreeMap;
    let bad = || "cannot encode safetensors: the encoder's header is unreadable".to_string();
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let end = usize::try_from(u64::from_le_bytes(len_bytes))
        .ok()
        .and_then(|n| n.checked_add(8))
        .ok_or_else(bad)?;
    let header = bytes.get(8..end).ok_or_else(bad)?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|_| bad())?;
    let header: BTreeMap<String, serde_json::Value> = header
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<String, serde_json::Value> = map.into_iter().collect();
                (key, serde_json::to_value(sorted).unwrap_or_default())
            }
            other => (key, other),
        })
        .collect();
    let mut text = serde_json::to_string(&header).map_err(|_| bad())?;
    // The data starts 8-byte aligned, as the encoder leaves it.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let data = bytes.get(end..).ok_or_else(bad)?;
    let mut out = Vec::with_capacity(8 + text.len() + data.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

/// A tensor to encode: one of the model's (f32) or one stored as it is.
enum AnyView<'a> {
    F32(F32View<'a>),
    Raw(&'a RawTensor),
}

impl View for AnyView<'_> {
    fn dtype(&self) -> Dtype {
        match self {
            AnyView::F32(v) => v.dtype(),
            AnyView::Raw(v) => v.dtype(),
        }
    }

    fn shape(&self) -> &[usize] {
        match self {
            AnyView::F32(v) => v.shape(),
            AnyView::Raw(v) => &v.shape,
        }
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self {
            AnyView::F32(v) => v.data(),
            AnyView::Raw(v) => Cow::Borrowed(&v.bytes),
        }
    }

    fn data_len(&self) -> usize {
        match self {
            AnyView::F32(v) => v.data_len(),
            AnyView::Raw(v) => v.bytes.len(),
        }
    }
}

/// Writes `store` and the `extra` tensors (stored as they are) with the `metadata` table to
/// `path` atomically: a quantized model (`checkpoint::int8`).
pub fn write_safetensors_with(
    store: &ParamStore,
    extra: &std::collections::BTreeMap<String, RawTensor>,
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<(), CheckpointError> {
    let views = store
        .iter()
        .map(|(name, t)| (name.to_string(), AnyView::F32(F32View(t))))
        .chain(
            extra
                .iter()
                .map(|(name, t)| (name.clone(), AnyView::Raw(t))),
        );
    let bytes = ::safetensors::serialize(views, Some(metadata))
        .map_err(|e| format!("cannot encode safetensors: {e}"))
        .and_then(canonical_header);
    write_encoded(bytes, path)
}

/// Writes encoded bytes to `path` atomically, or says why they could not be encoded.
fn write_encoded(bytes: Result<Vec<u8>, String>, path: &Path) -> Result<(), CheckpointError> {
    let bytes = bytes.map_err(|problem| CheckpointError::Layout {
        path: path.to_path_buf(),
        problem,
    })?;
    write_file_atomic(path, &bytes).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "write",
        source,
    })
}

/// Writes `store` to `path` atomically (temporary file in the same directory, fsync, rename).
pub fn write_safetensors(
    store: &ParamStore,
    meta: Option<&KinetoMeta>,
    path: &Path,
) -> Result<(), CheckpointError> {
    write_encoded(encode_safetensors(store, meta), path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::fs;

    fn store() -> ParamStore {
        let mut s = ParamStore::new();
        s.insert(
            "backbone.b",
            ParamTensor::new(vec![2, 2], vec![1.0, -0.0, f32::MIN_POSITIVE, 3.5]).unwrap(),
        );
        s.insert("backbone.a", ParamTensor::new(vec![], vec![0.5]).unwrap());
        s.insert("head.z", ParamTensor::new(vec![0], vec![]).unwrap());
        s
    }

    fn meta() -> KinetoMeta {
        KinetoMeta {
            model: ModelKind::PptsmResnet,
            depth: Some(50),
            form: Form::Training,
            num_seg: 8,
            attention: false,
            num_classes: 2,
            class_names: Some(vec!["a \"quoted\" name".into(), "ü".into()]),
            label_set: Some("custom".into()),
            input_size: INPUT_SIZE as usize,
            short_side: SHORT_SIDE as usize,
            mean: MEAN,
            std: STD,
            provenance: serde_json::json!({"source": "x.pdparams"}),
        }
    }

    #[test]
    fn fuzz_lite_mutations_never_panic() {
        // Seeds with and without Kineto's metadata: mutations reach the 8-byte header length,
        // the JSON header (offsets, shapes, dtypes) and every metadata field.
        let seeds = [
            encode_safetensors(&store(), Some(&meta())).unwrap(),
            encode_safetensors(&store(), None).unwrap(),
        ];
        let (ok, refused) = crate::fuzz_lite::run(
            "safetensors",
            &seeds,
            6_000,
            b"[:,",
            "f.safetensors: ",
            |data| {
                parse_safetensors(data, Path::new("f.safetensors"))
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        assert!(refused > 0 && ok + refused == 6_000);
        // Metadata values one by one: any text in any field is a clean answer.
        let mut rng = crate::fuzz_lite::XorShift(7);
        let base = meta().to_map();
        let keys: Vec<&String> = base.keys().collect();
        for _ in 0..3_000 {
            let mut m = base.clone();
            let key = keys[rng.below(keys.len())].clone();
            let mut value = m[&key].clone().into_bytes();
            crate::fuzz_lite::mutate(&mut rng, &mut value, b"[,");
            m.insert(key, String::from_utf8_lossy(&value).into_owned());
            let outcome = std::panic::catch_unwind(|| KinetoMeta::from_map(&m));
            assert!(outcome.is_ok(), "metadata {m:?} panicked");
        }
    }

    #[test]
    fn round_trip_keeps_bits_and_metadata() {
        let s = store();
        let m = meta();
        let bytes = encode_safetensors(&s, Some(&m)).unwrap();
        let back = parse_safetensors(&bytes, Path::new("x.safetensors")).unwrap();
        // File order is by name.
        assert_eq!(
            back.store.names().collect::<Vec<_>>(),
            ["backbone.a", "backbone.b", "head.z"]
        );
        for (name, t) in s.iter() {
            let u = back.store.get(name).unwrap();
            assert_eq!(t.shape, u.shape);
            let bits = |t: &ParamTensor| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(t), bits(u), "{name}");
        }
        assert_eq!(back.meta.as_ref(), Some(&m));
        assert_eq!(back.raw_metadata["format"], "kineto");
        assert_eq!(back.raw_metadata["format_version"], "1");
        assert_eq!(back.raw_metadata["mean"], "[0.485,0.456,0.406]");
        // Without metadata: still readable, no Kineto metadata.
        let bare = encode_safetensors(&s, None).unwrap();
        let back = parse_safetensors(&bare, Path::new("y.safetensors")).unwrap();
        assert!(back.meta.is_none() && back.raw_metadata.is_empty());
    }

    /// The metadata table is a hash map, iterated in a different order by each instance: the
    /// bytes must not follow it (`kineto quantize` twice failed this before the header was
    /// sorted).
    #[test]
    fn the_same_tensors_and_metadata_give_the_same_bytes() {
        let first = encode_safetensors(&store(), Some(&meta())).unwrap();
        for _ in 0..8 {
            assert!(encode_safetensors(&store(), Some(&meta())).unwrap() == first);
        }
        let back = parse_safetensors(&first, Path::new("x.safetensors")).unwrap();
        assert_eq!(back.meta, Some(meta()));
    }

    #[test]
    fn other_dtypes_and_bad_metadata_are_refused_by_name() {
        // A hand-made header with an F16 tensor.
        let header = br#"{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        let e = parse_safetensors(&bytes, Path::new("h.safetensors")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "h.safetensors: w: dtype F16; Kineto's safetensors hold float32 tensors only"
        );

        let e = parse_safetensors(b"garbage", Path::new("g.safetensors")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("g.safetensors: not a valid safetensors file"),
            "{e}"
        );

        let mut m = meta().to_map();
        m.insert("format_version".into(), "2".into());
        let e = KinetoMeta::from_map(&m).unwrap_err();
        assert!(e.contains("newer Kineto"), "{e}");
        let mut m = meta().to_map();
        m.insert("class_names".into(), "[\"one\"]".into());
        assert!(
            KinetoMeta::from_map(&m)
                .unwrap_err()
                .contains("class_names")
        );
        let mut m = meta().to_map();
        m.remove("num_classes");
        assert_eq!(
            KinetoMeta::from_map(&m).unwrap_err(),
            "metadata has no num_classes"
        );
        let mut m = meta().to_map();
        m.insert("format".into(), "other".into());
        assert_eq!(KinetoMeta::from_map(&m).unwrap(), None);
    }

    #[test]
    fn write_is_atomic_and_errors_are_one_line() {
        let dir = std::env::temp_dir().join(format!("kineto-st-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.safetensors");
        write_safetensors(&store(), Some(&meta()), &path).unwrap();
        assert!(read_safetensors(&path).unwrap().meta.is_some());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["m.safetensors"]);
        let e = write_safetensors(&store(), None, &dir.join("no/such/x.safetensors")).unwrap_err();
        assert!(e.to_string().contains("cannot write"), "{e}");
        assert!(!e.to_string().contains('\n'));
        fs::remove_dir_all(&dir).unwrap();
    }
}
