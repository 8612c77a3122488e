#!/usr/bin/env python3
"""llama.cpp's speed on a GGUF file, for `samemath bench --llm` to compare against.

Prints one JSON object: prefill and decode tokens/s (greedy), measured like samemath measures
its own: the prompt evaluated in one batch, then N single-token decode steps.

Usage: bench_llama_cpp.py --model PATH --threads N --tokens N (--prompt TEXT | --ids 1,2,...)
With --ids the prompt is those token ids (a long prompt, cut to a length in tokens); the answer
then also gives prefill_secs.
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--prompt")
    ap.add_argument("--ids", help="comma-separated token ids instead of --prompt")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    try:
        import llama_cpp
        import numpy as np
    except ImportError:
        print(json.dumps({"error": "llama-cpp-python is not installed "
                                   "(python3 -m pip install llama-cpp-python)"}))
        return
    ids = [int(t) for t in args.ids.split(",")] if args.ids else None
    if ids is None and args.prompt is None:
        print(json.dumps({"error": "give --prompt or --ids"}))
        return
    n_ctx = max(2048, len(ids or []) + args.tokens + 16)
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=n_ctx, n_batch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, verbose=False)
    tokens = ids if ids is not None else llm.tokenize(args.prompt.encode("utf-8"), add_bos=False,
                                                      special=True)
    best_prefill, best_decode, prefill_secs = 0.0, 0.0, float("inf")
    for _ in range(args.repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        t1 = time.perf_counter()
        for _ in range(args.tokens):
            logits = np.asarray(llm.scores[llm.n_tokens - 1])
            llm.eval([int(np.argmax(logits))])
        t2 = time.perf_counter()
        prefill_secs = min(prefill_secs, t1 - t0)
        best_prefill = max(best_prefill, len(tokens) / (t1 - t0))
        if args.tokens:
            best_decode = max(best_decode, args.tokens / (t2 - t1))
    print(json.dumps({"llama_cpp_python": llama_cpp.__version__, "prompt_tokens": len(tokens),
                      "prefill_tps": best_prefill, "decode_tps": best_decode,
                      "prefill_secs": prefill_secs}))


if __name__ == "__main__":
    sys.exit(main())
