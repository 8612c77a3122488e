#!/usr/bin/env python3
"""Cloud Run's container contract, checked on deploy/local.sh's image with podman (runc):
PORT on 0.0.0.0, /health 503 until the model is loaded, the official Ollama and OpenAI Python
clients get the local engine's greedy answers, non-root with a read-only root and a tmpfs /tmp
under --memory 2g --cpus 2, no network needed at start, SIGTERM during 4 streams (each finishes
or ends with a clean final line within 10 s, exit 0), and the cold start a speaker quotes.

Usage (from the repository root, after deploy/local.sh): tests/container/contract.py
Environment: SAMEMATH_IMAGE (the image), SAMEMATH_BIN (the app, for the local answers).
"""
import calendar
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (IMAGE, PODMAN, Parallel, check, finish, free_odd_port, local_answer,  # noqa: E402
                    logs, podman, start, stop, stream_chat, wait_all, wait_healthy)

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Why is the sky blue?"
MAX_TOKENS = 12


def tcp_rows():
    """The host's TCP sockets (host network: the container's are among them), each row of
    /proc/net/tcp and /proc/net/tcp6 split into its columns."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        yield from (row.split() for row in rows)


def listening_on_all_interfaces(port):
    """A LISTEN socket on 0.0.0.0:port (or [::]:port) in the host's table (host network)."""
    want = f":{port:04X}"
    return any(cols[1] in ("00000000" + want, "0" * 32 + want) and cols[3] == "0A"
               for cols in tcp_rows())


def unread_by_server(port, client_ports):
    """The client ports whose request the server has not read yet: the server's end of the
    connection (local port `port`, remote port one of `client_ports`) still holds bytes in its
    receive queue, whether or not it was accepted, or is not in the table at all (so a table
    that shows nothing cannot pass for one that shows all read)."""
    want = {f"{p:04X}" for p in client_ports}
    seen, unread = set(), set()
    for cols in tcp_rows():
        local, remote, queues = cols[1], cols[2], cols[4]
        if local.endswith(f":{port:04X}") and remote[-4:] in want:
            seen.add(int(remote[-4:], 16))
            if int(queues.split(":")[1], 16) > 0:
                unread.add(int(remote[-4:], 16))
    return unread | (set(client_ports) - seen)


def logs_with(name, needles, limit=10.0):
    """The container's log once it holds every one of `needles` (podman copies a line in a
    little after the server writes it), or as it is after `limit` s."""
    deadline = time.monotonic() + limit
    while True:
        log = logs(name)
        if all(n in log for n in needles) or time.monotonic() >= deadline:
            return log
        time.sleep(0.1)


_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*"
                    r"(Z|[+-]\d\d:?\d\d)")


def stamp_ns(text):
    """Nanoseconds since the epoch of an RFC 3339 time with any number of fractional digits
    (podman writes 9; datetime.fromisoformat takes them only from Python 3.11, and keeps 6).
    Also takes Go's time.String() form ("2024-01-02 15:04:05.123456789 +0000 UTC")."""
    m = _STAMP.search(text)
    if not m:
        raise ValueError(f"no RFC 3339 time in {text!r}")
    y, mo, d, h, mi, sec, frac, zone = m.groups()
    whole = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(sec)))
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        whole -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return whole * 10**9 + int(((frac or "") + "0" * 9)[:9])


def contract(name, port):
    t0 = start(name, port)
    to_health, seen = wait_healthy(port)
    check(listening_on_all_interfaces(port), f"listens on 0.0.0.0:{port} (PORT={port})")
    check(all(s in (None, 503) for s in seen),
          f"/health before the model is loaded: {seen} (nothing, or 503), then 200")
    # The server writes "model loaded" about when /health turns 200, and podman copies a line
    # into its log a little after that: wait (bounded) until both lines are there, then
    # compare where they are.
    log = logs_with(name, ("listening", "model loaded"))
    at_listen, at_loaded = log.find("listening"), log.find("model loaded")
    check(0 <= at_listen < at_loaded,
          "the port opens before the model is loaded (so /health can say 503)"
          + ("" if at_listen >= 0 and at_loaded >= 0 else
             f" (in the log after 10 s: listening {at_listen >= 0}, model loaded {at_loaded >= 0})"))

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
    """4 streams (2 generating, 2 queued), then SIGTERM: each ends cleanly within 10 s.
    What must hold before the signal is waited for, not slept for: streams 0 and 1 have a line
    with content (they hold both slots), then 2 and 3 are sent and the server has read them
    (they wait for a slot). The 10 s are the container's own: from the server's "shutting
    down" line, as podman stamped it, to the process's exit, as podman recorded it."""
    outs = [{} for _ in range(4)]
    sent = [threading.Event() for _ in range(4)]
    first = [threading.Event() for _ in range(4)]

    def one(i):
        return stream_chat(port, f"Tell me a long story about the number {i}.", 2000, timeout=30,
                           out=outs[i], sent=sent[i], first=first[i])

    generating = Parallel(2, one)
    wait_all(first[:2], 60)
    check(all(outs[i].get("ttft") is not None for i in (0, 1)),
          "streams 0 and 1 had their first token (both slots held) before SIGTERM "
          f"({[outs[i].get('error') for i in (0, 1)]})")
    queued = Parallel(2, lambda i: one(i + 2))
    wait_all(sent[2:], 30)
    clients = [o["client_port"] for o in outs[2:] if o.get("client_port")]
    check(len(clients) == 2, "streams 2 and 3 sent their requests before SIGTERM "
          f"({[outs[i].get('error') for i in (2, 3)]})")
    deadline = time.monotonic() + 10
    while unread_by_server(port, clients) and time.monotonic() < deadline:
        time.sleep(0.02)
    unread = unread_by_server(port, clients)
    check(not unread, f"the server read streams 2 and 3's requests before SIGTERM (unread: "
          f"{sorted(unread)})")
    print("at SIGTERM: " + ", ".join(
        f"stream {i} " + ("streaming" if o.get("ttft") is not None and o.get("final") is None
                          else "waiting" if o.get("status") is None and o.get("error") is None
                          else f"status {o.get('status')}, final {bool(o.get('final'))}")
        for i, o in enumerate(outs)))
    t_term = time.monotonic()
    podman("kill", "--signal", "TERM", name)
    # The signal was delivered by the time `podman kill` returns: from here to the exit can
    # only come out shorter than the truth, never longer for podman's start-up.
    killed_ns = time.time_ns()
    results = generating.join(20) + queued.join(20)
    rc = podman("wait", name, timeout=30)
    host_seconds = time.monotonic() - t_term
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
    # The container's timeline: the exit that conmon recorded, from when `podman kill` had
    # delivered the signal (a handler that ran late counts), and from podman's stamp on the
    # server's "shutting down" line (written when the handler ran; the server's own lines carry
    # no time). A server that ignored SIGTERM writes no such line (and `podman wait` above
    # would have timed out); one that drained too long exits more than 10 s after it.
    stamped = subprocess.run(PODMAN + ["logs", "--timestamps", name], capture_output=True,
                             text=True, timeout=30)
    down = next((ln for ln in (stamped.stdout + stamped.stderr).splitlines()
                 if "shutting down" in ln), None)
    check(down is not None, "the server logged that it was shutting down")
    finished = json.loads(podman("inspect", "--type", "container", name))[0]["State"]["FinishedAt"]
    since_kill = (stamp_ns(finished) - killed_ns) / 1e9
    check(since_kill < 10.0, f"it exits within 10 s of SIGTERM ({since_kill:.2f} s from `podman kill`"
          f" returning to its exit as podman recorded it)")
    if down is not None:
        exited_after = (stamp_ns(finished) - stamp_ns(down.split(" ", 1)[0])) / 1e9
        check(exited_after < 10.0,
              f"and drains within 10 s ({exited_after:.2f} s from its \"shutting down\" line to its exit"
              f", both as podman recorded them; {host_seconds:.1f} s here from `podman kill` to"
              f" `podman wait`, podman's own start-ups included)")
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
