"""What the container tests share: podman (with runc) driving deploy/local.sh's image, a bounded
HTTP client for /health and streamed answers, and percentiles. Standard library only."""
import http.client
import json
import os
import socket
import subprocess
import threading
import time

# podman settings that runc can apply in a sandbox (see the file).
os.environ.setdefault("CONTAINERS_CONF",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                   "deploy", "podman.conf"))
IMAGE = os.environ.get("SAMEMATH_IMAGE", "localhost/samemath-serve:local")
PODMAN = ["podman", "--runtime", "runc"]
MODEL = "smollm2-135m-instruct"
# Cloud Run's contract, applied here: non-root comes from the image, the rest from `run`.
CONTRACT = ["--read-only", "--tmpfs", "/tmp", "--memory", "2g", "--cpus", "2"]

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def finish(name):
    print(f"{name}: " + (f"{len(failures)} check(s) failed" if failures else "all checks passed"))
    return 1 if failures else 0


def podman(*args, check_rc=True, timeout=120):
    r = subprocess.run(PODMAN + list(args), capture_output=True, text=True, timeout=timeout)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


def free_odd_ports(n):
    """n free ports, odd (Cloud Run's PORT is not always 8080; nothing may assume it), all
    different: every probe stays bound until all n are chosen, so the kernel gives none twice."""
    held, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            held.append(s)  # even ones too, so that none comes back
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port % 2 == 1 and port != 8080:
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def free_odd_port():
    """One free odd port (`free_odd_ports`)."""
    return free_odd_ports(1)[0]


def start(name, port, *extra, args=()):
    """Start the image under the contract on the host's loopback network; returns start time."""
    podman("rm", "-f", name, check_rc=False)
    t0 = time.monotonic()
    podman("run", "-d", "--name", name, "--network", "host", "-e", f"PORT={port}",
           *CONTRACT, *extra, IMAGE, *args)
    return t0


def stop(name):
    podman("rm", "-f", "-t", "0", name, check_rc=False)


def logs(name):
    r = subprocess.run(PODMAN + ["logs", name], capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def health(port, timeout=1.0):
    """/health's status, or None when nothing answers yet."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", "/health")
        status = c.getresponse().status
        c.close()
        return status
    except OSError:
        return None


def wait_healthy(port, limit=60.0):
    """Poll /health until 200: (seconds waited, the statuses seen before, in order, deduped)."""
    t0 = time.monotonic()
    seen = []
    while time.monotonic() - t0 < limit:
        s = health(port)
        if s == 200:
            return time.monotonic() - t0, seen
        if not seen or seen[-1] != s:
            seen.append(s)
        time.sleep(0.01)
    raise RuntimeError(f"/health on port {port} not 200 after {limit} s (saw {seen})")


def stream_chat(port, prompt, max_tokens, timeout=60.0, path="/api/chat", out=None, sent=None,
                first=None):
    """One streamed Ollama chat, read line by line with a bound on each wait. Returns a dict:
    status, headers, text, ttft (s to the first token), lines, final (the last line, parsed, or
    None when the stream ended without one), error (what went wrong on the wire, if anything),
    client_port (this end of the connection).

    The dict can be the caller's (`out`), filled as the answer comes, so another thread sees
    where it stands; `sent` (an Event) is set once the request is written, `first` once a line
    with content arrived. Both are set on the way out whatever happened, so nobody waits out a
    bound for a stream that failed (what it got says so)."""
    body = json.dumps({"model": MODEL, "stream": True,
                       "messages": [{"role": "user", "content": prompt}],
                       "options": {"temperature": 0, "num_predict": max_tokens}})
    out = {} if out is None else out
    out.update({"status": None, "headers": {}, "text": "", "ttft": None, "lines": 0,
                "final": None, "error": None, "client_port": None})
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        out["client_port"] = c.sock.getsockname()[1]
        if sent:
            sent.set()
        r = c.getresponse()
        out["headers"] = {k.lower(): v for k, v in r.getheaders()}
        out["status"] = r.status
        if r.status != 200:
            out["error"] = r.read(4096).decode(errors="replace")
        else:
            while True:
                line = r.readline(1 << 20)
                if not line:
                    break
                if not line.strip():
                    continue
                out["lines"] += 1
                v = json.loads(line)
                if "error" in v:
                    out["final"] = v
                    break
                piece = v.get("message", {}).get("content", "")
                out["text"] += piece
                if piece and out["ttft"] is None:
                    out["ttft"] = time.monotonic() - t0
                    if first:
                        first.set()
                if v.get("done"):
                    out["final"] = v
                    break
        c.close()
    except (OSError, http.client.HTTPException, ValueError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        out["seconds"] = time.monotonic() - t0
        for event in (sent, first):
            if event:
                event.set()
    return out


def wait_all(events, limit):
    """Wait for every event, `limit` s in all; True when all were set."""
    deadline = time.monotonic() + limit
    return all(e.wait(max(0.0, deadline - time.monotonic())) for e in events)


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def local_answer(prompt, max_tokens):
    """The local engine's greedy answer (the app's `samemath generate`, on the host)."""
    exe = os.environ.get("SAMEMATH_BIN", "target/debug/samemath")
    r = subprocess.run([exe, "generate", "--max-tokens", str(max_tokens), prompt],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"samemath generate: {r.stderr.strip()}")
    return r.stdout.rstrip("\n")


class Parallel:
    """fn(i) for i in range(n), each on its own thread (started `stagger` s apart); join()
    waits up to `timeout` s for each and returns their results (None where one never ended)."""

    def __init__(self, n, fn, stagger=0.0):
        self.results = [None] * n

        def run(i):
            self.results[i] = fn(i)

        self.threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in self.threads:
            t.start()
            if stagger:
                time.sleep(stagger)

    def join(self, timeout):
        for t in self.threads:
            t.join(timeout)
        return self.results
