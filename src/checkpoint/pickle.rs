//! A restricted pickle VM, and nothing more.
//!
//! Python's own unpickler imports any module and calls any callable a file
//! names. This one knows a fixed set of opcodes and a fixed table of names
//! (numpy's array/dtype reconstructors and a few builtins); each "call" is
//! a Rust function that checks its arguments and builds a plain value.
//! Nothing is imported or executed.
//!
//! Hostile input must not panic, loop, or allocate far beyond its size:
//! - every length field is checked against the bytes that are left before
//!   anything is allocated;
//! - objects live in a flat arena and refer to each other by index, so there
//!   is no recursion (nesting depth costs nothing) and memo sharing is free;
//! - the object count, stack and memo sizes are capped, and every allocation
//!   whose size the file controls (container items, decoded strings, shapes)
//!   is charged to a budget proportional to the input length.
#![deny(clippy::indexing_slicing)]

use std::borrow::Cow;
use std::collections::HashMap;

use super::printable;

/// Index of an object in [`Unpickled`]'s arena.
pub type ObjId = usize;

/// Most objects one pickle may create. Real checkpoints need ~10 per tensor.
pub const MAX_OBJECTS: usize = 1 << 22;
/// Most entries on the stack (marks included).
pub const MAX_STACK: usize = 1 << 22;
/// Most memo entries.
pub const MAX_MEMO: usize = 1 << 22;
/// Highest pickle protocol understood.
pub const HIGHEST_PROTOCOL: u8 = 5;

/// Allocation budget in bytes: a multiple of the input length plus a
/// constant, so that sharing (memo gets) cannot multiply memory.
fn budget_for(input_len: usize) -> usize {
    input_len.saturating_mul(4).saturating_add(1 << 20)
}

/// Why a pickle was rejected. Display is one line, without the path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    #[error("an empty file, not a PaddlePaddle checkpoint (.pdparams) or safetensors file")]
    Empty,
    #[error(
        "not a PaddlePaddle checkpoint (.pdparams) or safetensors file (it does not start as \
         a pickle does: first byte {first:#04x})"
    )]
    NotAPickle { first: u8 },
    #[error("truncated pickle (no STOP opcode)")]
    NoStop,
    #[error("truncated pickle: {opcode} at byte {offset} needs {needed} bytes, {left} left")]
    Truncated {
        opcode: &'static str,
        offset: usize,
        needed: u64,
        left: usize,
    },
    /// `module` and `name` are already made printable.
    #[error("pickle global {module}.{name} is not allowed")]
    GlobalNotAllowed { module: String, name: String },
    #[error("pickle opcode {} at byte {offset} is not supported", opcode_label(*.opcode))]
    Opcode { opcode: u8, offset: usize },
    #[error("pickle at byte {offset} exceeds the reader's limit of {limit} {what}")]
    Limit {
        offset: usize,
        what: &'static str,
        limit: usize,
    },
    #[error("bad pickle at byte {offset}: {problem}")]
    Malformed { offset: usize, problem: String },
}

fn opcode_label(op: u8) -> String {
    match opcode_name(op) {
        Some(name) => format!("{op:#04x} ({name})"),
        None => format!("{op:#04x} (not a pickle opcode)"),
    }
}

/// Names of all standard pickle opcodes (for messages only).
fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

/// The only globals a pickle may name. Each is a Rust function in
/// [`Vm::reduce`], never a Python import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Callable {
    /// `numpy{._core|.core}.multiarray._reconstruct(ndarray, shape, typecode)`
    Reconstruct,
    /// `numpy.ndarray` (only as `_reconstruct`'s first argument)
    NdarrayType,
    /// `numpy.dtype(code, align, copy)`
    DtypeType,
    /// `_codecs.encode(str, 'latin1')`: how protocol 2 stores bytes
    CodecsEncode,
    /// `collections.OrderedDict()`: becomes a plain dict
    OrderedDict,
    /// `bytes()`: how protocol 2 stores empty bytes
    BytesType,
    /// `tuple(items)`: Paddle's own Tensor reducer pickles a tensor as
    /// `tuple(((name, ndarray),))` when the saved object is not a plain
    /// state dict
    TupleType,
    /// `numpy{._core|.core}.numeric._frombuffer(buf, dtype, shape, order)`:
    /// how numpy pickles arrays with protocol 5
    FromBuffer,
}

impl Callable {
    /// The fixed table of allowed `module.name` pairs.
    fn lookup(module: &str, name: &str) -> Option<Callable> {
        Some(match (module, name) {
            ("numpy._core.multiarray" | "numpy.core.multiarray", "_reconstruct") => {
                Callable::Reconstruct
            }
            ("numpy", "ndarray") => Callable::NdarrayType,
            ("numpy", "dtype") => Callable::DtypeType,
            ("_codecs", "encode") => Callable::CodecsEncode,
            ("collections", "OrderedDict") => Callable::OrderedDict,
            // `__builtin__` is what protocol-2 pickles say for `builtins`.
            ("builtins" | "__builtin__", "bytes") => Callable::BytesType,
            ("builtins" | "__builtin__", "tuple") => Callable::TupleType,
            ("numpy._core.numeric" | "numpy.core.numeric", "_frombuffer") => Callable::FromBuffer,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Callable::Reconstruct => "numpy.core.multiarray._reconstruct",
            Callable::NdarrayType => "numpy.ndarray",
            Callable::DtypeType => "numpy.dtype",
            Callable::CodecsEncode => "_codecs.encode",
            Callable::OrderedDict => "collections.OrderedDict",
            Callable::BytesType => "bytes",
            Callable::TupleType => "tuple",
            Callable::FromBuffer => "numpy.core.numeric._frombuffer",
        }
    }
}

/// Element type of a numpy dtype, as far as the checkpoint reader cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtypeKind {
    F16,
    F32,
    F64,
    /// Anything else, with its numpy code (e.g. `i8`, `b1`, `O8`), printable.
    Other(String),
}

/// A `numpy.dtype` after its constructor and (optional) BUILD state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dtype {
    pub kind: DtypeKind,
    /// `<`, `>`, `=` (native) or `|` (not applicable).
    pub byteorder: u8,
    /// The state named fields or sub-arrays: a record dtype.
    pub structured: bool,
}

impl Dtype {
    /// Bytes per element for the float kinds.
    pub fn itemsize(&self) -> Option<usize> {
        match self.kind {
            DtypeKind::F16 => Some(2),
            DtypeKind::F32 => Some(4),
            DtypeKind::F64 => Some(8),
            DtypeKind::Other(_) => None,
        }
    }

    /// Little-endian data? `=` means the writer's native order; every
    /// machine numpy writes checkpoints on in practice is little-endian.
    pub fn little_endian(&self) -> bool {
        self.byteorder != b'>'
    }

    /// numpy-style name, for messages: `<f4`, `>f8`, `i8`, ...
    pub fn describe(&self) -> String {
        let code = match &self.kind {
            DtypeKind::F16 => "f2",
            DtypeKind::F32 => "f4",
            DtypeKind::F64 => "f8",
            DtypeKind::Other(code) => code.as_str(),
        };
        let order = match self.byteorder {
            b'<' | b'>' => char::from(self.byteorder).to_string(),
            _ => String::new(),
        };
        format!("{order}{code}")
    }
}

/// Shape, dtype, order and data of an array, from BUILD or `_frombuffer`.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayState {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub fortran: bool,
    /// A `Bytes`, `Str` (latin-1) or `List` (object array) object.
    pub data: ObjId,
}

/// A numpy array: `_reconstruct` makes an empty one, BUILD fills it in.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    pub state: Option<ArrayState>,
}

/// One object in the arena. Containers hold ids, never objects.
#[derive(Clone, Debug, PartialEq)]
pub enum Obj<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit in i64 (its value is not kept).
    BigInt,
    Float(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Tuple(Vec<ObjId>),
    List(Vec<ObjId>),
    /// Entries in insertion order. Keys are not de-duplicated here (the
    /// Python pickler never repeats one); consumers apply "last one wins".
    Dict(Vec<(ObjId, ObjId)>),
    Callable(Callable),
    Dtype(Box<Dtype>),
    Array(Box<NdArray>),
}

impl Obj<'_> {
    /// Type with its article, for messages: "an int", "a str", "None".
    pub fn described(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool(_) => "a bool",
            Obj::Int(_) | Obj::BigInt => "an int",
            Obj::Float(_) => "a float",
            Obj::Str(_) => "a str",
            Obj::Bytes(_) => "a bytes object",
            Obj::Tuple(_) => "a tuple",
            Obj::List(_) => "a list",
            Obj::Dict(_) => "a dict",
            Obj::Callable(_) => "a callable",
            Obj::Dtype(_) => "a numpy dtype",
            Obj::Array(_) => "a numpy array",
        }
    }

    /// Short type name for messages (never recursive).
    pub fn type_name(&self) -> &'static str {
        match self {
            Obj::None => "None",
            Obj::Bool(_) => "bool",
            Obj::Int(_) | Obj::BigInt => "int",
            Obj::Float(_) => "float",
            Obj::Str(_) => "str",
            Obj::Bytes(_) => "bytes",
            Obj::Tuple(_) => "tuple",
            Obj::List(_) => "list",
            Obj::Dict(_) => "dict",
            Obj::Callable(_) => "callable",
            Obj::Dtype(_) => "numpy dtype",
            Obj::Array(_) => "numpy array",
        }
    }
}

/// Result of unpickling: the arena and the id of the top-level object.
#[derive(Debug)]
pub struct Unpickled<'a> {
    objects: Vec<Obj<'a>>,
    root: ObjId,
    input_len: usize,
}

impl<'a> Unpickled<'a> {
    pub fn root(&self) -> ObjId {
        self.root
    }

    /// The object `id`; `None` only for ids that did not come from here.
    pub fn get(&self, id: ObjId) -> Option<&Obj<'a>> {
        self.objects.get(id)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Length of the pickle this came from (consumers size budgets by it).
    pub fn input_len(&self) -> usize {
        self.input_len
    }
}

/// Runs the restricted VM over `data` (which must hold exactly one pickle;
/// bytes after STOP are ignored, as Python does).
pub fn unpickle(data: &[u8]) -> Result<Unpickled<'_>, PickleError> {
    let first = match data.first() {
        Some(&b) => b,
        None => return Err(PickleError::Empty),
    };
    let mut vm = Vm::new(data);
    match vm.run() {
        Ok(root) => Ok(Unpickled {
            objects: vm.objects,
            root,
            input_len: data.len(),
        }),
        // A stream that fails on its very first opcode and does not start
        // with PROTO is most likely not a pickle at all (e.g. a text file).
        Err(
            PickleError::Opcode { offset: 0, .. }
            | PickleError::Malformed { offset: 0, .. }
            | PickleError::Truncated { offset: 0, .. },
        ) if first != 0x80 => Err(PickleError::NotAPickle { first }),
        Err(e) => Err(e),
    }
}

type Res<T> = Result<T, PickleError>;

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being run (for messages).
    op_start: usize,
    op_name: &'static str,
    objects: Vec<Obj<'a>>,
    stack: Vec<ObjId>,
    /// Stack lengths at each MARK; the top one is a fence nothing may pop past.
    marks: Vec<usize>,
    memo: HashMap<u64, ObjId>,
    budget: usize,
}

impl<'a> Vm<'a> {
    fn new(data: &'a [u8]) -> Self {
        Vm {
            data,
            pos: 0,
            op_start: 0,
            op_name: "PROTO",
            objects: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            budget: budget_for(data.len()),
        }
    }

    // ----- errors -----

    fn bad<T>(&self, problem: impl Into<String>) -> Res<T> {
        Err(PickleError::Malformed {
            offset: self.op_start,
            problem: format!("{}: {}", self.op_name, problem.into()),
        })
    }

    fn limit<T>(&self, what: &'static str, limit: usize) -> Res<T> {
        Err(PickleError::Limit {
            offset: self.op_start,
            what,
            limit,
        })
    }

    /// Charges `bytes` of file-controlled allocation to the budget.
    fn charge(&mut self, bytes: usize) -> Res<()> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => self.limit("bytes of decoded data", budget_for(self.data.len())),
        }
    }

    // ----- input -----

    fn left(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Takes `n` bytes, checked against what is left before anything else.
    fn take(&mut self, n: u64) -> Res<&'a [u8]> {
        let left = self.left();
        let slice = usize::try_from(n)
            .ok()
            .and_then(|n| Some((n, self.pos.checked_add(n)?)))
            .and_then(|(_, end)| self.data.get(self.pos..end));
        match slice {
            Some(s) => {
                self.pos += s.len();
                Ok(s)
            }
            None => Err(PickleError::Truncated {
                opcode: self.op_name,
                offset: self.op_start,
                needed: n,
                left,
            }),
        }
    }

    fn take_array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let s = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u8(&mut self) -> Res<u8> {
        Ok(u8::from_le_bytes(self.take_array()?))
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(self.take_array()?))
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }
    fn i32(&mut self) -> Res<i32> {
        Ok(i32::from_le_bytes(self.take_array()?))
    }
    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    /// A length given as a signed 4-byte field (BINSTRING, LONG4).
    fn len_i32(&mut self) -> Res<u64> {
        let n = self.i32()?;
        match u64::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => self.bad(format!("negative length {n}")),
        }
    }

    /// A `\n`-terminated line (without the newline) of a text opcode.
    fn line(&mut self) -> Res<&'a [u8]> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = self.take(i as u64)?;
                self.pos += 1; // the newline, known to be there
                Ok(line)
            }
            None => Err(PickleError::Truncated {
                opcode: self.op_name,
                offset: self.op_start,
                needed: rest.len() as u64 + 1,
                left: rest.len(),
            }),
        }
    }

    fn line_str(&mut self) -> Res<&'a str> {
        let line = self.line()?;
        match std::str::from_utf8(line) {
            Ok(s) => Ok(s),
            Err(_) => self.bad("line is not UTF-8"),
        }
    }

    fn utf8(&self, bytes: &'a [u8]) -> Res<&'a str> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(e) => self.bad(format!("string is not valid UTF-8 ({e})")),
        }
    }

    // ----- objects and stack -----

    fn alloc(&mut self, obj: Obj<'a>) -> Res<ObjId> {
        if self.objects.len() >= MAX_OBJECTS {
            return self.limit("objects", MAX_OBJECTS);
        }
        self.objects.push(obj);
        Ok(self.objects.len() - 1)
    }

    fn push_id(&mut self, id: ObjId) -> Res<()> {
        if self.stack.len() + self.marks.len() >= MAX_STACK {
            return self.limit("stack entries", MAX_STACK);
        }
        self.stack.push(id);
        Ok(())
    }

    fn push(&mut self, obj: Obj<'a>) -> Res<()> {
        let id = self.alloc(obj)?;
        self.push_id(id)
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Res<ObjId> {
        if self.stack.len() <= self.fence() {
            return self.bad("stack underflow");
        }
        match self.stack.pop() {
            Some(id) => Ok(id),
            None => self.bad("stack underflow"),
        }
    }

    fn top(&self) -> Res<ObjId> {
        match self.stack.last() {
            Some(&id) if self.stack.len() > self.fence() => Ok(id),
            _ => self.bad("stack underflow"),
        }
    }

    /// Pops everything above the top MARK, and the mark.
    fn pop_mark(&mut self) -> Res<Vec<ObjId>> {
        let Some(k) = self.marks.pop() else {
            return self.bad("no MARK on the stack");
        };
        if k > self.stack.len() {
            return self.bad("MARK above the stack top");
        }
        Ok(self.stack.split_off(k))
    }

    fn obj(&self, id: ObjId) -> Res<&Obj<'a>> {
        match self.objects.get(id) {
            Some(o) => Ok(o),
            None => self.bad("internal: dangling object id"),
        }
    }

    fn obj_mut(&mut self, id: ObjId) -> Res<&mut Obj<'a>> {
        let offset = self.op_start;
        self.objects
            .get_mut(id)
            .ok_or_else(|| PickleError::Malformed {
                offset,
                problem: "internal: dangling object id".into(),
            })
    }

    fn memo_put(&mut self, key: u64) -> Res<()> {
        let id = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return self.limit("memo entries", MAX_MEMO);
        }
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Res<()> {
        match self.memo.get(&key) {
            Some(&id) => self.push_id(id),
            None => self.bad(format!("memo index {key} is not set")),
        }
    }

    fn container_push(&mut self, target: ObjId, items: Vec<ObjId>) -> Res<()> {
        self.charge(items.len().saturating_mul(8))?;
        match self.obj_mut(target)? {
            Obj::List(list) => {
                list.extend(items);
                Ok(())
            }
            other => {
                let t = other.described();
                self.bad(format!("cannot append to {t}"))
            }
        }
    }

    fn dict_set(&mut self, target: ObjId, items: Vec<ObjId>) -> Res<()> {
        if !items.len().is_multiple_of(2) {
            return self.bad("odd number of items for a dict");
        }
        self.charge(items.len().saturating_mul(8))?;
        match self.obj_mut(target)? {
            Obj::Dict(entries) => {
                entries.extend(items.chunks_exact(2).filter_map(|kv| match kv {
                    [k, v] => Some((*k, *v)),
                    _ => None,
                }));
                Ok(())
            }
            other => {
                let t = other.described();
                self.bad(format!("cannot set items on {t}"))
            }
        }
    }

    fn new_tuple(&mut self, items: Vec<ObjId>) -> Res<()> {
        self.charge(items.len().saturating_mul(8))?;
        self.push(Obj::Tuple(items))
    }

    // ----- the loop -----

    fn run(&mut self) -> Res<ObjId> {
        loop {
            self.op_start = self.pos;
            let Some(&op) = self.data.get(self.pos) else {
                return Err(PickleError::NoStop);
            };
            self.pos += 1;
            self.op_name = opcode_name(op).unwrap_or("?");
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > HIGHEST_PROTOCOL {
                        return self.bad(format!("unsupported protocol {proto}"));
                    }
                }
                0x95 => {
                    // FRAME: only a read-ahead hint; check it fits, then ignore.
                    let n = self.u64()?;
                    if n > self.left() as u64 {
                        return Err(PickleError::Truncated {
                            opcode: "FRAME",
                            offset: self.op_start,
                            needed: n,
                            left: self.left(),
                        });
                    }
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.stack.len() + self.marks.len() >= MAX_STACK {
                        return self.limit("stack entries", MAX_STACK);
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    // POP: the top item, or the top mark if nothing is above it.
                    if self.stack.len() > self.fence() {
                        self.pop()?;
                    } else if self.marks.pop().is_none() {
                        return self.bad("stack underflow");
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.push_id(id)?;
                }

                // ----- containers -----
                b'}' => self.push(Obj::Dict(Vec::new()))?,
                b']' => self.push(Obj::List(Vec::new()))?,
                b')' => self.push(Obj::Tuple(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let id = self.alloc(Obj::Dict(Vec::new()))?;
                    self.dict_set(id, items)?;
                    self.push_id(id)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.charge(items.len().saturating_mul(8))?;
                    self.push(Obj::List(items))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.new_tuple(items)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < self.fence() + n {
                        return self.bad("stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.new_tuple(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.dict_set(d, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?;
                    self.dict_set(d, items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?;
                    self.container_push(l, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?;
                    self.container_push(l, items)?;
                }

                // ----- strings and bytes -----
                b'X' => {
                    let n = self.u32()?;
                    self.unicode(u64::from(n))?;
                }
                0x8c => {
                    let n = self.u8()?;
                    self.unicode(u64::from(n))?;
                }
                0x8d => {
                    let n = self.u64()?;
                    self.unicode(n)?;
                }
                b'B' => {
                    let n = self.u32()?;
                    self.bytes(u64::from(n))?;
                }
                b'C' => {
                    let n = self.u8()?;
                    self.bytes(u64::from(n))?;
                }
                0x8e | 0x96 => {
                    // BINBYTES8, BYTEARRAY8 (a bytearray is read as bytes)
                    let n = self.u64()?;
                    self.bytes(n)?;
                }
                b'T' => {
                    let n = self.len_i32()?;
                    self.binstring(n)?;
                }
                b'U' => {
                    let n = self.u8()?;
                    self.binstring(u64::from(n))?;
                }
                b'V' => {
                    let line = self.line()?;
                    let Some(text) = raw_unicode_unescape(line) else {
                        return self.bad("bad raw-unicode-escape text");
                    };
                    self.charge(text.len())?;
                    self.push(Obj::Str(Cow::Owned(text)))?;
                }

                // ----- numbers and constants -----
                b'N' => self.push(Obj::None)?,
                0x88 => self.push(Obj::Bool(true))?,
                0x89 => self.push(Obj::Bool(false))?,
                b'J' => {
                    let v = self.i32()?;
                    self.push(Obj::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Obj::Int(i64::from(v)))?;
                }
                0x8a => {
                    let n = self.u8()?;
                    self.long(u64::from(n))?;
                }
                0x8b => {
                    let n = self.len_i32()?;
                    self.long(n)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push(Obj::Float(v))?;
                }
                b'I' => {
                    let line = self.line_str()?;
                    let obj = match line {
                        "00" => Obj::Bool(false),
                        "01" => Obj::Bool(true),
                        _ => self.parse_int(line)?,
                    };
                    self.push(obj)?;
                }
                b'L' => {
                    let line = self.line_str()?;
                    let obj = self.parse_int(line.strip_suffix('L').unwrap_or(line))?;
                    self.push(obj)?;
                }
                b'F' => {
                    let line = self.line_str()?;
                    match line.trim().parse::<f64>() {
                        Ok(v) => self.push(Obj::Float(v))?,
                        Err(_) => return self.bad("not a float"),
                    }
                }

                // ----- memo -----
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(u64::from(k))?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(u64::from(k))?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let k = self.line_index()?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get(u64::from(k))?;
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(u64::from(k))?;
                }
                b'g' => {
                    let k = self.line_index()?;
                    self.memo_get(k)?;
                }

                // ----- the restricted part -----
                b'c' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Obj::Str(module), Obj::Str(name)) = (self.obj(module)?, self.obj(name)?)
                    else {
                        return self.bad("module and name must be strings");
                    };
                    let callable = lookup_global(module, name)?;
                    self.push(Obj::Callable(callable))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let obj = self.reduce(func, args)?;
                    self.push(obj)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }

                _ => {
                    return Err(PickleError::Opcode {
                        opcode: op,
                        offset: self.op_start,
                    });
                }
            }
        }
    }

    fn unicode(&mut self, n: u64) -> Res<()> {
        let raw = self.take(n)?;
        let s = self.utf8(raw)?;
        self.push(Obj::Str(Cow::Borrowed(s)))
    }

    fn bytes(&mut self, n: u64) -> Res<()> {
        let raw = self.take(n)?;
        self.push(Obj::Bytes(Cow::Borrowed(raw)))
    }

    /// Python-2 `str`: Paddle loads with `encoding='latin1'`, so it is text
    /// with one char per byte.
    fn binstring(&mut self, n: u64) -> Res<()> {
        let raw = self.take(n)?;
        self.charge(raw.len().saturating_mul(2))?;
        let s: String = raw.iter().map(|&b| char::from(b)).collect();
        self.push(Obj::Str(Cow::Owned(s)))
    }

    /// LONG1/LONG4: little-endian two's complement of `n` bytes.
    fn long(&mut self, n: u64) -> Res<()> {
        let raw = self.take(n)?;
        let negative = raw.last().is_some_and(|&b| b & 0x80 != 0);
        let fill = if negative { 0xff } else { 0x00 };
        // Fits in i64 if everything past 8 bytes is sign extension and
        // the sign bit of byte 8 agrees.
        let (low, high) = raw.split_at(raw.len().min(8));
        let mut buf = [fill; 8];
        for (dst, src) in buf.iter_mut().zip(low) {
            *dst = *src;
        }
        let v = i64::from_le_bytes(buf);
        let fits = high.iter().all(|&b| b == fill) && ((v < 0) == negative);
        self.push(if fits { Obj::Int(v) } else { Obj::BigInt })
    }

    fn parse_int(&self, text: &str) -> Res<Obj<'a>> {
        let t = text.trim();
        match t.parse::<i64>() {
            Ok(v) => Ok(Obj::Int(v)),
            Err(_)
                if !t.is_empty()
                    && t.trim_start_matches(['-', '+'])
                        .bytes()
                        .all(|b| b.is_ascii_digit()) =>
            {
                Ok(Obj::BigInt)
            }
            Err(_) => self.bad("not an integer"),
        }
    }

    fn line_index(&mut self) -> Res<u64> {
        let line = self.line_str()?;
        match line.trim().parse::<u64>() {
            Ok(v) => Ok(v),
            Err(_) => self.bad("memo index is not a number"),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Res<()> {
        let callable = lookup_global(module, name)?;
        self.push(Obj::Callable(callable))
    }

    // ----- calls -----

    /// Items of a tuple object.
    fn tuple_items(&self, id: ObjId, what: &str) -> Res<Vec<ObjId>> {
        match self.obj(id)? {
            Obj::Tuple(items) => Ok(items.clone()),
            other => self.bad(format!("{what} must be a tuple, got {}", other.described())),
        }
    }

    fn reduce(&mut self, func: ObjId, args: ObjId) -> Res<Obj<'a>> {
        let callable = match self.obj(func)? {
            Obj::Callable(c) => *c,
            other => {
                return self.bad(format!("cannot call {}", other.described()));
            }
        };
        let args = match self.obj(args)? {
            Obj::Tuple(items) => items.clone(),
            other => {
                return self.bad(format!(
                    "{} arguments must be a tuple, got {}",
                    callable.name(),
                    other.described()
                ));
            }
        };
        let (offset, op_name) = (self.op_start, self.op_name);
        let wrong_args = || {
            Err(PickleError::Malformed {
                offset,
                problem: format!(
                    "{op_name}: {} called with unexpected arguments",
                    callable.name()
                ),
            })
        };
        match callable {
            Callable::Reconstruct => {
                // (numpy.ndarray, (0,), b'b'): only the class matters.
                let [cls, shape, code] = args.as_slice() else {
                    return wrong_args();
                };
                let ok = matches!(self.obj(*cls)?, Obj::Callable(Callable::NdarrayType))
                    && matches!(self.obj(*shape)?, Obj::Tuple(_))
                    && matches!(self.obj(*code)?, Obj::Bytes(_) | Obj::Str(_));
                if !ok {
                    return wrong_args();
                }
                Ok(Obj::Array(Box::new(NdArray { state: None })))
            }
            Callable::DtypeType => {
                // (code, align, copy): the flags do not change the type.
                let Some((code, flags)) = args.split_first() else {
                    return wrong_args();
                };
                if flags.len() > 2 {
                    return wrong_args();
                }
                for flag in flags {
                    if !matches!(self.obj(*flag)?, Obj::Bool(_) | Obj::Int(_)) {
                        return wrong_args();
                    }
                }
                let Obj::Str(code) = self.obj(*code)? else {
                    return wrong_args();
                };
                let dtype = parse_dtype_code(code);
                if let DtypeKind::Other(c) = &dtype.kind {
                    self.charge(c.len())?;
                }
                Ok(Obj::Dtype(Box::new(dtype)))
            }
            Callable::CodecsEncode => {
                let [text, encoding] = args.as_slice() else {
                    return wrong_args();
                };
                let (Obj::Str(text), Obj::Str(encoding)) = (self.obj(*text)?, self.obj(*encoding)?)
                else {
                    return wrong_args();
                };
                let enc = encoding.to_ascii_lowercase().replace(['-', '_'], "");
                if !matches!(enc.as_str(), "latin1" | "iso88591" | "l1") {
                    return self.bad(format!(
                        "_codecs.encode with encoding '{}' is not supported",
                        printable(encoding)
                    ));
                }
                let bytes = match latin1_bytes(text) {
                    Some(b) => b,
                    None => return self.bad("latin-1 text has a character above U+00FF"),
                };
                self.charge(bytes.len())?;
                Ok(Obj::Bytes(Cow::Owned(bytes)))
            }
            Callable::OrderedDict => {
                if !args.is_empty() {
                    return wrong_args();
                }
                Ok(Obj::Dict(Vec::new()))
            }
            Callable::TupleType => {
                let [items] = args.as_slice() else {
                    return wrong_args();
                };
                let items = match self.obj(*items)? {
                    Obj::Tuple(items) | Obj::List(items) => items.clone(),
                    _ => return wrong_args(),
                };
                self.charge(items.len().saturating_mul(8))?;
                Ok(Obj::Tuple(items))
            }
            Callable::BytesType => {
                if !args.is_empty() {
                    return wrong_args();
                }
                Ok(Obj::Bytes(Cow::Borrowed(&[])))
            }
            Callable::FromBuffer => {
                let [buf, dtype, shape, order] = args.as_slice() else {
                    return wrong_args();
                };
                if !matches!(self.obj(*buf)?, Obj::Bytes(_)) {
                    return wrong_args();
                }
                let dtype = self.dtype_of(*dtype)?;
                let shape = self.shape_of(*shape)?;
                let fortran = match self.obj(*order)? {
                    Obj::Str(o) if o == "C" => false,
                    Obj::Str(o) if o == "F" => true,
                    _ => return wrong_args(),
                };
                Ok(Obj::Array(Box::new(NdArray {
                    state: Some(ArrayState {
                        shape,
                        dtype,
                        fortran,
                        data: *buf,
                    }),
                })))
            }
            Callable::NdarrayType => self.bad("numpy.ndarray cannot be called directly"),
        }
    }

    fn dtype_of(&self, id: ObjId) -> Res<Dtype> {
        match self.obj(id)? {
            Obj::Dtype(d) => Ok((**d).clone()),
            other => self.bad(format!("expected a numpy dtype, got {}", other.described())),
        }
    }

    /// A shape tuple: non-negative ints.
    fn shape_of(&mut self, id: ObjId) -> Res<Vec<usize>> {
        let items = self.tuple_items(id, "array shape")?;
        self.charge(items.len().saturating_mul(8))?;
        let mut shape = Vec::with_capacity(items.len());
        for item in items {
            match self.obj(item)? {
                Obj::Int(v) => match usize::try_from(*v) {
                    Ok(d) => shape.push(d),
                    Err(_) => return self.bad(format!("array dimension {v} is invalid")),
                },
                other => {
                    return self.bad(format!(
                        "array dimension is {}, not an int",
                        other.described()
                    ));
                }
            }
        }
        Ok(shape)
    }

    fn build(&mut self, target: ObjId, state: ObjId) -> Res<()> {
        // A None state means "nothing to set" for any object.
        if matches!(self.obj(state)?, Obj::None) {
            return Ok(());
        }
        match self.obj(target)? {
            Obj::Array(_) => {
                let new_state = self.array_state(state)?;
                if let Obj::Array(a) = self.obj_mut(target)? {
                    a.state = Some(new_state);
                }
                Ok(())
            }
            Obj::Dtype(_) => {
                let (byteorder, structured) = self.dtype_state(state)?;
                if let Obj::Dtype(d) = self.obj_mut(target)? {
                    d.byteorder = byteorder;
                    d.structured = structured;
                }
                Ok(())
            }
            other => self.bad(format!("cannot set the state of {}", other.described())),
        }
    }

    /// ndarray state: `(version, shape, dtype, is_fortran, data)` or the
    /// same without the version.
    fn array_state(&mut self, state: ObjId) -> Res<ArrayState> {
        let items = self.tuple_items(state, "numpy array state")?;
        let rest = match items.as_slice() {
            [version, rest @ ..] if rest.len() == 4 => {
                if !matches!(self.obj(*version)?, Obj::Int(1)) {
                    return self.bad("numpy array state version is not 1");
                }
                rest.to_vec()
            }
            rest if rest.len() == 4 => rest.to_vec(),
            _ => {
                return self.bad(format!(
                    "numpy array state has {} items, expected 5",
                    items.len()
                ));
            }
        };
        let [shape, dtype, fortran, data] = rest.as_slice() else {
            return self.bad("numpy array state has the wrong length");
        };
        let shape = self.shape_of(*shape)?;
        let dtype = self.dtype_of(*dtype)?;
        let fortran = match self.obj(*fortran)? {
            Obj::Bool(b) => *b,
            Obj::Int(i) => *i != 0,
            other => {
                return self.bad(format!("numpy array order flag is {}", other.described()));
            }
        };
        Ok(ArrayState {
            shape,
            dtype,
            fortran,
            data: *data,
        })
    }

    /// dtype state: `(version, byteorder, subarray, names, fields, ...)`.
    fn dtype_state(&self, state: ObjId) -> Res<(u8, bool)> {
        let items = self.tuple_items(state, "numpy dtype state")?;
        let byteorder = match items.get(1).map(|&id| self.obj(id)).transpose()? {
            Some(Obj::Str(s)) if matches!(s.as_ref(), "<" | ">" | "=" | "|") => {
                s.as_bytes().first().copied().unwrap_or(b'=')
            }
            _ => return self.bad("numpy dtype state has no byte order"),
        };
        let mut structured = false;
        for id in items.iter().skip(2).take(3) {
            if !matches!(self.obj(*id)?, Obj::None) {
                structured = true;
            }
        }
        Ok((byteorder, structured))
    }
}

/// The fixed table, or the "not allowed" error naming `module.name`.
fn lookup_global(module: &str, name: &str) -> Res<Callable> {
    Callable::lookup(module, name).ok_or_else(|| PickleError::GlobalNotAllowed {
        module: printable(module),
        name: printable(name),
    })
}

/// `f4`, `<f8`, `float16`, ... -> dtype with the byte order it names.
fn parse_dtype_code(code: &str) -> Dtype {
    let (byteorder, rest) = match code.as_bytes().first() {
        Some(&b @ (b'<' | b'>' | b'=' | b'|')) => (b, code.get(1..).unwrap_or_default()),
        _ => (b'=', code),
    };
    let kind = match rest {
        "f2" | "e" | "float16" | "half" => DtypeKind::F16,
        "f4" | "f" | "float32" | "single" => DtypeKind::F32,
        "f8" | "d" | "float64" | "double" | "float" => DtypeKind::F64,
        other => DtypeKind::Other(printable(other)),
    };
    Dtype {
        kind,
        byteorder,
        structured: false,
    }
}

/// Protocol 0's UNICODE argument: latin-1 bytes with `\uXXXX` and
/// `\UXXXXXXXX` escapes (a backslash before anything else is literal).
fn raw_unicode_unescape(line: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while let Some(&b) = line.get(i) {
        let digits = match (b, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if digits == 0 {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = line.get(i + 2..i + 2 + digits)?;
        let hex = std::str::from_utf8(hex).ok()?;
        if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
            return None;
        }
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        i += 2 + digits;
    }
    Some(out)
}

/// Text with every char <= U+00FF -> one byte per char.
pub fn latin1_bytes(text: &str) -> Option<Vec<u8>> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn run(data: &[u8]) -> Result<Unpickled<'_>, PickleError> {
        unpickle(data)
    }

    fn root_obj<'b>(u: &'b Unpickled<'_>) -> &'b Obj<'b> {
        // Shorten the lifetime for comparisons in tests.
        let o: &Obj<'_> = u.get(u.root()).unwrap();
        o
    }

    fn err(data: &[u8]) -> String {
        run(data).unwrap_err().to_string()
    }

    #[test]
    fn os_system_is_rejected() {
        assert_eq!(
            err(b"cos\nsystem\n(S'echo hi'\ntR."),
            "pickle global os.system is not allowed"
        );
        // Same through STACK_GLOBAL (protocol 4) and with builtins.eval.
        let mut p = vec![0x80, 4, 0x8c, 8];
        p.extend(b"builtins");
        p.extend([0x8c, 4]);
        p.extend(b"eval");
        p.extend([0x93, b'.']);
        assert_eq!(err(&p), "pickle global builtins.eval is not allowed");
        // A hostile name stays on one line.
        let e = err(b"cos\nsys\rtem\n.");
        assert_eq!(e, "pickle global os.sys\\rtem is not allowed");
    }

    #[test]
    fn plain_data_types() {
        // {'a': [1, -2, 300, 70000, True, None, 1.5, b'xy', 'z', (1, 2)]}
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'X', 1, 0, 0, 0, b'a', b']', b'('];
        p.extend([b'K', 1, b'J']);
        p.extend((-2i32).to_le_bytes());
        p.extend([b'M', 0x2c, 0x01, b'J']);
        p.extend(70000i32.to_le_bytes());
        p.extend([0x88, b'N', b'G']);
        p.extend(1.5f64.to_be_bytes());
        p.extend([b'C', 2, b'x', b'y', 0x8c, 1, b'z', b'K', 1, b'K', 2, 0x86]);
        p.extend([b'e', b's', b'.']);
        let u = run(&p).unwrap();
        let Obj::Dict(entries) = root_obj(&u) else {
            panic!("not a dict")
        };
        assert_eq!(entries.len(), 1);
        let (k, v) = entries[0];
        assert_eq!(u.get(k).unwrap(), &Obj::Str("a".into()));
        let Obj::List(items) = u.get(v).unwrap() else {
            panic!()
        };
        let got: Vec<_> = items.iter().map(|&i| u.get(i).unwrap().clone()).collect();
        assert_eq!(got[0], Obj::Int(1));
        assert_eq!(got[1], Obj::Int(-2));
        assert_eq!(got[2], Obj::Int(300));
        assert_eq!(got[3], Obj::Int(70000));
        assert_eq!(got[4], Obj::Bool(true));
        assert_eq!(got[5], Obj::None);
        assert_eq!(got[6], Obj::Float(1.5));
        assert_eq!(got[7], Obj::Bytes(Cow::Borrowed(b"xy")));
        assert_eq!(got[8], Obj::Str("z".into()));
        assert!(matches!(&got[9], Obj::Tuple(t) if t.len() == 2));
    }

    #[test]
    fn protocol0_text_opcodes() {
        // (dp0\nI1\nI01\nsL5L\n(lp1\nF0.25\nag0\na.   -> {1: True, 5: [0.25, {...}]}
        let u = run(b"(dp0\nI1\nI01\nsL5L\n(lp1\nF0.25\nag0\nas.").unwrap();
        let Obj::Dict(e) = root_obj(&u) else { panic!() };
        assert_eq!(e.len(), 2);
        assert_eq!(u.get(e[0].0).unwrap(), &Obj::Int(1));
        assert_eq!(u.get(e[0].1).unwrap(), &Obj::Bool(true));
        assert_eq!(u.get(e[1].0).unwrap(), &Obj::Int(5));
        let Obj::List(l) = u.get(e[1].1).unwrap() else {
            panic!()
        };
        assert_eq!(u.get(l[0]).unwrap(), &Obj::Float(0.25));
        // The memo shares the object: the list holds the dict itself.
        assert_eq!(l[1], u.root());
    }

    #[test]
    fn long_values() {
        let cases: &[(&[u8], Obj<'static>)] = &[
            (&[], Obj::Int(0)),
            (&[0xff], Obj::Int(-1)),
            (&[0x00, 0x80], Obj::Int(-32768)),
            (&[0x00, 0x80, 0x00], Obj::Int(32768)),
            (&[0xff; 8], Obj::Int(-1)),
            (&[0, 0, 0, 0, 0, 0, 0, 0x80, 0], Obj::BigInt),
            (&[0, 0, 0, 0, 0, 0, 0, 0x80], Obj::Int(i64::MIN)),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff],
                Obj::BigInt,
            ),
            (&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0], Obj::Int(1)),
        ];
        for (bytes, want) in cases {
            let mut p = vec![0x8a, bytes.len() as u8];
            p.extend(*bytes);
            p.push(b'.');
            let u = run(&p).unwrap();
            assert_eq!(root_obj(&u), want, "{bytes:?}");
        }
    }

    #[test]
    fn dup_pop_and_marks() {
        // ] DUP POP ( K1 POP_MARK .  -> the list
        let u = run(b"]20(K\x011.").unwrap();
        assert_eq!(root_obj(&u), &Obj::List(vec![]));
        // POP with nothing above a mark pops the mark.
        let u = run(b"](0.").unwrap();
        assert_eq!(root_obj(&u), &Obj::List(vec![]));
        // Items below a MARK cannot be popped while the mark is open.
        assert!(err(b"N(0R.").contains("stack underflow"));
        assert!(err(b"N(s.").contains("stack underflow"));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "an empty file, not a PaddlePaddle checkpoint"),
            (b"\x80\x04", "truncated pickle (no STOP opcode)"),
            (b"\x80\x04}", "truncated pickle (no STOP opcode)"),
            (b"\x80\x09.", "unsupported protocol 9"),
            (b"\x80\x02.", "stack underflow"),
            (b".", "first byte 0x2e"),
            (b"hello world\n", "first byte 0x68"),
            (b"# a text file\n", "first byte 0x23"),
            (b"\x80\x02\x81.", "0x81 (NEWOBJ) at byte 2 is not supported"),
            (
                b"\x80\x02S'x'\n.",
                "0x53 (STRING) at byte 2 is not supported",
            ),
            (b"\x80\x02\xff.", "0xff (not a pickle opcode)"),
            (b"\x80\x02h\x05.", "memo index 5 is not set"),
            (
                b"\x80\x02X\xff\xff\xff\xff",
                "BINUNICODE at byte 2 needs 4294967295 bytes, 0 left",
            ),
            (
                b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7fabc",
                "BINBYTES8 at byte 2 needs 9223372036854775807 bytes, 3 left",
            ),
            (
                b"\x80\x04\x95\x00\x00\x00\x00\x01\x00\x00\x00.",
                "FRAME at byte 2 needs",
            ),
            (b"\x80\x02T\xff\xff\xff\xff", "negative length -1"),
            (b"\x80\x02X\x02\x00\x00\x00\xc3(.", "not valid UTF-8"),
            (b"\x80\x02K\x01K\x01K\x02s.", "cannot set items on an int"),
            (b"\x80\x02K\x01K\x02a.", "cannot append to an int"),
            (b"\x80\x02K\x01)R.", "cannot call an int"),
            (b"\x80\x02]K\x01b.", "cannot set the state of a list"),
            (b"\x80\x02u.", "no MARK on the stack"),
            (b"\x80\x02(K\x01d.", "odd number of items"),
            (
                b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00utf8\x86R.",
                "encoding 'utf8'",
            ),
            (
                b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00a\x85R.",
                "unexpected arguments",
            ),
            (b"\x80\x02cnumpy\nndarray\n)R.", "cannot be called directly"),
            (
                b"\x80\x02cnumpy\ndtype\nK\x01\x85R.",
                "unexpected arguments",
            ),
            (
                b"\x80\x02ccollections\nOrderedDict\nK\x01R.",
                "arguments must be a tuple",
            ),
            (b"\x80\x02cnumpy\n", "GLOBAL at byte 2 needs"),
        ];
        for (data, want) in cases {
            let e = err(data);
            assert!(e.contains(want), "{data:?}: got {e:?}, want {want:?}");
            assert!(!e.contains('\n'), "{e:?}");
        }
    }

    #[test]
    fn known_callables() {
        // OrderedDict() -> empty dict; bytes() -> b''; _codecs.encode latin-1.
        let u = run(b"\x80\x02ccollections\nOrderedDict\n)R.").unwrap();
        assert_eq!(root_obj(&u), &Obj::Dict(vec![]));
        let u = run(b"\x80\x02c__builtin__\nbytes\n)R.").unwrap();
        assert_eq!(root_obj(&u), &Obj::Bytes(Cow::Borrowed(b"")));
        let u = run(
            b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00\xc3\xbfaX\x06\x00\x00\x00latin1\x86R.",
        )
        .unwrap();
        assert_eq!(root_obj(&u), &Obj::Bytes(Cow::Owned(vec![0xff, b'a'])));
        let e = err(
            b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00\xc4\x80X\x06\x00\x00\x00latin1\x86R.",
        );
        assert!(e.contains("above U+00FF"), "{e}");
    }

    #[test]
    fn dtype_codes() {
        assert_eq!(parse_dtype_code("f4").kind, DtypeKind::F32);
        assert_eq!(parse_dtype_code("<f8").byteorder, b'<');
        assert_eq!(parse_dtype_code(">f2").describe(), ">f2");
        assert_eq!(parse_dtype_code("i8").describe(), "i8");
        assert_eq!(parse_dtype_code("i8").itemsize(), None);
    }

    #[test]
    fn deep_nesting_and_long_runs_do_not_recurse() {
        // 200k nested lists: ] repeated, then APPEND repeated.
        let n = 200_000;
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b']', n));
        p.extend(std::iter::repeat_n(b'a', n - 1));
        p.push(b'.');
        let u = run(&p).unwrap();
        assert!(matches!(root_obj(&u), Obj::List(l) if l.len() == 1));
        // 200k open MARKs, never closed.
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b'(', n));
        p.push(b'N');
        p.push(b'.');
        assert!(run(&p).is_ok());
        // Nested tuples of tuples.
        let mut p = vec![0x80, 2, b')'];
        p.extend(std::iter::repeat_n(0x85, n));
        p.push(b'.');
        assert!(run(&p).is_ok());
    }

    #[test]
    fn stack_and_object_limits() {
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat_n(b'2', MAX_STACK));
        p.push(b'.');
        let e = err(&p);
        assert!(e.contains("limit of 4194304 stack entries"), "{e}");
        // Sharing cannot multiply memory: one 1 MB string encoded again and
        // again runs into the budget instead of allocating gigabytes.
        let big = "a".repeat(1 << 20);
        let mut p = vec![0x80, 2, b'c'];
        p.extend(b"_codecs\nencode\nq\x00X");
        p.extend((big.len() as u32).to_le_bytes());
        p.extend(big.as_bytes());
        p.extend(b"X\x06\x00\x00\x00latin1\x86q\x01");
        for _ in 0..10_000 {
            p.extend(b"h\x00h\x01R0");
        }
        p.push(b'.');
        let e = err(&p);
        assert!(e.contains("bytes of decoded data"), "{e}");
    }

    /// Python-like repr of an object, for comparisons (depth-limited).
    fn repr(u: &Unpickled<'_>, id: ObjId, depth: usize) -> String {
        assert!(depth < 20, "too deep");
        let list = |items: &[ObjId]| {
            items
                .iter()
                .map(|&i| repr(u, i, depth + 1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match u.get(id).unwrap() {
            Obj::None => "None".into(),
            Obj::Bool(b) => if *b { "True" } else { "False" }.into(),
            Obj::Int(i) => i.to_string(),
            Obj::BigInt => "<bigint>".into(),
            Obj::Float(f) => format!("{f:?}"),
            Obj::Str(s) => format!("{s:?}"),
            Obj::Bytes(b) => format!("b{:?}", String::from_utf8_lossy(b)),
            Obj::Tuple(t) => format!("({})", list(t)),
            Obj::List(l) => format!("[{}]", list(l)),
            Obj::Dict(d) => {
                let parts: Vec<_> = d
                    .iter()
                    .map(|&(k, v)| format!("{}: {}", repr(u, k, depth + 1), repr(u, v, depth + 1)))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            other => other.type_name().into(),
        }
    }

    #[test]
    fn cpython_protocol_samples() {
        // Made by CPython 3.11: pickle.dumps({'k': [1, 'two', b'3', 4.5, None,
        // True, (), {'n': -7}, 2**70, -2**40, b'', 'a\\b\nc\u20ac']},
        // protocol=P) for P = 0..5.
        let samples: [&[u8]; 6] = [
            b"(dp0\x0aVk\x0ap1\x0a(lp2\x0aI1\x0aaVtwo\x0ap3\x0aac_codecs\x0aencode\x0ap4\x0a(V3\x0ap5\x0aVlatin1\x0ap6\x0atp7\x0aRp8\x0aaF4.5\x0aaNaI01\x0aa(ta(dp9\x0aVn\x0ap10\x0aI-7\x0asaL1180591620717411303424L\x0aaL-1099511627776L\x0aac__builtin__\x0abytes\x0ap11\x0a(tRp12\x0aaVa\x5cu005cb\x5cu000ac\x5cu20ac\x0ap13\x0aas.",
            b"}q\x00X\x01\x00\x00\x00kq\x01]q\x02(K\x01X\x03\x00\x00\x00twoq\x03c_codecs\x0aencode\x0aq\x04(X\x01\x00\x00\x003q\x05X\x06\x00\x00\x00latin1q\x06tq\x07Rq\x08G@\x12\x00\x00\x00\x00\x00\x00NI01\x0a)}q\x09X\x01\x00\x00\x00nq\x0aJ\xf9\xff\xff\xffsL1180591620717411303424L\x0aL-1099511627776L\x0ac__builtin__\x0abytes\x0aq\x0b)Rq\x0cX\x08\x00\x00\x00a\x5cb\x0ac\xe2\x82\xacq\x0des.",
            b"\x80\x02}q\x00X\x01\x00\x00\x00kq\x01]q\x02(K\x01X\x03\x00\x00\x00twoq\x03c_codecs\x0aencode\x0aq\x04X\x01\x00\x00\x003q\x05X\x06\x00\x00\x00latin1q\x06\x86q\x07Rq\x08G@\x12\x00\x00\x00\x00\x00\x00N\x88)}q\x09X\x01\x00\x00\x00nq\x0aJ\xf9\xff\xff\xffs\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8a\x06\x00\x00\x00\x00\x00\xffc__builtin__\x0abytes\x0aq\x0b)Rq\x0cX\x08\x00\x00\x00a\x5cb\x0ac\xe2\x82\xacq\x0des.",
            b"\x80\x03}q\x00X\x01\x00\x00\x00kq\x01]q\x02(K\x01X\x03\x00\x00\x00twoq\x03C\x013q\x04G@\x12\x00\x00\x00\x00\x00\x00N\x88)}q\x05X\x01\x00\x00\x00nq\x06J\xf9\xff\xff\xffs\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8a\x06\x00\x00\x00\x00\x00\xffC\x00q\x07X\x08\x00\x00\x00a\x5cb\x0ac\xe2\x82\xacq\x08es.",
            b"\x80\x04\x95Q\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01k\x94]\x94(K\x01\x8c\x03two\x94C\x013\x94G@\x12\x00\x00\x00\x00\x00\x00N\x88)}\x94\x8c\x01n\x94J\xf9\xff\xff\xffs\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8a\x06\x00\x00\x00\x00\x00\xffC\x00\x94\x8c\x08a\x5cb\x0ac\xe2\x82\xac\x94es.",
            b"\x80\x05\x95Q\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01k\x94]\x94(K\x01\x8c\x03two\x94C\x013\x94G@\x12\x00\x00\x00\x00\x00\x00N\x88)}\x94\x8c\x01n\x94J\xf9\xff\xff\xffs\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8a\x06\x00\x00\x00\x00\x00\xffC\x00\x94\x8c\x08a\x5cb\x0ac\xe2\x82\xac\x94es.",
        ];
        let want = r#"{"k": [1, "two", b"3", 4.5, None, True, (), {"n": -7}, <bigint>, -1099511627776, b"", "a\\b\nc€"]}"#;
        for (p, data) in samples.iter().enumerate() {
            let u = run(data).unwrap_or_else(|e| panic!("protocol {p}: {e}"));
            assert_eq!(repr(&u, u.root(), 0), want, "protocol {p}");
        }
    }
}
