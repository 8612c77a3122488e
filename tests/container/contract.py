#!/usr/bin/env python3
"""Cloud Run's container contract, checked on deploy/local.sh's image with podman (runc):
PORT on 0.0.0.0, /health 503 until the model is loaded, the official Ollama and OpenAI Python
clients get the local engine's greedy answers, non-root with a read-only root and a tmpfs /tmp
under --memory 2g --cpus 2, no network needed at start, SIGTERM during 4 streams (each finishes
or ends with a clean final line within 10 s, exit 0), and the cold start a speaker quotes.

Usage (from the repository root, after deploy/local.sh): tests/container/contract.py
Environment: SAMEMATH_IMAGE (the image), SAMEMATH_BIN (the app, for the local answers).
"""
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (IMAGE, Parallel, check, finish, free_odd_port, local_answer, logs, podman, start,  # noqa: E402
                    stop, stream_chat, wait_healthy)

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Why is the sky blue?"
MAX_TOKENS = 12


def listening_on_all_interfaces(port):
    """A LISTEN socket on 0.0.0.0:port (or [::]:port) in the host's table (host network)."""
    want = f":{port:04X}"
    for table, any_addr in (("/proc/net/tcp", "00000000"), ("/proc/net/tcp6", "0" * 32)):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[1] == any_addr + want and cols[3] == "0A":
                return True
    return False


def contract(name, port):
    t0 = start(name, port)
    to_health, seen = wait_healthy(port)
    check(listening_on_all_interfaces(port), f"listens on 0.0.0.0:{port} (PORT={port})")
    check(all(s in (None, 503) for s in seen),
          f"/health before the model is loaded: {seen} (nothing, or 503), then 200")
    log = logs(name)
    check(log.find("listening") < log.find("model loaded"),
          "the port opens before the model is loaded (so /health can say 503)")

    # Who and where it runs.
    uid = podman("exec", name, "sh", "-c", "id -u")
    check(uid == "10001", f"runs as a non-root user (uid {uid})")
    ro = subprocess.run(["podman", "--runtime", "runc", "exec", name, "sh", "-c", "touch /x"],
                        capture_output=True, text=True)
    check(ro.returncode != 0 and "Read-only" in ro.stderr, "the root filesystem is read-only")
    tmp = podman("exec", name, "sh", "-c", "touch /tmp/x && echo writable")
    check(tmp == "writable", "/tmp is a writable tmpfs")
    limits = podman("inspect", name, "--format", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}")
    check(limits == f"{2 << 30} 2000000000", f"--memory 2g --cpus 2 applied ({limits})")

    # The official clients get the local engine's greedy answers.
    want = local_answer(PROMPT, MAX_TOKENS)
    r = subprocess.run([sys.executable, str(ROOT / "tests/reference/clients_check.py"),
                        "--port", str(port), "--prompt", PROMPT, "--max-tokens", str(MAX_TOKENS)],
                       capture_output=True, text=True, timeout=300)
    try:
        got = json.loads(r.stdout)
    except ValueError:
        got = {"error": r.stdout + r.stderr}
    check("error" not in got, f"the official clients ran ({got.get('error', 'ok')})")
    for key in ("ollama_chat", "ollama_chat_stream", "openai_chat", "openai_chat_stream"):
        check(got.get(key) == want, f"{key} from the container = the local engine's {want!r}"
              f" (got {got.get(key)!r})")
    check(got.get("ollama_embed_shape") == [2, 576], "embeddings through the Ollama client")
    return t0, to_health


def no_network_at_start(port):
    """The model is in the image: with no network at all it loads and answers."""
    name = "samemath-contract-offline"
    stop(name)
    podman("run", "-d", "--name", name, "--network", "none", "-e", f"PORT={port}",
           "--read-only", "--tmpfs", "/tmp", IMAGE)
    deadline = time.monotonic() + 60
    answer = ""
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["podman", "--runtime", "runc", "exec", name, "bash", "-c",
             f"exec 3<>/dev/tcp/127.0.0.1/{port}; "
             "printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3; timeout 5 cat <&3"],
            capture_output=True, text=True, timeout=30)
        answer = probe.stdout.splitlines()[0] if probe.stdout else ""
        if " 200 " in answer:
            break
        time.sleep(0.2)
    check(" 200 " in answer, f"--network none: /health answers inside the container ({answer!r})")
    stop(name)


def sigterm_during_streams(name, port):
    """4 streams (2 generating, 2 queued), then SIGTERM: each ends cleanly within 10 s."""
    streams = Parallel(4, lambda i: stream_chat(
        port, f"Tell me a long story about the number {i}.", 2000, timeout=30))
    time.sleep(2.0)  # two are streaming, two wait for a slot
    t_term = time.monotonic()
    podman("kill", "--signal", "TERM", name)
    results = streams.join(20)
    rc = podman("wait", name, timeout=30)
    exited_after = time.monotonic() - t_term
    for i, r in enumerate(results):
        final = r and r["final"]
        if r and r["status"] == 503:
            # Still waiting for a slot: told at once, with a hint a load balancer follows.
            check("retry-after" in r["headers"],
                  f"stream {i}, queued at SIGTERM: 503 with Retry-After ({r['error'].strip()})")
            continue
        clean = bool(final) and (final.get("done") is True or "error" in final)
        how = "finished" if final and final.get("done") else (final or {}).get("error", r and r["error"])
        check(clean, f"stream {i} after SIGTERM ends with a clean final line ({how})")
    streaming = sum(1 for r in results if r and r["ttft"] is not None)
    check(streaming >= 2, f"{streaming} of the 4 were streaming tokens when SIGTERM came")
    check(rc == "0", f"the server exits 0 after SIGTERM (exit {rc})")
    check(exited_after < 10.0, f"and within 10 s ({exited_after:.1f} s after SIGTERM)")
    print(logs(name).strip().splitlines()[-1])


def cold_start(name, port):
    """Container start to /health 200 and to the first streamed token."""
    t0 = start(name, port)
    to_health, _ = wait_healthy(port)
    r = stream_chat(port, PROMPT, 4)
    to_token = time.monotonic() - t0
    check(r["ttft"] is not None, "a first token after the cold start")
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}"))
    print(f"cold start: container start to /health 200 {to_health:.2f} s, to the first token "
          f"{to_token:.2f} s; image {size / 1e6:.0f} MB")
    stop(name)


def main():
    name = "samemath-contract"
    port = free_odd_port()
    try:
        contract(name, port)
        sigterm_during_streams(name, port)
        stop(name)
        no_network_at_start(free_odd_port())
        cold_start(name, free_odd_port())
    except Exception as e:  # a broken step is a failure with its reason, not a traceback
        check(False, f"{type(e).__name__}: {e}")
    finally:
        stop(name)
        stop("samemath-contract-offline")
    return finish("container contract")


if __name__ == "__main__":
    sys.exit(main())
