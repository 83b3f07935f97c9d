//! Video in: frames, PaddleVideo's samplers and transforms (an exact port of its preprocessing).

pub mod frame;
pub mod pillow;
pub mod sample;
pub mod transform;
