//! Talk mode: every step of the shipped talk applies its state (scene, prompt, settings,
//! selection), the clicker's keys move forward, back, home and end and blank the screen, bad
//! step files give a message naming the line and the field while the app runs on; rendered, each
//! step's frame differs from its neighbours'.

use bevy::prelude::*;
use samemath::cli::AppArgs;
use samemath::graphics::GraphicsSettings;
use samemath::llm_scene::{LlmControls, LlmSelection};
use samemath::shell::Scene;
use samemath::talk::{Animation, SceneName, Talk, file};

use crate::headless::press;

/// The headless app of scene 2's tests, one frame further (the talk's first step applied).
fn talk_app(args: AppArgs) -> App {
    let mut app = crate::llm_scene::headless_app_with(args);
    app.update();
    app
}

/// The real engine, loading the model (the headless app has none of its own); the step shown is
/// applied again, so its Step reaches the engine.
pub(crate) fn with_engine(app: &mut App) {
    use samemath::llm_scene::LlmEngine;
    use samemath::worker::{Command, Worker};
    let mut worker = Worker::spawn(None, 1);
    worker.send(Command::Load);
    app.insert_resource(LlmEngine(std::sync::Mutex::new(worker)));
    app.world_mut().resource_mut::<Talk>().applied = None;
    app.update();
}

fn shipped() -> file::TalkFile {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/talk/serverless.ron");
    file::parse(&std::fs::read_to_string(path).unwrap(), "serverless.ron").unwrap()
}

#[test]
fn every_step_of_the_shipped_talk_applies_its_state() {
    let talk = shipped();
    assert!(talk.steps.len() >= 12, "{} steps", talk.steps.len());
    let mut app = talk_app(AppArgs {
        talk: Some(None),
        ..AppArgs::default()
    });
    assert!(app.world().resource::<Talk>().active);
    for (i, step) in talk.steps.iter().enumerate() {
        let t = app.world().resource::<Talk>();
        assert_eq!(t.step, i);
        assert_eq!(t.applied, Some(i), "step {} not applied", i + 1);
        if let Some(s) = step.scene {
            let want = match s {
                SceneName::Graphics => Scene::Graphics,
                SceneName::Llm => Scene::Llm,
                SceneName::Bridge => Scene::Bridge,
            };
            assert_eq!(
                *app.world().resource::<State<Scene>>().get(),
                want,
                "step {}",
                i + 1
            );
        }
        if let Some(p) = &step.prompt {
            assert_eq!(&app.world().resource::<LlmControls>().prompt, p);
        }
        if let Some(raw) = step.raw {
            assert_eq!(app.world().resource::<LlmControls>().chat, !raw);
        }
        let settings = app.world().resource::<GraphicsSettings>();
        if let Some(tr) = step.translation
            && step.animation != Some(Animation::SweepTx)
        {
            assert_eq!(settings.model.translation, tr, "step {}", i + 1);
        }
        if let Some(r) = step.rotation_deg
            && step.animation != Some(Animation::TurnThetaX)
        {
            assert_eq!(settings.model.rotation_deg, r);
        }
        if let Some(v) = step.vertex {
            assert_eq!(settings.selected_vertex, Some(v));
        }
        if let Some(t) = step.surface_point {
            assert_eq!(settings.surface_pick.map(|p| p.triangle), Some(t));
        }
        if let Some(n) = step.neuron {
            assert_eq!(app.world().resource::<LlmSelection>().neuron, Some(n));
        }
        let picked = app.world().resource::<samemath::graphics::Highlight>();
        assert_eq!(picked.term, step.highlight, "step {}", i + 1);
        press(&mut app, KeyCode::PageDown);
    }
    // Past the end it stays on the last step.
    assert_eq!(app.world().resource::<Talk>().step, talk.steps.len() - 1);
}

#[test]
fn clicker_keys_move_blank_and_close_and_the_scenes_keys_stay_quiet() {
    let mut app = talk_app(AppArgs {
        talk: Some(None),
        ..AppArgs::default()
    });
    let step = |app: &App| app.world().resource::<Talk>().step;
    press(&mut app, KeyCode::ArrowRight);
    press(&mut app, KeyCode::Space);
    assert_eq!(step(&app), 2);
    press(&mut app, KeyCode::PageUp);
    press(&mut app, KeyCode::ArrowLeft);
    assert_eq!(step(&app), 0);
    press(&mut app, KeyCode::ArrowLeft);
    assert_eq!(step(&app), 0, "no step before the first");
    press(&mut app, KeyCode::End);
    let last = app.world().resource::<Talk>().steps() - 1;
    assert_eq!(step(&app), last);
    press(&mut app, KeyCode::Home);
    assert_eq!(step(&app), 0);
    press(&mut app, KeyCode::KeyB);
    assert!(app.world().resource::<Talk>().blank);
    press(&mut app, KeyCode::Period);
    assert!(!app.world().resource::<Talk>().blank);
    press(&mut app, KeyCode::KeyB);
    press(&mut app, KeyCode::Escape);
    assert!(!app.world().resource::<Talk>().blank, "Esc un-blanks first");
    assert!(app.world().resource::<Talk>().active);
    // Space moved the talk, not the selected neuron or the model (no Step was asked).
    assert_eq!(app.world().resource::<LlmSelection>().neuron, None);
    press(&mut app, KeyCode::Escape);
    assert!(
        !app.world().resource::<Talk>().active,
        "Esc on a lit screen closes it"
    );
    press(&mut app, KeyCode::KeyT);
    assert!(app.world().resource::<Talk>().active, "T opens it again");
}

#[test]
fn the_tokenize_step_shows_the_prompts_chips_one_by_one() {
    use bevy::time::TimeUpdateStrategy;
    use samemath::llm_scene::LlmView;
    use std::time::{Duration, Instant};
    let talk = shipped();
    let at = talk
        .steps
        .iter()
        .position(|s| s.animation == Some(Animation::Tokenize))
        .expect("a tokenize step");
    let mut app = talk_app(AppArgs {
        talk: Some(None),
        talk_step: Some(at + 1),
        ..AppArgs::default()
    });
    app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
        100,
    )));
    with_engine(&mut app);
    let start = Instant::now();
    while app.world().resource::<LlmView>().prompt_tokens.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no prompt tokens"
        );
        std::thread::sleep(Duration::from_millis(5));
        app.update();
    }
    let total = app.world().resource::<LlmView>().prompt_tokens.len();
    assert!(total >= 3, "{total} tokens");
    // One chip more every CHIP_SECS (100 ms frames), then all of them (no limit).
    let mut seen = Vec::new();
    for _ in 0..((total as f32 * samemath::talk::CHIP_SECS / 0.1) as usize + 20) {
        app.update();
        let r = app.world().resource::<LlmSelection>().reveal_chips;
        if seen.last() != Some(&r) {
            seen.push(r);
        }
    }
    let want: Vec<Option<usize>> = (1..total).map(Some).chain([None]).collect();
    assert_eq!(seen, want);
}

#[test]
fn the_booth_plays_the_talk_unattended() {
    use bevy::time::TimeUpdateStrategy;
    use std::time::Duration;
    let mut app = talk_app(AppArgs {
        talk: Some(None),
        demo: true,
        demo_pace: 1.0,
        ..AppArgs::default()
    });
    app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
        250,
    )));
    let steps = app.world().resource::<Talk>().steps();
    assert!(!app.world().resource::<samemath::demo::DemoLoop>().enabled);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..(steps * 5 + 10) {
        app.update();
        seen.insert(app.world().resource::<Talk>().step);
    }
    assert_eq!(seen.len(), steps, "every step came round: {seen:?}");
}

#[test]
fn bad_step_files_name_the_line_and_the_field_and_the_app_runs_on() {
    let good = "(title: \"t\", steps: [(caption: \"one\")])";
    assert!(file::parse(good, "good.ron").is_ok());
    let unknown = "(title: \"t\",\n steps: [\n  (captoin: \"one\")])";
    let e = file::parse(unknown, "unknown.ron").unwrap_err();
    assert!(e.contains("line 3") && e.contains("captoin"), "{e}");
    let bad_value = "(title: \"t\", steps: [(caption: \"x\", scene: Some(kitchen))])";
    let e = file::parse(bad_value, "value.ron").unwrap_err();
    assert!(e.contains("kitchen") && e.contains("line 1"), "{e}");
    let bad_view = "(title: \"t\", steps: [(caption: \"x\", view: Some(\"sideways\"))])";
    let e = file::parse(bad_view, "view.ron").unwrap_err();
    assert!(e.contains("step 1") && e.contains("view"), "{e}");
    let long = "(title: \"t\", steps: [(caption: \"a\\nb\\nc\\nd\")])";
    assert!(
        file::parse(long, "long.ron")
            .unwrap_err()
            .contains("4 lines")
    );
    assert!(file::parse("(title: \"t\", steps: [])", "empty.ron").is_err());
    let bad_term = "(title: \"t\", steps: [(caption: \"x\",\n highlight: Some(teapot))])";
    let e = file::parse(bad_term, "term.ron").unwrap_err();
    assert!(e.contains("teapot") && e.contains("line 2"), "{e}");
    let bad_url = "(title: \"t\", steps: [(caption: \"x\", remote: Some(\"ftp://x\"))])";
    let e = file::parse(bad_url, "url.ron").unwrap_err();
    assert!(e.contains("step 1") && e.contains("remote"), "{e}");
    // A missing file: the message, and the app runs on without the talk.
    let mut app = talk_app(AppArgs {
        talk: Some(Some("/nonexistent/talk.ron".into())),
        ..AppArgs::default()
    });
    let t = app.world().resource::<Talk>();
    assert!(!t.active);
    let e = t.error.clone().unwrap();
    assert!(e.contains("/nonexistent/talk.ron"), "{e}");
    press(&mut app, KeyCode::Digit2);
    assert_eq!(*app.world().resource::<State<Scene>>().get(), Scene::Llm);
}

#[test]
fn each_step_renders_and_differs_from_its_neighbours() {
    let talk = shipped();
    let mut previous: Option<image::RgbImage> = None;
    for i in 0..talk.steps.len() {
        let n = (i + 1).to_string();
        let shot = crate::render::render_at(
            &format!("talk_{n:0>2}"),
            "1280x720",
            serde_json::json!({}),
            &["--talk", "--talk-step", &n, "--large-ui", "--steps", "1"],
        );
        let img = shot.image;
        let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 50, "step {n}: {} colours", colours.len());
        if let Some(prev) = &previous {
            let differing = img
                .pixels()
                .zip(prev.pixels())
                .filter(|(a, b)| a.0 != b.0)
                .count();
            let share = differing as f32 / (img.width() * img.height()) as f32;
            println!(
                "talk step {n}: {:.1}% of pixels differ from step {i}",
                share * 100.0
            );
            assert!(share > 0.01, "step {n} looks like step {i}");
        }
        previous = Some(img);
    }
}
