//! samemath: game graphics and LLMs run the same GPU math, shown live.
//!
//! Rooms: `math` (engine-free matrices, lighting, meshes), `llm` (engine-free model, tokenizer,
//! instrumented forward, sessions), `app` (the Bevy shell), `graphics` (scene 1), `llm_scene` (scene 2), `cli` and
//! `tools` (the command line), `remote` (clients for Ollama, OpenAI-compatible servers and
//! `samemath serve`), `serve` (the HTTP server), `platform` (native/web differences) and `web`
//! (the browser build's page).

pub mod app;
pub mod cli;
pub mod graphics;
pub mod llm;
pub mod llm_scene;
pub mod math;
pub mod platform;
pub mod remote;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
pub mod tools;
#[cfg(target_arch = "wasm32")]
pub mod web;
