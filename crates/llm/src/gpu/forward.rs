//! One forward pass on the GPU: the dispatches of a token recorded (`encode_token`), submitted
//! in one encoder (or paced in chunks by the frame loop), and the results read back into the
//! logits and the `Trace`.

use super::cache::GpuCache;
use super::encode::{Count, Dispatcher, Op, Sink};
use super::kernels::Input;
use super::model::GpuModel;
use super::pacer::FramePacer;
use super::profile::{KernelKind, Profile, Timing};
#[cfg(not(target_arch = "wasm32"))]
use super::readback::read_back;
use super::upload::GpuMatrix;
use crate::backend::ForwardOutput;
use crate::backend::{Backend, Cache};
use crate::config::LlamaConfig;
use crate::error::{LlmError, Result};
use crate::model::{Logits, l2};
use crate::tokenizer::LlmTokenizer;
use crate::trace::{LayerTrace, RecordOptions, TokenInfo, TokenProb, Trace};

impl GpuModel {
    /// Record one token's dispatches. `head_rows`: how many residual slots go through the final
    /// norm and head (the logit lens's 30, or the last); `fold`: the folded variant.
    fn encode_token<'s>(
        &'s self,
        pass: &mut impl Sink<'s>,
        cache: &'s GpuCache,
        (head_rows, lens): (u32, bool),
        fold: bool,
    ) {
        let c = &self.config;
        let k = &self.kernels;
        let blocks = |n: usize| (n / 32) as u32;
        let mv = |m: &GpuMatrix, z: u32| (m.rows.div_ceil(4), 1, z);
        pass.run(
            KernelKind::Embed,
            &k.embed,
            &self.embed_group,
            ((c.n_embd as u32).div_ceil(64), 1, 1),
        );
        for (i, (w, g)) in self.layers.iter().zip(&self.groups).enumerate() {
            if fold {
                let qkv = k.matvec(&w.qkv, Input::Normed);
                pass.run(KernelKind::MatVec, qkv, &g.qkv, mv(&w.qkv, 1));
            } else {
                pass.run(KernelKind::Norm, &k.normalize, &g.attn_norm, (1, 1, 1));
                let qkv = k.matvec(&w.qkv, Input::Quantized);
                pass.run(KernelKind::MatVec, qkv, &g.qkv_plain, mv(&w.qkv, 1));
            }
            pass.run(
                KernelKind::Attention,
                &k.attention,
                &cache.attention[i],
                (c.n_head as u32, 1, 1),
            );
            pass.run(
                KernelKind::MatVec,
                k.matvec(&w.wo, Input::Quantized),
                &g.wo,
                mv(&w.wo, 1),
            );
            if fold {
                let gate_up = k.matvec(&w.gate_up, Input::Normed);
                pass.run(KernelKind::MatVec, gate_up, &g.gate_up, mv(&w.gate_up, 1));
            } else {
                pass.run(KernelKind::Norm, &k.normalize, &g.ffn_norm, (1, 1, 1));
                let gate_up = k.matvec(&w.gate_up, Input::Quantized);
                pass.run(
                    KernelKind::MatVec,
                    gate_up,
                    &g.gate_up_plain,
                    mv(&w.gate_up, 1),
                );
            }
            if fold {
                let down = k.matvec(&w.down, Input::Swiglu);
                pass.run(KernelKind::MatVec, down, &g.down_swiglu, mv(&w.down, 1));
            } else {
                pass.run(
                    KernelKind::Swiglu,
                    &k.swiglu,
                    &g.swiglu,
                    (blocks(c.n_ff), 1, 1),
                );
                let down = k.matvec(&w.down, Input::Quantized);
                pass.run(KernelKind::MatVec, down, &g.down, mv(&w.down, 1));
            }
        }
        let rows = head_rows;
        pass.run(
            KernelKind::Norm,
            &k.normalize,
            &self.final_norm_group,
            (rows, 1, 1),
        );
        pass.run(
            KernelKind::Head,
            k.matvec(&self.head, Input::Quantized),
            &self.head_group,
            mv(&self.head, rows),
        );
        if lens {
            pass.run(KernelKind::Lens, &k.lens, &self.lens_group, (rows, 1, 1));
        }
    }

    /// The pass whose results come back: a prompt's last batch with the head (`batch`: its
    /// length), or one token's step (`rows` through the head, the `fold` variant).
    fn encode_last<'s>(
        &'s self,
        pass: &mut impl Sink<'s>,
        cache: &'s GpuCache,
        batch: Option<usize>,
        head: (u32, bool),
        fold: bool,
    ) {
        match batch {
            Some(len) => self.encode_prompt(pass, cache, len, true),
            None => self.encode_token(pass, cache, head, fold),
        }
    }

    /// Submit `ops` a chunk at a time, each when the frame has GPU time to lend, waiting for
    /// each to finish; a chunk's time (by its timestamps where the device has them, else from
    /// submit to done) is what the pacer charges. `tail` adds the readback copies to the last
    /// chunk and returns their size. Returns the chunks' time in all: by their timestamps where
    /// each chunk has them, else from submit to done.
    fn submit_paced(
        &self,
        pacer: &FramePacer,
        ops: &[Op<'_>],
        tail: impl FnOnce(&mut wgpu::CommandEncoder) -> u64,
    ) -> Result<(wgpu::SubmissionIndex, u64, std::time::Duration)> {
        let mut tail = Some(tail);
        let mut at = 0;
        let mut i = 0;
        let mut busy = std::time::Duration::ZERO;
        let mut stamped = self.clock.as_ref().map(|_| std::time::Duration::ZERO);
        loop {
            pacer.wait_turn();
            let end = (i + pacer.chunk()).min(ops.len());
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: self.clock.as_ref().map(|c| c.first_pass()),
                });
                for op in &ops[i..end] {
                    pass.set_pipeline(op.pipeline);
                    pass.set_bind_group(0, op.group, &[]);
                    let (x, y, z) = op.workgroups;
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            if let Some(clock) = &self.clock {
                clock.resolve(&mut enc, 1);
            }
            if end == ops.len()
                && let Some(tail) = tail.take()
            {
                at = tail(&mut enc);
            }
            let started = web_time::Instant::now();
            let index = self.ctx.queue.submit([enc.finish()]);
            super::readback::wait_for(&self.ctx.device, index.clone(), &self.ctx.interrupt)?;
            let took = started.elapsed();
            busy += took;
            // The chunk's own GPU time, where timestamps measure it. Submit to done also holds
            // whatever the shared queue ran before the chunk (the frame's rendering): charged
            // that, the model paid the renderer's time out of its budget and its chunks shrank to
            // one dispatch a frame (on lavapipe: 0.1 ms of the model's kernels in a 560 ms frame).
            let span = self.chunk_span(&index);
            if let Some(gpu) = span {
                pacer.charge_gpu(gpu);
            }
            pacer.charge(span.unwrap_or(took), end - i);
            stamped = stamped.zip(span).map(|(all, gpu)| all + gpu);
            i = end;
            if i >= ops.len() {
                return Ok((index, at, stamped.unwrap_or(busy)));
            }
        }
    }

    /// A paced chunk's own GPU time, by its pass's timestamps (none in the browser: they come
    /// back only asynchronously there).
    #[cfg(not(target_arch = "wasm32"))]
    fn chunk_span(&self, index: &wgpu::SubmissionIndex) -> Option<std::time::Duration> {
        let clock = self.clock.as_ref()?;
        clock.span(
            &self.ctx.device,
            &self.ctx.queue,
            &self.ctx.interrupt,
            index.clone(),
        )
    }

    #[cfg(target_arch = "wasm32")]
    fn chunk_span(&self, _index: &wgpu::SubmissionIndex) -> Option<std::time::Duration> {
        None
    }

    fn write_step(&self, pos: usize, token: u32, first_slot: u32) {
        let words = self.step_words([pos as u32, token, first_slot], pos..pos + 1);
        self.ctx
            .queue
            .write_buffer(&self.scratch.step, 0, bytemuck::cast_slice(&words));
    }

    /// The kernels' `Step` record (common.wgsl): `head` (pos, token, first slot), padding, then
    /// the RoPE (sin, cos) pairs of each position in `positions`.
    pub(crate) fn step_words(&self, head: [u32; 3], positions: std::ops::Range<usize>) -> Vec<u32> {
        let mut words = head.to_vec();
        words.push(0);
        for p in positions {
            for (sin, cos) in LlamaConfig::rope_rotation(&self.inv_freq, p) {
                words.extend([sin.to_bits(), cos.to_bits()]);
            }
        }
        words
    }

    /// The dispatches one decode step records, by kernel kind in the order they first run
    /// (`lens`: with the logit lens's 30 extra rows through the head): counted by recording a
    /// step into a list; nothing is submitted.
    pub fn dispatches_per_token(&self, cache: &GpuCache, lens: bool) -> Vec<(KernelKind, usize)> {
        let rows = if lens { self.config.n_layer as u32 } else { 1 };
        let mut count = Count::default();
        self.encode_token(&mut count, cache, (rows, lens), self.folded());
        count.0
    }

    /// Run `tokens` at positions `cache.len()..`; see [`Backend::forward`].
    pub fn forward_gpu(
        &self,
        cache: &mut GpuCache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
        profile: Profile,
    ) -> Result<ForwardOutput> {
        let c = &self.config;
        let (n, pos) = (tokens.len(), cache.len);
        crate::backend::check_span(n, pos, self.context)?;
        if cache.owner != self.id() {
            return Err(LlmError::Gpu(
                "this KV cache belongs to another model".into(),
            ));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(LlmError::Tensor {
                name: "token_embd.weight".into(),
                reason: format!("token {bad} is outside the table"),
            });
        }
        let _turn = self
            .lock
            .lock()
            .map_err(|_| LlmError::Gpu("an earlier step failed mid-way".into()))?;
        let result = self.run_tokens(cache, tokens, record, tokenizer, profile);
        if let Some(e) = self.ctx.take_error() {
            return Err(LlmError::Gpu(e));
        }
        result
    }

    fn run_tokens(
        &self,
        cache: &mut GpuCache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
        profile: Profile,
    ) -> Result<ForwardOutput> {
        let c = &self.config;
        let (l, d, ff, nh, v) = (c.n_layer, c.n_embd, c.n_ff, c.n_head, c.vocab_size);
        let (n, pos) = (tokens.len(), cache.len);
        let s = &self.scratch;
        let lens = record.enabled && record.logit_lens && tokenizer.is_some();
        #[cfg(target_arch = "wasm32")]
        let key = super::web_read::StepKey {
            cache: cache.serial,
            pos,
            tokens: tokens.to_vec(),
            record: record.enabled,
            lens,
        };
        #[cfg(target_arch = "wasm32")]
        if let Some(bytes) = self.web.collect(&key, &s.staging)? {
            return Ok(self.finish(cache, tokens, record, lens, tokenizer, &bytes));
        }
        let paced = self
            .ctx
            .pacer
            .as_deref()
            .filter(|_| profile == Profile::Off);
        // Prompt tokens a batch at a time. Recording, the last token runs as a decode step of its
        // own (the trace is its numbers); otherwise the last batch ends with the head on its
        // last row, and a prompt of up to a batch is one pass.
        let batch = match paced {
            Some(_) => super::prompt::PACED_BATCH,
            None => super::prompt::BATCH,
        };
        // Where the batch with the head starts, if the head runs on a batch.
        let head_batch = (!record.enabled && n > 1).then(|| (n - 1) / batch * batch);
        let before = head_batch.unwrap_or(n - 1);
        for (i, chunk) in tokens[..before].chunks(batch).enumerate() {
            self.write_prompt(pos + i * batch, chunk);
            if let Some(pacer) = paced {
                let mut ops = Vec::new();
                self.encode_prompt(&mut ops, cache, chunk.len(), false);
                self.submit_paced(pacer, &ops, |_| 0)?;
                continue;
            }
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = Dispatcher::new(&mut enc, None, Profile::Off);
                self.encode_prompt(&mut pass, cache, chunk.len(), false);
            }
            self.ctx.queue.submit([enc.finish()]);
        }
        let last_pos = pos + n - 1;
        let (first_slot, rows) = if lens { (1, l as u32) } else { (l as u32, 1) };
        // The pass whose results come back: the last batch with the head, or the last token.
        match head_batch {
            Some(from) => self.write_prompt(pos + from, &tokens[from..]),
            None => self.write_step(last_pos, tokens[n - 1], first_slot),
        }
        let final_len = head_batch.map(|from| n - from);
        let timing =
            (profile != Profile::Off && self.ctx.timestamps).then(|| Timing::new(&self.ctx.device));
        // What comes back: the last row's logits, then (recording) the trace's numbers.
        let seen = last_pos + 1;
        let copies = |enc: &mut wgpu::CommandEncoder| -> u64 {
            let f = |floats: usize| (floats * 4) as u64;
            let mut at = 0u64;
            let mut copy = |src: &wgpu::Buffer, from: u64, len: u64| {
                enc.copy_buffer_to_buffer(src, from, &s.staging, at, len);
                at += len;
            };
            copy(&s.logits, f((rows as usize - 1) * v), f(v));
            if record.enabled {
                copy(&s.top, 0, f(4 * rows as usize));
                copy(&s.resid, 0, f((l + 1) * d));
                copy(&s.mlp_in, 0, f(l * d));
                copy(&s.act, 0, f(l * ff));
                copy(&s.probs, 0, f(l * nh * seen));
            }
            at
        };
        // A decode step on its own (no batches before it in the queue), not profiled, is timed
        // for the choice of its variant (`choice.rs`): paced, its chunks' GPU time (timestamps)
        // or time from submit to done; otherwise from recording to the results back.
        let fold = self.folded();
        let timed = n == 1 && profile == Profile::Off;
        let started = web_time::Instant::now();
        let (index, at, kinds, busy) = if let Some(pacer) = paced {
            let mut ops = Vec::new();
            self.encode_last(&mut ops, cache, final_len, (rows, lens), fold);
            let (index, at, busy) = self.submit_paced(pacer, &ops, copies)?;
            (index, at, Vec::new(), Some(busy))
        } else {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            let kinds = {
                let mut pass = Dispatcher::new(&mut enc, timing.as_ref(), profile);
                self.encode_last(&mut pass, cache, final_len, (rows, lens), fold);
                pass.finish()
            };
            let at = copies(&mut enc);
            if let Some(t) = &timing {
                t.resolve(&mut enc, kinds.len());
            }
            (self.ctx.queue.submit([enc.finish()]), at, kinds, None)
        };
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (index, kinds, timing, timed, started, busy);
            self.web.start(key, &s.staging, at)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let bytes = read_back(&self.ctx.device, &self.ctx.interrupt, &s.staging, at, index)?;
            if timed {
                let took = busy.unwrap_or_else(|| started.elapsed());
                self.choice.record(fold, (record.enabled, lens), took);
            }
            if let Some(t) = &timing
                && let Some(ms) = t.read(&self.ctx.device, &self.ctx.queue, &kinds)
                && let Ok(mut p) = self.profile.lock()
            {
                *p = Some(ms);
            }
            Ok(self.finish(cache, tokens, record, lens, tokenizer, &bytes))
        }
    }

    /// The step's results, read back: the cache now holds its positions; logits and trace
    /// (`lens`: whether the step computed the logit lens, as `run_tokens` decided).
    fn finish(
        &self,
        cache: &mut GpuCache,
        tokens: &[u32],
        record: RecordOptions,
        lens: bool,
        tokenizer: Option<&LlmTokenizer>,
        bytes: &[u8],
    ) -> ForwardOutput {
        let c = &self.config;
        let (l, d, ff, nh, v) = (c.n_layer, c.n_embd, c.n_ff, c.n_head, c.vocab_size);
        let (n, pos) = (tokens.len(), cache.len);
        let rows = if lens { l } else { 1 };
        let last_pos = pos + n - 1;
        let seen = last_pos + 1;
        cache.len = pos + n;
        let floats: &[f32] = bytemuck::cast_slice(bytes);
        let (logits, rest) = floats.split_at(v);
        let logits = Logits(logits.to_vec());
        let trace = if record.enabled {
            let (top, rest) = rest.split_at(4 * rows);
            let (resid, rest) = rest.split_at((l + 1) * d);
            let (mlp_in, rest) = rest.split_at(l * d);
            let (act, probs) = rest.split_at(l * ff);
            let slot = |i: usize| &resid[i * d..(i + 1) * d];
            let layers = (0..l)
                .map(|i| LayerTrace {
                    attention: (0..nh)
                        .map(|h| probs[(i * nh + h) * seen..(i * nh + h + 1) * seen].to_vec())
                        .collect(),
                    mlp_activation: act[i * ff..(i + 1) * ff].to_vec(),
                    mlp_input: mlp_in[i * d..(i + 1) * d].to_vec(),
                    residual_norm_in: l2(slot(i)),
                    residual_norm_out: l2(slot(i + 1)),
                    logit_lens: match tokenizer {
                        Some(tok) if lens => {
                            let t = &top[i * 4..i * 4 + 4];
                            let id = t[0].to_bits();
                            Some(TokenProb {
                                id,
                                piece: tok.piece(id),
                                logit: t[1],
                                prob: t[2],
                            })
                        }
                        _ => None,
                    },
                })
                .collect();
            let last = tokens[n - 1];
            Some(Trace {
                position: last_pos,
                token: TokenInfo {
                    id: last,
                    piece: tokenizer.map(|t| t.piece(last)).unwrap_or_default(),
                },
                embedding: slot(0).to_vec(),
                kv_head_of_head: (0..nh).map(|h| c.kv_head_of(h)).collect(),
                layers,
                top_k: tokenizer
                    .map(|t| logits.top(record.top_k, t))
                    .unwrap_or_default(),
            })
        } else {
            None
        };
        ForwardOutput {
            logits: logits.0,
            trace,
        }
    }
}

impl Backend for GpuModel {
    fn config(&self) -> &LlamaConfig {
        &self.config
    }

    fn context_length(&self) -> usize {
        self.context
    }

    fn new_cache(&self) -> Result<Cache> {
        Ok(Cache::new(self.new_gpu_cache()?))
    }

    fn forward(
        &self,
        cache: &mut Cache,
        tokens: &[u32],
        record: RecordOptions,
        tokenizer: Option<&LlmTokenizer>,
    ) -> Result<ForwardOutput> {
        let cache = cache.get_mut::<GpuCache>("the GPU backend")?;
        self.forward_gpu(cache, tokens, record, tokenizer, Profile::Off)
    }

    fn describe(&self) -> String {
        let reductions = if self.ctx.subgroups {
            "subgroup"
        } else {
            "workgroup-tree"
        };
        format!("GPU: {}, {reductions} reductions", self.ctx.adapter)
    }

    fn fault(&self) -> Option<String> {
        self.ctx
            .lost()
            .map(|why| format!("{}: {why}", self.ctx.adapter))
    }
}
