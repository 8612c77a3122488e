//! The GPU backend's whole model against the CPU backend (the parity report, on both ways to
//! reduce), its variants against each other (folded step, prompt batches: bit for bit), the
//! decode step chosen by timing, and a device that cannot run it or goes away.

use std::sync::Arc;

use llm::gpu::{GpuContext, GpuModel, StepChoice, parity};
use llm::model::{Q4Kernel, top_k};
use llm::{Backend, LlmTokenizer, Model, RecordOptions};

use super::gpu::{ctx, gpu};

/// Logits are compared as llama.cpp's are in llm.rs: top-10, each relative to its side's best.
/// The two backends quantize every matrix input to 8 bits with the same rule and multiply
/// integers exactly, but add the f32 block contributions (and RMSNorm's squares) in different
/// orders; a value within an ulp of a rounding tie then lands on the other integer, and such
/// flips compound through 30 layers (the same effect, and the same tolerance, as against
/// llama.cpp).
const LOGIT_TOLERANCE: f32 = 1.0;
/// Per layer, the MLP activations' (and MLP inputs', residual norms') L2 distance relative to
/// the CPU's. The drift this arithmetic gives is measured in the same run: our CPU kernels
/// against candle's own CPU kernel for the same blocks (a second correct implementation that
/// rounds its scales slightly differently) drift 3-6% per layer; the GPU must stay within twice
/// that on average and below this cap everywhere (seen on lavapipe: worst 0.075, mean 0.034
/// against candle's 0.035).
const ACTIVATION_TOLERANCE: f32 = 0.15;
/// Attention probabilities, absolute (seen: 0.058).
const ATTENTION_TOLERANCE: f32 = 0.15;

#[test]
fn gpu_and_cpu_backends_agree_on_tokens_logits_and_every_layer() {
    let (cpu, tok) = testkit::model::model();
    let path = llm::fetch::model_path(None);
    let (candle, _) = Model::load_with(&path, Q4Kernel::Candle).unwrap();
    // The model as the device runs it, then (where that reduces with subgroups) reducing in
    // workgroup-memory trees, as devices without subgroups run it.
    let trees = ctx()
        .subgroups
        .then(|| GpuModel::load(&path, ctx().clone().without_subgroups(), 512).unwrap());
    for gpu in std::iter::once(&**gpu()).chain(trees.as_ref()) {
        agrees_with_the_cpu(cpu, &candle, gpu, tok);
    }
}

fn agrees_with_the_cpu(cpu: &Arc<Model>, candle: &Model, gpu: &GpuModel, tok: &Arc<LlmTokenizer>) {
    let r = parity::compare(cpu, candle, gpu, tok, &parity::PROMPTS, 16).unwrap();
    eprintln!("GPU vs CPU backend on {}: {r}", gpu.describe());
    assert!(
        r.steps >= 5 * 8,
        "the prompts ended early: {} steps",
        r.steps
    );
    assert!(r.worst_logit <= LOGIT_TOLERANCE);
    // With every logit that close, greedy picks can differ only where the CPU's best two are.
    for m in &r.differing_margins {
        assert!(
            *m <= 2.0 * LOGIT_TOLERANCE,
            "picks differ at a margin of {m}"
        );
    }
    assert!(
        r.same_token * 10 >= r.steps * 9,
        "fewer than 90% identical picks"
    );
    assert_eq!(
        r.embedding_mismatches, 0,
        "embedding rows are dequantized identically"
    );
    assert_eq!(r.lens_mismatches, 0);
    assert!(r.worst_activation <= ACTIVATION_TOLERANCE);
    assert!(r.worst_mlp_input <= ACTIVATION_TOLERANCE);
    assert!(r.worst_residual_norm <= ACTIVATION_TOLERANCE);
    assert!(r.worst_attention <= ATTENTION_TOLERANCE);
    assert!(
        r.mean_activation <= 2.0 * r.baseline_mean_activation,
        "the GPU drifts from the CPU more than two CPU implementations drift from each other"
    );
}

/// CI's lavapipe has subgroup operations, so the tests above run the kernels both ways there.
#[test]
fn lavapipe_reduces_with_subgroups() {
    if ctx().adapter.contains("llvmpipe") {
        assert!(
            ctx().subgroups,
            "{} offers no SUBGROUP feature",
            ctx().adapter
        );
        assert!(gpu().describe().ends_with("subgroup reductions"));
    }
}

/// The decode step folded (RMSNorm made inside the q/k/v and gate/up products, SwiGLU inside the
/// down product) or each as dispatches of its own: the same functions compute the normed or
/// activated, quantized rows either way, so the logits, the recorded rows and the cache the step
/// leaves are identical, and the folded step has 3 fewer dispatches a layer.
#[test]
fn folded_and_separate_norm_and_swiglu_give_identical_logits() {
    let (_, tok) = testkit::model::model();
    // A model of its own: the switch would otherwise flip under the other tests.
    let path = llm::fetch::model_path(None);
    let gpu = GpuModel::load(&path, ctx().clone(), 64).unwrap();
    let ids = tok.encode("The capital of France is").unwrap();
    let run = |fold: bool| {
        gpu.set_folded(fold);
        let mut cache = gpu.new_cache().unwrap();
        let out = gpu
            .forward(&mut cache, &ids, RecordOptions::FULL, Some(tok))
            .unwrap();
        let next = top_k(&out.logits, 1)[0].0;
        let again = gpu
            .forward(&mut cache, &[next], RecordOptions::FULL, Some(tok))
            .unwrap();
        let dispatches: usize = gpu
            .dispatches_per_token(&gpu.new_gpu_cache().unwrap(), false)
            .iter()
            .map(|(_, n)| n)
            .sum();
        (out, again, dispatches)
    };
    let (folded, folded_next, folded_count) = run(true);
    let (separate, separate_next, separate_count) = run(false);
    assert_eq!(folded.logits, separate.logits);
    assert_eq!(folded_next.logits, separate_next.logits);
    let n_layer = folded.trace.as_ref().unwrap().layers.len();
    assert_eq!(separate_count - folded_count, 3 * n_layer);
    for (a, b) in [(folded, separate), (folded_next, separate_next)] {
        let (a, b) = (a.trace.unwrap(), b.trace.unwrap());
        for (x, y) in a.layers.iter().zip(&b.layers) {
            assert_eq!(x.mlp_input, y.mlp_input);
            assert_eq!(x.mlp_activation, y.mlp_activation);
        }
    }
}

/// Unless set, a model times its first decode steps both ways, the two variants in turns, and
/// keeps the faster (which one is the device's answer, not asserted here). Both give the same
/// bits, so switching between them mid-generation changes nothing: every step's logits equal
/// those of a model set to the separate step.
#[test]
fn the_decode_step_is_chosen_by_timing_without_changing_a_bit() {
    let (_, tok) = testkit::model::model();
    let path = llm::fetch::model_path(None);
    let ids = tok.encode("The capital of France is").unwrap();
    let tries = llm::gpu::STEP_TRIES as usize;
    // Greedy steps after the prompt, and the variant each ran.
    let steps = |gpu: &GpuModel| {
        let mut cache = gpu.new_cache().unwrap();
        let mut out = gpu
            .forward(&mut cache, &ids, RecordOptions::OFF, None)
            .unwrap();
        let (mut logits, mut ran) = (Vec::new(), Vec::new());
        for _ in 0..2 * tries + 2 {
            let next = top_k(&out.logits, 1)[0].0;
            ran.push(gpu.folded());
            out = gpu
                .forward(&mut cache, &[next], RecordOptions::OFF, None)
                .unwrap();
            logits.push(out.logits.clone());
        }
        (logits, ran)
    };
    // A model of its own: the choice is its state.
    let gpu = GpuModel::load(&path, ctx().clone(), 64).unwrap();
    assert_eq!(
        gpu.step_choice(),
        StepChoice::Timing {
            separate: 0,
            folded: 0
        }
    );
    let (timed_logits, ran) = steps(&gpu);
    let choice = gpu.step_choice();
    eprintln!("decode step on {}: {choice}", gpu.describe());
    // The prompt's batch is not a decode step: the first `tries` pairs of steps alternate, then
    // the choice holds.
    assert!(
        ran[..2 * tries].chunks(2).all(|p| p == [false, true]),
        "{ran:?}"
    );
    match choice {
        StepChoice::Timed {
            folded,
            separate_step,
            folded_step,
        } => {
            assert_eq!(folded, folded_step < separate_step);
            assert!(ran[2 * tries..].iter().all(|&f| f == folded));
        }
        other => panic!("not chosen after {} steps: {other:?}", ran.len()),
    }
    // Set by the caller: the same steps again, all separate, give the same logits.
    gpu.set_folded(false);
    assert_eq!(gpu.step_choice(), StepChoice::Set { folded: false });
    let (set_logits, set_ran) = steps(&gpu);
    assert!(set_ran.iter().all(|&f| !f));
    assert_eq!(timed_logits, set_logits);
}

/// A prompt read in batches (`forward` with every token) against the same tokens one step each:
/// the same logits, trace and cache, bit for bit. Recording, the last token runs as a step of its
/// own after the batches; with recording off the last batch ends with the head, so a short
/// prompt is one pass. The batches' kernels keep the decode step's arithmetic token by token, so
/// nothing may differ; the next step after the prompt reads the cache the batches wrote.
#[test]
fn a_prompt_read_in_batches_equals_the_same_tokens_one_at_a_time() {
    let (_, tok) = testkit::model::model();
    let gpu = gpu();
    let long = "The history of mathematics is long. Counting came first, then geometry for \
                measuring fields, then algebra for solving equations, and much later calculus \
                for motion and change. Matrices arrived in the nineteenth century, and today the \
                same products of matrices and vectors draw games and run language models alike, \
                which is the point of this demonstration. Read it, and then read it once more \
                slowly.";
    for text in ["The capital of France is", long] {
        let ids = tok.encode(text).unwrap();
        assert!(
            text != long || ids.len() > llm::gpu::PROMPT_BATCH + 2,
            "the long prompt must cross a batch: {} tokens",
            ids.len()
        );
        let t0 = std::time::Instant::now();
        let mut batched = gpu.new_cache().unwrap();
        let a = gpu
            .forward(&mut batched, &ids, RecordOptions::FULL, Some(tok))
            .unwrap();
        let t1 = std::time::Instant::now();
        let mut single = gpu.new_cache().unwrap();
        for &t in &ids[..ids.len() - 1] {
            gpu.forward(&mut single, &[t], RecordOptions::OFF, None)
                .unwrap();
        }
        let last = &ids[ids.len() - 1..];
        let b = gpu
            .forward(&mut single, last, RecordOptions::FULL, Some(tok))
            .unwrap();
        let t2 = std::time::Instant::now();
        let mut whole = gpu.new_cache().unwrap();
        let c = gpu
            .forward(&mut whole, &ids, RecordOptions::OFF, None)
            .unwrap();
        eprintln!(
            "{} prompt tokens on {}: in batches {:.2} s (recording off {:.2} s), one at a time \
             {:.2} s",
            ids.len(),
            gpu.describe(),
            (t1 - t0).as_secs_f64(),
            t2.elapsed().as_secs_f64(),
            (t2 - t1).as_secs_f64()
        );
        assert_eq!(a.logits, b.logits, "{} tokens", ids.len());
        assert_eq!(c.logits, b.logits, "{} tokens, recording off", ids.len());
        let (ta, tb) = (a.trace.unwrap(), b.trace.unwrap());
        for (i, (x, y)) in ta.layers.iter().zip(&tb.layers).enumerate() {
            assert_eq!(x.attention, y.attention, "layer {i}'s attention rows");
            assert_eq!(x.mlp_activation, y.mlp_activation, "layer {i}");
        }
        let next = top_k(&a.logits, 1)[0].0;
        let after = |cache: &mut llm::Cache| {
            gpu.forward(cache, &[next], RecordOptions::OFF, None)
                .unwrap()
                .logits
        };
        let want = after(&mut single);
        assert_eq!(after(&mut batched), want);
        assert_eq!(after(&mut whole), want);
    }
}

// ---- bad input ----

/// A device whose storage bindings are too small for the embedding table, or whose dispatches
/// are too small for the head: a clear error (the app and the command line then run on the
/// CPU), not a panic.
#[test]
fn a_device_with_too_small_limits_is_a_clear_error() {
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 16 << 20,
        ..wgpu::Limits::default()
    };
    let ctx = GpuContext::with_limits(limits).unwrap();
    let path = llm::fetch::model_path(None);
    let err = GpuModel::load(&path, ctx, 64).unwrap_err().to_string();
    assert!(err.contains("this device allows 16 MiB"), "{err}");

    // A device that takes fewer workgroups in a dispatch than the head needs (49,152 rows, four
    // to a workgroup: 12,288): refused before the upload, where the dispatch would fail
    // validation and, on the app's device, end the app.
    let limits = wgpu::Limits {
        max_compute_workgroups_per_dimension: 8192,
        ..wgpu::Limits::default()
    };
    let ctx = GpuContext::with_limits(limits).unwrap();
    let err = GpuModel::load(&path, ctx, 64).unwrap_err().to_string();
    assert!(
        err.contains("vocabulary of 49152 tokens") && err.contains("(8192)"),
        "{err}"
    );
}

/// The device goes away mid-generation: the next step is an error naming the GPU, not a panic
/// or a hang, and the backend reports the fault for good (a server's /health turns 503).
#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    let (_, tok) = testkit::model::model();
    let path = llm::fetch::model_path(None);
    let gpu = GpuModel::load(&path, GpuContext::new().unwrap(), 64).unwrap();
    let mut cache = gpu.new_cache().unwrap();
    let ids = tok.encode("The capital of France is").unwrap();
    gpu.forward(&mut cache, &ids, RecordOptions::OFF, Some(tok))
        .unwrap();
    assert_eq!(gpu.fault(), None, "a working device has no fault");
    gpu.context().device.destroy();
    let err = gpu
        .forward(&mut cache, &ids[..1], RecordOptions::OFF, Some(tok))
        .unwrap_err();
    assert!(matches!(err, llm::LlmError::Gpu(_)), "{err:?}");
    println!("after the device was destroyed: {err}");
    // wgpu calls a destroyed device's lost callback at its next poll (a device lost by the
    // driver calls it at once).
    let _ = gpu.context().device.poll(wgpu::PollType::Poll);
    let fault = gpu
        .fault()
        .expect("the lost device is reported as the backend's fault");
    assert!(fault.contains("lost"), "{fault}");
    println!("the backend's fault: {fault}");
}
