//! HTTP/1.1 on 127.0.0.1, written by hand on purpose, for samemath's tests and benches: a free
//! port, one request with any head and body (status, head and body back, each read with a bound),
//! the time to the first body byte (the raw reference `bench --remote` holds our client
//! against), waiting for a server to answer 200, and child processes killed with their guard.
//! Std only; nothing here is on a product path.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// Bytes of one response read at most (a server gone wrong cannot fill memory).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One response: status, the head (lower-cased, for header checks) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// A request to 127.0.0.1:`port`, `Connection: close`; `headers` are extra header lines, each
/// ending in `\r\n`. A JSON content type and a loopback Host are sent unless `headers` name
/// their own.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let lower = headers.to_ascii_lowercase();
    let content_type = if lower.contains("content-type:") {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let host = if lower.starts_with("host:") || lower.contains("\r\nhost:") {
        String::new()
    } else {
        format!("Host: 127.0.0.1:{port}\r\n")
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\n{host}{headers}{content_type}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE_BYTES as u64).read_to_end(&mut raw)?;
    parse_reply(&raw)
}

/// A response's bytes as a `Reply` (chunked bodies are left as they came).
pub fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let text = String::from_utf8_lossy(raw);
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no HTTP status line"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok(Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

/// GET or POST a JSON body with a two-minute bound: (status, body), `None` when no answer came.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    request(
        port,
        method,
        path,
        "",
        body.as_bytes(),
        Duration::from_secs(120),
    )
    .ok()
    .map(|r| (r.status, r.body))
}

/// POST `body` as JSON; returns (seconds from connecting to the first body byte, the body).
pub fn post_timed(port: u16, path: &str, body: &str) -> std::io::Result<(f64, String)> {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // The head, then the first byte of the body.
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
        if head.len() > 64 << 10 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a response head over 64 KiB",
            ));
        }
    }
    s.read_exact(&mut byte)?;
    let first = started.elapsed().as_secs_f64();
    let mut rest = vec![byte[0]];
    s.take(MAX_RESPONSE_BYTES as u64).read_to_end(&mut rest)?;
    Ok((first, String::from_utf8_lossy(&rest).into_owned()))
}

/// Wait until GET `path` answers 200, for at most `limit`.
pub fn wait_ok(port: u16, path: &str, limit: Duration) -> Result<(), String> {
    wait_ok_while(port, path, limit, || Ok(()))
}

/// `wait_ok`, asking `alive` before each try: its error (a server process that exited) ends
/// the wait at once.
pub fn wait_ok_while(
    port: u16,
    path: &str,
    limit: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        alive()?;
        let reply = request(port, "GET", path, "", b"", Duration::from_secs(10));
        if matches!(reply, Ok(Reply { status: 200, .. })) {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "nothing answered 200 on 127.0.0.1:{port}{path} within {} s",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A child process killed (and reaped) when the guard is dropped, however the caller ends.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scripted HTTP server on 127.0.0.1: each connection gets the next response (raw bytes, after
/// an optional delay); its port.
pub fn scripted(responses: Vec<(Duration, Vec<u8>)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for (delay, bytes) in responses {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            // Read the request head (and ignore the body).
            let mut reader = match s.try_clone() {
                Ok(c) => BufReader::new(c),
                Err(_) => return,
            };
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            std::thread::sleep(delay);
            let _ = s.write_all(&bytes);
            let _ = s.flush();
        }
    });
    port
}

pub fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A streamed body with no length: the connection's end ends it.
pub fn streamed(body: &[u8]) -> Vec<u8> {
    let mut r =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"
            .to_vec();
    r.extend_from_slice(body);
    r
}

/// Ollama's streamed lines for `words`, and its final line when `done`.
pub fn ollama_lines(words: &[&str], done: bool) -> Vec<u8> {
    let mut s = String::new();
    for w in words {
        s.push_str(&format!("{{\"response\":\"{w}\",\"done\":false}}\n"));
    }
    if done {
        s.push_str("{\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"eval_count\":2,\"eval_duration\":1000000}\n");
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_bad_ones_are_errors() {
        let r =
            parse_reply(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\nbusy").unwrap();
        assert_eq!(r.status, 503);
        assert!(r.head.contains("retry-after: 1"));
        assert_eq!(r.body, "busy");
        assert!(parse_reply(b"garbage").is_err());
        assert!(free_port().unwrap() > 0);
    }
}
