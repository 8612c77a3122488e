//! The engine the app drives without ever blocking a frame: commands in (load, generate, step,
//! stop, reset), events out (progress, the prompt's tokens, each generated token with its trace
//! and logits, the end). On native builds it runs on its own thread; on wasm (no threads) the
//! same state machine runs one step per `poll`, between frames.

mod engine;
mod protocol;
mod remote;

pub use protocol::{Command, Event, GpuBackendInfo};
#[cfg(not(target_arch = "wasm32"))]
pub use remote::open_remote;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use engine::Engine;

/// The app's handle on the engine.
pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    /// Cancels a remote answer in flight (the engine thread is inside it, not reading commands).
    stop: Arc<std::sync::Mutex<llm::CancelToken>>,
    /// Stop also gives up a step the GPU has not finished after a second (a stalled device):
    /// the engine then says so and goes on with the CPU.
    gpu_interrupt: Option<llm::gpu::GpuInterrupt>,
    /// wasm: the engine itself, stepped from `poll`, and the commands waiting for the model.
    #[cfg(target_arch = "wasm32")]
    inline: (
        Engine,
        Receiver<Command>,
        std::collections::VecDeque<Command>,
    ),
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// Start the engine; `model_path` overrides the cached SmolLM2 file; `threads` sizes the
    /// engine's own thread pool for the matrix products (leave a core to the renderer).
    pub fn spawn(model_path: Option<PathBuf>, threads: usize) -> Worker {
        Self::spawn_with_limit(model_path, threads, usize::MAX)
    }

    /// As `spawn`, refusing prompts longer than `max_prompt_tokens` with a clear error.
    pub fn spawn_with_limit(
        model_path: Option<PathBuf>,
        threads: usize,
        max_prompt_tokens: usize,
    ) -> Worker {
        let (command_tx, command_rx) = channel();
        let (event_tx, event_rx) = channel();
        let stop = Arc::new(std::sync::Mutex::new(llm::CancelToken::default()));
        let engine = Engine::new(model_path, max_prompt_tokens, stop.clone(), event_tx);
        #[cfg(not(target_arch = "wasm32"))]
        {
            spawn_low_priority("samemath-llm", threads, move || run(engine, command_rx))
                .map_err(|e| eprintln!("samemath: cannot start the LLM thread: {e}"))
                .ok();
            Worker {
                commands: command_tx,
                events: event_rx,
                stop,
                gpu_interrupt: None,
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Worker {
                commands: command_tx,
                events: event_rx,
                stop,
                gpu_interrupt: None,
                inline: (engine, command_rx, Default::default()),
            }
        }
    }

    /// Queue a command; the engine takes it between steps, so Stop lands within one step (or
    /// within a second of a step a stalled GPU does not finish).
    pub fn send(&mut self, command: Command) {
        if matches!(command, Command::Stop | Command::Reset) {
            if let Ok(t) = self.stop.lock() {
                t.cancel();
            }
            if let Some(i) = &self.gpu_interrupt {
                i.interrupt();
            }
        }
        let _ = self.commands.send(command);
    }

    /// Events since the last call; never blocks (on wasm, runs at most one step first).
    pub fn poll(&mut self) -> Vec<Event> {
        #[cfg(target_arch = "wasm32")]
        {
            let (engine, commands, held) = &mut self.inline;
            held.extend(commands.try_iter());
            while let Some(c) = held.front() {
                if !engine.ready_for(c) {
                    break;
                }
                if let Some(c) = held.pop_front() {
                    engine.handle(c);
                }
            }
            if engine.busy() {
                engine.advance();
            }
        }
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            // Stop reaches the waits of the model that runs (a model kept for its device
            // waits on the context it was loaded with).
            if let Event::GpuReady(info) = &e {
                self.gpu_interrupt = Some(info.interrupt.clone());
            }
            out.push(e);
        }
        out
    }
}

/// Threads for the model's matrix products in the app: every core but one, which is left to
/// Bevy's renderer (one thread on a machine of two cores or fewer).
pub fn engine_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 2 { 1 } else { cores - 1 }
}

/// Run `work` on a thread of its own called `name`, inside a pool of `threads` rayon workers
/// (the model's matrix products), all at low priority so frames win when they compete for
/// cores: the engine's thread and the talk's race use it.
#[cfg(not(target_arch = "wasm32"))]
pub fn spawn_low_priority(
    name: &str,
    threads: usize,
    work: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let prefix = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_priority();
            match rayon::ThreadPoolBuilder::new()
                .num_threads(threads.max(1))
                .thread_name(move |i| format!("{prefix}-{i}"))
                .start_handler(|_| lower_priority())
                .build()
            {
                Ok(pool) => pool.install(work),
                Err(_) => work(),
            }
        })
        .map(drop)
}

/// Let frames win over the model when they compete for cores: on Linux the calling thread goes
/// to nice 10 (through `renice` on its thread id; no unsafe FFI). Elsewhere a no-op.
#[cfg(not(target_arch = "wasm32"))]
fn lower_priority() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(String::from) else {
        return;
    };
    let _ = std::process::Command::new("renice")
        .args(["-n", "10", "-p", &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The engine thread: commands first, then one step at a time while generating.
#[cfg(not(target_arch = "wasm32"))]
fn run(mut engine: Engine, commands: Receiver<Command>) {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    loop {
        let next = if let Some(rest) = engine.resting().filter(|_| engine.busy()) {
            // The model rests (frames are slow): a command still lands at once.
            match commands.recv_timeout(rest) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else if engine.busy() {
            match commands.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match commands.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        };
        // A panic in the engine (a bug, or a model file nothing else caught) becomes a message
        // in the panel; the thread goes on taking commands.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match next {
            Some(c) => engine.handle(c),
            None => engine.advance(),
        }));
        if let Err(panic) = caught {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            engine.send(Event::Error(format!(
                "the LLM engine failed (a bug): {why}; Reset to go on"
            )));
            engine.send(Event::Finished(llm::StopReason::Cancelled));
            // Not the same step again: the session is dropped (the model stays loaded).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                engine.handle(Command::Reset)
            }));
        }
    }
}
