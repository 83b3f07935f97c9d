//! Kineto: PaddleVideo's PP-TSMv2 and PP-TSM action recognisers in Rust, from PaddleVideo's own
//! checkpoints, with PaddleVideo's exact preprocessing.
//!
//! Modules, each using only those listed before it (`app` and the binary's `cli` use any):
//! - `progress`: cancellation, wake-ups and latest-value mailboxes shared by workers;
//! - `npy`: `.npy` reading and writing;
//! - `report`: prediction results (ranked classes, per-file records) as a table, JSON and CSV;
//! - `video`: frames, decoding, sampling, and PaddleVideo's transforms with its preprocessing
//!   constants;
//! - `model`: the networks as burn modules, the in-memory parameter store and strict loading
//!   into modules;
//! - `checkpoint`: weights files (safe `.pdparams`, safetensors), key layouts, opening a file with
//!   its architecture detected; atomic file writes;
//! - `labels`: label sets, labelling projects and their export;
//! - `weights`: the published checkpoints' catalog, cache, downloads, resolution and export;
//! - `infer`: devices, the engine, top-k, classification, timelines and live labels;
//! - `train`: datasets, head-only, distilled and full fine-tuning.

pub mod app;
pub mod checkpoint;
pub mod infer;
pub mod labels;
pub mod model;
pub mod npy;
pub mod progress;
pub mod report;
pub mod train;
pub mod video;
pub mod weights;
