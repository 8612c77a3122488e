//! Incremental parsers for streamed responses: NDJSON (Ollama, `samemath serve`) and
//! server-sent events (OpenAI-compatible servers). Bytes go in however the network chunks them;
//! whole records come out. A line longer than the cap, invalid UTF-8 or JSON that does not parse
//! is a typed error, never text.

use serde_json::Value;

use super::api::RemoteError;

/// The longest line accepted. A trace step of SmolLM2 is ~0.5 MB of JSON a few tokens in, but
/// its attention rows grow with the position: 4.4 MB at position 999 (measured), ~9 MB at
/// /api/trace's longest (1,024 prompt tokens and 1,024 generated: 30 x 9 x 2,048 weights), past
/// the 8 MiB this cap was; the prompt line's 1,024 embedding rows of 576 are ~7.6 MB.
pub const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;
/// The longest Ollama line or OpenAI-compatible event accepted: one carries a token or a few,
/// with their alternatives (a few hundred bytes; well under 100 KB however verbose). Each
/// becomes a JSON value, far larger in memory than its text, so text APIs get a tighter cap
/// than trace lines.
pub const MAX_TEXT_LINE_BYTES: usize = 1 << 20;

/// Splits a byte stream into lines (`\n`, with an optional `\r` before it).
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
        }
    }

    /// Feed bytes; returns the complete lines they finish.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, RemoteError> {
        let mut lines = Vec::new();
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            self.append(&rest[..i])?;
            lines.push(self.take_line()?);
            rest = &rest[i + 1..];
        }
        self.append(rest)?;
        Ok(lines)
    }

    /// The last line if the stream ended without a newline.
    pub fn finish(&mut self) -> Result<Option<String>, RemoteError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.take_line().map(Some)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), RemoteError> {
        if self.buf.len() + bytes.len() > self.max {
            let len = self.buf.len() + bytes.len();
            self.buf.clear();
            return Err(RemoteError::Protocol(format!(
                "a line of the response is longer than {} bytes ({len} so far)",
                self.max
            )));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn take_line(&mut self) -> Result<String, RemoteError> {
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(line)
            .map_err(|_| RemoteError::Protocol("a line of the response is not UTF-8".into()))
    }
}

/// Newline-delimited JSON: one object per non-empty line.
#[derive(Debug)]
pub struct NdjsonParser {
    lines: LineSplitter,
}

impl Default for NdjsonParser {
    fn default() -> Self {
        Self::new(MAX_LINE_BYTES)
    }
}

fn parse_json(line: &str) -> Result<Value, RemoteError> {
    serde_json::from_str(line).map_err(|e| {
        let shown: String = line.chars().take(80).collect();
        RemoteError::Protocol(format!("malformed JSON line ({e}): {shown:?}"))
    })
}

impl NdjsonParser {
    /// Lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            lines: LineSplitter::new(max_line),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Value>, RemoteError> {
        self.lines
            .push(bytes)?
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_json(l))
            .collect()
    }

    pub fn finish(&mut self) -> Result<Option<Value>, RemoteError> {
        match self.lines.finish()? {
            Some(l) if !l.trim().is_empty() => parse_json(&l).map(Some),
            _ => Ok(None),
        }
    }
}

/// One server-sent event's data.
#[derive(Debug, Clone, PartialEq)]
pub enum SseData {
    Json(Value),
    /// OpenAI's end marker, `data: [DONE]`.
    Done,
}

/// Server-sent events: `data:` lines joined until a blank line ends the event; comments
/// (`:`) and other fields are skipped.
#[derive(Debug)]
pub struct SseParser {
    lines: LineSplitter,
    data: Vec<String>,
    /// The bytes in `data`, newlines counted.
    data_bytes: usize,
    /// The most bytes a line, and an event, may have.
    max: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(MAX_LINE_BYTES)
    }
}

impl SseParser {
    /// Lines, and events, of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            lines: LineSplitter::new(max),
            data: Vec::new(),
            data_bytes: 0,
            max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseData>, RemoteError> {
        let mut out = Vec::new();
        for line in self.lines.push(bytes)? {
            if let Some(event) = self.line(&line)? {
                out.push(event);
            }
        }
        Ok(out)
    }

    pub fn finish(&mut self) -> Result<Option<SseData>, RemoteError> {
        if let Some(line) = self.lines.finish()?
            && let Some(e) = self.line(&line)?
        {
            return Ok(Some(e));
        }
        self.dispatch()
    }

    fn line(&mut self, line: &str) -> Result<Option<SseData>, RemoteError> {
        if line.is_empty() {
            return self.dispatch();
        }
        if let Some(data) = line.strip_prefix("data:") {
            let data = data.strip_prefix(' ').unwrap_or(data);
            // Each line is capped; so is the event they make together.
            self.data_bytes += data.len() + 1;
            if self.data_bytes > self.max {
                self.data.clear();
                self.data_bytes = 0;
                return Err(RemoteError::Protocol(format!(
                    "an event of the response is longer than {} bytes",
                    self.max
                )));
            }
            self.data.push(data.to_string());
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Result<Option<SseData>, RemoteError> {
        if self.data.is_empty() {
            return Ok(None);
        }
        self.data_bytes = 0;
        let data = std::mem::take(&mut self.data).join("\n");
        if data.trim() == "[DONE]" {
            return Ok(Some(SseData::Done));
        }
        parse_json(&data).map(|v| Some(SseData::Json(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm::sampling::Rng;

    const NDJSON: &str = "{\"response\":\"Hel\",\"done\":false}\n{\"response\":\"lo ü 🚀\",\"done\":false}\r\n\n{\"done\":true,\"eval_count\":2}\n";
    const SSE: &str = ": keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\nevent: x\ndata: {\"a\":\ndata: 1}\n\ndata: [DONE]\n\n";

    fn chunkings(text: &str, rng: &mut Rng) -> Vec<Vec<Vec<u8>>> {
        let bytes = text.as_bytes();
        let mut out = vec![
            bytes.iter().map(|b| vec![*b]).collect(),
            vec![bytes.to_vec()],
        ];
        for _ in 0..50 {
            let mut chunks = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                let n = 1 + (rng.next_u64() % 9) as usize;
                let end = (i + n).min(bytes.len());
                chunks.push(bytes[i..end].to_vec());
                i = end;
            }
            out.push(chunks);
        }
        out
    }

    #[test]
    fn ndjson_is_the_same_under_any_chunking() {
        let mut rng = Rng::new(1);
        for chunks in chunkings(NDJSON, &mut rng) {
            let mut p = NdjsonParser::default();
            let mut got = Vec::new();
            for c in &chunks {
                got.extend(p.push(c).unwrap());
            }
            got.extend(p.finish().unwrap());
            assert_eq!(got.len(), 3);
            assert_eq!(got[1]["response"], "lo ü 🚀");
            assert_eq!(got[2]["eval_count"], 2);
        }
    }

    #[test]
    fn sse_is_the_same_under_any_chunking() {
        let mut rng = Rng::new(2);
        for chunks in chunkings(SSE, &mut rng) {
            let mut p = SseParser::default();
            let mut got = Vec::new();
            for c in &chunks {
                got.extend(p.push(c).unwrap());
            }
            got.extend(p.finish().unwrap());
            assert_eq!(got.len(), 3, "{got:?}");
            assert_eq!(
                got[0],
                SseData::Json(serde_json::json!({"choices":[{"delta":{"content":"Hi"}}]}))
            );
            assert_eq!(got[1], SseData::Json(serde_json::json!({"a": 1})));
            assert_eq!(got[2], SseData::Done);
        }
    }

    /// Bytes that look like the protocols often enough to reach every branch.
    fn noise(rng: &mut Rng, n: usize) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"data:",
            b"data: ",
            b"\n",
            b"\r\n",
            b"\n\n",
            b"{",
            b"}",
            b"\"",
            b"[DONE]",
            b":",
            b"event: x",
            b"{\"a\":1}",
            b"\xff",
            b"\xc3",
            b"\xa9",
            b" ",
            b"null",
            b"\\",
        ];
        let mut out = Vec::new();
        while out.len() < n {
            match rng.next_u64() % 4 {
                0 => out.push((rng.next_u64() & 0xff) as u8),
                _ => out.extend_from_slice(PIECES[(rng.next_u64() % PIECES.len() as u64) as usize]),
            }
        }
        out
    }

    #[test]
    fn arbitrary_bytes_in_any_chunking_give_records_or_typed_errors() {
        let mut rng = Rng::new(7);
        for round in 0..400 {
            let bytes = noise(&mut rng, 1 + (round % 97) * 7);
            let mut nd = NdjsonParser::default();
            let mut sse = SseParser::default();
            let mut i = 0;
            while i < bytes.len() {
                let n = 1 + (rng.next_u64() % 13) as usize;
                let end = (i + n).min(bytes.len());
                // Ok or a typed error; a panic fails the test.
                let _ = nd.push(&bytes[i..end]);
                let _ = sse.push(&bytes[i..end]);
                i = end;
            }
            let _ = nd.finish();
            let _ = sse.finish();
        }
    }

    #[test]
    fn bad_lines_are_typed_errors() {
        let mut p = NdjsonParser::default();
        assert!(matches!(
            p.push(b"{not json}\n"),
            Err(RemoteError::Protocol(_))
        ));
        let mut p = NdjsonParser::default();
        assert!(p.push(&[0xff, 0xfe, b'\n']).is_err());
        // A line over the cap fails without buffering it all.
        let mut lines = LineSplitter::new(1024);
        let err = lines.push(&vec![b'a'; 2000]).unwrap_err();
        assert!(err.to_string().contains("longer than 1024"), "{err}");
        let mut p = SseParser::default();
        assert!(p.push(b"data: {oops\n\n").is_err());
        // An event of endless short data lines fails once it passes the cap.
        let mut p = SseParser::default();
        let line = format!("data: {}\n", "x".repeat(1 << 16));
        let mut failed = false;
        for _ in 0..(MAX_LINE_BYTES >> 16) + 2 {
            if let Err(e) = p.push(line.as_bytes()) {
                assert!(e.to_string().contains("event"), "{e}");
                failed = true;
                break;
            }
        }
        assert!(failed, "the event grew without bound");
        // A text API's cap: a 2 MiB line and a 2 MiB event of short lines are refused.
        let mut p = NdjsonParser::new(MAX_TEXT_LINE_BYTES);
        let err = p.push(&vec![b'a'; 2 << 20]).unwrap_err();
        assert!(err.to_string().contains("longer than 1048576"), "{err}");
        let mut p = SseParser::new(MAX_TEXT_LINE_BYTES);
        let line = format!("data: {}\n", "x".repeat(1 << 16));
        let err = (0..32).find_map(|_| p.push(line.as_bytes()).err());
        assert!(err.is_some_and(|e| e.to_string().contains("event")));
        // The end of a stream without a final newline still yields the last record.
        let mut p = NdjsonParser::default();
        assert!(p.push(b"{\"a\":1}").unwrap().is_empty());
        assert_eq!(p.finish().unwrap().unwrap()["a"], 1);
    }
}
