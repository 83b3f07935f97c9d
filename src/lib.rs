//! Kineto: PaddleVideo's PP-TSMv2 and PP-TSM action recognisers in Rust, from PaddleVideo's own
//! checkpoints, with PaddleVideo's exact preprocessing.
//!
//! Modules mirror `DESIGN.md`: `checkpoint` (safe `.pdparams` I/O, key layouts, strict loading),
//! `model` (the networks as burn modules), `infer` (devices, engine, top-k), `video` (frames,
//! sampling, transforms), `npy`.

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
