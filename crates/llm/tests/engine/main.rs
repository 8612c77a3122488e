//! The LLM room's integration tests, one binary: the engine against llama.cpp's fixtures, the GPU
//! kernels against their CPU twins (gpu.rs) and the whole model against the CPU backend
//! (gpu_model.rs; on lavapipe here), and a tiny random GGUF written by the test (tiny_gguf.rs),
//! also made hostile (hostile_gguf.rs).

mod gpu;
mod gpu_model;
mod hostile_gguf;
mod reference;
mod tiny_gguf;
mod trace_json;
