//! Scene 2's state: what was asked at start (`LlmStart`, `Compute`), what the user set
//! (`LlmControls`), what the engine reported (`LlmView`, folded from its events), what is selected
//! (`LlmSelection`), and the actions keys and buttons ask for (`LlmAction`).

use crate::worker::Event;
use bevy::prelude::*;
use llm::{
    GenerationRequest, LlmTokenizer, Model, RecordOptions, SamplingParams, StopReason, TokenInfo,
    Trace,
};
use math::pca::Pca;
use std::path::PathBuf;
use std::sync::Arc;

/// Longest prompt the live scene reads, in tokens: every token is computed on the CPU and
/// drawn, and attention grows with the square of the length (a 1,000-token prompt takes about
/// 10 s on one core). Longer prompts get a clear error and stay in the box.
pub const MAX_PROMPT_TOKENS: usize = 512;

/// The token strip draws at most this many chips (the newest); the rest are counted.
pub const MAX_CHIPS: usize = 400;

/// Where the local model's forward pass runs, as asked at start (the Backend panel switches at
/// any time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compute {
    #[default]
    Cpu,
    /// The WGSL kernels on the renderer's own wgpu device.
    Gpu,
}

/// What scene 2 was asked for at start (from the command line, or a test).
#[derive(Resource, Debug, Clone, Default)]
pub struct LlmStart {
    /// The GGUF file (`None`: the default model, fetched on first use).
    pub model: Option<PathBuf>,
    pub prompt: Option<String>,
    /// Feed the prompt without the chat template.
    pub raw: bool,
    /// Leave the logit lens out.
    pub no_lens: bool,
    pub compute: Compute,
    /// Generate on this server instead of the local model.
    pub remote_url: Option<String>,
    pub remote_api: Option<remote::ApiKind>,
    /// Run this many forward passes once the model is loaded (`--steps N`).
    pub steps: Option<usize>,
    /// What the middle shows first (`--view`): the world at a preset, or the panel views.
    pub view: Option<super::view::StartView>,
}

/// Where the answer is computed.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Backend {
    /// The local engine on the CPU: every internal.
    #[default]
    Local,
    /// The local model's forward pass as WGSL kernels on a GPU: every internal.
    Gpu {
        adapter: String,
        /// The kernels run on the device and queue that render the scenes.
        shared_with_renderer: bool,
        /// Checked against the renderer's device when the backend reported in (`None`: no
        /// renderer in this app, e.g. a headless test).
        same_device: Option<bool>,
        /// The kernels' MLP activation buffer, once it is known to live on the renderer's
        /// device: the world binds it as its columns' instance data.
        activations: Option<wgpu::Buffer>,
    },
    /// A remote server: what it gives (traces only from `samemath serve`).
    Remote {
        url: String,
        info: remote::ServerInfo,
        model: Option<String>,
    },
}

impl Backend {
    /// Full traces (activations, attention, embeddings, lens) are available.
    pub fn has_traces(&self) -> bool {
        match self {
            Backend::Local | Backend::Gpu { .. } => true,
            Backend::Remote { info, .. } => info.capabilities.traces,
        }
    }

    /// The model's kernels run on the renderer's own device and queue (their GPU time is a
    /// part of the frames').
    pub fn on_renderer(&self) -> bool {
        matches!(
            self,
            Backend::Gpu {
                shared_with_renderer: true,
                ..
            }
        )
    }

    /// The local model computes (on the CPU or the GPU): its weights made the trace.
    pub fn is_local(&self) -> bool {
        matches!(self, Backend::Local | Backend::Gpu { .. })
    }

    pub fn name(&self) -> String {
        match self {
            Backend::Local => "the local engine (CPU)".into(),
            Backend::Gpu { adapter, .. } => format!("the local engine on the GPU ({adapter})"),
            Backend::Remote { info, url, .. } => format!("{:?} at {url}", info.api),
        }
    }
}

/// The remote server the user typed in (kept when switching back to local).
#[derive(Debug, Clone, Default)]
pub struct RemoteForm {
    pub url: String,
    /// `None`: detect.
    pub api: Option<remote::ApiKind>,
    pub model: String,
    /// Never logged or shown.
    pub token: String,
    pub first_byte_timeout_secs: u64,
}

/// What the user set: the prompt and how to generate.
#[derive(Resource, Debug, Clone)]
pub struct LlmControls {
    pub remote: RemoteForm,
    pub prompt: String,
    /// Wrap the prompt in the model's chat template (else feed it raw).
    pub chat: bool,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Record the logit lens: each layer's guess through the final norm and the head, 30
    /// products with the 49,152-row head a token (several times the forward pass's own work).
    pub logit_lens: bool,
}

impl Default for LlmControls {
    fn default() -> Self {
        Self {
            prompt: "Why is the sky blue?".into(),
            chat: true,
            max_tokens: 128,
            sampling: SamplingParams::default(),
            logit_lens: true,
            remote: RemoteForm {
                url: "http://127.0.0.1:8080".into(),
                first_byte_timeout_secs: 120,
                ..RemoteForm::default()
            },
        }
    }
}

impl LlmControls {
    pub fn request(&self) -> GenerationRequest {
        GenerationRequest {
            prompt: self.prompt.clone(),
            chat: self.chat,
            max_tokens: self.max_tokens.max(1),
            sampling: self.sampling,
            record: RecordOptions {
                logit_lens: self.logit_lens,
                ..RecordOptions::FULL
            },
        }
    }

    pub fn can_run(&self) -> bool {
        !self.prompt.trim().is_empty()
    }

    pub fn remote_config(&self) -> remote::RemoteConfig {
        let f = &self.remote;
        remote::RemoteConfig {
            api: f.api,
            model: Some(f.model.trim().to_string()).filter(|m| !m.is_empty()),
            token: Some(f.token.trim().to_string()).filter(|t| !t.is_empty()),
            first_byte_timeout: std::time::Duration::from_secs(f.first_byte_timeout_secs.max(1)),
            ..remote::RemoteConfig::new(f.url.trim())
        }
    }
}

/// Where the engine stands.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum EngineStatus {
    #[default]
    NotStarted,
    Loading(String),
    Ready,
    Generating,
    Error(String),
}

/// Everything the engine reported, as the views read it.
#[derive(Resource, Debug, Default)]
pub struct LlmView {
    pub status: EngineStatus,
    /// A Connect is probing its server (Stop ends it).
    pub connecting: bool,
    /// What the engine last said it is doing within the answer that runs (reading a long
    /// prompt, waking a remote service); gone with the next token or the answer's end.
    pub progress: Option<String>,
    pub backend: Backend,
    /// Text-only steps from a remote server (no ids, no traces): text and log-probabilities.
    pub remote_steps: Vec<remote::RemoteStep>,
    /// When the first token of this answer arrived (remote speed).
    pub first_token_at: Option<web_time::Instant>,
    pub model: Option<Arc<Model>>,
    pub tokenizer: Option<Arc<LlmTokenizer>>,
    pub model_path: Option<PathBuf>,
    /// The prompt as the model saw it (after the template), and each token's embedding row.
    pub prompt_tokens: Vec<TokenInfo>,
    pub prompt_embeddings: Vec<Vec<f32>>,
    pub pca: Option<Pca>,
    pub generated: Vec<TokenInfo>,
    pub reply: String,
    /// The latest step's trace and the full logits it sampled from.
    pub trace: Option<Trace>,
    pub logits: Vec<f32>,
    /// The token sampled from `logits`.
    pub sampled: Option<TokenInfo>,
    /// Forward passes since the session started.
    pub steps: usize,
    /// Smoothed speed of the engine (forward passes per second).
    pub tokens_per_sec: f32,
    pub last_stop: Option<StopReason>,
    /// The engine waits for Step or Generate with the session open.
    pub paused: bool,
    /// Bumped whenever `trace` changes (the activation texture follows it).
    pub revision: u64,
    /// Resets sent that the engine has not answered yet: until it does, what it reports about
    /// the session it is forgetting (a prompt, a token, a pause, its progress) is dropped, so a
    /// Reset is not undone by that session's late news.
    pub resets_pending: u32,
    /// Why the GPU backend is not running, where it was asked for and could not start (or
    /// stopped): the talk's GPU step says so rather than describe kernels that do not run.
    pub gpu_unavailable: Option<String>,
}

impl LlmView {
    /// Fold one engine event into the view.
    pub fn apply(&mut self, event: Event) {
        let stale = self.resets_pending > 0
            && match &event {
                Event::Prompt { .. }
                | Event::Token { .. }
                | Event::RemoteStep(_)
                | Event::Finished(_)
                | Event::Paused => true,
                // Progress within the forgotten answer; not the model's own loading.
                Event::Status(_) => self.model.is_some(),
                _ => false,
            };
        if stale {
            return;
        }
        let token = matches!(event, Event::Token { .. } | Event::RemoteStep(_));
        // An error stays on screen until the user acts: news that comes after it (the browser's
        // model download, which runs on while a Connect fails) goes beside it.
        let news_beside_error =
            matches!(event, Event::Status(_)) && matches!(self.status, EngineStatus::Error(_));
        match event {
            Event::ResetDone => self.resets_pending = self.resets_pending.saturating_sub(1),
            // Within an answer (a long prompt read in slices, a remote service waking up) the
            // status stays Generating, so Stop stays at hand; the news goes beside it.
            Event::Status(s) if self.status == EngineStatus::Generating || news_beside_error => {
                self.progress = Some(s)
            }
            Event::Status(s) => self.status = EngineStatus::Loading(s),
            Event::Loaded {
                model,
                tokenizer,
                path,
            } => {
                self.model = Some(model);
                self.tokenizer = Some(tokenizer);
                self.model_path = Some(path);
                // (In the browser the model may arrive while a remote server answers.)
                if self.status != EngineStatus::Generating {
                    self.status = EngineStatus::Ready;
                }
            }
            Event::Prompt {
                tokens,
                embeddings,
                pca,
            } => {
                self.clear_session();
                self.pca = pca;
                self.prompt_tokens = tokens;
                self.prompt_embeddings = embeddings;
                self.status = EngineStatus::Generating;
            }
            Event::Token {
                step,
                logits,
                seconds,
            } => {
                let step = *step;
                self.steps += 1;
                if seconds > 0.0 {
                    let tps = 1.0 / seconds;
                    self.tokens_per_sec = if self.tokens_per_sec == 0.0 {
                        tps
                    } else {
                        0.8 * self.tokens_per_sec + 0.2 * tps
                    };
                }
                self.reply.push_str(&step.text);
                self.sampled = Some(step.token.clone());
                self.generated.push(step.token);
                if let Some(trace) = step.trace {
                    self.trace = Some(trace);
                    self.revision += 1;
                }
                self.logits = logits;
                self.paused = false;
                if matches!(self.status, EngineStatus::Loading(_)) {
                    self.status = EngineStatus::Generating;
                }
            }
            Event::Finished(reason) => {
                self.last_stop = Some(reason);
                self.status = EngineStatus::Ready;
            }
            Event::Paused => {
                self.paused = true;
                self.status = EngineStatus::Ready;
            }
            Event::Error(e) => {
                self.connecting = false;
                self.status = EngineStatus::Error(e);
            }
            Event::Connected { url, info, model } => {
                self.connecting = false;
                self.clear_session();
                self.backend = Backend::Remote { url, info, model };
                self.status = EngineStatus::Ready;
            }
            Event::GpuFailed(e) => {
                self.gpu_unavailable = Some(e.clone());
                self.status = EngineStatus::Error(e);
            }
            Event::GpuReady(info) => {
                self.gpu_unavailable = None;
                self.clear_session();
                self.backend = Backend::Gpu {
                    adapter: info.adapter,
                    shared_with_renderer: info.shared_with_renderer,
                    same_device: None,
                    activations: None,
                };
                self.status = EngineStatus::Ready;
            }
            Event::Disconnected => {
                self.clear_session();
                self.backend = Backend::Local;
                // Back on a model that never loaded (its load failed before the Connect): the
                // status says so, and the panel offers to load it again.
                self.status = if self.model.is_some() {
                    EngineStatus::Ready
                } else {
                    EngineStatus::Error("the local model is not loaded".into())
                };
            }
            Event::RemoteStep(step) => {
                let mut step = *step;
                // Only the newest trace is drawn: it moves to `trace`, and the steps kept for
                // the strip and the bars hold none (a samemath step's trace is megabytes).
                let trace = step.trace.take();
                let now = web_time::Instant::now();
                let first = *self.first_token_at.get_or_insert(now);
                self.steps += 1;
                let secs = (now - first).as_secs_f32();
                if self.steps > 1 && secs > 0.0 {
                    self.tokens_per_sec = (self.steps - 1) as f32 / secs;
                }
                self.reply.push_str(&step.text);
                self.status = EngineStatus::Generating;
                // samemath serve: a full step, drawn like a local one.
                if let Some(token) = step.token.clone() {
                    self.sampled = Some(token.clone());
                    self.generated.push(token);
                    if let Some(t) = trace {
                        self.trace = Some(t);
                        self.revision += 1;
                    }
                }
                self.remote_steps.push(step);
            }
        }
        if token || (self.status != EngineStatus::Generating && !news_beside_error) {
            self.progress = None;
        }
    }

    fn clear_session(&mut self) {
        self.prompt_tokens.clear();
        self.prompt_embeddings.clear();
        self.pca = None;
        self.generated.clear();
        self.reply.clear();
        self.trace = None;
        self.logits.clear();
        self.sampled = None;
        self.steps = 0;
        self.tokens_per_sec = 0.0;
        self.last_stop = None;
        self.paused = false;
        self.remote_steps.clear();
        self.first_token_at = None;
        self.revision += 1;
    }

    /// Forget the session (Reset), keeping the loaded model.
    pub fn reset(&mut self) {
        self.clear_session();
        if self.model.is_some() {
            self.status = EngineStatus::Ready;
        }
    }

    pub fn busy(&self) -> bool {
        matches!(
            self.status,
            EngineStatus::Generating | EngineStatus::Loading(_)
        )
    }
}

/// What the user pointed at.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct LlmSelection {
    /// Layer whose attention is drawn.
    pub attention_layer: usize,
    /// (layer, neuron) clicked in the activation grid.
    pub neuron: Option<(usize, usize)>,
    /// Draw only the first N of the prompt's chips (a talk step tokenizing it chip by chip).
    pub reveal_chips: Option<usize>,
}

/// Asked of the scene by keys, buttons and the demo loop.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmAction {
    Generate,
    Step,
    Stop,
    Reset,
    /// Switch generation to the remote server in the controls.
    Connect,
    /// Back to the local engine (CPU).
    UseLocal,
    /// Run the local model on the renderer's GPU device.
    UseGpu,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status within an answer (a long prompt's slices, a cold service) keeps the answer's
    /// status, so Stop stays enabled, and shows beside it until the answer goes on or ends.
    #[test]
    fn news_within_an_answer_keeps_it_stoppable() {
        let mut view = LlmView::default();
        view.apply(Event::Status("loading the model".into()));
        assert_eq!(
            view.status,
            EngineStatus::Loading("loading the model".into())
        );
        assert_eq!(view.progress, None);
        view.status = EngineStatus::Generating;
        view.apply(Event::Status("waking the service: 3 s".into()));
        assert_eq!(view.status, EngineStatus::Generating);
        assert!(view.busy());
        assert_eq!(view.progress.as_deref(), Some("waking the service: 3 s"));
        view.apply(Event::Finished(StopReason::MaxTokens));
        assert_eq!(view.status, EngineStatus::Ready);
        assert_eq!(view.progress, None);
        view.status = EngineStatus::Generating;
        view.apply(Event::Status("reading the prompt: 64 of 300 tokens".into()));
        view.apply(Event::Error("the server went away".into()));
        assert_eq!(view.progress, None);
    }

    /// A Connect that fails while the browser still downloads the model: the error stays on
    /// screen and the download's news goes beside it, until something else happens.
    #[test]
    fn news_after_an_error_goes_beside_it() {
        let mut view = LlmView::default();
        view.apply(Event::Status("downloading the model: 10%".into()));
        view.apply(Event::Error("the server refused the page (CORS)".into()));
        view.apply(Event::Status("downloading the model: 40%".into()));
        assert_eq!(
            view.status,
            EngineStatus::Error("the server refused the page (CORS)".into())
        );
        assert_eq!(view.progress.as_deref(), Some("downloading the model: 40%"));
        // The next thing that is not news replaces both (here the user's UseLocal).
        view.apply(Event::Disconnected);
        assert!(!matches!(&view.status, EngineStatus::Error(e) if e.contains("CORS")));
        assert_eq!(view.progress, None);
    }

    /// A remote answer's steps keep their text and numbers, not their traces: only the
    /// newest trace is drawn, and it is kept once (a samemath step's trace is megabytes).
    #[test]
    fn remote_steps_keep_only_the_newest_trace() {
        let trace = |position: usize| Trace {
            position,
            token: TokenInfo {
                id: position as u32,
                piece: "a".into(),
            },
            embedding: vec![0.5; 4],
            kv_head_of_head: Vec::new(),
            layers: Vec::new(),
            top_k: Vec::new(),
        };
        let mut view = LlmView::default();
        for i in 0..3 {
            view.apply(Event::RemoteStep(Box::new(remote::RemoteStep {
                index: i,
                text: "a".into(),
                token: Some(TokenInfo {
                    id: i as u32,
                    piece: "a".into(),
                }),
                logprob: Some(-0.5),
                top_logprobs: Vec::new(),
                trace: Some(trace(i)),
                stop: None,
            })));
        }
        assert_eq!(view.remote_steps.len(), 3);
        assert!(view.remote_steps.iter().all(|s| s.trace.is_none()));
        assert_eq!(view.trace.as_ref().map(|t| t.position), Some(2));
        assert_eq!(view.generated.len(), 3);
        assert_eq!(view.reply, "aaa");
    }

    /// Back from a remote server to a local model whose load had failed: an error (with the
    /// panel's "Try loading the model again"), not "Engine starting…" for ever.
    #[test]
    fn back_on_a_model_that_never_loaded_says_so() {
        let mut view = LlmView::default();
        view.apply(Event::Error("the model could not be fetched".into()));
        view.backend = Backend::Remote {
            url: "http://127.0.0.1:1".into(),
            info: remote::ServerInfo {
                api: remote::ApiKind::Ollama,
                version: None,
                models: Vec::new(),
                capabilities: Default::default(),
            },
            model: None,
        };
        view.apply(Event::Disconnected);
        assert_eq!(view.backend, Backend::Local);
        assert!(matches!(&view.status, EngineStatus::Error(e) if e.contains("not loaded")));
    }
}
