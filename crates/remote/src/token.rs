//! Which bearer token goes where: a command's fresh token (`$SAMEMATH_TOKEN_COMMAND`, gcloud),
//! and the rule that automatic tokens only go to Cloud Run hosts, allowed hosts and loopback.

/// The browser has no commands to run: tokens come from the field.
#[cfg(target_arch = "wasm32")]
pub(crate) fn command_token(_https: bool) -> Option<String> {
    None
}

/// A fresh token from `$SAMEMATH_TOKEN_COMMAND` (any shell command printing one), else, for
/// https URLs, `gcloud auth print-identity-token` when gcloud is installed and logged in.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn command_token(https: bool) -> Option<String> {
    let mut command = match std::env::var("SAMEMATH_TOKEN_COMMAND") {
        Ok(cmd) if !cmd.trim().is_empty() => {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &cmd]);
            c
        }
        _ if https => {
            let mut c = std::process::Command::new("gcloud");
            c.args(["auth", "print-identity-token"]);
            c
        }
        _ => return None,
    };
    bounded_output(&mut command, TOKEN_COMMAND_WAIT)
}

/// How long a token command may take (gcloud on a slow network), and how much it may print.
#[cfg(not(target_arch = "wasm32"))]
const TOKEN_COMMAND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
#[cfg(not(target_arch = "wasm32"))]
const TOKEN_COMMAND_BYTES: usize = 16 * 1024;

/// What `command` printed, trimmed, when it succeeded within `wait` printing at most
/// `TOKEN_COMMAND_BYTES`; a command that hangs or prints without end is killed.
#[cfg(not(target_arch = "wasm32"))]
fn bounded_output(
    command: &mut std::process::Command,
    wait: std::time::Duration,
) -> Option<String> {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = stdout
            .take(TOKEN_COMMAND_BYTES as u64 + 1)
            .read_to_end(&mut out);
        let _ = tx.send(read.map(|_| out));
    });
    let deadline = Instant::now() + wait;
    let mut printed = None;
    let status = loop {
        if printed.is_none()
            && let Ok(read) = rx.try_recv()
        {
            match read {
                Ok(out) if out.len() <= TOKEN_COMMAND_BYTES => printed = Some(out),
                _ => break None,
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => break None,
        }
    };
    if !status.is_some_and(|s| s.success()) {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    // The command exited; its output ends once whatever it started lets go of the pipe.
    let out = match printed {
        Some(out) => out,
        None => rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()?
            .ok()
            .filter(|out| out.len() <= TOKEN_COMMAND_BYTES)?,
    };
    let token = String::from_utf8(out).ok()?.trim().to_string();
    (!token.is_empty()).then_some(token)
}

/// Why an automatic token (`$SAMEMATH_REMOTE_TOKEN`, `$SAMEMATH_TOKEN_COMMAND`, gcloud's) is
/// not sent to `base`, or `None` when it may be: https to a Cloud Run host (`*.run.app`) or to a
/// host listed in `$SAMEMATH_TOKEN_HOSTS` (comma-separated), and any scheme on loopback (a local
/// proxy, `gcloud run services proxy`). A token given for a URL (`--token`, the field) is not
/// automatic: it goes to that URL only.
pub fn automatic_token_refused(base: &str) -> Option<String> {
    let allowed = std::env::var("SAMEMATH_TOKEN_HOSTS").unwrap_or_default();
    token_refusal(base, &allowed)
}

fn token_refusal(base: &str, allowed_hosts: &str) -> Option<String> {
    let Ok(url) = reqwest::Url::parse(base) else {
        return Some("not a URL".into());
    };
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return None;
    }
    if url.scheme() != "https" {
        return Some(format!(
            "{host} is reached over plain http, which is only trusted on loopback"
        ));
    }
    let listed = allowed_hosts
        .split(',')
        .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
        .any(|h| !h.is_empty() && h == host);
    if host.ends_with(".run.app") || listed {
        return None;
    }
    Some(format!(
        "{host} is neither a Cloud Run host (*.run.app) nor listed in $SAMEMATH_TOKEN_HOSTS"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token command that hangs or prints without end is cut off; one that prints a token
    /// gives it.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn token_commands_are_bounded_in_time_and_output() {
        use std::time::Duration;
        let sh = |script: &str| {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", script]);
            c
        };
        let wait = Duration::from_secs(2);
        assert_eq!(
            bounded_output(&mut sh("echo ' tok-123 '"), wait).as_deref(),
            Some("tok-123")
        );
        assert_eq!(bounded_output(&mut sh("echo tok; exit 3"), wait), None);
        assert_eq!(bounded_output(&mut sh("true"), wait), None);
        // Unbounded, these would give "late" and "a" after 30 s, and `yes` would never end.
        assert_eq!(bounded_output(&mut sh("sleep 30; echo late"), wait), None);
        assert_eq!(bounded_output(&mut sh("yes"), wait), None);
        assert_eq!(bounded_output(&mut sh("printf a; sleep 30"), wait), None);
    }

    #[test]
    fn automatic_tokens_go_to_cloud_run_allowed_hosts_and_loopback_only() {
        let allowed = "models.example.org, Other.Example.com";
        for ok in [
            "https://samemath-abc123-uc.a.run.app",
            "https://SAMEMATH-x.A.RUN.APP.",
            "https://models.example.org/v1",
            "https://other.example.com",
            "http://127.0.0.1:8080",
            "http://localhost:11434",
            "http://[::1]:9000",
        ] {
            assert_eq!(token_refusal(ok, allowed), None, "{ok}");
        }
        for (bad, why) in [
            ("http://samemath-abc.a.run.app", "plain http"),
            ("http://models.example.org", "plain http"),
            ("http://192.168.1.20:8080", "plain http"),
            ("https://evil.example.net", "neither"),
            ("https://run.app.evil.example.net", "neither"),
            ("https://evilrun.app", "neither"),
            ("https://models.example.org.evil.net", "neither"),
        ] {
            let refusal = token_refusal(bad, allowed);
            assert!(
                refusal.as_deref().is_some_and(|r| r.contains(why)),
                "{bad}: {refusal:?}"
            );
        }
    }
}
