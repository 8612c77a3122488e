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
    let out = match std::env::var("SAMEMATH_TOKEN_COMMAND") {
        Ok(cmd) if !cmd.trim().is_empty() => std::process::Command::new("sh")
            .args(["-c", &cmd])
            .output()
            .ok()?,
        _ if https => std::process::Command::new("gcloud")
            .args(["auth", "print-identity-token"])
            .output()
            .ok()?,
        _ => return None,
    };
    let token = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !token.is_empty()).then_some(token)
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
