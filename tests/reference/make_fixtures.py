#!/usr/bin/env python3
"""Write the llama.cpp reference fixtures for samemath's LLM tests.

Runs llama.cpp (PyPI `llama-cpp-python`) on the same GGUF file samemath uses and records:
  fixtures/tokenizer.json  token ids of 200+ varied strings (special tokens parsed, no BOS)
  fixtures/logits.json     for 20+ prompts: prompt tokens, the top-10 next-token logits, and
                           32 greedy tokens (with each step's top-2 logit margin)
Nothing in the fixtures is typed by hand: every number comes from llama.cpp.

Usage: python3 tests/reference/make_fixtures.py [--model PATH]
(default model: $SAMEMATH_MODEL or ~/.cache/samemath/models/SmolLM2-135M-Instruct.Q4_1.gguf)
"""
import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = Path(os.environ.get("SAMEMATH_MODEL") or (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "samemath" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chat(user):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


def tokenizer_strings():
    seeds = [
        "Hello world", "hello world", " Hello", "Hello  world", "This is a prompt",
        "The capital of France is", "Why is the sky blue?", "I'm sure it's fine, isn't it?",
        "They'll say we'd've done it.", "CAPITALS AND lowercase", "MiXeD CaSe WoRdS",
        "def add(a, b):\n    return a + b\n", "fn main() {\n\tprintln!(\"hi\");\n}",
        "for (int i = 0; i < 10; ++i) { x[i] = i * 2; }", "SELECT * FROM users WHERE id = 42;",
        "<div class=\"a\">text</div>", "{\"key\": [1, 2, 3], \"ok\": true}",
        "x = y ** 2 // 3 % 7", "a->b => c :: d", "https://example.com/path?q=1&r=2",
        "user@example.org", "C:\\Program Files\\samemath", "#include <stdio.h>",
        "12345", "3.14159", "-0.5e-10", "1,000,000", "2024-11-29", "13:45:00", "$100.99",
        "123abc456", "v1.2.3", "0x1F4A", "１２３", "٣٤٥", "Ⅻ",
        " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "a  b   c    d", "trailing   ",
        "   leading", "tab\tseparated\tvalues", "line one\nline two\n\nline four",
        "😀", "Hello 😀 world", "👍🏽", "👨‍👩‍👧", "🇫🇷", "I ❤️ Rust", "∑ ∫ √ ∞ ≠ ≤",
        "日本語のテキスト", "中文文本", "한국어", "Привет, мир", "Γειά σου Κόσμε", "مرحبا",
        "שלום", "हिन्दी", "ไทย", "café", "naïve façade", "Åland Ørsted Ærø", "Straße",
        "élève à l'école", "señor niño", "Ḱṓṟé", "e\u0301", "ﬁ ligature",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
        "<|im_start|>assistant\n", "text<|im_end|>more", "<|im_start|><|im_end|>",
        "<|im_start", "im_end|>", "< |im_start| >",
        chat("What is 2+2?"), chat("Tell me a joke."),
        "The quick brown fox jumps over the lazy dog.",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
        "It was the best of times, it was the worst of times.",
        "Ask not what your country can do for you.", "To be, or not to be: that is the question.",
        "!!!???...", "---", "***bold***", "__init__", "snake_case_name", "camelCaseName",
        "PascalCaseName", "kebab-case-name", "SCREAMING_SNAKE", "a.b.c.d", "(((nested)))",
        "'single' \"double\" `back`", "…", "—", "–", "«guillemets»", "„Anführung“",
    ]
    generated = []
    for n in range(1, 16):
        generated.append("7" * n)
        generated.append(" " * n + "x")
        generated.append("word" + " " * n)
    for a, b in [(1, 22), (333, 4444), (55555, 6), (2, 1000000)]:
        generated.append(f"{a}+{b}={a + b}")
        generated.append(f"{a} {b}")
    for word in ["token", "matrix", "vector", "neuron", "shader", "lighting", "embedding"]:
        generated += [word, " " + word, word.capitalize(), word.upper(), word + "s", word + "'s"]
    strings = seeds + generated
    assert len(strings) == len(set(strings)), "duplicate strings"
    return strings


PROMPTS = [
    ("capital_raw", "The capital of France is"),
    ("sky_raw", "Why is the sky blue? Because"),
    ("count_raw", "1, 2, 3, 4, 5,"),
    ("code_raw", "def fibonacci(n):\n    "),
    ("story_raw", "Once upon a time, in a small village,"),
    ("matrix_raw", "A 4x4 matrix multiplies a vector by"),
    ("list_raw", "Three primary colors are red,"),
    ("json_raw", "{\"name\": \"Alice\", \"age\":"),
    ("french_raw", "Bonjour, je m'appelle"),
    ("emoji_raw", "My favourite emoji is 😀 because"),
    ("math_raw", "The derivative of x^2 is"),
    ("gpu_raw", "GPUs are fast because"),
    ("chat_sky", chat("Why is the sky blue?")),
    ("chat_capital", chat("What is the capital of France?")),
    ("chat_math", chat("What is 12 times 7?")),
    ("chat_poem", chat("Write a haiku about the moon.")),
    ("chat_code", chat("Write a Python function that reverses a string.")),
    ("chat_llm", chat("Explain what a large language model is in one sentence.")),
    ("chat_graphics", chat("How does a vertex shader transform a vertex?")),
    ("chat_hello", chat("Hello!")),
    ("chat_cloud", chat("What is serverless computing?")),
    ("chat_list", chat("List three fruits.")),
]

GREEDY_STEPS = 32


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--out", type=Path, default=HERE / "fixtures")
    args = ap.parse_args()
    try:
        import llama_cpp
        import numpy as np
    except ImportError:
        sys.exit("needs llama-cpp-python: python3 -m pip install llama-cpp-python")
    if not args.model.exists():
        sys.exit(f"{args.model} not found: run `samemath fetch-model` or pass --model")
    llm = llama_cpp.Llama(model_path=str(args.model), n_ctx=1024, n_batch=512, n_threads=2,
                          logits_all=True, verbose=False, seed=0)
    meta = {"model": args.model.name, "model_sha256": sha256(args.model),
            "llama_cpp_python": llama_cpp.__version__,
            "generator": "tests/reference/make_fixtures.py"}
    args.out.mkdir(parents=True, exist_ok=True)

    cases = [{"text": s, "ids": llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)}
             for s in tokenizer_strings()]
    (args.out / "tokenizer.json").write_text(json.dumps({**meta, "cases": cases}, ensure_ascii=False, indent=0))

    prompts = []
    for name, text in PROMPTS:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(tokens)
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        top = np.argsort(-logits, kind="stable")[:10]
        greedy, margins = [], []
        for _ in range(GREEDY_STEPS):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            order = np.argsort(-row, kind="stable")[:2]
            greedy.append(int(order[0]))
            margins.append(float(row[order[0]] - row[order[1]]))
            llm.eval([int(order[0])])
        prompts.append({"name": name, "text": text, "tokens": tokens,
                        "top10": [[int(i), float(logits[i])] for i in top],
                        "greedy": greedy, "greedy_margins": margins})
        print(f"{name}: {llm.detokenize(greedy).decode('utf-8', 'replace')!r}")
    (args.out / "logits.json").write_text(json.dumps({**meta, "greedy_steps": GREEDY_STEPS, "prompts": prompts}, ensure_ascii=False, indent=0))
    print(f"{len(cases)} tokenizer cases, {len(prompts)} prompts -> {args.out}")


if __name__ == "__main__":
    main()
