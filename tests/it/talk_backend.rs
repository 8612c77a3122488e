//! The talk drives scene 2's engine: a step whose view needs a token's forward pass runs one
//! (also when stepping back to it), and a step that runs the model runs it here, not on a
//! remote server the speaker connected to.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use samemath::cli::AppArgs;
use samemath::llm_scene::{Backend, LlmControls, LlmView};
use samemath::talk::{Animation, Talk, file};

use crate::headless::press;

fn shipped() -> file::TalkFile {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/talk/serverless.ron");
    file::parse(&std::fs::read_to_string(path).unwrap(), "serverless.ron").unwrap()
}

/// The headless app opened at `step` (0-based) of the shipped talk, its world's switch there.
fn talk_at(step: usize) -> App {
    let mut app = crate::llm_scene::headless_app_with(AppArgs {
        talk: Some(None),
        talk_step: Some(step + 1),
        ..AppArgs::default()
    });
    app.init_resource::<samemath::llm_scene::world::WorldMode>();
    app
}

/// Frames until `done` holds of the view (or two minutes pass: the test fails saying `what`).
fn wait_for(app: &mut App, what: &str, done: impl Fn(&LlmView) -> bool) {
    let start = Instant::now();
    while !done(app.world().resource::<LlmView>()) {
        let view = app.world().resource::<LlmView>();
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}: {:?}, backend {:?}, trace {}",
            view.status,
            view.backend,
            view.trace.is_some()
        );
        std::thread::sleep(Duration::from_millis(5));
        app.update();
    }
}

/// What `Connected` leaves in the view: scene 2 on a server (here set by hand; the engine
/// behind stays the local one, so only the talk's UseLocal can bring the view back).
fn connected(app: &mut App) {
    app.world_mut().resource_mut::<LlmView>().backend = a_samemath_server();
}

/// The backend of a view connected to a samemath server (nothing listens at its address).
pub(crate) fn a_samemath_server() -> Backend {
    Backend::Remote {
        url: "http://127.0.0.1:1".into(),
        info: remote::ServerInfo {
            api: remote::ApiKind::Samemath,
            version: None,
            models: Vec::new(),
            capabilities: Default::default(),
        },
        model: None,
    }
}

/// Back from the race to the step before it: that step's prompt comes back (a new prompt, so a
/// Reset), and its view draws a forward pass, so it runs its Step as walking to it did.
#[test]
fn stepping_back_from_the_race_runs_the_steps_prompt_again() {
    let talk = shipped();
    let race = talk
        .steps
        .iter()
        .position(|s| s.side_by_side == Some(true))
        .expect("a race step");
    let before = race - 1;
    // The case: a view of the world, no Step of its own, an earlier step's prompt.
    let step = &talk.steps[before];
    assert!(step.view.is_some() && step.animation.is_none() && step.prompt.is_none());
    let mut app = talk_at(race);
    crate::talk::with_engine(&mut app);
    // The race step settles first (its backend switch, which runs a Step of its own, is done).
    wait_for(&mut app, "the race step's model", |v| {
        v.model.is_some() && v.steps >= 1 && !v.busy()
    });
    press(&mut app, KeyCode::PageUp);
    assert_eq!(app.world().resource::<Talk>().step, before);
    let want = app.world().resource::<Talk>().state_at(before).unwrap();
    let controls = app.world().resource::<LlmControls>();
    assert_eq!(Some(&controls.prompt), want.prompt.as_ref());
    wait_for(&mut app, "a trace of the step's prompt", |v| {
        v.trace.is_some() && !v.prompt_tokens.is_empty()
    });
}

/// Scene 2 on a remote server when the talk opens (the speaker connected at Q&A, or started with
/// `--remote`), and again when it reopens: a step that runs the model goes back to the local
/// engine first (else every Step is the remote's, and the world has no trace to draw).
#[test]
fn the_talk_takes_scene_two_back_from_a_remote_server() {
    let talk = shipped();
    let plays = talk
        .steps
        .iter()
        .position(|s| s.animation == Some(Animation::Step))
        .expect("a step that runs the model");
    let mut app = talk_at(plays);
    connected(&mut app);
    crate::talk::with_engine(&mut app);
    wait_for(&mut app, "the local engine and its trace", |v| {
        v.backend == Backend::Local && v.trace.is_some() && !v.busy()
    });
    // The last step (no Step of its own, its trace shown), then Q&A: the talk closed, scene 2
    // connected, the talk opened again.
    press(&mut app, KeyCode::End);
    wait_for(&mut app, "the last step's trace", |v| {
        v.trace.is_some() && !v.busy()
    });
    press(&mut app, KeyCode::KeyT);
    assert!(!app.world().resource::<Talk>().active);
    connected(&mut app);
    press(&mut app, KeyCode::KeyT);
    assert!(app.world().resource::<Talk>().active);
    wait_for(&mut app, "the local engine again", |v| {
        v.backend == Backend::Local
    });
}
