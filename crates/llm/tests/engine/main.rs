//! The LLM room's integration tests, one binary: the engine against llama.cpp's fixtures, the GPU
//! kernels against their CPU twins and the whole model against the CPU backend (on lavapipe
//! here), and a tiny random GGUF written by the test.

mod gpu;
mod reference;
mod tiny_gguf;
mod trace_json;
