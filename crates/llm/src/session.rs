//! A streaming generation session: prompt in, then one (token, Trace) per step until a stop
//! token, the token limit, the context limit, or a cancel between steps. The CLI, the app and
//! the server all drive this type.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::backend::{Backend, Cache};
use super::error::{LlmError, Result};
use super::sampling::{Sampler, SamplingParams};
use super::tokenizer::{LlmTokenizer, TextStream};
use super::trace::{RecordOptions, TokenInfo, Trace};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub prompt: String,
    /// Wrap the prompt in the model's chat template.
    pub chat: bool,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub record: RecordOptions,
}

impl GenerationRequest {
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            chat: true,
            max_tokens: 256,
            sampling: SamplingParams::default(),
            record: RecordOptions::OFF,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end token (`<|im_end|>`, EOS).
    EndToken,
    /// `max_tokens` reached.
    MaxTokens,
    /// The model's context is full.
    Context,
    Cancelled,
}

/// One generated token.
#[derive(Debug, Clone)]
pub struct Step {
    /// 0 for the first generated token.
    pub index: usize,
    pub token: TokenInfo,
    /// The text this token adds to the reply (empty for end tokens and held-back bytes).
    pub text: String,
    /// The forward pass that produced this token's distribution, if recording.
    pub trace: Option<Trace>,
    /// Set on the last step.
    pub stop: Option<StopReason>,
}

/// One step as JSON: a line of `samemath serve`'s /api/trace and an element of `samemath trace
/// --json` (schema in README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    pub step: usize,
    pub sampled: TokenInfo,
    pub stop: Option<StopReason>,
    #[serde(default)]
    pub text: String,
    pub trace: Option<Trace>,
}

impl From<Step> for TraceStep {
    fn from(s: Step) -> Self {
        TraceStep {
            step: s.index,
            sampled: s.token,
            stop: s.stop,
            text: s.text,
            trace: s.trace,
        }
    }
}

/// Cancels a session between steps, from any thread.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Session {
    model: Arc<dyn Backend>,
    tokenizer: Arc<LlmTokenizer>,
    cache: Cache,
    sampler: Sampler,
    record: RecordOptions,
    max_tokens: usize,
    /// Every token so far: prompt then generated.
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens not yet fed to the model.
    pending: Vec<u32>,
    text: TextStream,
    cancel: CancelToken,
    finished: Option<StopReason>,
    /// The logits the last step sampled from.
    last_logits: Vec<f32>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("tokens", &self.tokens.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session on `model`: the CPU engine (`Arc<Model>`) or any other [`Backend`].
    pub fn new(
        model: Arc<dyn Backend>,
        tokenizer: Arc<LlmTokenizer>,
        request: &GenerationRequest,
    ) -> Result<Self> {
        if request.prompt.trim().is_empty() {
            return Err(LlmError::EmptyPrompt);
        }
        let text = if request.chat {
            tokenizer.chat_prompt(&request.prompt)
        } else {
            request.prompt.clone()
        };
        let tokens = tokenizer.encode(&text)?;
        let context = model.context_length();
        if tokens.len() >= context {
            return Err(LlmError::PromptTooLong {
                tokens: tokens.len(),
                context,
            });
        }
        Ok(Self {
            cache: model.new_cache()?,
            model,
            tokenizer,
            sampler: Sampler::new(request.sampling),
            record: request.record,
            max_tokens: request.max_tokens,
            prompt_len: tokens.len(),
            pending: tokens.clone(),
            tokens,
            text: TextStream::default(),
            cancel: CancelToken::default(),
            finished: None,
            last_logits: Vec::new(),
        })
    }

    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    pub fn prompt_tokens(&self) -> &[u32] {
        &self.tokens[..self.prompt_len]
    }

    pub fn generated_tokens(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    pub fn finished(&self) -> Option<StopReason> {
        self.finished
    }

    /// The full next-token logits the last step sampled from (empty before the first step).
    pub fn last_logits(&self) -> &[f32] {
        &self.last_logits
    }

    pub fn tokenizer(&self) -> &LlmTokenizer {
        &self.tokenizer
    }

    /// Prompt tokens not yet read by the model.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Read up to `max` of the pending prompt tokens without sampling (the last one is kept
    /// for `step`, which samples after it): long prompts in slices, with progress and a chance
    /// to stop in between.
    pub fn prefill(&mut self, max: usize) -> Result<()> {
        let n = max.min(self.pending.len().saturating_sub(1));
        if n == 0 || self.finished.is_some() {
            return Ok(());
        }
        self.model.forward(
            &mut self.cache,
            &self.pending[..n],
            RecordOptions::OFF,
            None,
        )?;
        // Consumed only once read (a backend may answer `GpuPending` and be asked again).
        self.pending.drain(..n);
        Ok(())
    }

    /// One forward pass and one sampled token; `None` once the session has finished.
    pub fn step(&mut self) -> Result<Option<Step>> {
        if self.finished.is_some() {
            return Ok(None);
        }
        if self.cancel.is_cancelled() {
            self.finished = Some(StopReason::Cancelled);
            return Ok(None);
        }
        let index = self.tokens.len() - self.prompt_len;
        if index >= self.max_tokens {
            self.finished = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        let out = self.model.forward(
            &mut self.cache,
            &self.pending,
            self.record,
            Some(&self.tokenizer),
        )?;
        self.pending.clear();
        let id = self.sampler.sample(&out.logits, &self.tokens);
        self.last_logits = out.logits;
        self.tokens.push(id);
        self.pending.push(id);
        let is_stop = self.tokenizer.is_stop(id);
        let stop = if is_stop {
            Some(StopReason::EndToken)
        } else if index + 1 >= self.max_tokens {
            Some(StopReason::MaxTokens)
        } else if self.tokens.len() >= self.model.context_length() {
            Some(StopReason::Context)
        } else {
            None
        };
        self.finished = stop;
        let text = if is_stop {
            String::new()
        } else {
            self.text.push(&self.tokenizer, id)
        };
        Ok(Some(Step {
            index,
            token: TokenInfo {
                id,
                piece: self.tokenizer.piece(id),
            },
            text,
            trace: out.trace,
            stop,
        }))
    }
}
