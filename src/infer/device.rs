//! `--device cpu|gpu|auto` -> a burn device, the adapter it runs on, and the thread pool that CPU
//! kernels use (flex parallelises on rayon's current pool).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use burn::tensor::wgpu::wgpu;
use burn::tensor::{Device, DeviceKind};

use super::InferError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    Cpu,
    Gpu,
    /// A hardware wgpu adapter if there is one, else the CPU (never a software adapter).
    #[default]
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "auto" => Ok(Self::Auto),
            other => Err(format!("unknown device {other:?}; use cpu, gpu or auto")),
        }
    }
}

/// One wgpu adapter as the system reports it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: wgpu::DeviceType,
}

impl AdapterSummary {
    pub fn is_hardware(&self) -> bool {
        matches!(
            self.device_type,
            wgpu::DeviceType::DiscreteGpu
                | wgpu::DeviceType::IntegratedGpu
                | wgpu::DeviceType::VirtualGpu
        )
    }
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {:?})",
            self.name, self.backend, self.device_type
        )
    }
}

/// Lists adapters without opening any device.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance = wgpu::Instance::default();
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .map(|a| {
            let info = a.get_info();
            AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: info.device_type,
            }
        })
        .collect()
}

/// Where inference runs, resolved.
#[derive(Clone)]
pub struct ComputeDevice {
    pub device: Device,
    /// "cpu" or "gpu".
    pub kind: &'static str,
    /// "flex" or "wgpu".
    pub backend: &'static str,
    /// The adapter's name (CPU: "flex").
    pub adapter: String,
    /// Set when `gpu` had to take a software adapter (lavapipe): worth telling the user.
    pub software_adapter: bool,
    pub threads: usize,
    pool: Arc<rayon::ThreadPool>,
}

impl fmt::Debug for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}, {} threads)",
            self.kind, self.backend, self.adapter, self.threads
        )
    }
}

impl ComputeDevice {
    /// `threads == 0` means all cores.
    pub fn resolve(choice: DeviceChoice, threads: usize) -> Result<Self, InferError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("kineto-infer-{i}"))
            .build()
            .map_err(|e| InferError::Device(format!("cannot start {threads} threads: {e}")))?;
        let cpu = |pool| Self {
            device: Device::flex(),
            kind: "cpu",
            backend: "flex",
            adapter: "flex".to_string(),
            software_adapter: false,
            threads,
            pool: Arc::new(pool),
        };
        if choice == DeviceChoice::Cpu {
            return Ok(cpu(pool));
        }
        let adapters = list_adapters();
        let hardware = pick(&adapters, true);
        let chosen = match (choice, hardware) {
            (_, Some(found)) => Some((found, false)),
            (DeviceChoice::Gpu, None) => pick(&adapters, false).map(|found| (found, true)),
            _ => None,
        };
        let Some(((adapter, kind), software)) = chosen else {
            if choice == DeviceChoice::Gpu {
                let seen = if adapters.is_empty() {
                    "no wgpu adapter at all (is libvulkan1 with a Vulkan driver installed?)"
                        .to_string()
                } else {
                    adapters
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(InferError::Device(format!(
                    "--device gpu: no usable GPU adapter; found {seen}"
                )));
            }
            return Ok(cpu(pool));
        };
        Ok(Self {
            device: Device::wgpu(kind),
            kind: "gpu",
            backend: "wgpu",
            adapter: adapter.to_string(),
            software_adapter: software,
            threads,
            pool: Arc::new(pool),
        })
    }

    /// Runs `f` with this device's thread pool as rayon's current pool.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// The first adapter of the wanted kind (hardware, or any), Vulkan first, as a burn device kind.
fn pick(adapters: &[AdapterSummary], hardware: bool) -> Option<(&AdapterSummary, DeviceKind)> {
    let vulkan_first = adapters
        .iter()
        .filter(|a| a.backend == "Vulkan")
        .chain(adapters.iter().filter(|a| a.backend != "Vulkan"));
    vulkan_first
        .filter(|a| !hardware || a.is_hardware())
        .find_map(|adapter| {
            let kind = match adapter.device_type {
                wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(0),
                wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(0),
                wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(0),
                wgpu::DeviceType::Cpu => DeviceKind::Cpu,
                wgpu::DeviceType::Other => return None,
            };
            Some((adapter, kind))
        })
}
