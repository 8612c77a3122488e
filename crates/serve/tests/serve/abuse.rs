//! The server under abuse, on loopback: what it cannot take gets a clear status (400, 413, 415,
//! 421) before any work, clients that leave free their slot, the model's path stays in the log,
//! it listens on loopback unless told otherwise, and afterwards the others' answers are the same
//! bytes and its resident memory stays bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::{http, spawn_listening};

use super::{http_with, posted, serve_command, start_serve, status_within, until_answered};

fn greedy(port: u16) -> String {
    let body =
        r#"{"prompt":"What is the capital of France?","stream":false,"options":{"num_predict":8}}"#;
    let (status, answer) = http(port, "POST", "/api/generate", body).expect("an answer");
    assert_eq!(status, 200, "{answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    v["response"].as_str().expect("a response").to_string()
}

/// Resident memory of a process, in MiB (Linux).
fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024)
}

/// A raw request whose head promises `promised` body bytes, of which `sent` are sent (write
/// errors ignored: the server may close early); the reply's status.
fn oversized(port: u16, promised: usize, sent: usize) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {promised}\r\n\r\n"
    )
    .ok()?;
    let chunk = vec![b' '; 64 << 10];
    let mut written = 0;
    while written < sent {
        if s.write_all(&chunk).is_err() {
            break;
        }
        written += chunk.len();
    }
    let mut raw = Vec::new();
    let _ = s.take(64 << 10).read_to_end(&mut raw);
    testkit::http::parse_reply(&raw).ok().map(|r| r.status)
}

#[test]
fn serve_refuses_what_it_cannot_take_and_answers_the_same_afterwards() {
    let server = start_serve(&[]);
    let port = server.port;
    let pid = server.guard.0.id();
    let before = greedy(port);
    let rss_before = rss_mib(pid);

    // 250,000 embedding inputs in a 1 MB body: refused before any work.
    let inputs = vec!["\"a\""; 250_000].join(",");
    let (s, _, b) = http_with(
        port,
        "POST",
        "/api/embed",
        "",
        &format!("{{\"input\":[{inputs}]}}"),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("at most 256"), "{b}");
    // A list with a non-string in it is an error, not silently shorter.
    let (s, _, b) = http_with(port, "POST", "/api/embed", "", r#"{"input":["a",3]}"#);
    assert_eq!(s, 400, "{b}");

    // A 30,000-character prompt: over --max-prompt-tokens (2048), refused before a slot.
    let long = "word ".repeat(6_000);
    let body = format!("{{\"prompt\":\"{long}\",\"stream\":false}}");
    let (s, _, b) = http_with(port, "POST", "/api/generate", "", &body);
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("at most 2048 tokens"), "{b}");
    // The same through /api/trace, whose limit is lower (each step's trace grows with it).
    let mut request = llm::GenerationRequest::new("word ".repeat(1_500));
    request.max_tokens = 2;
    let body = serde_json::to_string(&request).unwrap();
    let (s, _, b) = http_with(port, "POST", "/api/trace", "", &body);
    assert_eq!(s, 400, "{b}");

    // An empty prompt, and one that is not a string: 400, before a slot (not a 200 stream
    // whose only line is the error, nor an answer to an empty prompt).
    for body in [r#"{"prompt":"   ","raw":true}"#, r#"{"prompt":123}"#] {
        let (s, _, b) = http_with(port, "POST", "/api/generate", "", body);
        assert_eq!(s, 400, "{body}: {b}");
    }

    // A 100 MB body: 413 once the first MiB is past, whatever else the client sends.
    assert_eq!(oversized(port, 100 << 20, 4 << 20), Some(413));

    // Cross-site form posts (text/plain is a "simple" request a web page may send anywhere).
    let (s, _, b) = http_with(
        port,
        "POST",
        "/api/generate",
        "Content-Type: text/plain\r\n",
        r#"{"prompt":"Hi"}"#,
    );
    assert_eq!(s, 415, "{b}");
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own Host.
    let (s, _, b) = http_with(port, "GET", "/api/tags", "Host: evil.example\r\n", "");
    assert_eq!(s, 421, "{b}");
    assert!(b.contains("loopback"), "{b}");

    // Two Host lines (another name behind a loopback one): refused too.
    let (s, _, _) = http_with(
        port,
        "GET",
        "/api/tags",
        "Host: 127.0.0.1\r\nHost: evil.example\r\n",
        "",
    );
    assert!(s == 421 || s == 400, "{s}");
    // A client that sends half a head and stalls does not hold up the others.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .write_all(b"POST /api/generate HTTP/1.1\r\nHo")
        .unwrap();

    let after = greedy(port);
    assert_eq!(
        after, before,
        "the same greedy answer, byte for byte, after the abuse"
    );
    assert_eq!(http(port, "GET", "/health", "").map(|r| r.0), Some(200));
    let rss_after = rss_mib(pid);
    println!("resident memory: {rss_before:?} MiB before, {rss_after:?} MiB after the abuse");
    if let Some(rss) = rss_after {
        assert!(rss < 1024, "resident memory {rss} MiB");
    }
    drop(stalled);
}

#[test]
fn a_client_that_leaves_a_whole_answer_frees_its_slot() {
    // One slot, no queue: while an abandoned answer still generated, everyone else got 503.
    let server = start_serve(&["--concurrency", "1", "--queue", "0"]);
    let port = server.port;
    // Counting, raw (no chat template): greedy decoding goes on counting, with no end token.
    let body = r#"{"prompt":"1, 2, 3, 4, 5, 6, 7, 8,","raw":true,"stream":false,"options":{"num_predict":4000}}"#;
    let s = posted(port, "/api/generate", body);
    std::thread::sleep(Duration::from_millis(500));
    drop(s);
    until_answered(
        port,
        Duration::from_secs(30),
        Duration::from_millis(200),
        "the slot stayed taken after its client left",
    );
}

#[test]
fn serve_listens_on_loopback_unless_told_and_keeps_the_model_path_to_its_log() {
    let secret = "/nonexistent/secret-folder/model.gguf";
    let server = spawn_listening(
        serve_command()
            .env_remove("PORT")
            .args(["--model", secret])
            .stdout(std::process::Stdio::null()),
        Duration::from_secs(60),
    )
    .expect("samemath-serve listening");
    let port = server.port;
    let started = Instant::now();
    let (status, body) = loop {
        match http(port, "GET", "/health", "") {
            Some((503, _)) | None => {}
            Some(reply) => break reply,
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no /health");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, 500, "{body}");
    assert!(!body.contains("secret"), "/health names the path: {body}");
    // Bound to 127.0.0.1, not 0.0.0.0 ($PORT unset, no --host).
    let want = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(want.as_str())),
        "not listening on 127.0.0.1:{port}"
    );
    assert!(
        !table
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(format!("00000000:{port:04X}").as_str())),
        "listening on 0.0.0.0:{port}"
    );
    // The path is the operator's to read, in the log (written before /health said 500).
    let mut log = Vec::new();
    while let Ok(line) = server.lines.recv_timeout(Duration::from_secs(10)) {
        let named = line.contains(secret);
        log.push(line);
        if named {
            return;
        }
    }
    panic!("the log does not name the model's path: {log:#?}");
}

/// How long `body` takes to be answered whole (200) by a server with one slot and no queue: a
/// 503 (the slot not yet given back by the request before) is asked again, its time not
/// counted.
fn answered_in(port: u16, body: &str) -> Duration {
    let started = Instant::now();
    loop {
        let asked = Instant::now();
        let (status, answer) = http(port, "POST", "/api/generate", body).expect("an answer");
        match status {
            200 => return asked.elapsed(),
            503 if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => panic!("{status}: {answer}"),
        }
    }
}

#[test]
fn a_streaming_client_that_leaves_during_a_long_prompt_frees_its_slot_soon() {
    // One slot, no queue. A prompt of about 1,900 tokens: its whole prefill, timed before and
    // after (the slower of the two is the yardstick: the machine's load may change meanwhile);
    // between them, the same prompt streamed by a client that leaves as soon as its answer's
    // head comes. The head is written once the slot is taken and the prefill starts, and no
    // line comes before the first token, so only watching the client's connection stops the
    // prefill early.
    let server = start_serve(&["--concurrency", "1", "--queue", "0"]);
    let port = server.port;
    let prompt = "word ".repeat(1_900);
    let ask = |stream: bool| {
        format!(
            r#"{{"prompt":"{prompt}","raw":true,"stream":{stream},"options":{{"num_predict":1}}}}"#
        )
    };
    let whole_before = answered_in(port, &ask(false));

    let mut s = posted(port, "/api/generate", &ask(true));
    let status = status_within(&mut s, Duration::from_secs(60));
    assert_eq!(status, Some(200), "the streamed answer's head");
    let left = Instant::now();
    drop(s);
    // Free again once a streamed request's head comes back (it holds the slot then): the time
    // of its own answer is not counted.
    let probe = r#"{"prompt":"Hi.","stream":true,"options":{"num_predict":2}}"#;
    let mut tries = 0;
    loop {
        let mut p = posted(port, "/api/generate", probe);
        tries += 1;
        match status_within(&mut p, Duration::from_secs(60)) {
            Some(200) => break,
            Some(503) => {}
            other => panic!("the probe's answer: {other:?}"),
        }
        assert!(
            left.elapsed() < (whole_before * 4).max(Duration::from_secs(30)),
            "the slot stayed taken after its client left ({tries} tries)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let freed = left.elapsed();
    let whole_after = answered_in(port, &ask(false));
    let whole = whole_before.max(whole_after);
    println!(
        "the whole prefill took {:.1} s, then {:.1} s; the slot was free {:.2} s after the client \
         left ({tries} tries)",
        whole_before.as_secs_f64(),
        whole_after.as_secs_f64(),
        freed.as_secs_f64()
    );
    assert!(
        freed < whole / 2,
        "the prefill ran on for nobody: {freed:?} (the whole answer: {whole:?})"
    );
}

/// What a connection has been answered so far, without waiting: `None` while nothing came.
fn answered_so_far(s: &TcpStream) -> Option<String> {
    let mut probe = [0u8; 1];
    s.set_nonblocking(true).ok()?;
    let waiting =
        matches!(s.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).ok()?;
    if waiting {
        return None;
    }
    // Something came (or the connection ended): the whole answer, the server closes after it.
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut bytes = Vec::new();
    let _ = (&*s).read_to_end(&mut bytes);
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Many clients each sending most of a 1 MiB body and then stalling: the server holds at most
/// 64 MiB of bodies at once, so of 65 such bodies at least one is refused (a 503 with
/// `Retry-After`) while the others wait, and it answers again once they are gone.
///
/// The refusal is looked for among the stalled bodies themselves: a further request sent while
/// they were still arriving (as this test once did) could hold its bytes at the moment the last
/// stalled body needed them, so that body was refused instead and the budget was never full.
#[test]
fn bodies_held_at_once_are_bounded_in_bytes() {
    let server = start_serve(&[]);
    let port = server.port;
    let body = 1 << 20;
    let count = 65;
    let stalled: Vec<TcpStream> = (0..count)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(
                s,
                "POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Content-Length: {body}\r\n\r\n"
            )
            .unwrap();
            // A body the server has already refused may meet a closed connection here.
            let _ = s.write_all(&vec![b' '; body - 1]);
            s
        })
        .collect();
    let started = Instant::now();
    let refused = loop {
        let answers: Vec<String> = stalled.iter().filter_map(answered_so_far).collect();
        if !answers.is_empty() {
            break answers;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{count} bodies of {body} bytes were held at once, none refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for answer in &refused {
        let head = answer.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 503"), "{answer}");
        assert!(head.contains("retry-after: 1"), "{answer}");
        assert!(answer.contains("too many large bodies"), "{answer}");
    }
    // Each refusal gives its bytes back at once: the other bodies fit and wait (two tasks may
    // meet the full budget at the same moment, no more than the server's two workers).
    assert!(refused.len() <= 2, "{} of {count} refused", refused.len());
    let waiting = stalled
        .iter()
        .filter(|s| answered_so_far(s).is_none())
        .count();
    assert!(waiting >= count - 2, "only {waiting} still wait");
    println!(
        "{} of {count} stalled 1 MiB bodies refused, {waiting} still waiting",
        refused.len()
    );
    drop(stalled);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!greedy(port).is_empty(), "answers again once they are gone");
}
