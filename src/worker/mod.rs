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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use engine::Engine;

/// The wait the engine is in, if any (a remote server's probe or answer), and what ends it:
/// the Worker cancels it from the app's thread while the engine is inside it, not reading
/// commands.
#[derive(Debug, Default)]
pub(crate) struct Wait {
    token: llm::CancelToken,
    /// A remote answer (a new Generate or Step replaces it, as it replaces a local one).
    answer: bool,
}

/// What the engine sends its events down. Natively a bounded channel: when the app takes no
/// events (its frames stopped: a window hidden, a present that blocks), the engine waits
/// rather than queue each token's logits and trace (some 0.7 MB a token with the full trace)
/// without end. In the browser the engine runs between frames, in the same thread that takes
/// the events, so a send there must never wait: unbounded, and the page's frames drain it.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type EventSender = std::sync::mpsc::SyncSender<Event>;
#[cfg(target_arch = "wasm32")]
pub(crate) type EventSender = Sender<Event>;

/// Events the engine may have waiting before it waits for the app (natively).
#[cfg(not(target_arch = "wasm32"))]
const EVENTS_WAITING: usize = 64;

/// A command as sent, with the count of Stops (Stop, Reset, UseLocal) sent before it: one sent
/// after it, while it waited its turn, stops it before it starts.
type Sent = (Command, u64);

/// The app's handle on the engine.
pub struct Worker {
    commands: Sender<Sent>,
    events: Receiver<Event>,
    /// Ends the wait in flight.
    wait: Arc<std::sync::Mutex<Wait>>,
    /// Stops sent so far (shared with the engine, which compares each command's count).
    stops: Arc<AtomicU64>,
    /// Stop also gives up a step the GPU has not finished after a second (a stalled device):
    /// the engine then says so and goes on with the CPU.
    gpu_interrupt: Option<llm::gpu::GpuInterrupt>,
    /// wasm: the engine itself, stepped from `poll`, and the commands waiting for the model.
    #[cfg(target_arch = "wasm32")]
    inline: (Engine, Receiver<Sent>, std::collections::VecDeque<Sent>),
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
        #[cfg(not(target_arch = "wasm32"))]
        let (event_tx, event_rx) = std::sync::mpsc::sync_channel(EVENTS_WAITING);
        #[cfg(target_arch = "wasm32")]
        let (event_tx, event_rx) = channel();
        let wait = Arc::new(std::sync::Mutex::new(Wait::default()));
        let stops = Arc::new(AtomicU64::new(0));
        let engine = Engine::new(
            model_path,
            max_prompt_tokens,
            (wait.clone(), stops.clone()),
            event_tx,
        );
        #[cfg(not(target_arch = "wasm32"))]
        {
            spawn_low_priority("samemath-llm", threads, move || run(engine, command_rx))
                .map_err(|e| eprintln!("samemath: cannot start the LLM thread: {e}"))
                .ok();
            Worker {
                commands: command_tx,
                events: event_rx,
                wait,
                stops,
                gpu_interrupt: None,
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Worker {
                commands: command_tx,
                events: event_rx,
                wait,
                stops,
                gpu_interrupt: None,
                inline: (engine, command_rx, Default::default()),
            }
        }
    }

    /// Queue a command; the engine takes it between steps, so Stop lands within one step (or
    /// within a second of a step a stalled GPU does not finish). Stop, Reset and UseLocal end
    /// a remote wait at once (and stop the commands still queued before them); a new Generate
    /// or Step ends a remote answer, as it ends a local one.
    pub fn send(&mut self, command: Command) {
        let stop = matches!(command, Command::Stop | Command::Reset | Command::UseLocal);
        if stop {
            self.stops.fetch_add(1, Ordering::SeqCst);
        }
        let replaces = matches!(command, Command::Generate(_) | Command::Step(_));
        if let Ok(w) = self.wait.lock()
            && (stop || (replaces && w.answer))
        {
            w.token.cancel();
        }
        if matches!(command, Command::Stop | Command::Reset)
            && let Some(i) = &self.gpu_interrupt
        {
            i.interrupt();
        }
        let _ = self
            .commands
            .send((command, self.stops.load(Ordering::SeqCst)));
    }

    /// Events since the last call; never blocks (on wasm, runs at most one step first).
    pub fn poll(&mut self) -> Vec<Event> {
        #[cfg(target_arch = "wasm32")]
        {
            let (engine, commands, held) = &mut self.inline;
            held.extend(commands.try_iter());
            // A Connect that answered meanwhile becomes the backend now, not at the next command.
            engine.settle_connect();
            // In order, but past a Load that waits for the page's download (`next_to_run`).
            while let Some(i) = next_to_run(held, |c, stops| engine.ready_for(c, stops)) {
                if let Some((c, stops)) = held.remove(i) {
                    engine.handle(c, stops);
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
fn run(mut engine: Engine, commands: Receiver<Sent>) {
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
            Some((c, stops)) => engine.handle(c, stops),
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
                engine.handle(Command::Reset, engine.stops())
            }));
        }
    }
}

/// Which held command runs next (its place in `held`), given whether each could run now
/// (`ready`; in the browser, commands that need the model wait for the page's download).
/// Commands run in the order sent, but a Load that waits holds nothing after it: what needs no
/// local model (a Connect, and once connected a question for the server, a Stop) must not wait
/// for 100 MB to arrive, and the Load still runs once they have. Any other command that waits
/// holds those after it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn next_to_run(
    held: &std::collections::VecDeque<Sent>,
    mut ready: impl FnMut(&Command, u64) -> bool,
) -> Option<usize> {
    for (i, (command, stops)) in held.iter().enumerate() {
        if ready(command, *stops) {
            return Some(i);
        }
        if !matches!(command, Command::Load) {
            return None;
        }
    }
    None
}

/// Whether `command` must wait for the page's model download (the browser build): Load and
/// UseGpu need the model's bytes, and so do a Generate or a Step unless a remote server answers
/// it, or a Stop sent after it means it will only say it was stopped. A Load waits for the bytes
/// even after a Stop: run early it would find none and be gone, and the model would never load.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn waits_for_download(command: &Command, have_model: bool, connected: bool, stopped: bool) -> bool {
    let generates = matches!(command, Command::Generate(_) | Command::Step(_));
    let needs_model = generates || matches!(command, Command::Load | Command::UseGpu(_));
    needs_model && !have_model && !(generates && (connected || stopped))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn request() -> llm::GenerationRequest {
        llm::GenerationRequest::new("Hi")
    }

    fn name(c: &Command) -> &'static str {
        match c {
            Command::Load => "Load",
            Command::Connect(_) => "Connect",
            Command::Generate(_) => "Generate",
            Command::Step(_) => "Step",
            Command::Stop => "Stop",
            _ => "other",
        }
    }

    /// Run `held` the way the browser's poll does while the download is pending, with a server
    /// connected or not and `stops` Stops sent so far: the names of the commands run, in order.
    fn drain(held: &mut VecDeque<Sent>, connected: bool, stops: u64) -> Vec<&'static str> {
        let mut ran = Vec::new();
        let ready = |c: &Command, sent_after: u64| {
            !waits_for_download(c, false, connected, stops != sent_after)
        };
        while let Some(i) = next_to_run(held, ready) {
            let (c, _) = held.remove(i).unwrap();
            ran.push(name(&c));
        }
        ran
    }

    /// The page's first Load waits for the model's download; a Connect sent after it does not
    /// (it used to wait behind it), nor, once the server answered, the question for it; the
    /// Load runs once the download is in.
    #[test]
    fn a_load_waiting_for_the_download_holds_nothing_after_it() {
        let config = ::remote::RemoteConfig::new("http://127.0.0.1:1");
        let mut held: VecDeque<Sent> = VecDeque::from([
            (Command::Load, 0),
            (Command::Connect(config), 0),
            (Command::Generate(request()), 0),
        ]);
        assert_eq!(drain(&mut held, false, 0), ["Connect"]);
        assert_eq!(drain(&mut held, true, 0), ["Generate"]);
        assert_eq!(held.len(), 1, "the Load still waits for the download");
        let ready = |c: &Command, _: u64| !waits_for_download(c, true, true, false);
        assert_eq!(next_to_run(&held, ready), Some(0), "and runs once it is in");
    }

    /// A Stop (or Reset, or UseLocal) sent after the page's Load does not make the Load run
    /// before the bytes are in, where it would find none and be gone for good; a Generate that
    /// a Stop overtook runs at once, to say it was stopped.
    #[test]
    fn a_stop_does_not_lose_the_load_that_waits_for_the_download() {
        let config = ::remote::RemoteConfig::new("http://127.0.0.1:1");
        let mut held: VecDeque<Sent> = VecDeque::from([
            (Command::Load, 0),
            (Command::Connect(config), 0),
            (Command::Generate(request()), 0),
            (Command::Stop, 1),
        ]);
        assert_eq!(drain(&mut held, false, 1), ["Connect", "Generate", "Stop"]);
        assert_eq!(held.len(), 1);
        assert_eq!(name(&held[0].0), "Load");
    }

    /// Any other command that waits keeps the order: what was sent after it waits too.
    #[test]
    fn a_waiting_step_holds_what_comes_after_it() {
        let config = ::remote::RemoteConfig::new("http://127.0.0.1:1");
        let mut held: VecDeque<Sent> = VecDeque::from([
            (Command::Step(request()), 0),
            (Command::Connect(config), 0),
            (Command::Load, 0),
            (Command::Reset, 1),
        ]);
        assert!(drain(&mut held, false, 0).is_empty());
        assert_eq!(held.len(), 4);
        // The Step gone (its download in), the rest runs as before: past the Load.
        held.pop_front();
        assert_eq!(drain(&mut held, false, 1), ["Connect", "other"]);
        assert_eq!(name(&held[0].0), "Load");
    }
}
