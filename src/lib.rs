//! samemath: game graphics and LLMs run the same GPU math, shown live.
//!
//! Rooms: `math` (engine-free matrices, lighting, meshes), `app` (the Bevy shell), `graphics`
//! (scene 1), `cli` (the command line) and `platform` (native/web differences).

pub mod app;
pub mod cli;
pub mod graphics;
pub mod math;
pub mod platform;
