#!/usr/bin/env python3
"""Scale-out as Cloud Run does it, on loopback: N containers of deploy/local.sh's image (N = 1,
2, 3) behind haproxy (Debian's) with a per-instance concurrency limit, as `--concurrency 2`
sets it on Cloud Run; a load of 4x the total concurrency, where a request nobody can take within
the queue timeout gets a clean 503 with Retry-After and the client retries it; p50/p95 time to
first token per N; then one instance killed mid-stream: its clients get a clear error, the
others go on, and new requests go to the survivors.

Usage (from the repository root, after deploy/local.sh): tests/container/scale.py
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (Parallel, check, finish, free_odd_ports, percentile, podman, start, stop,  # noqa: E402
                    stream_chat, wait_all, wait_healthy)

CONCURRENCY = 2  # per instance: deploy.sh's --concurrency, the image's --concurrency
MAX_TRIES = 30


def haproxy_config(lb_port, ports):
    servers = "\n".join(
        f"  server i{i + 1} 127.0.0.1:{p} maxconn {CONCURRENCY} check inter 300ms fall 1 rise 1"
        f"\n" for i, p in enumerate(ports))
    return f"""global
  maxconn 2000
defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  # Cloud Run holds a request that no instance can take for a while, then answers 429/503.
  timeout queue 4s
frontend front
  bind 127.0.0.1:{lb_port}
  default_backend instances
backend instances
  balance leastconn
  option httpchk GET /health
  http-response set-header X-Instance %s
  http-error status 503 content-type application/json string "{{\\"error\\":\\"no instance free; retry\\"}}" hdr Retry-After 1
{servers}"""


class Balancer:
    def __init__(self, ports, port):
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="samemath-haproxy-")
        cfg = Path(self.dir) / "haproxy.cfg"
        cfg.write_text(haproxy_config(self.port, ports))
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy: {self.proc.stderr.read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("haproxy did not start")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def with_retries(port, prompt, max_tokens):
    """A streamed chat that follows 503 + Retry-After, as a client of Cloud Run does."""
    t0 = time.monotonic()
    retries = 0
    for _ in range(MAX_TRIES):
        r = stream_chat(port, prompt, max_tokens, timeout=120)
        if r["status"] == 503 and "retry-after" in r["headers"]:
            retries += 1
            time.sleep(float(r["headers"]["retry-after"]))
            continue
        break
    r["retries"] = retries
    r["ttft_total"] = None if r["ttft"] is None else (time.monotonic() - t0 - r["seconds"]) + r["ttft"]
    return r


def load(lb_port, n):
    total = 4 * CONCURRENCY * n
    results = Parallel(total, lambda i: with_retries(
        lb_port, f"Name a color, number {i}.", 16)).join(600)
    answered = [r for r in results if r and r["final"] and r["final"].get("done")]
    ttfts = [r["ttft_total"] for r in answered if r["ttft_total"] is not None]
    retries = sum(r["retries"] for r in results if r)
    per_instance = {}
    for r in answered:
        k = r["headers"].get("x-instance", "?")
        per_instance[k] = per_instance.get(k, 0) + 1
    check(len(answered) == total,
          f"N={n}: {len(answered)} of {total} requests answered (none lost; {retries} retried "
          f"after 503 + Retry-After)")
    check(len(per_instance) == n, f"N={n}: answers came from {sorted(per_instance.items())}")
    return {"n": n, "requests": total, "retries": retries,
            "p50": percentile(ttfts, 0.5), "p95": percentile(ttfts, 0.95)}


def kill_one(lb_port, names):
    """4 long streams over 2 instances; kill one with SIGKILL once all are streaming: each has
    had a line with content (an event, not a guess at how long that takes), and the kill comes
    at once, so a story has only its first tokens' time to end on its own before it."""
    outs = [{} for _ in range(4)]
    first = [threading.Event() for _ in range(4)]
    streams = Parallel(4, lambda i: stream_chat(
        lb_port, f"Tell me a long story about the number {i}.", 400, timeout=60, out=outs[i],
        first=first[i]), stagger=0.2)
    wait_all(first, 120)
    # Where each was at the kill (the instance is haproxy's X-Instance on the answer's head).
    at_kill = [(o.get("headers", {}).get("x-instance"), o.get("ttft") is not None,
                o.get("final") is not None) for o in outs]
    print(f"killing i1; the 4 streams (instance, had a token, had ended): {at_kill}", flush=True)
    podman("kill", "--signal", "KILL", names[0])
    results = streams.join(120)
    killed, survivors = [], []
    for i, r in enumerate(results):
        (killed if r["headers"].get("x-instance") == "i1" else survivors).append((i, r))
    check(len(killed) == 2 and len(survivors) == 2,
          f"the 4 streams went 2 and 2 ({[r['headers'].get('x-instance') for r in results]})")
    for i, r in killed:
        cut = not (r["final"] and r["final"].get("done"))
        why = ("it ended on its own before the kill: the answer asked for is too short"
               if at_kill[i][2] else
               r["error"] or "connection closed after " + str(r["lines"]) + " lines")
        check(cut and r["ttft"] is not None,
              f"a stream on the killed instance started, then ended without its final line "
              f"({why}): the client can tell it was cut")
    for _, r in survivors:
        check(bool(r["final"] and r["final"].get("done")),
              f"a stream on the other instance went on to its end ({r['lines']} lines)")
    time.sleep(1.0)  # haproxy's check marks the dead instance down
    after = [with_retries(lb_port, "Say hi.", 4) for _ in range(3)]
    check(all(r["final"] and r["final"].get("done") and r["headers"].get("x-instance") == "i2"
              for r in after), "new requests go to the surviving instance")


def main():
    rows = []
    names = []
    balancer = None
    try:
        for n in (1, 2, 3):
            names = [f"samemath-scale-{i + 1}" for i in range(n)]
            *ports, lb_port = free_odd_ports(n + 1)
            for name, port in zip(names, ports):
                start(name, port)
            for port in ports:
                wait_healthy(port)
            balancer = Balancer(ports, lb_port)
            rows.append(load(balancer.port, n))
            if n == 2:
                kill_one(balancer.port, names)
            balancer.close()
            balancer = None
            for name in names:
                stop(name)
    except Exception as e:
        check(False, f"{type(e).__name__}: {e}")
    finally:
        if balancer:
            balancer.close()
        for name in names:
            stop(name)
    cores = os.cpu_count()
    print(f"\nscale-out on loopback (haproxy, {CONCURRENCY} per instance, 4x load, "
          f"this machine has {cores} cores shared by all instances):")
    print("  N  requests  retried  TTFT p50 s  TTFT p95 s")
    for r in rows:
        print(f"  {r['n']}  {r['requests']:8d}  {r['retries']:7d}  {r['p50']:10.2f}  {r['p95']:10.2f}")
    return finish("scale-out")


if __name__ == "__main__":
    sys.exit(main())
