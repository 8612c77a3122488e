//! Slow and absent clients, on loopback: one that sends its head a byte at a time is cut, one
//! that sends half a body gets 408, one that never reads its streamed answer loses its slot and
//! its connection, and an answer past the time limit ends with an error; the others are
//! answered meanwhile.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::http;

use super::{posted, start_serve, until_answered};

/// Read until the server closes or `limit` passes; what came back and when it closed.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, Some(started.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, None);
            }
            // Reset: closed too.
            Err(_) => return (got, Some(started.elapsed())),
        }
    }
}

#[test]
fn a_slow_head_is_cut_and_a_slow_body_gets_408_while_others_are_answered() {
    let server = start_serve(&[]);
    let port = server.port;
    let head = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .unwrap();
        read_until_closed(&mut s, Duration::from_secs(40))
    });
    let body = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(
            b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"prompt\":",
        )
        .unwrap();
        read_until_closed(&mut s, Duration::from_secs(60))
    });
    // The others go on meanwhile.
    let short = r#"{"prompt":"Hi.","stream":false,"options":{"num_predict":2}}"#;
    let (status, answer) = http(port, "POST", "/api/generate", short).expect("an answer");
    assert_eq!(status, 200, "{answer}");

    let (got, closed) = head.join().unwrap();
    let closed = closed.expect("a client sending its head slowly held its connection 40 s");
    println!(
        "slow head: cut after {:.1} s ({} bytes back)",
        closed.as_secs_f64(),
        got.len()
    );
    let (got, closed) = body.join().unwrap();
    assert!(
        closed.is_some(),
        "a half-sent body held its connection 60 s"
    );
    let reply = testkit::http::parse_reply(&got).expect("a reply to the half-sent body");
    let text = &reply.body;
    assert_eq!(reply.status, 408, "{text}");
    assert!(text.contains("did not arrive within"), "{text}");
}

/// A connection serves one request and says so: a kept-alive connection that the server closed
/// while idle could lose the next request a proxy (Cloud Run's front end) sent down it.
#[test]
fn each_connection_answers_one_request_and_closes() {
    let server = start_serve(&[]);
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    // Two requests at once on one connection (pipelined, as a keep-alive client may).
    let get = "GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    s.write_all(format!("{get}{get}").as_bytes()).unwrap();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(
        closed.is_some(),
        "the connection stayed open after its answer: {text}"
    );
    assert_eq!(text.matches("http/1.1 200").count(), 1, "{text}");
    assert!(text.contains("connection: close"), "{text}");
}

#[test]
fn a_client_that_never_reads_its_stream_loses_its_slot() {
    // One slot, no queue. A traced answer is megabytes a step: the socket's buffers fill, the
    // send waits, and after the send timeout the answer is dropped and the slot freed.
    let server = start_serve(&["--concurrency", "1", "--queue", "0"]);
    let port = server.port;
    let mut request = llm::GenerationRequest::new("1, 2, 3, 4, 5, 6, 7, 8,");
    request.chat = false;
    request.max_tokens = 1024;
    request.record = llm::RecordOptions::FULL;
    let body = serde_json::to_string(&request).unwrap();
    let mut silent = posted(port, "/api/trace", &body);
    // Its head is written only once it holds the slot: peeked, not read, so that nothing of
    // the answer is taken off the socket and the buffers still fill.
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut first = [0u8; 1];
    let peeked = silent.peek(&mut first).expect("the traced answer's head");
    assert_eq!(peeked, 1, "the connection closed before the traced answer");
    let started = Instant::now();
    let statuses = until_answered(
        port,
        Duration::from_secs(240),
        Duration::from_millis(500),
        "the slot stayed with a client that never read",
    );
    assert_eq!(statuses[0], 503, "the silent client held the slot at first");
    println!(
        "a client that never read held the slot {:.1} s ({} tries)",
        started.elapsed().as_secs_f64(),
        statuses.len()
    );
    // Its connection goes too: the server's writes made no progress for the write bound (30 s),
    // so it closed the connection with the answer unfinished. (Kept open, the rest of the
    // answer and its closing chunk would arrive once the client reads.)
    std::thread::sleep(Duration::from_secs(40).saturating_sub(started.elapsed()));
    let (got, closed) = read_until_closed(&mut silent, Duration::from_secs(60));
    assert!(
        closed.is_some(),
        "the silent client's connection stayed open"
    );
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "the answer was written out in full ({} bytes): the connection was kept",
        got.len()
    );
    println!(
        "then its connection was closed ({} bytes had gone out)",
        got.len()
    );
}

#[test]
fn an_answer_past_the_time_limit_ends_with_an_error_and_frees_its_slot() {
    // A four-second limit; a count that would go on for 4,096 tokens.
    let server = start_serve(&[
        "--max-answer-secs",
        "4",
        "--concurrency",
        "1",
        "--queue",
        "0",
    ]);
    let port = server.port;
    let body = r#"{"prompt":"1, 2, 3, 4, 5, 6, 7, 8,","raw":true,"stream":true,
                   "options":{"num_predict":4096}}"#;
    let started = Instant::now();
    let (status, answer) = http(port, "POST", "/api/generate", body).expect("an answer");
    let took = started.elapsed();
    assert_eq!(status, 200);
    let cut = answer
        .lines()
        .find(|l| l.contains("\"error\""))
        .unwrap_or_default();
    assert!(
        cut.contains("took longer than 4 s"),
        "no error line for the limit: {}",
        answer.chars().rev().take(300).collect::<String>()
    );
    let tokens = answer
        .lines()
        .filter(|l| l.contains("\"response\""))
        .count();
    assert!((1..4096).contains(&tokens), "{tokens} tokens");
    println!(
        "cut by the time limit after {tokens} tokens, {:.1} s",
        took.as_secs_f64()
    );
    let statuses = until_answered(
        port,
        Duration::from_secs(30),
        Duration::from_millis(200),
        "the slot stayed taken after the cut",
    );
    assert_eq!(statuses.last(), Some(&200));
    // Not streamed, the cut is the status: 503 (the server's limit), not 400 (a bad request).
    let (status, answer) = http(
        port,
        "POST",
        "/api/generate",
        &body.replace(r#""stream":true"#, r#""stream":false"#),
    )
    .expect("an answer");
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("took longer than 4 s"), "{answer}");
}
