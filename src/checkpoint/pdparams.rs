//! PaddlePaddle `.pdparams` files: `paddle.save(state_dict)` pickles a dict
//! name -> numpy array. Reading goes through the restricted VM in
//! [`super::pickle`]; writing emits a small fixed pickle (protocol 4) that
//! numpy 1.x, numpy 2.x and `paddle.load` read.
#![deny(clippy::indexing_slicing)]

use std::path::Path;

use super::pickle::{self, ArrayState, DtypeKind, NdArray, Obj, Unpickled};
use super::{CheckpointError, ParamStore, ParamTensor, printable, write_file_atomic};
use crate::model::params::shape_numel;

/// Reads and parses a `.pdparams` file.
pub fn read_pdparams(path: &Path) -> Result<ParamStore, CheckpointError> {
    let bytes = crate::files::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    })?;
    parse_pdparams(&bytes, path)
}

/// Parses `.pdparams` bytes; `path` is only used in messages.
///
/// The top-level object must be a dict with str keys. numpy float arrays
/// (f2, f4, f8; any byte order; C or Fortran order) become f32 tensors in
/// C order; so does Paddle's pickled-Tensor form `(name, array)`.
/// Non-array values under keys ending in `@@` (Paddle's
/// `StructuredToParameterName@@` name table) are skipped; any other
/// non-array value is an error naming its key.
pub fn parse_pdparams(bytes: &[u8], path: &Path) -> Result<ParamStore, CheckpointError> {
    let pickle = pickle::unpickle(bytes).map_err(|source| CheckpointError::Pickle {
        path: path.to_path_buf(),
        source,
    })?;
    to_store(&pickle, path)
}

fn layout_err(path: &Path, problem: String) -> CheckpointError {
    CheckpointError::Layout {
        path: path.to_path_buf(),
        problem,
    }
}

fn to_store(pickle: &Unpickled<'_>, path: &Path) -> Result<ParamStore, CheckpointError> {
    let entries = match pickle.get(pickle.root()) {
        Some(Obj::Dict(entries)) => entries,
        Some(other) => {
            return Err(layout_err(
                path,
                format!(
                    "top-level object is {}, not a dict of arrays",
                    other.described()
                ),
            ));
        }
        None => return Err(layout_err(path, "pickle has no top-level object".into())),
    };
    // Arrays can be shared through the pickle memo; decoding each reference
    // separately could multiply a small file into gigabytes. Real files
    // never share, so cap output (4 bytes per value, plus key bytes) at a
    // multiple of the input size.
    let mut budget = pickle.input_len().saturating_mul(4).saturating_add(1 << 16);
    let mut store = ParamStore::new();
    for (i, &(key_id, value_id)) in entries.iter().enumerate() {
        let key = match pickle.get(key_id) {
            Some(Obj::Str(key)) => key.as_ref(),
            Some(other) => {
                return Err(layout_err(
                    path,
                    format!("key #{i} is {}, not a string", other.described()),
                ));
            }
            None => return Err(layout_err(path, format!("key #{i} is missing"))),
        };
        let entry_err = |problem: String| CheckpointError::Entry {
            path: path.to_path_buf(),
            key: printable(key),
            problem,
        };
        match pickle.get(value_id).map(|v| paddle_tensor_array(pickle, v)) {
            Some(Some(array)) => {
                let tensor = decode_array(pickle, array, &mut budget).map_err(entry_err)?;
                budget = budget
                    .checked_sub(key.len())
                    .ok_or_else(|| entry_err(shared_data_problem()))?;
                store.insert(key, tensor);
            }
            // Paddle's name table and other bookkeeping, not parameters.
            Some(None) if key.ends_with("@@") => {}
            Some(None) => {
                let other = pickle.get(value_id).map_or("nothing", Obj::described);
                return Err(entry_err(format!("value is {other}, not a numpy array")));
            }
            None => return Err(entry_err("value is missing".into())),
        }
    }
    Ok(store)
}

/// The array a value stands for: a numpy array, or Paddle's pickled Tensor
/// form `(name, array)` (what `tuple(((name, ndarray),))` rebuilds).
fn paddle_tensor_array<'p>(pickle: &'p Unpickled<'_>, value: &'p Obj<'_>) -> Option<&'p NdArray> {
    match value {
        Obj::Array(array) => Some(array),
        Obj::Tuple(items) => match items.as_slice() {
            [name, array] => match (pickle.get(*name)?, pickle.get(*array)?) {
                (Obj::Str(_), Obj::Array(array)) => Some(array),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn shared_data_problem() -> String {
    "decoded arrays exceed what the file can hold (array data shared between keys?)".into()
}

/// One numpy array -> f32 tensor in C order. Errors are the problem text;
/// the caller adds the path and key.
fn decode_array(
    pickle: &Unpickled<'_>,
    array: &NdArray,
    budget: &mut usize,
) -> Result<ParamTensor, String> {
    let Some(ArrayState {
        shape,
        dtype,
        fortran,
        data,
    }) = &array.state
    else {
        return Err("numpy array has no state (no BUILD)".into());
    };
    if dtype.structured {
        return Err(format!(
            "structured dtype {} is not supported",
            dtype.describe()
        ));
    }
    let Some(itemsize) = dtype.itemsize() else {
        return Err(format!(
            "dtype {} is not supported (only float16/32/64 arrays are read)",
            dtype.describe()
        ));
    };
    // Protocol 0/1 and Python 2 pickles carry the data as latin-1 text.
    let latin1;
    let raw: &[u8] = match pickle.get(*data) {
        Some(Obj::Bytes(b)) => b,
        Some(Obj::Str(s)) => {
            latin1 =
                pickle::latin1_bytes(s).ok_or("array data text has a character above U+00FF")?;
            &latin1
        }
        Some(Obj::List(_)) => return Err("object arrays are not supported".into()),
        Some(other) => return Err(format!("array data is {}", other.described())),
        None => return Err("array data is missing".into()),
    };
    let numel = shape_numel(shape).ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let needed = numel
        .checked_mul(itemsize)
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if raw.len() != needed {
        return Err(format!(
            "array data has {} bytes, shape {shape:?} needs {needed}",
            raw.len()
        ));
    }
    *budget = budget
        .checked_sub(numel.saturating_mul(4))
        .ok_or_else(shared_data_problem)?;

    let little = dtype.little_endian();
    let values: Vec<f32> = match dtype.kind {
        DtypeKind::F32 => raw
            .chunks_exact(4)
            .map(|c| {
                let b = [c.first(), c.get(1), c.get(2), c.get(3)].map(|x| x.copied().unwrap_or(0));
                if little {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                }
            })
            .collect(),
        DtypeKind::F64 => raw
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                // Rounds to nearest f32 (what numpy's astype does).
                (if little {
                    f64::from_le_bytes(b)
                } else {
                    f64::from_be_bytes(b)
                }) as f32
            })
            .collect(),
        DtypeKind::F16 => raw
            .chunks_exact(2)
            .map(|c| {
                let b = [c.first(), c.get(1)].map(|x| x.copied().unwrap_or(0));
                f16_to_f32(if little {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                })
            })
            .collect(),
        DtypeKind::Other(_) => return Err("internal: dtype without itemsize".into()),
    };
    let values = if *fortran && shape.len() > 1 {
        fortran_to_c(&values, shape).ok_or("internal: Fortran-order transpose failed")?
    } else {
        values
    };
    ParamTensor::new(shape.clone(), values).map_err(|e| format!("internal: {e}"))
}

/// IEEE half -> f32 (exact: every half is representable).
fn f16_to_f32(h: u16) -> f32 {
    let negative = h & 0x8000 != 0;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let magnitude = match exp {
        // zero and subnormals: man * 2^-24
        0 => man as f32 * (1.0 / 16_777_216.0),
        // inf / NaN (payload kept in the top mantissa bits)
        31 => f32::from_bits(0x7f80_0000 | (man << 13)),
        // normal: rebias 15 -> 127
        _ => f32::from_bits(((exp + 112) << 23) | (man << 13)),
    };
    if negative { -magnitude } else { magnitude }
}

/// Reorders column-major (Fortran) data into row-major (C) order.
fn fortran_to_c(src: &[f32], shape: &[usize]) -> Option<Vec<f32>> {
    // Fortran strides: the first axis is contiguous.
    let mut strides = Vec::with_capacity(shape.len());
    let mut s = 1usize;
    for &d in shape {
        strides.push(s);
        s = s.checked_mul(d)?;
    }
    let mut out = Vec::with_capacity(src.len());
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    for _ in 0..src.len() {
        out.push(*src.get(offset)?);
        // Advance the C-order index (last axis fastest), tracking the
        // Fortran offset incrementally.
        for ((i, &d), &st) in index.iter_mut().zip(shape).zip(&strides).rev() {
            *i += 1;
            offset = offset.checked_add(st)?;
            if *i < d {
                break;
            }
            offset = offset.checked_sub(st.checked_mul(d)?)?;
            *i = 0;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Writer

/// Pickle opcodes the writer emits.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const MARK: u8 = b'(';
    pub const SETITEMS: u8 = b'u';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE3: u8 = 0x87;
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINBYTES: u8 = b'B';
    pub const BINBYTES8: u8 = 0x8e;
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const BINPUT: u8 = b'q';
    pub const BINGET: u8 = b'h';
    pub const STOP: u8 = b'.';
}

/// Memo slots of the objects every array shares.
const MEMO_RECONSTRUCT: u8 = 0;
const MEMO_NDARRAY: u8 = 1;
const MEMO_ZERO_TUPLE: u8 = 2;
const MEMO_TYPECODE: u8 = 3;
const FIRST_DTYPE_MEMO: u8 = 4;

/// Items per MARK ... SETITEMS batch (what CPython's pickler uses).
const SETITEMS_BATCH: usize = 1000;

/// Emits the pickle of a dict name -> numpy array, using the numpy-1 names
/// (`numpy.core.multiarray._reconstruct`), which numpy 2 still resolves.
struct Encoder {
    out: Vec<u8>,
    shared_written: bool,
    /// dtype descriptions already written, with their memo slot.
    dtypes: Vec<(String, u8)>,
}

impl Encoder {
    fn new(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        // Protocol 4 without FRAMEs: framing is optional for readers, and
        // protocol 4 gives BINBYTES8 for arrays over 4 GiB.
        out.extend([op::PROTO, 4]);
        Encoder {
            out,
            shared_written: false,
            dtypes: Vec::new(),
        }
    }

    fn str(&mut self, s: &str) {
        let b = s.as_bytes();
        match u8::try_from(b.len()) {
            Ok(n) => self.out.extend([op::SHORT_BINUNICODE, n]),
            Err(_) => {
                self.out.push(op::BINUNICODE);
                // Names over 4 GiB do not exist; clamp rather than panic.
                let n = u32::try_from(b.len()).unwrap_or(u32::MAX);
                self.out.extend(n.to_le_bytes());
            }
        }
        self.out.extend(b);
    }

    fn bytes(&mut self, b: &[u8]) {
        match u32::try_from(b.len()) {
            Ok(n) => {
                self.out.push(op::BINBYTES);
                self.out.extend(n.to_le_bytes());
            }
            Err(_) => {
                self.out.push(op::BINBYTES8);
                self.out.extend((b.len() as u64).to_le_bytes());
            }
        }
        self.out.extend(b);
    }

    fn int(&mut self, v: u64) {
        if let Ok(v) = u8::try_from(v) {
            self.out.extend([op::BININT1, v]);
        } else if let Ok(v) = u16::try_from(v) {
            self.out.push(op::BININT2);
            self.out.extend(v.to_le_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.out.push(op::BININT);
            self.out.extend(v.to_le_bytes());
        } else {
            // Two's complement, little-endian; a ninth zero byte keeps it positive.
            self.out.extend([op::LONG1, 9]);
            self.out.extend(v.to_le_bytes());
            self.out.push(0);
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(op::GLOBAL);
        self.out.extend(module.as_bytes());
        self.out.push(b'\n');
        self.out.extend(name.as_bytes());
        self.out.push(b'\n');
    }

    fn put(&mut self, slot: u8) {
        self.out.extend([op::BINPUT, slot]);
    }

    fn get(&mut self, slot: u8) {
        self.out.extend([op::BINGET, slot]);
    }

    /// `numpy.dtype(code, False, True)` with state `(3, order, None, None,
    /// None, -1, -1, 0)`, memoized per (code, order).
    fn dtype(&mut self, code: &str, order: u8) {
        let key = format!("{}{code}", char::from(order));
        if let Some(&(_, slot)) = self.dtypes.iter().find(|(k, _)| *k == key) {
            self.get(slot);
            return;
        }
        self.global("numpy", "dtype");
        self.str(code);
        self.out
            .extend([op::NEWFALSE, op::NEWTRUE, op::TUPLE3, op::REDUCE, op::MARK]);
        self.int(3);
        self.str(&char::from(order).to_string());
        self.out.extend([op::NONE, op::NONE, op::NONE]);
        for v in [-1i32, -1] {
            self.out.push(op::BININT);
            self.out.extend(v.to_le_bytes());
        }
        self.int(0);
        self.out.extend([op::TUPLE, op::BUILD]);
        // Slots past 255 are simply not memoized (only odd test dtypes get there).
        if let Some(slot) = u8::try_from(self.dtypes.len())
            .ok()
            .and_then(|n| FIRST_DTYPE_MEMO.checked_add(n))
        {
            self.put(slot);
            self.dtypes.push((key, slot));
        }
    }

    /// `_reconstruct(ndarray, (0,), b'b')` then BUILD with
    /// `(1, shape, dtype, is_fortran, data)`.
    fn array(&mut self, shape: &[usize], code: &str, order: u8, fortran: bool, data: &[u8]) {
        if self.shared_written {
            for slot in [
                MEMO_RECONSTRUCT,
                MEMO_NDARRAY,
                MEMO_ZERO_TUPLE,
                MEMO_TYPECODE,
            ] {
                self.get(slot);
            }
        } else {
            self.global("numpy.core.multiarray", "_reconstruct");
            self.put(MEMO_RECONSTRUCT);
            self.global("numpy", "ndarray");
            self.put(MEMO_NDARRAY);
            self.int(0);
            self.out.push(op::TUPLE1);
            self.put(MEMO_ZERO_TUPLE);
            self.out.extend([op::SHORT_BINBYTES, 1, b'b']);
            self.put(MEMO_TYPECODE);
            self.shared_written = true;
        }
        self.out.extend([op::TUPLE3, op::REDUCE, op::MARK]);
        self.int(1);
        if shape.is_empty() {
            self.out.push(op::EMPTY_TUPLE);
        } else {
            self.out.push(op::MARK);
            for &d in shape {
                self.int(d as u64);
            }
            self.out.push(op::TUPLE);
        }
        self.dtype(code, order);
        self.out
            .push(if fortran { op::NEWTRUE } else { op::NEWFALSE });
        self.bytes(data);
        self.out.extend([op::TUPLE, op::BUILD]);
    }

    /// Writes `{name: array, ...}`; `entry` emits the key and value of item i.
    fn dict<T>(&mut self, items: &[T], mut entry: impl FnMut(&mut Self, &T)) {
        self.out.push(op::EMPTY_DICT);
        for batch in items.chunks(SETITEMS_BATCH) {
            self.out.push(op::MARK);
            for item in batch {
                entry(self, item);
            }
            self.out.push(op::SETITEMS);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.push(op::STOP);
        self.out
    }
}

/// Encodes `store` as a `.pdparams` pickle: a dict name -> float32 array
/// (`<f4`, C order; a 0-d tensor gets shape `()`), in store order.
pub fn encode_pdparams(store: &ParamStore) -> Vec<u8> {
    let entries: Vec<(&str, &ParamTensor)> = store.iter().collect();
    let capacity = store
        .num_values()
        .saturating_mul(4)
        .saturating_add(store.len().saturating_mul(160))
        .saturating_add(256);
    let mut enc = Encoder::new(capacity);
    let mut data = Vec::new();
    enc.dict(&entries, |enc, (name, tensor)| {
        enc.str(name);
        data.clear();
        data.extend(tensor.data.iter().flat_map(|v| v.to_le_bytes()));
        enc.array(&tensor.shape, "f4", b'<', false, &data);
    });
    enc.finish()
}

/// Writes `store` to `path` atomically: a temporary file in the same
/// directory is written, fsynced and renamed over `path`, so readers see
/// either the old file or the complete new one.
pub fn write_pdparams(store: &ParamStore, path: &Path) -> Result<(), CheckpointError> {
    let bytes = encode_pdparams(store);
    write_file_atomic(path, &bytes).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "write",
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::fs;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::PathBuf;

    // ----- fixtures -----

    fn fixtures_dir() -> PathBuf {
        match std::env::var_os("KINETO_FIXTURES") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures")),
        }
    }

    /// Path of a fixture; a missing one fails the test (never skips).
    fn fixture(rel: &str) -> PathBuf {
        let p = fixtures_dir().join(rel);
        assert!(
            p.is_file(),
            "missing fixture {} (set KINETO_FIXTURES to the fixtures folder)",
            p.display()
        );
        p
    }

    fn load(rel: &str) -> ParamStore {
        let p = fixture(rel);
        read_pdparams(&p).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `keys_*.txt`: `name \t dtype \t [d0, d1, ...]`, `#` comments.
    fn key_list(rel: &str) -> Vec<(String, Vec<usize>)> {
        let text = fs::read_to_string(fixture(rel)).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                assert_eq!(cols.len(), 3, "{l}");
                assert_eq!(cols[1], "float32", "{l}");
                let dims = cols[2].trim_matches(['[', ']']);
                let shape = if dims.trim().is_empty() {
                    vec![]
                } else {
                    dims.split(',').map(|d| d.trim().parse().unwrap()).collect()
                };
                (cols[0].to_string(), shape)
            })
            .collect()
    }

    fn bits(t: &ParamTensor) -> Vec<u32> {
        t.data.iter().map(|v| v.to_bits()).collect()
    }

    /// Same names, order, shapes and bit patterns.
    fn assert_same_bits(a: &ParamStore, b: &ParamStore) {
        assert_eq!(a.names().collect::<Vec<_>>(), b.names().collect::<Vec<_>>());
        for (name, t) in a.iter() {
            let u = b.get(name).unwrap();
            assert_eq!(t.shape, u.shape, "{name}");
            assert!(bits(t) == bits(u), "{name}: values differ");
        }
    }

    fn assert_key_list(store: &ParamStore, keys: &[(String, Vec<usize>)]) {
        assert_eq!(store.len(), keys.len());
        for ((name, t), (want_name, want_shape)) in store.iter().zip(keys) {
            assert_eq!(name, want_name);
            assert_eq!(&t.shape, want_shape, "{name}");
        }
    }

    const W8_SUBSET: [&str; 19] = [
        "backbone.stem.0.conv.weight",
        "backbone.stem.0.bn.weight",
        "backbone.stem.0.bn.bias",
        "backbone.stem.0.bn._mean",
        "backbone.stem.0.bn._variance",
        "backbone.stem.1.dw_conv.conv.weight",
        "backbone.stages.2.0.dw_conv_list.0.conv.weight",
        "backbone.stages.2.0.dw_conv_list.1.conv.weight",
        "backbone.stages.2.0.dw_conv_list.1.bn._variance",
        "backbone.stages.2.0.dw_conv.weight",
        "backbone.stages.2.0.dw_conv.bias",
        "backbone.stages.2.0.se.conv1.weight",
        "backbone.stages.2.0.se.conv1.bias",
        "backbone.stages.2.0.se.conv2.bias",
        "backbone.stages.3.1.dw_conv_list.2.conv.weight",
        "backbone.stages.3.1.pw_conv.bn._mean",
        "backbone.stem.1.pw_conv.conv.weight",
        "backbone.fc.weight",
        "backbone.fc.bias",
    ];

    // ----- fixture files -----

    #[test]
    fn w8_keys_shapes_and_order() {
        let w8 = load("pptsmv2/w8.pdparams");
        // 278 parameters; the StructuredToParameterName@@ table is skipped.
        assert_key_list(&w8, &key_list("pptsmv2/keys_w8.txt"));
        assert_eq!(w8.len(), 278);
        assert!(!w8.contains("StructuredToParameterName@@"));
        assert_eq!(w8.num_values(), 6_072_592);
        // Every stored value is a finite bfloat16-representable float.
        for (name, t) in w8.iter() {
            assert!(
                t.data
                    .iter()
                    .all(|v| v.is_finite() && v.to_bits() & 0xffff == 0),
                "{name}"
            );
        }
        // Spot check: first bytes of stem.0.conv.weight in the file are
        // 00 00 50 be, 00 00 2c 3e, 00 00 66 be.
        let w = &w8.get("backbone.stem.0.conv.weight").unwrap().data;
        assert_eq!(&bits_of(&w[..3]), &[0xbe50_0000, 0x3e2c_0000, 0xbe66_0000]);
    }

    fn bits_of(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn w8_subset_numpy1_copies_match_w8() {
        let w8 = load("pptsmv2/w8.pdparams");
        for (rel, keys) in [
            ("reader/w8_subset_np1_p4.pdparams", &W8_SUBSET[..]),
            // The protocol-2 copy leaves out backbone.fc.weight.
            ("reader/w8_subset_np1_p2.pdparams", &W8_SUBSET[..]),
        ] {
            let sub = load(rel);
            let want: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| !(rel.contains("p2") && *k == "backbone.fc.weight"))
                .chain(["extra.scalar_0d", "extra.one_element"])
                .collect();
            assert_eq!(sub.names().collect::<Vec<_>>(), want, "{rel}");
            for k in want.iter().filter(|k| k.starts_with("backbone.")) {
                let (a, b) = (sub.get(k).unwrap(), w8.get(k).unwrap());
                assert_eq!(a.shape, b.shape, "{rel} {k}");
                assert!(bits(a) == bits(b), "{rel} {k}: values differ from w8");
            }
            let s = sub.get("extra.scalar_0d").unwrap();
            assert_eq!(
                (s.shape.as_slice(), s.data.as_slice()),
                (&[][..], &[0.5f32][..])
            );
            let o = sub.get("extra.one_element").unwrap();
            assert_eq!(
                (o.shape.as_slice(), o.data.as_slice()),
                (&[1usize][..], &[-1.25f32][..])
            );
        }
    }

    #[test]
    fn r50_keys_and_shapes() {
        let r50 = load("pptsm_r50/w.pdparams");
        assert_key_list(&r50, &key_list("pptsm_r50/keys_w.txt"));
        assert_eq!(r50.len(), 277);
        assert_eq!(r50.num_values(), 24_400_112);
        assert_eq!(r50.get("head.fc.weight").unwrap().shape, vec![2048, 400]);
    }

    #[test]
    fn att16_extra_keys() {
        let att = load("pptsmv2/att16_extra.pdparams");
        let names: Vec<_> = att.names().collect();
        assert_eq!(
            names,
            [
                "backbone.global_attention.fc.weight",
                "backbone.global_attention.fc.bias"
            ]
        );
        assert_eq!(att.get(names[0]).unwrap().shape, vec![16, 16]);
        assert_eq!(att.get(names[1]).unwrap().shape, vec![16]);
        // w8 + att16_extra = the attention model's key set.
        let w16: Vec<String> = key_list("pptsmv2/keys_w16att.txt")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut merged = load("pptsmv2/w8.pdparams");
        for (n, t) in att.iter() {
            merged.insert(n, t.clone());
        }
        let mut a: Vec<String> = merged.names().map(String::from).collect();
        let mut b = w16.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn dml_and_student_subsets_match_sources() {
        let w8 = load("pptsmv2/w8.pdparams");
        let r50 = load("pptsm_r50/w.pdparams");
        let dml = load("reader/dml_subset.pdparams");
        let want = [
            "Teacher.0.conv1_1._conv.weight",
            "Teacher.0.bb_0_0.short._batch_norm._variance",
            "Teacher.0.bb_0_0.conv0._conv.weight",
            "Teacher.1.fc.bias",
            "Student.0.stem.0.conv.weight",
            "Student.0.stages.2.0.dw_conv_list.0.bn._variance",
            "Student.0.fc.bias",
        ];
        assert_eq!(dml.names().collect::<Vec<_>>(), want);
        for (name, t) in dml.iter() {
            let (source, key) = if let Some(rest) = name.strip_prefix("Teacher.0.") {
                (&r50, format!("backbone.{rest}"))
            } else if let Some(rest) = name.strip_prefix("Teacher.1.") {
                (&r50, format!("head.{rest}"))
            } else if let Some(rest) = name.strip_prefix("Student.0.") {
                (&w8, format!("backbone.{rest}"))
            } else {
                panic!("unexpected key {name}")
            };
            let s = source
                .get(&key)
                .unwrap_or_else(|| panic!("{key} not in source"));
            assert_eq!(t.shape, s.shape, "{name}");
            assert!(bits(t) == bits(s), "{name}: values differ from {key}");
        }

        let student = load("reader/student_extracted_subset.pdparams");
        assert_eq!(
            student.names().collect::<Vec<_>>(),
            [
                "0.stem.0.conv.weight",
                "0.stages.2.0.dw_conv_list.0.bn._variance",
                "0.fc.bias"
            ]
        );
        for (name, t) in student.iter() {
            let d = dml.get(&format!("Student.{name}")).unwrap();
            assert!(t == d && bits(t) == bits(d), "{name}");
        }
    }

    /// Pickles made by numpy itself (`pickle.dumps(dict, protocol=P)` of
    /// `np.random.default_rng(7)` values rounded to 3 decimals):
    /// f8, big-endian f2, a Fortran-order f4, a big-endian 0-d f4 and an
    /// empty array. Expected bits are numpy's own
    /// `ascontiguousarray(a.astype(float32))`.
    #[test]
    fn numpy_made_pickles() {
        let samples: [(&str, &[u8]); 2] = [
            (
                "numpy 1.26.4, protocol 2 (_codecs.encode data, bytes() for empty)",
                B_NP1_P2,
            ),
            (
                "numpy 2.4.6, protocol 5 (numpy._core.numeric._frombuffer, BYTEARRAY8)",
                B_NP2_P5,
            ),
        ];
        let want: [(&str, &[usize], &[u32]); 5] = [
            (
                "f8",
                &[2, 3],
                &[
                    0x3a83126f, 0x3e991687, 0xbe8c49ba, 0xbf641893, 0xbee8f5c3, 0xbf7df3b6,
                ],
            ),
            (
                "f2_be",
                &[2, 3],
                &[
                    0x3a832000, 0x3e992000, 0xbe8c4000, 0xbf642000, 0xbee90000, 0xbf7e0000,
                ],
            ),
            (
                "fortran_f4",
                &[2, 3],
                &[
                    0x3a83126f, 0x3e991687, 0xbe8c49ba, 0xbf641893, 0xbee8f5c3, 0xbf7df3b6,
                ],
            ),
            ("be_f4_0d", &[], &[0xbf400000]),
            ("empty", &[0, 2], &[]),
        ];
        for (what, bytes) in samples {
            let s = parse_pdparams(bytes, Path::new("np.pkl"))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(s.len(), want.len(), "{what}");
            for ((name, t), (want_name, shape, bits)) in s.iter().zip(want) {
                assert_eq!(name, want_name, "{what}");
                assert_eq!(t.shape, shape, "{what} {name}");
                assert_eq!(bits_of(&t.data), bits, "{what} {name}");
            }
        }
    }

    const B_NP1_P2: &[u8] = b"\x80\x02}q\x00(X\x02\x00\x00\x00f8q\x01cnumpy.core.multiarray\x0a_reconstruct\x0aq\x02cnumpy\x0andarray\x0aq\x03K\x00\x85q\x04c_codecs\x0aencode\x0aq\x05X\x01\x00\x00\x00bq\x06X\x06\x00\x00\x00latin1q\x07\x86q\x08Rq\x09\x87q\x0aRq\x0b(K\x01K\x02K\x03\x86q\x0ccnumpy\x0adtype\x0aq\x0dX\x02\x00\x00\x00f8q\x0e\x89\x88\x87q\x0fRq\x10(K\x03X\x01\x00\x00\x00<q\x11NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x12b\x89h\x05XM\x00\x00\x00\xc3\xbc\xc2\xa9\xc3\xb1\xc3\x92MbP?\xc2\x89A`\xc3\xa5\xc3\x90\x22\xc3\x93?\xc3\xb0\xc2\xa7\xc3\x86K7\xc2\x89\xc3\x91\xc2\xbfP\xc2\x8d\xc2\x97n\x12\xc2\x83\xc3\xac\xc2\xbf\x1f\xc2\x85\xc3\xabQ\xc2\xb8\x1e\xc3\x9d\xc2\xbfX9\xc2\xb4\xc3\x88v\xc2\xbe\xc3\xaf\xc2\xbfq\x13h\x07\x86q\x14Rq\x15tq\x16bX\x05\x00\x00\x00f2_beq\x17h\x02h\x03K\x00\x85q\x18h\x09\x87q\x19Rq\x1a(K\x01K\x02K\x03\x86q\x1bh\x0dX\x02\x00\x00\x00f2q\x1c\x89\x88\x87q\x1dRq\x1e(K\x03X\x01\x00\x00\x00>q\x1fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq b\x89h\x05X\x12\x00\x00\x00\x14\x194\xc3\x89\xc2\xb4b\xc2\xbb!\xc2\xb7H\xc2\xbb\xc3\xb0q!h\x07\x86q\x22Rq#tq$bX\x0a\x00\x00\x00fortran_f4q%h\x02h\x03K\x00\x85q&h\x09\x87q'Rq((K\x01K\x02K\x03\x86q)h\x0dX\x02\x00\x00\x00f4q*\x89\x88\x87q+Rq,(K\x03h\x11NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq-b\x88h\x05X'\x00\x00\x00o\x12\xc2\x83:\xc2\x93\x18d\xc2\xbf\xc2\x87\x16\xc2\x99>\xc3\x83\xc3\xb5\xc3\xa8\xc2\xbe\xc2\xbaI\xc2\x8c\xc2\xbe\xc2\xb6\xc3\xb3}\xc2\xbfq.h\x07\x86q/Rq0tq1bX\x08\x00\x00\x00be_f4_0dq2h\x02h\x03K\x00\x85q3h\x09\x87q4Rq5(K\x01)h\x0dX\x02\x00\x00\x00f4q6\x89\x88\x87q7Rq8(K\x03h\x1fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq9b\x89h\x05X\x05\x00\x00\x00\xc2\xbf@\x00\x00q:h\x07\x86q;Rq<tq=bX\x05\x00\x00\x00emptyq>h\x02h\x03K\x00\x85q?h\x09\x87q@RqA(K\x01K\x00K\x02\x86qBh,\x89c__builtin__\x0abytes\x0aqC)RqDtqEbu.";
    const B_NP2_P5: &[u8] = b"\x80\x05\x95\xd0\x01\x00\x00\x00\x00\x00\x00}\x94(\x8c\x02f8\x94\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(\x960\x00\x00\x00\x00\x00\x00\x00\xfc\xa9\xf1\xd2MbP?\x89A`\xe5\xd0\x22\xd3?\xf0\xa7\xc6K7\x89\xd1\xbfP\x8d\x97n\x12\x83\xec\xbf\x1f\x85\xebQ\xb8\x1e\xdd\xbfX9\xb4\xc8v\xbe\xef\xbf\x94\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x02K\x03\x86\x94\x8c\x01C\x94t\x94R\x94\x8c\x05f2_be\x94h\x04(\x96\x0c\x00\x00\x00\x00\x00\x00\x00\x14\x194\xc9\xb4b\xbb!\xb7H\xbb\xf0\x94h\x08\x8c\x02f2\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01>\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x02K\x03\x86\x94h\x0ft\x94R\x94\x8c\x0afortran_f4\x94h\x04(\x96\x18\x00\x00\x00\x00\x00\x00\x00o\x12\x83:\x93\x18d\xbf\x87\x16\x99>\xc3\xf5\xe8\xbe\xbaI\x8c\xbe\xb6\xf3}\xbf\x94h\x08\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03h\x0cNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x02K\x03\x86\x94\x8c\x01F\x94t\x94R\x94\x8c\x08be_f4_0d\x94h\x04(\x96\x04\x00\x00\x00\x00\x00\x00\x00\xbf@\x00\x00\x94h\x08\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03h\x17NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b)h\x0ft\x94R\x94\x8c\x05empty\x94h\x04(\x96\x00\x00\x00\x00\x00\x00\x00\x00\x94h K\x00K\x02\x86\x94h\x0ft\x94R\x94u.";

    // ----- writer -----

    fn tensor(shape: &[usize], data: &[f32]) -> ParamTensor {
        ParamTensor::new(shape.to_vec(), data.to_vec()).unwrap()
    }

    fn hand_made_store() -> ParamStore {
        let mut s = ParamStore::new();
        s.insert("scalar", tensor(&[], &[0.5]));
        s.insert("one", tensor(&[1], &[-1.25]));
        s.insert("empty", tensor(&[0], &[]));
        s.insert("empty2d", tensor(&[3, 0], &[]));
        s.insert(
            "specials",
            tensor(
                &[2, 3],
                &[
                    f32::NAN,
                    -0.0,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    f32::MIN_POSITIVE / 4.0,
                    f32::MAX,
                ],
            ),
        );
        s.insert("big.dims", tensor(&[70_000, 1, 1], &vec![1.0; 70_000]));
        s.insert("ünïcode name ✓", tensor(&[2], &[1.0, 2.0]));
        s.insert("x".repeat(300), tensor(&[1], &[3.0]));
        s
    }

    #[test]
    fn encode_parse_round_trip_hand_made() {
        let s = hand_made_store();
        let bytes = encode_pdparams(&s);
        let back = parse_pdparams(&bytes, Path::new("mem.pdparams")).unwrap();
        assert_same_bits(&s, &back);
        // An empty store is an empty dict.
        let empty = encode_pdparams(&ParamStore::new());
        assert_eq!(empty, b"\x80\x04}.");
        assert!(parse_pdparams(&empty, Path::new("e")).unwrap().is_empty());
        // More entries than one SETITEMS batch.
        let mut many = ParamStore::new();
        for i in 0..2500 {
            many.insert(format!("p{i}"), tensor(&[1], &[i as f32]));
        }
        let back = parse_pdparams(&encode_pdparams(&many), Path::new("m")).unwrap();
        assert_same_bits(&many, &back);
    }

    #[test]
    fn encode_parse_round_trip_w8() {
        let w8 = load("pptsmv2/w8.pdparams");
        let bytes = encode_pdparams(&w8);
        let back = parse_pdparams(&bytes, Path::new("w8.copy.pdparams")).unwrap();
        assert_same_bits(&w8, &back);
    }

    #[test]
    fn write_read_round_trip_on_disk() {
        let dir = std::env::temp_dir().join(format!("kineto-pdparams-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hand.pdparams");
        let s = hand_made_store();
        write_pdparams(&s, &path).unwrap();
        assert_same_bits(&s, &read_pdparams(&path).unwrap());
        // Overwriting replaces the file and leaves no temporary behind.
        let mut t = ParamStore::new();
        t.insert("only", tensor(&[2], &[7.0, 8.0]));
        write_pdparams(&t, &path).unwrap();
        assert_same_bits(&t, &read_pdparams(&path).unwrap());
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "hand.pdparams")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        fs::remove_dir_all(&dir).unwrap();

        let missing = dir.join("no/such/dir/x.pdparams");
        let e = write_pdparams(&t, &missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot write: ", missing.display())),
            "{e}"
        );
        let e = read_pdparams(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: cannot read: ", missing.display())),
            "{e}"
        );
    }

    // ----- other dtypes and layouts, built with the writer's encoder -----

    fn one_array(shape: &[usize], code: &str, order: u8, fortran: bool, data: &[u8]) -> Vec<u8> {
        let mut enc = Encoder::new(64);
        enc.dict(&[()], |enc, _| {
            enc.str("a.w");
            enc.array(shape, code, order, fortran, data);
        });
        enc.finish()
    }

    fn parse_one(bytes: &[u8]) -> Result<ParamTensor, String> {
        parse_pdparams(bytes, Path::new("c.pdparams"))
            .map(|s| s.get("a.w").unwrap().clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn float_dtypes_byte_orders_and_fortran() {
        let vals = [1.0f64, -2.5, 0.1, 65504.0, 1e-7, 3.0];
        let le64: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let be64: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
        let want: Vec<f32> = vals.iter().map(|&v| v as f32).collect();
        assert_eq!(
            parse_one(&one_array(&[2, 3], "f8", b'<', false, &le64))
                .unwrap()
                .data,
            want
        );
        assert_eq!(
            parse_one(&one_array(&[2, 3], "f8", b'>', false, &be64))
                .unwrap()
                .data,
            want
        );
        let be32: Vec<u8> = want.iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(
            parse_one(&one_array(&[6], "f4", b'>', false, &be32))
                .unwrap()
                .data,
            want
        );
        let f16: [u16; 8] = [
            0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0xfc00, 0x3555,
        ];
        let f16_le: Vec<u8> = f16.iter().flat_map(|v| v.to_le_bytes()).collect();
        let got = parse_one(&one_array(&[8], "f2", b'<', false, &f16_le))
            .unwrap()
            .data;
        assert_eq!(
            got,
            [
                1.0,
                -2.0,
                65504.0,
                5.960_464_5e-8,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.333_251_95
            ]
        );
        assert!(got[4].is_sign_negative());
        let nan = parse_one(&one_array(
            &[1],
            "f2",
            b'|',
            false,
            &0x7e00u16.to_le_bytes(),
        ))
        .unwrap();
        assert!(nan.data[0].is_nan());

        // Fortran order [2,3]: memory holds columns: a00 a10 a01 a11 a02 a12.
        let f: Vec<u8> = [0.0f32, 10.0, 1.0, 11.0, 2.0, 12.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = parse_one(&one_array(&[2, 3], "f4", b'<', true, &f)).unwrap();
        assert_eq!(t.data, [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]);
        // 3-D: value = 100i + 10j + k, stored with i fastest.
        let (a, b, c) = (2, 3, 4);
        let mut fdata = Vec::new();
        for k in 0..c {
            for j in 0..b {
                for i in 0..a {
                    fdata.extend(((100 * i + 10 * j + k) as f32).to_le_bytes());
                }
            }
        }
        let t = parse_one(&one_array(&[a, b, c], "f4", b'<', true, &fdata)).unwrap();
        let mut want = Vec::new();
        for i in 0..a {
            for j in 0..b {
                for k in 0..c {
                    want.push((100 * i + 10 * j + k) as f32);
                }
            }
        }
        assert_eq!(t.data, want);
    }

    #[test]
    fn unsupported_dtypes_and_bad_lengths_name_the_key() {
        let cases: [(Vec<u8>, &str); 6] = [
            (
                one_array(&[2], "i8", b'<', false, &[0; 16]),
                "c.pdparams: a.w: dtype <i8 is not supported (only float16/32/64 arrays are read)",
            ),
            (
                one_array(&[2], "b1", b'|', false, &[0; 2]),
                "c.pdparams: a.w: dtype b1 is not supported",
            ),
            (
                one_array(&[4], "f4", b'<', false, &[0; 10]),
                "c.pdparams: a.w: array data has 10 bytes, shape [4] needs 16",
            ),
            (
                one_array(&[], "f4", b'<', false, &[0; 8]),
                "c.pdparams: a.w: array data has 8 bytes, shape [] needs 4",
            ),
            (
                one_array(&[1 << 40, 1 << 40], "f4", b'<', false, &[0; 4]),
                "c.pdparams: a.w: shape [1099511627776, 1099511627776] is too large",
            ),
            (
                one_array(&[usize::MAX / 2], "f8", b'<', false, &[0; 4]),
                "is too large",
            ),
        ];
        for (bytes, want) in cases {
            let e = parse_one(&bytes).unwrap_err();
            assert!(e.contains(want), "got {e:?}, want {want:?}");
            assert!(!e.contains('\n'));
        }
    }

    /// Builds `{key: value}` where value is raw pickle opcodes.
    fn dict_with(key: &str, value_ops: &[u8]) -> Vec<u8> {
        let mut enc = Encoder::new(64);
        enc.out.push(op::EMPTY_DICT);
        enc.str(key);
        enc.out.extend(value_ops);
        enc.out.push(b's');
        enc.finish()
    }

    #[test]
    fn non_array_values_and_layouts() {
        let p = Path::new("d.pdparams");
        // A name table under an @@ key is skipped; other non-arrays are errors.
        let ok = dict_with("StructuredToParameterName@@", b"}\x8c\x01a\x8c\x01bs");
        assert!(parse_pdparams(&ok, p).unwrap().is_empty());
        let bad = dict_with("backbone.x", b"K\x05");
        assert_eq!(
            parse_pdparams(&bad, p).unwrap_err().to_string(),
            "d.pdparams: backbone.x: value is an int, not a numpy array"
        );
        let e = parse_pdparams(b"\x80\x02]q\x00.", p)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "d.pdparams: top-level object is a list, not a dict of arrays"
        );
        let e = parse_pdparams(b"\x80\x02}K\x01K\x02s.", p)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "d.pdparams: key #0 is an int, not a string");
        // An array that never got its BUILD state.
        let mut ops =
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R".to_vec();
        let e = parse_pdparams(&dict_with("k", &ops), p)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "d.pdparams: k: numpy array has no state (no BUILD)");
        // An object array (data is a list).
        ops.extend(b"(K\x01K\x01\x85cnumpy\ndtype\n\x8c\x02O8\x89\x88\x87R\x89]K\x07at");
        ops.push(b'b');
        let e = parse_pdparams(&dict_with("k", &ops), p)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "d.pdparams: k: dtype O8 is not supported (only float16/32/64 arrays are read)"
        );
        // A collections.OrderedDict top level (older Paddle) reads like a dict.
        let mut od = b"\x80\x02ccollections\nOrderedDict\n)R".to_vec();
        let inner = one_array(&[1], "f4", b'<', false, &2.0f32.to_le_bytes());
        // Reuse the entry ops of `inner`: between "}(" and "u.".
        let start = inner.iter().position(|&b| b == b'}').unwrap() + 1;
        od.extend(&inner[start..inner.len() - 1]);
        od.push(b'.');
        let s = parse_pdparams(&od, p).unwrap();
        assert_eq!(s.get("a.w").unwrap().data, [2.0]);
        // Duplicate keys: last value wins, first position kept (Python dict).
        let mut dup = vec![0x80, 2, b'}', b'('];
        for (k, v) in [("a", 1.0f32), ("b", 2.0), ("a", 3.0)] {
            let mut enc = Encoder::new(16);
            enc.out.clear();
            enc.str(k);
            enc.array(&[1], "f4", b'<', false, &v.to_le_bytes());
            dup.extend(enc.out);
        }
        dup.extend(b"u.");
        let s = parse_pdparams(&dup, p).unwrap();
        assert_eq!(s.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(s.get("a").unwrap().data, [3.0]);
    }

    #[test]
    fn paddle_tensor_reduce_forms() {
        // paddle.save of a non-state-dict object pickles each Tensor as
        // `tuple(((name, ndarray),))`; the value is then (name, array).
        let mut enc = Encoder::new(256);
        enc.out.push(op::EMPTY_DICT);
        enc.str("fc.w");
        enc.global("__builtin__", "tuple");
        enc.str("linear_0.w_0");
        enc.array(&[2], "f4", b'<', false, &[0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]);
        enc.out.extend([0x86, op::TUPLE1, op::REDUCE, b's']);
        let s = parse_pdparams(&enc.finish(), Path::new("t.pdparams")).unwrap();
        assert_eq!(s.get("fc.w").unwrap().data, [1.0, 2.0]);
        // Its LoDTensor reducer calls eval: refused before anything runs.
        let e = parse_pdparams(
            b"\x80\x02}X\x01\x00\x00\x00kc__builtin__\neval\n",
            Path::new("t.pdparams"),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "t.pdparams: pickle global __builtin__.eval is not allowed"
        );
    }

    #[test]
    fn shared_array_data_cannot_multiply_memory() {
        // One 400 KB array referenced by 20,000 keys through the memo.
        let mut enc = Encoder::new(1 << 20);
        enc.out.push(op::EMPTY_DICT);
        enc.str("k0");
        enc.array(&[100_000], "f4", b'<', false, &vec![0u8; 400_000]);
        enc.out.extend([op::BINPUT, 200, b's']);
        for i in 1..20_000 {
            enc.str(&format!("k{i}"));
            enc.out.extend([op::BINGET, 200, b's']);
        }
        let bytes = enc.finish();
        let e = parse_pdparams(&bytes, Path::new("s.pdparams"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("array data shared between keys"), "{e}");
    }

    // ----- malformed input -----

    fn assert_clean_err(bytes: &[u8], what: &str) {
        let r = catch_unwind(AssertUnwindSafe(|| {
            parse_pdparams(bytes, Path::new("bad/x.pdparams"))
        }));
        let r = r.unwrap_or_else(|_| panic!("{what}: panicked"));
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{what}: parsed"))
            .to_string();
        assert!(e.starts_with("bad/x.pdparams: "), "{what}: {e}");
        assert!(!e.contains('\n'), "{what}: {e}");
    }

    #[test]
    fn malformed_files() {
        assert_clean_err(b"", "empty");
        assert_clean_err(b"not a pickle at all\n", "text");
        assert_clean_err(b"PK\x03\x04zipfile", "zip");
        let e = parse_pdparams(b"cos\nsystem\n(S'echo hi'\ntR.", Path::new("a.pdparams"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "a.pdparams: pickle global os.system is not allowed");
        let e = parse_pdparams(b"\x80\x04}", Path::new("b.pdparams"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "b.pdparams: truncated pickle (no STOP opcode)");
        // Huge declared lengths fail before allocating.
        for bytes in [
            &b"\x80\x04}\x8c\x01k\x8e\xff\xff\xff\xff\xff\xff\xff\xffxyz"[..],
            b"\x80\x04}X\xff\xff\xff\x7fk",
            b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xff}.",
            b"\x80\x04\x8b\xff\xff\xff\x7f",
        ] {
            assert_clean_err(bytes, "huge length");
        }
        // Deep nesting (a million lists) is fine for the VM, then rejected
        // as a layout error.
        let mut deep = vec![0x80, 2];
        deep.extend(std::iter::repeat_n(b']', 1_000_000));
        deep.extend(std::iter::repeat_n(b'a', 999_999));
        deep.push(b'.');
        assert_clean_err(&deep, "deep lists");
        let mut deep = vec![0x80, 2, b'}', 0x8c, 1, b'k'];
        deep.extend(std::iter::repeat_n(b'(', 1_000_000));
        deep.push(b'.');
        assert_clean_err(&deep, "deep marks");
    }

    #[test]
    fn every_truncation_is_a_clean_error() {
        for rel in [
            "pptsmv2/att16_extra.pdparams",
            "reader/student_extracted_subset.pdparams",
        ] {
            let full = fs::read(fixture(rel)).unwrap();
            assert!(parse_pdparams(&full, Path::new(rel)).is_ok());
            for n in 0..full.len() {
                assert_clean_err(&full[..n], &format!("{rel} cut at {n}"));
            }
        }
        let small = encode_pdparams(&hand_made_store());
        for n in 0..small.len().min(2000) {
            assert_clean_err(&small[..n], &format!("hand-made cut at {n}"));
        }
        // A few cuts of the big file, including mid-array and mid-name.
        let w8 = fs::read(fixture("pptsmv2/w8.pdparams")).unwrap();
        for n in [
            1,
            2,
            11,
            12,
            100,
            4096,
            65_537,
            1_000_003,
            12_000_000,
            w8.len() - 2,
            w8.len() - 1,
        ] {
            assert_clean_err(&w8[..n], &format!("w8 cut at {n}"));
        }
    }

    #[test]
    fn fuzz_lite_mutations_never_panic() {
        let seeds = [
            fs::read(fixture("reader/w8_subset_np1_p2.pdparams")).unwrap(),
            fs::read(fixture("reader/w8_subset_np1_p4.pdparams")).unwrap(),
        ];
        // Length fields follow these pickle opcodes (BINBYTES, BINUNICODE, FRAME, ...).
        let markers = [b'B', b'X', 0x8e, 0x95, 0x8d];
        let (ok, refused) = crate::fuzz_lite::run(
            "pdparams",
            &seeds,
            20_000,
            &markers,
            "f.pdparams: ",
            |data| {
                parse_pdparams(data, Path::new("f.pdparams"))
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        assert_eq!(ok + refused, 20_000);
    }
}
