//! deploy/: the service that `deploy.sh` makes with gcloud flags and the one `service.yaml`
//! declares are the same service, and both match what the image's server is started with.

use std::path::PathBuf;
use std::process::Command;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// The `gcloud run deploy` line of `deploy.sh --dry-run`, as its arguments.
fn deploy_flags(gpu: bool) -> Vec<String> {
    deploy_flags_with(gpu, &[])
}

/// The same with more environment variables for deploy.sh.
fn deploy_flags_with(gpu: bool, env: &[(&str, &str)]) -> Vec<String> {
    let out = Command::new("bash")
        .arg(deploy_dir().join("deploy.sh"))
        .arg("--dry-run")
        .env("PROJECT", "test-project")
        .env("REGION", "europe-west1")
        .env("GPU", if gpu { "1" } else { "0" })
        .env_remove("PUBLIC")
        .env_remove("MAX_INSTANCES")
        .env_remove("CORS")
        .envs(env.iter().copied())
        .output()
        .expect("run deploy.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        // Cloud Run runs amd64 images, whatever machine builds them.
        "docker build --platform linux/amd64 -f deploy/Dockerfile",
        "docker push",
        "gcloud run deploy",
    ] {
        assert!(
            stdout.contains(want),
            "the dry run prints `{want}`:\n{stdout}"
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("gcloud run deploy "))
        .expect("a gcloud run deploy line");
    // printf %q's quoting: a backslash keeps the character after it (`\,` in a probe's list).
    line.split_whitespace()
        .map(|word| {
            let mut out = String::new();
            let mut chars = word.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                });
            }
            out
        })
        .collect()
}

fn flag<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .position(|f| f == name)
        .and_then(|i| flags.get(i + 1))
        .map(String::as_str)
}

/// The value of the first `key:` line in a YAML file we write ourselves (quotes dropped).
fn yaml<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let l = l.trim_start().trim_start_matches("- ");
        l.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().trim_matches('"'))
    })
}

/// The lines of the block that `head` (e.g. `startupProbe:`) opens: it and those indented
/// deeper, so a key missing from one probe is not found in the next.
fn yaml_block(text: &str, head: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|l| l.trim_start() != head);
    let first = lines.next()?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let depth = indent(first);
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || indent(l) > depth)
        .collect();
    Some(body.join("\n"))
}

fn check(gpu: bool) {
    let flags = deploy_flags(gpu);
    let file = if gpu {
        "service-gpu.yaml"
    } else {
        "service.yaml"
    };
    let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
    let pairs = [
        ("--concurrency", "containerConcurrency"),
        ("--max-instances", "autoscaling.knative.dev/maxScale"),
        ("--timeout", "timeoutSeconds"),
        ("--port", "containerPort"),
        ("--cpu", "cpu"),
        ("--memory", "memory"),
    ];
    for (f, key) in pairs {
        let (a, b) = (flag(&flags, f), yaml(&text, key));
        assert!(a.is_some(), "deploy.sh passes {f}");
        assert_eq!(a, b, "{f} (deploy.sh) and {key} ({file})");
    }
    let has = |f: &str| flags.iter().any(|x| x == f);
    assert!(has("--no-cpu-throttling"));
    assert_eq!(
        yaml(&text, "run.googleapis.com/cpu-throttling"),
        Some("false")
    );
    assert!(has("--cpu-boost"));
    assert_eq!(
        yaml(&text, "run.googleapis.com/startup-cpu-boost"),
        Some("true")
    );
    // The same probes: deploy.sh's key=value lists against the YAML's startupProbe (no
    // request before the model is loaded) and livenessProbe (a lost GPU replaces the instance).
    for (name, block) in [
        ("--startup-probe", "startupProbe:"),
        ("--liveness-probe", "livenessProbe:"),
    ] {
        let probe = flag(&flags, name).unwrap_or_else(|| panic!("deploy.sh passes {name}"));
        let probe_yaml = yaml_block(&text, block).unwrap_or_else(|| panic!("{file} has a {block}"));
        for (key, yaml_key) in [
            ("httpGet.path", "path"),
            ("httpGet.port", "port"),
            ("periodSeconds", "periodSeconds"),
            ("failureThreshold", "failureThreshold"),
            ("timeoutSeconds", "timeoutSeconds"),
        ] {
            let ours = probe
                .split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
            assert!(ours.is_some(), "{name} sets {key}: {probe}");
            assert_eq!(ours, yaml(&probe_yaml, yaml_key), "{name}'s {key}");
        }
        assert_eq!(yaml(&probe_yaml, "path"), Some("/health"), "{name}");
    }
    if gpu {
        assert_eq!(flag(&flags, "--gpu"), yaml(&text, "nvidia.com/gpu"));
        assert_eq!(
            flag(&flags, "--gpu-type"),
            yaml(&text, "run.googleapis.com/accelerator")
        );
        assert!(has("--no-gpu-zonal-redundancy"));
        assert_eq!(
            yaml(&text, "run.googleapis.com/gpu-zonal-redundancy-disabled"),
            Some("true")
        );
    } else {
        assert!(!has("--gpu") && yaml(&text, "nvidia.com/gpu").is_none());
    }
    // The image's server runs as many answers at once as Cloud Run sends it, on the same port.
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let concurrency = flag(&flags, "--concurrency").unwrap();
    assert!(
        dockerfile.contains(&format!("--concurrency {concurrency} ")),
        "the Dockerfile's CMD runs --concurrency {concurrency}"
    );
    assert!(dockerfile.contains(&format!("PORT={}", flag(&flags, "--port").unwrap())));
}

#[test]
fn deploy_sh_and_service_yaml_describe_the_same_service() {
    check(false);
}

#[test]
fn the_gpu_variant_too() {
    check(true);
}

#[test]
fn the_dry_run_runs_nothing_and_names_the_image() {
    let flags = deploy_flags(false);
    let image = flag(&flags, "--image").unwrap();
    assert!(
        image.starts_with("europe-west1-docker.pkg.dev/test-project/samemath/samemath:"),
        "{image}"
    );
    assert_eq!(flag(&flags, "--region"), Some("europe-west1"));
    assert!(flags.iter().any(|f| f == "--no-allow-unauthenticated"));
}

#[test]
fn cors_reaches_the_server_through_its_environment() {
    let flags = deploy_flags(false);
    assert!(
        !flags.iter().any(|f| f.starts_with("SAMEMATH_CORS")),
        "{flags:?}"
    );
    let flags = deploy_flags_with(false, &[("CORS", "https://example.org")]);
    assert_eq!(
        flag(&flags, "--set-env-vars"),
        Some("SAMEMATH_CORS=https://example.org")
    );
}
