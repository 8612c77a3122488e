//! Integration tests, one binary (each test binary links the whole app): WGSL validation,
//! headless App logic, and real frames rendered by the `samemath` binary.

mod cli;
mod gpu;
mod headless;
mod llm;
mod llm_scene;
mod remote;
mod render;
mod shaders;
mod tiny_gguf;
