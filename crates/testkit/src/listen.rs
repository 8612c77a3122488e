//! A server started on the port the system picks as it binds (`--port 0`), learnt from its log
//! line "listening on http://ADDR:PORT": unlike a port chosen first and bound later
//! (`free_port`), no other socket can take it in between.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::http::ChildGuard;

/// A server listening: its guard (killed on drop), its port, and its log (stderr), every line
/// from the first, in order.
pub struct Listening {
    pub guard: ChildGuard,
    pub port: u16,
    /// A thread reads the pipe to its end, so the server never blocks on a full pipe, whether
    /// or not anyone reads here.
    pub lines: mpsc::Receiver<String>,
}

/// Spawn `cmd` (a `samemath serve` or `samemath-serve` command) with `--port 0` and its stderr
/// piped, and wait up to `limit` for the line that names the port it bound.
pub fn spawn_listening(cmd: &mut Command, limit: Duration) -> std::io::Result<Listening> {
    let mut child = cmd.args(["--port", "0"]).stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let guard = ChildGuard(child);
    let (line_tx, lines) = mpsc::channel();
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut port_tx = Some(port_tx);
        let mut reader = BufReader::new(stderr);
        let mut bytes = Vec::new();
        // To the end of the pipe, whatever the bytes (a line that is not UTF-8 is read lossily).
        while matches!(reader.read_until(b'\n', &mut bytes), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&bytes)
                .trim_end_matches(['\n', '\r'])
                .to_string();
            bytes.clear();
            if let Some(port) = listening_port(&line)
                && let Some(tx) = port_tx.take()
            {
                let _ = tx.send(port);
            }
            let _ = line_tx.send(line);
        }
    });
    match port_rx.recv_timeout(limit) {
        Ok(port) => Ok(Listening { guard, port, lines }),
        Err(e) => {
            let log: Vec<String> = lines.try_iter().collect();
            Err(std::io::Error::other(format!(
                "the server named no port it listens on ({e}); its log: {log:#?}"
            )))
        }
    }
}

/// The port in a "listening on http://ADDR:PORT" log line, text or JSON.
pub fn listening_port(line: &str) -> Option<u16> {
    const MARK: &str = "listening on http://";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    let address = rest.split(['"', ' ', '/']).next()?;
    address.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_read_from_text_and_json_lines() {
        assert_eq!(
            listening_port("samemath serve: listening on http://127.0.0.1:40123"),
            Some(40123)
        );
        assert_eq!(
            listening_port(r#"{"severity":"INFO","message":"listening on http://0.0.0.0:8081"}"#),
            Some(8081)
        );
        assert_eq!(
            listening_port("samemath serve: listening on http://[::1]:9"),
            Some(9)
        );
        assert_eq!(
            listening_port("samemath serve: model loaded in 0.5 s"),
            None
        );
        assert_eq!(listening_port("listening on http://127.0.0.1:x"), None);
    }

    #[test]
    fn a_server_that_names_no_port_is_an_error_with_its_log() {
        let e = spawn_listening(
            Command::new("sh").args(["-c", "echo 'cannot bind' >&2; exit 3", "sh"]),
            Duration::from_secs(60),
        )
        .err()
        .expect("no port");
        assert!(e.to_string().contains("cannot bind"), "{e}");
    }
}
