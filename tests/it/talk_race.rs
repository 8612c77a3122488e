//! The talk's side-by-side step: the local model and a remote endpoint answer the same prompt,
//! each with its time to first token and tokens per second; a service that wakes slowly is
//! counted as it wakes; a network that fails leaves the talk on the local model; a local model
//! that never loaded leaves the remote side racing alone.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use samemath::cli::AppArgs;
use samemath::llm_scene::LlmControls;
use samemath::talk::race::{RACE_TOKENS, TalkRace};
use samemath::talk::{Talk, file};
use testkit::http::{ollama_lines, response, scripted, streamed};

use crate::headless::press;

/// Run frames until the race of the step shown has finished (or `limit` passes); `each` sees
/// every frame's race.
fn run_race(app: &mut App, limit: Duration, mut each: impl FnMut(&samemath::talk::Race)) {
    let start = Instant::now();
    loop {
        app.update();
        if let Some(r) = &app.world().resource::<TalkRace>().0 {
            each(r);
            if r.finished() {
                return;
            }
        }
        assert!(
            start.elapsed() < limit,
            "the race did not finish: {:?}",
            app.world().resource::<TalkRace>().0
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn side_by_side_step(talk: &file::TalkFile) -> usize {
    talk.steps
        .iter()
        .position(|s| s.side_by_side == Some(true))
        .expect("the shipped talk has a side-by-side step")
}

/// The headless app of scene 2's tests playing a talk written from `text` (as `name` in a
/// temporary folder), and the file's path, removed at the test's end.
fn race_app(name: &str, text: &str) -> (App, std::path::PathBuf) {
    let talk_path = crate::talk::talk_file(name, text);
    let app = crate::llm_scene::headless_app_with(AppArgs {
        talk: Some(Some(talk_path.clone())),
        ..AppArgs::default()
    });
    (app, talk_path)
}

#[test]
fn the_shipped_side_by_side_step_races_the_local_model_against_samemath_serve() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/talk/serverless.ron");
    let talk = file::parse(&std::fs::read_to_string(path).unwrap(), "serverless.ron").unwrap();
    let at = side_by_side_step(&talk);
    let (_server, port) = crate::app_remote::start_serve();
    let mut app = crate::llm_scene::headless_app_with(AppArgs {
        talk: Some(None),
        talk_step: Some(at + 1),
        remote_url: Some(format!("http://127.0.0.1:{port}")),
        ..AppArgs::default()
    });
    crate::talk::with_engine(&mut app);
    run_race(&mut app, Duration::from_secs(240), |_| {});
    let race = app.world().resource::<TalkRace>().0.as_ref().unwrap();
    assert_eq!(race.step, at);
    for side in [&race.local, &race.remote] {
        assert_eq!(side.error, None, "{side:?}");
        assert!(side.tokens >= 2 && side.tokens <= RACE_TOKENS, "{side:?}");
        let first = side.first_token_secs.unwrap();
        let rate = side.tokens_per_sec().unwrap();
        assert!(first > 0.0 && rate > 0.0, "{side:?}");
        println!(
            "{}: first token {first:.2} s, {rate:.1} tokens/s",
            side.label
        );
    }
    assert!(race.remote.awake_secs.is_some());
    assert!(race.remote.label.contains(&port.to_string()));
    // The same model, greedy, the same prompt: the same words in both places.
    assert_eq!(race.local.tokens, race.remote.tokens);
    assert_eq!(race.local.text, race.remote.text);
    assert!(!race.local.text.trim().is_empty());
    let controls = app.world().resource::<LlmControls>();
    assert_eq!(controls.prompt, talk.steps[at].prompt.clone().unwrap());
    // --remote is the race's during a talk: scene 2 stayed on the local model, so the service
    // was first woken by this step, in front of the hall.
    let view = app.world().resource::<samemath::llm_scene::LlmView>();
    assert_eq!(view.backend, samemath::llm_scene::Backend::Local);
}

#[test]
fn a_slow_service_is_counted_as_it_wakes_and_a_dead_one_leaves_the_talk_local() {
    // Port 1 on loopback: nothing listens there (a port taken from `free_port` could be
    // taken again by a test running beside this one).
    let dead = 1;
    // Ollama that takes 2.5 s to answer its first request (a cold start: the client's probe for
    // samemath serve, which Ollama does not know), then answers.
    let mut answers = ollama_answers();
    answers[0].0 = Duration::from_millis(2_500);
    let waking = scripted(answers);
    let text = format!(
        "(title: \"race\", steps: [\n\
         (caption: \"slow\", scene: Some(llm), prompt: Some(\"Hi\"), side_by_side: Some(true),\n\
          remote: Some(\"http://127.0.0.1:{waking}\")),\n\
         (caption: \"dead\", side_by_side: Some(true), remote: Some(\"http://127.0.0.1:{dead}\")),\n\
         (caption: \"none\", side_by_side: Some(true)),\n\
         (caption: \"after\"),\n])"
    );
    let (mut app, talk_path) = race_app("race-waking.ron", &text);
    crate::talk::with_engine(&mut app);
    assert_eq!(app.world().resource::<Talk>().error, None);

    // The cold start: counted while it lasts, then its length; the local side ran meanwhile.
    // The longest the hall saw "waking the service: N s" counting.
    let mut waking_for = 0.0f32;
    run_race(&mut app, Duration::from_secs(120), |r| {
        let now = r.elapsed_secs();
        let (line, _) = r.remote.state_line(true, now);
        if line == format!("waking the service: {now:.0} s") {
            waking_for = waking_for.max(now);
        }
    });
    let race = app.world().resource::<TalkRace>().0.as_ref().unwrap();
    assert!(waking_for >= 2.0, "counted only to {waking_for} s");
    assert_eq!(race.remote.error, None, "{:?}", race.remote);
    assert_eq!(race.remote.text, "Hello there");
    // The scripted server waits 2.5 s before its first byte; the rest (connecting, the
    // version and tags round trips) takes what a loaded machine gives it, not seconds.
    let awake = race.remote.awake_secs.unwrap();
    assert!((2.4..8.0).contains(&awake), "{:?}", race.remote);
    assert!(race.local.error.is_none() && race.local.tokens > 0);
    let (line, _) = race.remote.state_line(true, 0.0);
    assert!(
        line.contains(&format!("answered after {awake:.1} s")),
        "{line}"
    );

    // A dead endpoint: the step says so, and the local answer is there all the same.
    press(&mut app, KeyCode::PageDown);
    run_race(&mut app, Duration::from_secs(120), |_| {});
    let race = app.world().resource::<TalkRace>().0.as_ref().unwrap();
    assert_eq!(race.step, 1);
    let e = race.remote.error.clone().unwrap();
    assert!(e.contains(&format!("127.0.0.1:{dead}")), "{e}");
    let (line, _) = race.remote.state_line(true, 0.0);
    assert!(line.contains("stays on the local model"), "{line}");
    assert!(race.local.error.is_none() && race.local.tokens > 0);

    // No endpoint at all: said so.
    press(&mut app, KeyCode::PageDown);
    run_race(&mut app, Duration::from_secs(120), |_| {});
    let race = app.world().resource::<TalkRace>().0.as_ref().unwrap();
    let (line, failed) = race.remote.state_line(true, 0.0);
    assert!(
        failed && line.starts_with("no remote endpoint") && line.contains("--remote URL"),
        "{line}"
    );
    // A step without a race ends it.
    press(&mut app, KeyCode::PageDown);
    assert!(app.world().resource::<TalkRace>().0.is_none());
    let _ = std::fs::remove_file(talk_path);
}

/// An Ollama that answers at once: the probe (which it does not know), its version, its models,
/// then "Hello there".
fn ollama_answers() -> Vec<(Duration, Vec<u8>)> {
    vec![
        (
            Duration::ZERO,
            response("404 Not Found", "text/plain", b"404 page not found"),
        ),
        (
            Duration::ZERO,
            response("200 OK", "application/json", b"{\"version\":\"0.12.11\"}"),
        ),
        (
            Duration::ZERO,
            response(
                "200 OK",
                "application/json",
                b"{\"models\":[{\"name\":\"smollm2\"}]}",
            ),
        ),
        (
            Duration::ZERO,
            streamed(&ollama_lines(&["Hel", "lo", " there"], true)),
        ),
    ]
}

/// The local model never loaded (its fetch failed on the hall's network): the remote side races
/// on its own and the local side says why it is not there; once the model is loaded, both run.
#[test]
fn without_the_local_model_the_remote_side_races_alone() {
    let server = scripted([ollama_answers(), ollama_answers()].concat());
    let text = format!(
        "(title: \"race\", steps: [(caption: \"race\", scene: Some(llm), prompt: Some(\"Hi\"),\n\
         side_by_side: Some(true), remote: Some(\"http://127.0.0.1:{server}\"))])"
    );
    // No engine: the view is what one whose load failed reports.
    let (mut app, talk_path) = race_app("race-alone.ron", &text);
    let why = "the model could not be fetched: network unreachable";
    app.world_mut()
        .resource_mut::<samemath::llm_scene::LlmView>()
        .status = samemath::llm_scene::EngineStatus::Error(why.into());
    run_race(&mut app, Duration::from_secs(60), |_| {});
    let race = app.world().resource::<TalkRace>().0.as_ref().unwrap();
    assert_eq!(race.remote.error, None, "{:?}", race.remote);
    assert_eq!(race.remote.text, "Hello there");
    let local = &race.local;
    assert_eq!(local.tokens, 0);
    let (line, failed) = local.state_line(false, 0.0);
    assert!(failed, "{line}");
    assert!(
        line.starts_with("the local model is not loaded") && line.contains(why),
        "{line}"
    );
    // The model loads after all (the panel's "Try loading the model again"): the race again,
    // both sides.
    crate::talk::give_model(&mut app);
    run_race(&mut app, Duration::from_secs(120), |_| {});
    let race = app.world().resource::<TalkRace>().0.as_ref().unwrap();
    assert!(
        race.local.error.is_none() && race.local.tokens > 0,
        "{:?}",
        race.local
    );
    assert_eq!(race.remote.text, "Hello there");
    let _ = std::fs::remove_file(talk_path);
}

/// The race takes a question the speaker typed: one typed before the race step stays in the box
/// through it (the step's own prompt does not replace it) and is raced; one typed while the race
/// is shown is raced once the box lets go of the keyboard (not at every key); an emptied box
/// races the step's own prompt.
#[test]
fn the_race_takes_a_question_the_speaker_typed() {
    use samemath::shell::KeyboardFocus;
    let own = "Why is the sky blue?";
    let text = format!(
        "(title: \"race\", steps: [\n\
         (caption: \"ask\", scene: Some(llm), prompt: Some(\"Hi\")),\n\
         (caption: \"race\", prompt: Some(\"{own}\"), raw: Some(false), side_by_side: Some(true)),\n])"
    );
    let (mut app, talk_path) = race_app("race-typed.ron", &text);
    crate::talk::give_model(&mut app);
    let set = |app: &mut App, text: &str| {
        app.world_mut().resource_mut::<LlmControls>().prompt = text.into();
    };
    let raced = |app: &App| {
        app.world()
            .resource::<TalkRace>()
            .0
            .as_ref()
            .map(|r| (r.prompt.clone(), r.chat))
    };
    let question = "Why do GPUs like matrices?";
    set(&mut app, question);
    press(&mut app, KeyCode::PageDown);
    assert_eq!(app.world().resource::<Talk>().step, 1);
    assert_eq!(app.world().resource::<LlmControls>().prompt, question);
    assert_eq!(raced(&app), Some((question.to_string(), true)));
    // Typed at the race step: nothing while the box has the keyboard, then the new question.
    app.world_mut().insert_resource(KeyboardFocus {
        typing: true,
        release: false,
    });
    let second = "And a TPU?";
    for typed in ["A", "And a", second] {
        set(&mut app, typed);
        app.update();
        assert_eq!(raced(&app), Some((question.to_string(), true)), "{typed:?}");
    }
    app.world_mut().insert_resource(KeyboardFocus::default());
    app.update();
    assert_eq!(raced(&app), Some((second.to_string(), true)));
    // Emptied: the step's own prompt.
    set(&mut app, "");
    app.update();
    assert_eq!(raced(&app), Some((own.to_string(), true)));
    run_race(&mut app, Duration::from_secs(120), |_| {});
    let race = app.world().resource::<TalkRace>().0.as_ref().unwrap();
    assert!(
        race.local.error.is_none() && race.local.tokens > 0,
        "{:?}",
        race.local
    );
    let _ = std::fs::remove_file(talk_path);
}
