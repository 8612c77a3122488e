//! The app's tests, one binary (each test binary links Bevy): WGSL validation, headless App
//! logic, scene 2 on the real engine, the app against `samemath serve`, the command line, real
//! frames rendered by the `samemath` binary, and the app's pure functions.

mod app_remote;
mod cli;
mod headless;
mod llm_scene;
mod render;
mod shaders;
mod talk;
mod talk_backend;
mod talk_booth;
mod talk_race;
mod units;
mod world;
