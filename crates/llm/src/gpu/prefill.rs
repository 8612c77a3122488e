//! A prompt's batches recorded (the buffers and bind groups they use are in `prompt.rs`): the
//! batch's ids and RoPE angles written, then its dispatches, layer by layer.

use super::cache::GpuCache;
use super::encode::{Count, Sink};
use super::kernels::Input;
use super::model::GpuModel;
use super::profile::KernelKind;
use super::prompt::BATCH;
use super::upload::GpuMatrix;

impl GpuModel {
    /// The batch `tokens` (at most [`BATCH`]) at positions `pos..`: their ids and RoPE angles
    /// (and, for the final norm, the last row's index).
    pub(crate) fn write_prompt(&self, pos: usize, tokens: &[u32]) {
        let n = tokens.len();
        let last = n.saturating_sub(1) as u32;
        let words = self.step_words([pos as u32, n as u32, last], pos..pos + n);
        let s = &self.prompt.scratch;
        self.ctx
            .queue
            .write_buffer(&s.step, 0, bytemuck::cast_slice(&words));
        self.ctx
            .queue
            .write_buffer(&s.tokens, 0, bytemuck::cast_slice(tokens));
    }

    /// Record a batch of `n` prompt tokens' dispatches (`write_prompt` gave their ids and
    /// positions). `head`: the final norm and the head follow for the batch's last row (the
    /// logits in the decode step's buffer); without it the last layer stops once its keys and
    /// values are stored, since nothing after them is read.
    pub(crate) fn encode_prompt<'s>(
        &'s self,
        pass: &mut impl Sink<'s>,
        cache: &'s GpuCache,
        n: usize,
        head: bool,
    ) {
        let c = &self.config;
        let k = &self.kernels;
        let p = &self.prompt;
        let n = n as u32;
        let mm = |m: &GpuMatrix| (m.rows.div_ceil(4), n.div_ceil(8), 1);
        pass.run(
            KernelKind::Embed,
            &k.embed_rows,
            &p.embed,
            ((c.n_embd as u32).div_ceil(64), n, 1),
        );
        let last = self.layers.len() - 1;
        for (i, ((w, g), [store, attend])) in self
            .layers
            .iter()
            .zip(&p.layers)
            .zip(&cache.prompt)
            .enumerate()
        {
            pass.run(KernelKind::Norm, &k.normalize, &g.attn_norm, (n, 1, 1));
            pass.run(KernelKind::MatMul, k.matmul(&w.qkv), &g.qkv, mm(&w.qkv));
            pass.run(KernelKind::StoreKv, &k.store_rows, store, (n, 1, 1));
            if i == last && !head {
                break;
            }
            pass.run(
                KernelKind::Attention,
                &k.attention_rows,
                attend,
                (c.n_head as u32, n, 1),
            );
            pass.run(KernelKind::MatMul, k.matmul(&w.wo), &g.wo, mm(&w.wo));
            pass.run(KernelKind::Norm, &k.normalize, &g.ffn_norm, (n, 1, 1));
            pass.run(
                KernelKind::MatMul,
                k.matmul(&w.gate_up),
                &g.gate_up,
                mm(&w.gate_up),
            );
            pass.run(
                KernelKind::Swiglu,
                &k.swiglu_rows,
                &g.swiglu,
                ((c.n_ff / 32) as u32, n, 1),
            );
            pass.run(KernelKind::MatMul, k.matmul(&w.down), &g.down, mm(&w.down));
        }
        if head {
            pass.run(KernelKind::Norm, &k.normalize, &p.final_norm, (1, 1, 1));
            pass.run(
                KernelKind::Head,
                k.matvec(&self.head, Input::Quantized),
                &self.head_group,
                (self.head.rows.div_ceil(4), 1, 1),
            );
        }
    }

    /// The dispatches a batch of `n` prompt tokens records (`head`: the last batch with the
    /// final norm and the head), by kernel kind: counted by recording them into a list; nothing
    /// is submitted.
    pub fn dispatches_per_prompt_batch(
        &self,
        cache: &GpuCache,
        n: usize,
        head: bool,
    ) -> Vec<(KernelKind, usize)> {
        let mut count = Count::default();
        self.encode_prompt(&mut count, cache, n.clamp(1, BATCH), head);
        count.0
    }
}
