#!/usr/bin/env python3
"""The official Python clients (PyPI `ollama` and `openai`, which we did not write) against a
running `samemath serve`: chat, generate and embed through Ollama's client, streaming and not;
chat completions with log-probabilities, and with the question as a list of content parts,
through OpenAI's; with --stop, the same answers cut at that stop string by both clients. Prints one JSON object with what each call returned, for
crates/serve/tests/serve/main.rs to compare with the local engine.

Usage: clients_check.py --port PORT --prompt TEXT --max-tokens N [--stop TEXT]
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--stop")
    args = ap.parse_args()
    try:
        import ollama
        import openai
    except ImportError as e:
        print(json.dumps({"error": f"{e}: python3 -m pip install ollama openai"}))
        return 1
    host = f"http://127.0.0.1:{args.port}"
    model = "smollm2-135m-instruct"
    messages = [{"role": "user", "content": args.prompt}]
    options = {"temperature": 0, "num_predict": args.max_tokens}
    out = {}

    client = ollama.Client(host=host)
    out["ollama_models"] = [m.model for m in client.list().models]
    out["ollama_chat"] = client.chat(model=model, messages=messages, options=options).message.content
    out["ollama_chat_stream"] = "".join(
        c.message.content for c in client.chat(model=model, messages=messages, options=options, stream=True))
    out["ollama_generate"] = client.generate(model=model, prompt=args.prompt, options=options).response
    out["ollama_generate_stream"] = "".join(
        c.response for c in client.generate(model=model, prompt=args.prompt, options=options, stream=True))
    emb = client.embed(model=model, input=["the sky", "a matrix"]).embeddings
    out["ollama_embed_shape"] = [len(emb), len(emb[0])]

    oai = openai.OpenAI(base_url=f"{host}/v1", api_key="unused")
    out["openai_models"] = [m.id for m in oai.models.list().data]
    r = oai.chat.completions.create(model=model, messages=messages, max_tokens=args.max_tokens,
                                    temperature=0, logprobs=True, top_logprobs=3)
    out["openai_chat"] = r.choices[0].message.content
    out["openai_finish"] = r.choices[0].finish_reason
    # The same question as a list of content parts (how several SDKs and UIs send text).
    parts = [{"role": "user", "content": [{"type": "text", "text": args.prompt}]}]
    r2 = oai.chat.completions.create(model=model, messages=parts, max_tokens=args.max_tokens, temperature=0)
    out["openai_chat_parts"] = r2.choices[0].message.content
    out["openai_ids"] = [r.id, r2.id]
    text, logprobs = [], []
    for chunk in oai.chat.completions.create(model=model, messages=messages, max_tokens=args.max_tokens,
                                             temperature=0, logprobs=True, top_logprobs=20, stream=True):
        if not chunk.choices:
            continue
        c = chunk.choices[0]
        text.append(c.delta.content or "")
        if c.logprobs and c.logprobs.content:
            for entry in c.logprobs.content:
                logprobs.append({"token": entry.token, "logprob": entry.logprob,
                                 "top": [t.token for t in entry.top_logprobs]})
    out["openai_chat_stream"] = "".join(text)
    out["openai_logprobs"] = logprobs
    if args.stop is None:
        print(json.dumps(out))
        return 0

    # Stop strings: the answer ends just before the first one.
    stop_options = dict(options, stop=[args.stop])
    last = None
    text = []
    for c in client.generate(model=model, prompt=args.prompt, options=stop_options, stream=True):
        text.append(c.response)
        last = c
    out["ollama_generate_stop_stream"] = "".join(text)
    out["ollama_stop_reason"] = last.done_reason
    out["ollama_chat_stop"] = client.chat(model=model, messages=messages, options=stop_options).message.content
    r = oai.chat.completions.create(model=model, messages=messages, max_tokens=args.max_tokens,
                                    temperature=0, stop=[args.stop])
    out["openai_chat_stop"] = r.choices[0].message.content
    out["openai_stop_finish"] = r.choices[0].finish_reason
    out["openai_chat_stop_stream"] = "".join(
        (c.choices[0].delta.content or "") if c.choices else ""
        for c in oai.chat.completions.create(model=model, messages=messages, max_tokens=args.max_tokens,
                                             temperature=0, stop=args.stop, stream=True))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
