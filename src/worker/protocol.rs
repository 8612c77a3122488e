//! What the app and the engine worker say to each other: commands in, events out.

use std::path::PathBuf;
use std::sync::Arc;

use llm::gpu::GpuContext;
use llm::{GenerationRequest, LlmTokenizer, Model, Step, StopReason, TokenInfo};

/// What the app asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Find (fetching on first use) and load the model.
    Load,
    /// A new session from this request, generating until it stops.
    Generate(GenerationRequest),
    /// One forward pass: continues the current session, or starts one from this request.
    Step(GenerationRequest),
    /// Pause after the current step; Step continues from there.
    Stop,
    /// Forget the session.
    Reset,
    /// Generate on a remote server from now on (probes it first).
    Connect(remote::RemoteConfig),
    /// Back to the local engine (on the CPU; also leaves a remote server).
    UseLocal,
    /// Run the local model's forward pass on this GPU device (in the app: the renderer's).
    UseGpu(GpuContext),
    /// The app's frame pacer: the CPU backend rests between steps while frames are slow.
    Pace(std::sync::Arc<llm::gpu::pacer::FramePacer>),
}

/// The GPU backend the engine switched to.
#[derive(Debug, Clone)]
pub struct GpuBackendInfo {
    /// "adapter name (graphics API)".
    pub adapter: String,
    /// The device the kernels run on: the app compares it with the renderer's.
    pub device: wgpu::Device,
    pub shared_with_renderer: bool,
    /// The kernels' MLP activation buffer (`GpuModel::activation_buffer`): on the renderer's
    /// device the world draws its columns from it.
    pub activations: wgpu::Buffer,
    /// What makes this model's waits give up (Stop on a stalled device): the context it was
    /// loaded with, which a model kept for a device is, not the latest UseGpu's.
    pub interrupt: llm::gpu::GpuInterrupt,
}

/// What the engine reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// Progress while finding or loading the model.
    Status(String),
    Loaded {
        model: Arc<Model>,
        tokenizer: Arc<LlmTokenizer>,
        path: PathBuf,
    },
    /// A session started: its prompt tokens (after the template), their embedding rows, and
    /// the rows' principal components (`Event::prompt` fits them where the event is made: the
    /// engine's thread natively; `None` for fewer than two rows).
    Prompt {
        tokens: Vec<TokenInfo>,
        embeddings: Vec<Vec<f32>>,
        pca: Option<math::pca::Pca>,
    },
    /// One generated token; `logits` are the full distribution it was sampled from, `seconds`
    /// the time its forward pass took.
    Token {
        step: Box<Step>,
        logits: Vec<f32>,
        seconds: f32,
    },
    /// The session ended.
    Finished(StopReason),
    /// The engine took a Reset: the session's events still on their way came before this.
    ResetDone,
    /// A remote server answered the probe: generation goes there now.
    Connected {
        url: String,
        info: remote::ServerInfo,
        model: Option<String>,
    },
    /// Generation is local again, on the CPU.
    Disconnected,
    /// The local model now runs on the GPU.
    GpuReady(GpuBackendInfo),
    /// The GPU backend could not start (or stopped): why; the CPU runs the model.
    GpuFailed(String),
    /// One token from a remote server (a full step with trace from `samemath serve`).
    RemoteStep(Box<remote::RemoteStep>),
    /// The engine stopped stepping with the session still open (after Step, or Stop): Step or
    /// Generate continue it.
    Paused,
    Error(String),
}

impl Event {
    /// The `Prompt` event, its principal components fitted here (on the sender's thread: up to
    /// a tenth of a second for 1,024 rows, which natively the scene's frames do not wait for;
    /// the browser's engine runs between frames).
    pub fn prompt(tokens: Vec<TokenInfo>, embeddings: Vec<Vec<f32>>) -> Event {
        Event::Prompt {
            pca: math::pca::Pca::fit(&embeddings),
            tokens,
            embeddings,
        }
    }
}
