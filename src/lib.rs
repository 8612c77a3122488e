//! samemath, the app: game graphics and LLMs run the same GPU math, shown live.
//!
//! The engine rooms are crates of their own (`math`, `llm`, `remote`, `serve`: no Bevy there);
//! this crate is the app on top of them. Its rooms: `app` (the table of contents), `shell` (the
//! scenes as states, keys, theme, camera, viewport, screenshot and bench), `graphics` (scene 1),
//! `llm_scene` (scene 2), `bridge` (scene 3), `demo` (the booth loop), `talk` (talk mode), `worker` (the thread that
//! drives a local or remote backend for the app), `cli` and `tools` (the command line),
//! `platform` (native/web differences) and `web` (the browser build's page).

pub mod app;
pub mod bridge;
pub mod cli;
pub mod demo;
pub mod graphics;
pub mod llm_scene;
pub mod platform;
pub mod shell;
pub mod talk;
pub mod tools;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod worker;
