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
