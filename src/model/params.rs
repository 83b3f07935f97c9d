//! The in-memory parameter store: named f32 arrays in file order, which every checkpoint format
//! reads into and writes from, and which the networks are built from by name.
//!
//! The checkpoint readers build these from untrusted files, so nothing here may panic.
#![deny(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt;

/// One named f32 array. `shape` may be empty (0-d scalar).
/// `data.len() == product(shape)` (1 for 0-d).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// `ParamTensor::new` was given data whose length does not fit the shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("shape {shape:?} needs {expected} values, got {actual}")]
pub struct ShapeError {
    pub shape: Vec<usize>,
    /// `None` when the element count overflows `usize`.
    pub expected: ExpectedCount,
    pub actual: usize,
}

/// Element count a shape asks for (or that it overflows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedCount {
    Count(usize),
    Overflow,
}

impl fmt::Display for ExpectedCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedCount::Count(n) => write!(f, "{n}"),
            ExpectedCount::Overflow => f.write_str("more than usize::MAX"),
        }
    }
}

/// Element count of `shape` (1 for a 0-d shape); `None` if it overflows.
/// A zero dimension gives 0 even when the other dimensions would overflow.
pub fn shape_numel(shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl ParamTensor {
    /// Checks that `data` holds exactly `product(shape)` values.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, ShapeError> {
        match shape_numel(&shape) {
            Some(n) if n == data.len() => Ok(ParamTensor { shape, data }),
            expected => Err(ShapeError {
                shape,
                expected: expected.map_or(ExpectedCount::Overflow, ExpectedCount::Count),
                actual: data.len(),
            }),
        }
    }

    /// Number of elements (`data.len()`).
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Ordered name -> tensor map. Insertion order is kept (it is the file order
/// for loaded checkpoints, which the writer reproduces).
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    entries: Vec<(String, ParamTensor)>,
    index: HashMap<String, usize>,
}

impl PartialEq for ParamStore {
    /// Same names in the same order with equal tensors. (`f32` equality:
    /// use the tests' bitwise helpers where NaN payloads matter.)
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name`, or replaces its tensor in place (keeping its position).
    pub fn insert(&mut self, name: impl Into<String>, tensor: ParamTensor) {
        let name = name.into();
        if let Some(&i) = self.index.get(&name)
            && let Some(slot) = self.entries.get_mut(i)
        {
            slot.1 = tensor;
            return;
        }
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, tensor));
    }

    pub fn get(&self, name: &str) -> Option<&ParamTensor> {
        let &i = self.index.get(name)?;
        self.entries.get(i).map(|(_, t)| t)
    }

    /// Removes `name`; the remaining entries keep their order.
    pub fn remove(&mut self, name: &str) -> Option<ParamTensor> {
        let i = self.index.remove(name)?;
        if i >= self.entries.len() {
            return None;
        }
        let (_, tensor) = self.entries.remove(i);
        // Entries after `i` moved down by one.
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(tensor)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// (name, tensor) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamTensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Sum of the element counts of all tensors.
    pub fn num_values(&self) -> usize {
        self.entries.iter().map(|(_, t)| t.numel()).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: &[f32]) -> ParamTensor {
        ParamTensor::new(shape.to_vec(), data.to_vec()).unwrap()
    }

    #[test]
    fn tensor_new_checks_len() {
        assert_eq!(t(&[], &[0.5]).numel(), 1);
        assert_eq!(t(&[2, 0, 3], &[]).numel(), 0);
        assert_eq!(t(&[2, 3], &[0.0; 6]).shape, vec![2, 3]);
        let e = ParamTensor::new(vec![4], vec![1.0; 3]).unwrap_err();
        assert_eq!(e.to_string(), "shape [4] needs 4 values, got 3");
        let e = ParamTensor::new(vec![], vec![]).unwrap_err();
        assert_eq!(e.to_string(), "shape [] needs 1 values, got 0");
        let e = ParamTensor::new(vec![usize::MAX, 2], vec![]).unwrap_err();
        assert_eq!(e.expected, ExpectedCount::Overflow);
        assert_eq!(shape_numel(&[usize::MAX, 2, 0]), Some(0));
    }

    #[test]
    fn store_keeps_order_and_replaces_in_place() {
        let mut s = ParamStore::new();
        assert!(s.is_empty());
        s.insert("a", t(&[1], &[1.0]));
        s.insert("b".to_string(), t(&[2], &[2.0, 2.5]));
        s.insert("c", t(&[], &[3.0]));
        s.insert("b", t(&[1], &[9.0]));
        assert_eq!(s.names().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(s.get("b").unwrap().data, vec![9.0]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.num_values(), 3);
        assert!(s.contains("c") && !s.contains("d"));

        assert_eq!(s.remove("a").unwrap().data, vec![1.0]);
        assert!(s.remove("a").is_none());
        assert_eq!(s.names().collect::<Vec<_>>(), ["b", "c"]);
        // The index still finds the entries that moved.
        assert_eq!(s.get("c").unwrap().data, vec![3.0]);
        assert_eq!(s.get("b").unwrap().data, vec![9.0]);
        s.insert("a", t(&[1], &[4.0]));
        let pairs: Vec<_> = s.iter().map(|(n, t)| (n.to_string(), t.data[0])).collect();
        assert_eq!(
            pairs,
            [("b".into(), 9.0), ("c".into(), 3.0), ("a".to_string(), 4.0)]
        );
    }
}
