//! The booth (`--demo`) and the talk: under `--demo --talk` the booth plays the talk unattended
//! (its own loop waits, a visitor's keys act, and `--demo-cycles` counts the talk's passes);
//! under `--demo` alone the talk's keys do nothing.

use bevy::prelude::*;
use samemath::cli::AppArgs;
use samemath::shell::Scene;
use samemath::talk::Talk;

use crate::headless::press;
use crate::talk::talk_app;

/// `--demo --talk`: the booth plays the talk unattended while its own loop waits; a visitor's B
/// blanks the screen only until the booth's next step, and a visitor's Esc (or T) hands the
/// screen back to the booth's own loop, not to nothing; T opens the talk again.
#[test]
fn the_booth_plays_the_talk_unattended_and_closing_it_hands_back_to_the_loop() {
    use bevy::time::TimeUpdateStrategy;
    use samemath::demo::{DemoLoop, DemoStep};
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
    let demo = |app: &App| app.world().resource::<DemoLoop>().clone();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..(steps * 5 + 10) {
        app.update();
        seen.insert(app.world().resource::<Talk>().step);
        // The booth's own loop waits: no clock of its own, no scene, no prompt sent.
        let d = demo(&app);
        assert!(d.enabled && d.elapsed == 0.0 && d.prompts_run == 0, "{d:?}");
    }
    assert_eq!(seen.len(), steps, "every step came round: {seen:?}");
    // A visitor's B: black until the booth moves on (a step is 1 s, a frame 250 ms).
    app.world_mut().resource_mut::<Talk>().step_secs = 0.0;
    press(&mut app, KeyCode::KeyB);
    assert!(app.world().resource::<Talk>().blank);
    for _ in 0..6 {
        app.update();
    }
    assert!(
        !app.world().resource::<Talk>().blank,
        "the booth's next step lifts the blank"
    );
    // A visitor's Esc, at a step of scene 2: the talk closes, the booth's own loop plays on
    // from the start of its round (scene 1).
    press(&mut app, KeyCode::End);
    press(&mut app, KeyCode::Escape);
    assert!(!app.world().resource::<Talk>().active);
    std::thread::sleep(Duration::from_millis(20));
    app.update();
    app.update();
    let d = demo(&app);
    assert!(d.enabled && d.elapsed > 0.0, "{d:?}");
    assert_eq!(d.step, DemoStep::Graphics);
    assert_eq!(
        *app.world().resource::<State<Scene>>().get(),
        Scene::Graphics
    );
    // T: the talk again, and the loop waits again.
    press(&mut app, KeyCode::KeyT);
    assert!(app.world().resource::<Talk>().active);
    app.update();
    assert_eq!(demo(&app).elapsed, 0.0);
}

/// `--demo --talk --demo-cycles N`: each time the booth plays the talk through is one round,
/// and the run ends after the Nth (the talk used to hold the booth's own loop, whose rounds
/// were the only ones counted, so such a run never ended).
#[test]
fn the_booth_playing_the_talk_counts_its_rounds_and_ends_after_the_last() {
    use bevy::time::TimeUpdateStrategy;
    use samemath::demo::DemoLoop;
    use std::time::Duration;
    let mut app = talk_app(AppArgs {
        talk: Some(None),
        demo: true,
        demo_pace: 1.0,
        demo_cycles: Some(2),
        ..AppArgs::default()
    });
    app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::from_millis(
        250,
    )));
    let steps = app.world().resource::<Talk>().steps();
    // A step is 1 s, four frames: two rounds take 8 frames a step, give or take one a step.
    let bound = steps * 10 + 10;
    let mut frames = 0;
    while app.should_exit().is_none() && frames < bound {
        app.update();
        frames += 1;
        let (rounds, cycles) = (
            app.world().resource::<Talk>().rounds,
            app.world().resource::<DemoLoop>().cycles,
        );
        if frames < steps * 4 {
            assert_eq!(
                (rounds, cycles),
                (0, 0),
                "a round before the talk was through"
            );
        }
    }
    assert_eq!(
        app.should_exit(),
        Some(AppExit::Success),
        "the run ends after its rounds ({frames} frames, {steps} steps)"
    );
    assert_eq!(app.world().resource::<Talk>().rounds, 2);
    assert_eq!(app.world().resource::<DemoLoop>().cycles, 2);
    assert!(frames >= steps * 8 - 2, "two whole rounds: {frames} frames");
}

/// `--demo` alone: the booth's loop has the screen; a visitor's T, F5, B or arrows do not open,
/// blank or move the talk over it, and the loop plays on.
#[test]
fn under_demo_alone_the_talk_keys_do_nothing() {
    use samemath::demo::DemoLoop;
    let mut app = talk_app(AppArgs {
        demo: true,
        demo_pace: 1.0,
        ..AppArgs::default()
    });
    for key in [
        KeyCode::KeyT,
        KeyCode::F5,
        KeyCode::PageDown,
        KeyCode::KeyB,
        KeyCode::Period,
    ] {
        press(&mut app, key);
        let talk = app.world().resource::<Talk>();
        assert!(!talk.active && !talk.blank, "{key:?}");
        assert_eq!(talk.step, 0, "{key:?}");
    }
    let before = app.world().resource::<DemoLoop>().elapsed;
    std::thread::sleep(std::time::Duration::from_millis(20));
    app.update();
    let d = app.world().resource::<DemoLoop>();
    assert!(d.enabled && d.elapsed > before, "the loop plays on: {d:?}");
}
