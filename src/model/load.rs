//! Strict loading of a `ParamStore` into a burn module by name, and the reverse.
//!
//! The module is walked with its paths (burn's `ModuleMapper`); `key_of` turns a path into the
//! checkpoint key. Every missing, unexpected or mis-shaped key is reported by name.

use std::collections::HashSet;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use super::layers::tensor_from_host;
use super::params::{ParamStore, ParamTensor};

pub struct StrictLoad<M> {
    pub module: M,
    /// One entry per problem, e.g. `missing backbone.fc.bias`.
    pub problems: Vec<String>,
}

struct Loader<'a, F: Fn(&str) -> String> {
    store: &'a ParamStore,
    device: &'a Device,
    key_of: F,
    path: Vec<String>,
    used: HashSet<String>,
    problems: Vec<String>,
}

impl<F: Fn(&str) -> String> ModuleMapper for Loader<'_, F> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = (self.key_of)(&self.path.join("."));
        let wanted = param.dims();
        let Some(found) = self.store.get(&key) else {
            self.problems.push(format!("missing {key} {wanted:?}"));
            return param;
        };
        self.used.insert(key.clone());
        let Ok(shape) = <[usize; D]>::try_from(found.shape.as_slice()) else {
            self.problems.push(format!(
                "{key} has shape {:?}, the model needs {wanted:?}",
                found.shape
            ));
            return param;
        };
        if shape != wanted {
            self.problems.push(format!(
                "{key} has shape {shape:?}, the model needs {wanted:?}"
            ));
            return param;
        }
        let tensor = tensor_from_host(found.data.clone(), shape, self.device);
        Param::initialized(param.id, tensor)
    }
}

/// Fills `module` from `store`. Keys for which `ignored` is true may stay unused.
pub fn load_strict<M: Module>(
    module: M,
    store: &ParamStore,
    device: &Device,
    key_of: impl Fn(&str) -> String,
    ignored: impl Fn(&str) -> bool,
) -> StrictLoad<M> {
    let mut loader = Loader {
        store,
        device,
        key_of,
        path: Vec::new(),
        used: HashSet::new(),
        problems: Vec::new(),
    };
    let module = module.map(&mut loader);
    let mut problems = loader.problems;
    problems.extend(
        store
            .names()
            .filter(|k| !loader.used.contains(*k) && !ignored(k))
            .map(|k| format!("unexpected {k}")),
    );
    StrictLoad { module, problems }
}

struct Collector<F: Fn(&str) -> String> {
    key_of: F,
    path: Vec<String>,
    store: ParamStore,
}

impl<F: Fn(&str) -> String> ModuleVisitor for Collector<F> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = (self.key_of)(&self.path.join("."));
        let data = param.val().into_data().convert::<f32>();
        let shape = data.shape().to_vec();
        let values = data.try_into_vec::<f32>().unwrap_or_default();
        self.store.insert(
            key,
            ParamTensor {
                shape,
                data: values,
            },
        );
    }
}

/// Every float parameter of `module` under its checkpoint key, in module order.
pub fn store_from_module<M: Module>(module: &M, key_of: impl Fn(&str) -> String) -> ParamStore {
    let mut collector = Collector {
        key_of,
        path: Vec::new(),
        store: ParamStore::new(),
    };
    module.visit(&mut collector);
    collector.store
}
