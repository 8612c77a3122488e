//! What samemath's tests and benches share, in one place: `http` (HTTP/1.1 on 127.0.0.1 written by
//! hand, child guards), `listen` (a server on the port it binds, read from its log), `json` (hostile variants of a document) and `model` (the real model file the tests run, loaded once per process).
//! Nothing here is on a product path.

pub mod http;
pub mod json;
pub mod listen;
pub mod model;

pub use http::{ChildGuard, Reply, free_port, http, post_timed, request, wait_ok, wait_ok_while};
pub use listen::{Listening, spawn_listening};
