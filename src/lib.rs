//! Kineto: PaddleVideo's PP-TSMv2 and PP-TSM action recognisers in Rust, from PaddleVideo's own
//! checkpoints, with PaddleVideo's exact preprocessing.
//!
//! Modules, each using only those listed before it (`app` and the binary's `cli` use any):
//! - `progress`: cancellation, wake-ups, latest-value mailboxes and `Task` (one-off work on a
//!   named thread) shared by workers;
//! - `npy`: `.npy` reading and writing;
//! - `files`: folder walks that survive links and odd files, reads of regular files only;
//! - `text`: message helpers (the nearest name to a typo);
//! - `report`: prediction results (ranked classes, per-file records) as a table, JSON and CSV;
//! - `video`: frames, decoding, sampling, and PaddleVideo's transforms with its preprocessing
//!   constants;
//! - `model`: the networks as burn modules, the in-memory parameter store and strict loading
//!   into modules;
//! - `checkpoint`: weights files (safe `.pdparams`, safetensors), key layouts, opening a file with
//!   its architecture detected; atomic file writes;
//! - `labels`: label sets, labelling projects and their export;
//! - `weights`: the published checkpoints' catalog, cache, downloads, resolution and export;
//! - `infer`: devices, the engine, top-k, classification, timelines, live labels and the
//!   inference service;
//! - `train`: datasets, head-only, distilled and full fine-tuning, as one training service;
//! - `app`: the window (panels draw and send commands to the services above).
//!
//! ARCHITECTURE.md at the repository root is the map: layers, forward paths, threads, files.

pub mod app;
pub mod checkpoint;
pub mod files;
#[cfg(test)]
mod fuzz_lite;
pub mod infer;
pub mod labels;
pub mod model;
pub mod npy;
pub mod progress;
pub mod report;
pub mod text;
pub mod train;
pub mod video;
pub mod weights;
