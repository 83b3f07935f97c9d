//! `.npy` reading and writing (format versions 1, 2 and 3): little-endian `f32` (`<f4`) and
//! `u8` (`|u1`) arrays in C order. Malformed input gives an error naming the file, never a
//! panic; the data size is checked against the file before anything is allocated for it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy pads the header so the data starts at a multiple of this.
const ALIGN: usize = 64;
/// Shown instead of a path for arrays encoded in memory.
const IN_MEMORY: &str = "<in-memory .npy>";

/// An `.npy` problem; displays as one line `<path>: <problem>`.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {error}", path = path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: expected dtype {expected}, found {found}", path = path.display())]
    Dtype {
        path: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: fortran_order True is not supported (only C order)", path = path.display())]
    FortranOrder { path: PathBuf },
    #[error(
        "{path}: shape {shape:?} needs {expected} data bytes, found {found}",
        path = path.display()
    )]
    DataSize {
        path: PathBuf,
        shape: Vec<usize>,
        expected: String,
        found: usize,
    },
    #[error("{path}: {problem}", path = path.display())]
    Format { path: PathBuf, problem: String },
}

/// The float32 arrays of an `np.savez` / `np.savez_compressed` archive, in archive order, keyed
/// by name without `.npy`. Arrays of other dtypes (labels, float64 references) are left out.
pub fn read_npz_f32(path: &Path) -> Result<Vec<(String, NpyArray<f32>)>, NpyError> {
    read_npz(path, parse_npy_f32)
}

/// Every array of an `.npz` archive as float64, keyed by name without `.npy`: `<f8` arrays as
/// they are, `<f4` arrays widened exactly, `<i8` arrays (labels) converted (exact below 2^53).
/// Arrays of other dtypes are left out. For float64 references (training fixtures).
pub fn read_npz_f64(path: &Path) -> Result<Vec<(String, NpyArray<f64>)>, NpyError> {
    read_npz(path, |bytes, name| match parse::<f64>(bytes, name) {
        Err(NpyError::Dtype { .. }) => match parse::<f32>(bytes, name) {
            Err(NpyError::Dtype { .. }) => parse::<i64>(bytes, name).map(|a| NpyArray {
                shape: a.shape,
                data: a.data.into_iter().map(|v| v as f64).collect(),
            }),
            other => other.map(|a| NpyArray {
                shape: a.shape,
                data: a.data.into_iter().map(f64::from).collect(),
            }),
        },
        other => other,
    })
}

fn read_npz<T>(
    path: &Path,
    parse_entry: impl Fn(&[u8], &Path) -> Result<NpyArray<T>, NpyError>,
) -> Result<Vec<(String, NpyArray<T>)>, NpyError> {
    parse_npz(&read_file(path)?, path, parse_entry)
}

/// The float32 arrays of `.npz` bytes (see [`read_npz_f32`]); `path` is only for messages.
pub fn parse_npz_f32(bytes: &[u8], path: &Path) -> Result<Vec<(String, NpyArray<f32>)>, NpyError> {
    parse_npz(bytes, path, parse_npy_f32)
}

/// Walks an `.npz` archive, parsing each entry with `parse_entry`; entries it refuses with a
/// dtype error are left out, any other error fails the whole read.
fn parse_npz<T>(
    bytes: &[u8],
    path: &Path,
    parse_entry: impl Fn(&[u8], &Path) -> Result<NpyArray<T>, NpyError>,
) -> Result<Vec<(String, NpyArray<T>)>, NpyError> {
    use std::io::Read;
    /// Refuse entries that claim more than this (a zip bomb, not an array we use).
    const MAX_ENTRY: u64 = 8 << 30;
    let format = |problem: String| NpyError::Format {
        path: path.to_path_buf(),
        problem,
    };
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format(format!("not an .npz: {e}")))?;
    let mut arrays = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format(format!("entry {i}: {e}")))?;
        let name = entry.name().trim_end_matches(".npy").to_string();
        if entry.size() > MAX_ENTRY {
            return Err(format(format!(
                "{name}: entry of {} bytes is too large",
                entry.size()
            )));
        }
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| format(format!("{name}: {e}")))?;
        match parse_entry(&bytes, Path::new(&name)) {
            Ok(array) => arrays.push((name, array)),
            Err(NpyError::Dtype { .. }) => {}
            Err(other) => return Err(format(other.to_string())),
        }
    }
    Ok(arrays)
}

/// A C-order array: `data.len()` is the product of `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// The element types this module reads and writes.
trait Element: Sized + Copy {
    /// The `descr` written, e.g. `<f4`.
    const DESCR: &'static str;
    /// Every `descr` accepted when reading.
    const ACCEPTED: &'static [&'static str];
    const SIZE: usize;
    fn from_le(bytes: &[u8]) -> Self;
    fn extend_le(self, out: &mut Vec<u8>);
}

impl Element for f32 {
    const DESCR: &'static str = "<f4";
    const ACCEPTED: &'static [&'static str] = &["<f4"];
    const SIZE: usize = 4;
    fn from_le(bytes: &[u8]) -> f32 {
        f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Element for u8 {
    const DESCR: &'static str = "|u1";
    // Byte order is meaningless for one byte; numpy writes `|u1`.
    const ACCEPTED: &'static [&'static str] = &["|u1", "<u1", ">u1"];
    const SIZE: usize = 1;
    fn from_le(bytes: &[u8]) -> u8 {
        bytes[0]
    }
    fn extend_le(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}

impl Element for f64 {
    const DESCR: &'static str = "<f8";
    const ACCEPTED: &'static [&'static str] = &["<f8"];
    const SIZE: usize = 8;
    fn from_le(bytes: &[u8]) -> f64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        f64::from_le_bytes(b)
    }
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Element for i64 {
    const DESCR: &'static str = "<i8";
    const ACCEPTED: &'static [&'static str] = &["<i8"];
    const SIZE: usize = 8;
    fn from_le(bytes: &[u8]) -> i64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        i64::from_le_bytes(b)
    }
    fn extend_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// Reads a `<f4` array (no conversion from other dtypes).
pub fn read_npy_f32(path: &Path) -> Result<NpyArray<f32>, NpyError> {
    parse_npy_f32(&read_file(path)?, path)
}

/// Reads a `|u1` array.
pub fn read_npy_u8(path: &Path) -> Result<NpyArray<u8>, NpyError> {
    parse_npy_u8(&read_file(path)?, path)
}

/// Parses the bytes of a `<f4` `.npy` file; `path` only names it in errors.
pub fn parse_npy_f32(bytes: &[u8], path: &Path) -> Result<NpyArray<f32>, NpyError> {
    parse::<f32>(bytes, path)
}

/// Parses the bytes of a `|u1` `.npy` file; `path` only names it in errors.
pub fn parse_npy_u8(bytes: &[u8], path: &Path) -> Result<NpyArray<u8>, NpyError> {
    parse::<u8>(bytes, path)
}

/// Encodes a `<f4` array as a version 1 `.npy` file (version 2 if the header needs it).
/// Errors when `data.len()` is not the product of `shape`.
pub fn encode_npy_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>, NpyError> {
    encode(shape, data, Path::new(IN_MEMORY))
}

/// Encodes a `|u1` array like [`encode_npy_f32`].
pub fn encode_npy_u8(shape: &[usize], data: &[u8]) -> Result<Vec<u8>, NpyError> {
    encode(shape, data, Path::new(IN_MEMORY))
}

/// Writes a `<f4` array atomically: a temporary file in the same folder, synced, then renamed.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    write_atomic(path, &encode(shape, data, path)?)
}

/// Writes a `|u1` array atomically, like [`write_npy_f32`].
pub fn write_npy_u8(path: &Path, shape: &[usize], data: &[u8]) -> Result<(), NpyError> {
    write_atomic(path, &encode(shape, data, path)?)
}

fn read_file(path: &Path) -> Result<Vec<u8>, NpyError> {
    crate::files::read(path).map_err(|error| NpyError::Io {
        path: path.to_path_buf(),
        error,
    })
}

fn format_err(path: &Path, problem: impl Into<String>) -> NpyError {
    NpyError::Format {
        path: path.to_path_buf(),
        // The problem may quote the file's header: kept on one line.
        problem: crate::text::one_line(&problem.into()),
    }
}

fn parse<T: Element>(bytes: &[u8], path: &Path) -> Result<NpyArray<T>, NpyError> {
    let (header, data) = split_header(bytes, path)?;
    let header = parse_header(header, path)?;
    if !T::ACCEPTED.contains(&header.descr.as_str()) {
        return Err(NpyError::Dtype {
            path: path.to_path_buf(),
            expected: T::DESCR,
            found: crate::text::printable(&header.descr),
        });
    }
    if header.fortran_order {
        return Err(NpyError::FortranOrder {
            path: path.to_path_buf(),
        });
    }
    // The size check comes first, so a huge shape never reaches an allocation.
    let expected = header
        .shape
        .iter()
        .try_fold(T::SIZE, |acc, &d| acc.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(NpyError::DataSize {
            path: path.to_path_buf(),
            expected: expected.map_or_else(|| "more than usize::MAX".into(), |n| n.to_string()),
            shape: header.shape,
            found: data.len(),
        });
    }
    Ok(NpyArray {
        shape: header.shape,
        data: data.chunks_exact(T::SIZE).map(T::from_le).collect(),
    })
}

/// Splits a file into its header text bytes and its data bytes.
fn split_header<'a>(bytes: &'a [u8], path: &Path) -> Result<(&'a [u8], &'a [u8]), NpyError> {
    if bytes.len() < MAGIC.len() + 2 || !bytes.starts_with(MAGIC) {
        return Err(format_err(path, "not an .npy file (bad magic)"));
    }
    let major = bytes[6];
    let (len_size, header_len) = match major {
        1 => {
            let b = bytes
                .get(8..10)
                .ok_or_else(|| format_err(path, "truncated header length"))?;
            (2, u16::from_le_bytes([b[0], b[1]]) as usize)
        }
        2 | 3 => {
            let b = bytes
                .get(8..12)
                .ok_or_else(|| format_err(path, "truncated header length"))?;
            (4, u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        }
        v => {
            return Err(format_err(
                path,
                format!("unsupported .npy format version {v}.{}", bytes[7]),
            ));
        }
    };
    let start: usize = 8 + len_size;
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            format_err(
                path,
                format!(
                    "truncated header: {header_len} bytes announced, {} present",
                    bytes.len() - start.min(bytes.len())
                ),
            )
        })?;
    Ok((&bytes[start..end], &bytes[end..]))
}

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the header: a Python dict literal with exactly the keys `descr`, `fortran_order`
/// and `shape`, like numpy requires.
fn parse_header(text: &[u8], path: &Path) -> Result<Header, NpyError> {
    let text = std::str::from_utf8(text).map_err(|_| format_err(path, "header is not text"))?;
    let mut p = DictParser {
        s: text.as_bytes(),
        pos: 0,
    };
    let entries = p.dict().map_err(|e| {
        format_err(
            path,
            format!(
                "bad header dict ({e}): {}",
                crate::text::printable(text.trim_end())
            ),
        )
    })?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (key, value) in entries {
        let slot_taken = match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr.replace(s).is_some(),
            ("fortran_order", Value::Bool(b)) => fortran.replace(b).is_some(),
            ("shape", Value::Tuple(t)) => shape.replace(t).is_some(),
            ("descr" | "fortran_order" | "shape", v) => {
                return Err(format_err(
                    path,
                    format!("header key '{key}' has an unsupported value {v:?}"),
                ));
            }
            _ => return Err(format_err(path, format!("unexpected header key '{key}'"))),
        };
        if slot_taken {
            return Err(format_err(path, format!("header key '{key}' repeated")));
        }
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(Header {
            descr,
            fortran_order,
            shape,
        }),
        _ => Err(format_err(
            path,
            "header lacks one of 'descr', 'fortran_order', 'shape'",
        )),
    }
}

#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    /// A dtype list or anything else this module does not read.
    Other,
}

/// A parser for the small Python literal subset numpy writes in headers.
struct DictParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl DictParser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(got) if got == c => {
                self.pos += 1;
                Ok(())
            }
            Some(got) => Err(format!(
                "expected '{}' at byte {}, found '{}'",
                c as char, self.pos, got as char
            )),
            None => Err(format!("expected '{}', found the end", c as char)),
        }
    }

    fn dict(&mut self) -> Result<Vec<(String, Value)>, String> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                break;
            }
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            entries.push((key, value));
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected ',' or '}}' at byte {}", self.pos)),
            }
        }
        if self.peek().is_some() {
            return Err(format!("trailing text at byte {}", self.pos));
        }
        Ok(entries)
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.pos)),
        };
        let start = self.pos + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == quote)
            .ok_or("unterminated string")?;
        self.pos = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec()).map_err(|e| e.to_string())
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Value::Str),
            Some(b'(') => self.tuple().map(Value::Tuple),
            Some(b'[') => self.skip_nested().map(|()| Value::Other),
            Some(c) if c.is_ascii_alphabetic() => {
                let word = self.word();
                match word {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    _ => Ok(Value::Other),
                }
            }
            _ => Err(format!("unexpected value at byte {}", self.pos)),
        }
    }

    fn word(&mut self) -> &str {
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(dims);
                }
                Some(c) if c.is_ascii_digit() => {
                    let start = self.pos;
                    while self.s.get(self.pos).is_some_and(u8::is_ascii_digit) {
                        self.pos += 1;
                    }
                    let digits = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
                    let dim = digits
                        .parse::<usize>()
                        .map_err(|_| format!("dimension {digits} too large"))?;
                    // Python 2 wrote long integers with an `L` suffix.
                    if self.s.get(self.pos) == Some(&b'L') {
                        self.pos += 1;
                    }
                    dims.push(dim);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {}
                        _ => return Err(format!("expected ',' or ')' at byte {}", self.pos)),
                    }
                }
                _ => {
                    return Err(format!(
                        "expected a non-negative dimension at byte {}",
                        self.pos
                    ));
                }
            }
        }
    }

    /// Skips a bracketed value (e.g. a structured dtype list), honouring quotes.
    fn skip_nested(&mut self) -> Result<(), String> {
        let mut depth = 0usize;
        let mut quote = None;
        while let Some(&c) = self.s.get(self.pos) {
            self.pos += 1;
            match (quote, c) {
                (Some(q), _) if c == q => quote = None,
                (Some(_), _) => {}
                (None, b'\'' | b'"') => quote = Some(c),
                (None, b'[' | b'(' | b'{') => depth += 1,
                (None, b']' | b')' | b'}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err("unterminated bracket".into())
    }
}

fn encode<T: Element>(shape: &[usize], data: &[T], path: &Path) -> Result<Vec<u8>, NpyError> {
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if count != Some(data.len()) {
        return Err(NpyError::DataSize {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
            expected: count.map_or_else(
                || "more than usize::MAX".into(),
                |n| format!("{} ({n} elements)", n.saturating_mul(T::SIZE)),
            ),
            found: data.len().saturating_mul(T::SIZE),
        });
    }
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}",
        T::DESCR
    );
    // Version 1 stores the header length in 2 bytes; longer headers need version 2.
    let v1_total = (MAGIC.len() + 4 + dict.len() + 1).next_multiple_of(ALIGN);
    let (major, len_size) = if v1_total - MAGIC.len() - 4 <= usize::from(u16::MAX) {
        (1u8, 2)
    } else {
        (2u8, 4)
    };
    let prefix = MAGIC.len() + 2 + len_size;
    let header_len = (prefix + dict.len() + 1).next_multiple_of(ALIGN) - prefix;
    let mut out = Vec::with_capacity(prefix + header_len + data.len() * T::SIZE);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        let len =
            u32::try_from(header_len).map_err(|_| format_err(path, "header longer than 4 GiB"))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(prefix + header_len - 1, b' ');
    out.push(b'\n');
    for &x in data {
        x.extend_le(&mut out);
    }
    Ok(out)
}

/// Distinguishes temporary files of concurrent writes within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), NpyError> {
    let io_err = |error| NpyError::Io {
        path: path.to_path_buf(),
        error,
    };
    let name = path
        .file_name()
        .ok_or_else(|| format_err(path, "not a file path"))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // Best effort: the original error is what matters to the caller.
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(io_err)
}

/// Where the test fixtures live: `$KINETO_FIXTURES`, else `../shared/fixtures` next to the crate.
#[cfg(test)]
pub(crate) fn fixture_path(rel: &str) -> PathBuf {
    let root = std::env::var_os("KINETO_FIXTURES").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures")),
        PathBuf::from,
    );
    root.join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("x.npy")
    }

    /// A v1 file with the given header dict and data bytes (header padded like numpy).
    fn with_header(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        let len = (10 + dict.len() + 1).next_multiple_of(64) - 10;
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.resize(10 + len - 1, b' ');
        out.push(b'\n');
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn fuzz_lite_mutations_never_panic() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.25).collect();
        let npy_seeds = [
            encode_npy_f32(&[2, 3, 4], &data).unwrap(),
            encode_npy_f32(&[0], &[]).unwrap(),
            encode_npy_u8(&[4, 2], &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
        ];
        let (_, refused) =
            crate::fuzz_lite::run("npy", &npy_seeds, 8_000, &[], "x.npy: ", |bytes| {
                parse_npy_f32(bytes, p())
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        assert!(refused > 0);
        // .npz: a stored fixture archive (deflate), mutated as bytes.
        let npz_seed = fs::read(fixture_path("pptsmv2/act64_16f.npz")).unwrap();
        let (_, refused) =
            crate::fuzz_lite::run("npz", &[npz_seed], 400, &[], "x.npz: ", |bytes| {
                parse_npz_f32(bytes, Path::new("x.npz"))
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        assert!(refused > 0);
    }

    #[test]
    fn round_trip_f32_and_u8() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = encode_npy_f32(&[2, 3, 4], &data).expect("encode");
        assert_eq!((bytes.len() - 24 * 4) % 64, 0, "data starts 64-aligned");
        let back = parse_npy_f32(&bytes, p()).expect("parse");
        assert_eq!(back.shape, [2, 3, 4]);
        assert_eq!(back.data, data);

        let bytes = encode_npy_u8(&[5], &[1, 2, 3, 4, 255]).expect("encode");
        let back = parse_npy_u8(&bytes, p()).expect("parse");
        assert_eq!((back.shape, back.data), (vec![5], vec![1, 2, 3, 4, 255]));

        let scalar = parse_npy_f32(&encode_npy_f32(&[], &[7.5]).expect("encode"), p());
        assert_eq!(scalar.expect("scalar").data, [7.5]);
        let empty = parse_npy_u8(&encode_npy_u8(&[0, 3], &[]).expect("encode"), p());
        assert_eq!(empty.expect("empty").shape, [0, 3]);
    }

    #[test]
    fn header_text_matches_numpy() {
        // np.save(f, np.zeros((2, 3), np.float32)) writes exactly this header.
        let bytes = encode_npy_f32(&[2, 3], &[0.0; 6]).expect("encode");
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
        assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00\x76\x00");
        assert!(bytes[10..].starts_with(dict.as_bytes()));
        assert_eq!(bytes[127], b'\n');
        let one = encode_npy_u8(&[4], &[0; 4]).expect("encode");
        assert!(
            one[10..].starts_with(b"{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }")
        );
    }

    #[test]
    fn reads_versions_2_and_3_and_odd_spacing() {
        for major in [2u8, 3] {
            let dict = "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(1,2)}\n";
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[major, 0]);
            b.extend_from_slice(&(dict.len() as u32).to_le_bytes());
            b.extend_from_slice(dict.as_bytes());
            b.extend_from_slice(&1.0f32.to_le_bytes());
            b.extend_from_slice(&(-2.0f32).to_le_bytes());
            let a = parse_npy_f32(&b, p()).expect("parse");
            assert_eq!((a.shape, a.data), (vec![1, 2], vec![1.0, -2.0]));
        }
        let py2 = with_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2L,), }",
            &[9, 8],
        );
        assert_eq!(parse_npy_u8(&py2, p()).expect("py2").data, [9, 8]);
    }

    #[test]
    fn reads_the_fixture_frames() {
        let path = fixture_path("video/example_8f_frames_rgb.npy");
        let a = read_npy_u8(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.shape, [8, 240, 320, 3]);
        let path = fixture_path("video/example_8f_input.npy");
        let a = read_npy_f32(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.shape, [8, 3, 224, 224]);
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T, NpyError>) -> String {
        r.expect_err("must fail").to_string()
    }

    #[test]
    fn clear_errors_on_malformed_input() {
        let f8 = with_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        );
        assert_eq!(
            err_text(parse_npy_f32(&f8, p())),
            "x.npy: expected dtype <f4, found <f8"
        );
        let i8 = with_header(
            "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        );
        assert_eq!(
            err_text(parse_npy_u8(&i8, p())),
            "x.npy: expected dtype |u1, found <i8"
        );
        let big_endian = with_header(
            "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
            &[0; 4],
        );
        assert!(err_text(parse_npy_f32(&big_endian, p())).contains("found >f4"));

        let fortran = with_header(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }",
            &[0; 4],
        );
        assert!(err_text(parse_npy_f32(&fortran, p())).contains("fortran_order True"));

        let short = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
            &[0; 12],
        );
        assert_eq!(
            err_text(parse_npy_f32(&short, p())),
            "x.npy: shape [2, 2] needs 16 data bytes, found 12"
        );
        let long = with_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }",
            &[0; 3],
        );
        assert!(err_text(parse_npy_u8(&long, p())).contains("needs 2 data bytes, found 3"));

        let huge = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }",
            &[0; 4],
        );
        assert!(err_text(parse_npy_f32(&huge, p())).contains("more than usize::MAX"));
        let too_many_digits = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
            &[],
        );
        assert!(err_text(parse_npy_f32(&too_many_digits, p())).contains("too large"));

        let structured = with_header(
            "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }",
            &[0; 8],
        );
        assert!(err_text(parse_npy_f32(&structured, p())).contains("'descr' has an unsupported"));

        for bad in [
            "{'descr': '<f4', 'fortran_order': False}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ",
            "{'descr': '<f4 , 'fortran_order': False, 'shape': (1,)}",
            "['descr', '<f4']",
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
            "",
        ] {
            let b = with_header(bad, &[0; 4]);
            let text = err_text(parse_npy_f32(&b, p()));
            assert!(text.starts_with("x.npy: "), "{bad}: {text}");
        }

        // Truncations at every length of a valid file never panic.
        let good = encode_npy_f32(&[3], &[1.0, 2.0, 3.0]).expect("encode");
        for n in 0..good.len() {
            assert!(parse_npy_f32(&good[..n], p()).is_err(), "prefix {n}");
        }
        assert!(err_text(parse_npy_f32(b"PK\x03\x04 not npy", p())).contains("bad magic"));
        let mut v9 = good.clone();
        v9[6] = 9;
        assert!(err_text(parse_npy_f32(&v9, p())).contains("version 9.0"));
        let mut overlong = good.clone();
        overlong[8] = 0xff;
        overlong[9] = 0xff;
        assert!(err_text(parse_npy_f32(&overlong, p())).contains("truncated header"));
    }

    #[test]
    fn encode_rejects_a_shape_data_mismatch() {
        let text = err_text(encode_npy_f32(&[2, 2], &[0.0; 3]));
        assert!(text.starts_with("<in-memory .npy>: shape [2, 2]"), "{text}");
        assert!(encode_npy_u8(&[usize::MAX, 2], &[]).is_err());
    }

    #[test]
    fn write_is_atomic_and_reports_paths() {
        let dir = std::env::temp_dir().join(format!("kineto-npy-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("a.npy");
        write_npy_f32(&path, &[2], &[1.5, -1.0]).expect("write");
        assert_eq!(read_npy_f32(&path).expect("read").data, [1.5, -1.0]);
        write_npy_u8(&path, &[1, 1], &[42]).expect("overwrite");
        assert_eq!(read_npy_u8(&path).expect("read").data, [42]);
        // Only the final file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["a.npy"]);
        let missing = dir.join("no/such/dir/b.npy");
        let text = err_text(write_npy_f32(&missing, &[1], &[0.0]));
        assert!(
            text.starts_with(&format!("{}: ", missing.display())),
            "{text}"
        );
        let text = err_text(read_npy_u8(&dir.join("absent.npy")));
        assert!(text.contains("absent.npy: "), "{text}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
