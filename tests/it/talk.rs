//! Talk mode: every step of the shipped talk applies its state (scene, prompt, settings,
//! selection), the clicker's keys move forward, back, home and end and blank the screen, bad
//! step files give a message naming the line and the field while the app runs on; rendered, each
//! step's frame differs from its neighbours'.

use bevy::prelude::*;
use bevy_egui::egui;
use samemath::cli::AppArgs;
use samemath::graphics::GraphicsSettings;
use samemath::llm_scene::{LlmControls, LlmSelection};
use samemath::shell::Scene;
use samemath::talk::{Animation, SceneName, Talk, file};

use crate::headless::press;

/// The headless app of scene 2's tests, one frame further (the talk's first step applied).
pub(crate) fn talk_app(args: AppArgs) -> App {
    let mut app = crate::llm_scene::headless_app_with(args);
    // The world's middle-of-scene-2 switch (the window's world plugin holds it in the app).
    app.init_resource::<samemath::llm_scene::world::WorldMode>();
    app.world_mut().resource_mut::<Talk>().applied = None;
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

/// The headless talk app with the real model's shape known (no engine: nothing is run), so a
/// step's neuron is checked against it and selected.
fn talk_app_with_model(args: AppArgs) -> App {
    let mut app = talk_app(args);
    give_model(&mut app);
    app
}

/// The view has the real model, as when it has loaded (no engine runs it), one frame on.
pub(crate) fn give_model(app: &mut App) {
    let (m, t) = testkit::model::model();
    let mut view = app
        .world_mut()
        .resource_mut::<samemath::llm_scene::LlmView>();
    view.model = Some(m.clone());
    view.tokenizer = Some(t.clone());
    app.update();
}

/// A step file named `name` (unique among the tests) with `text`, in this run's temp folder.
pub(crate) fn talk_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("samemath-talk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// What the app shows matches `want`, the state the steps up to `i` leave (`Talk::state_at`).
fn assert_state(app: &App, want: &file::TalkStep, i: usize) {
    let n = i + 1;
    if let Some(s) = want.scene {
        let scene = match s {
            SceneName::Graphics => Scene::Graphics,
            SceneName::Llm => Scene::Llm,
            SceneName::Bridge => Scene::Bridge,
        };
        assert_eq!(
            *app.world().resource::<State<Scene>>().get(),
            scene,
            "step {n}"
        );
    }
    if let Some(v) = &want.view {
        let mode = app
            .world()
            .resource::<samemath::llm_scene::world::WorldMode>();
        assert_eq!(mode.world, v != "panels", "step {n}: view {v}");
    }
    if let Some(p) = &want.prompt {
        assert_eq!(&app.world().resource::<LlmControls>().prompt, p, "step {n}");
    }
    if let Some(raw) = want.raw {
        assert_eq!(app.world().resource::<LlmControls>().chat, !raw, "step {n}");
    }
    let settings = app.world().resource::<GraphicsSettings>();
    let m = &settings.model;
    let animated = want.animation;
    // The animated value moves; the rest of each triple is the step's.
    let mut translation = want.translation.unwrap();
    let mut scale = want.scale.unwrap();
    let mut rotation = want.rotation_deg.unwrap();
    let mut light = want.light.unwrap();
    match animated {
        Some(Animation::SweepTx) => translation[0] = m.translation[0],
        Some(Animation::PulseSy) => scale[1] = m.scale[1],
        Some(Animation::TurnThetaX) => rotation[0] = m.rotation_deg[0],
        Some(Animation::CircleLight) => light[0] = settings.lighting.azimuth_deg,
        _ => {}
    }
    assert_eq!(m.translation, translation, "step {n}");
    assert_eq!(m.scale, scale, "step {n}");
    assert_eq!(m.rotation_deg, rotation, "step {n}");
    let l = &settings.lighting;
    assert_eq!([l.azimuth_deg, l.elevation_deg], light, "step {n}");
    if let Some(v) = want.vertex {
        assert_eq!(settings.selected_vertex, Some(v), "step {n}");
    }
    if let Some(t) = want.surface_point {
        assert_eq!(
            settings.surface_pick.map(|p| p.triangle),
            Some(t),
            "step {n}"
        );
    }
    if let Some(nr) = want.neuron {
        assert_eq!(
            app.world().resource::<LlmSelection>().neuron,
            Some(nr),
            "step {n}"
        );
    }
    let picked = app.world().resource::<samemath::graphics::Highlight>();
    assert_eq!(picked.term, want.highlight, "step {n}");
}

#[test]
fn every_step_of_the_shipped_talk_applies_its_state() {
    let talk = shipped();
    assert!(talk.steps.len() >= 12, "{} steps", talk.steps.len());
    // The first step names the whole of scene 1's state, so every step's is known.
    let first = &talk.steps[0];
    assert!(first.translation.is_some() && first.scale.is_some());
    assert!(first.rotation_deg.is_some() && first.light.is_some());
    let mut app = talk_app_with_model(AppArgs {
        talk: Some(None),
        ..AppArgs::default()
    });
    assert!(app.world().resource::<Talk>().active);
    let states: Vec<file::TalkStep> = (0..talk.steps.len())
        .map(|i| app.world().resource::<Talk>().state_at(i).unwrap())
        .collect();
    for (i, want) in states.iter().enumerate() {
        let t = app.world().resource::<Talk>();
        assert_eq!(t.step, i);
        assert_eq!(t.applied, Some(i), "step {} not applied", i + 1);
        assert_eq!(t.note, None, "step {}", i + 1);
        assert_state(&app, want, i);
        // A few frames in, the animation has moved its value (and only it).
        for _ in 0..3 {
            app.update();
        }
        assert_state(&app, want, i);
        press(&mut app, KeyCode::PageDown);
    }
    // Past the end it stays on the last step.
    assert_eq!(app.world().resource::<Talk>().step, talk.steps.len() - 1);
    // Walking back, and jumping, give each step the state walking forward gave it.
    for i in (0..talk.steps.len() - 1).rev() {
        press(&mut app, KeyCode::PageUp);
        assert_state(&app, &states[i], i);
    }
    press(&mut app, KeyCode::End);
    assert_state(&app, &states[talk.steps.len() - 1], talk.steps.len() - 1);
    press(&mut app, KeyCode::Home);
    assert_state(&app, &states[0], 0);
}

/// Nothing the speaker typed is lost: a question typed into the prompt box stays through every
/// step, those that name a prompt of their own included (the tokenizer's, the race's); an emptied
/// box takes each step's prompt again, as walking to it leaves it.
#[test]
fn a_typed_prompt_stays_through_every_step_and_an_empty_box_takes_the_steps() {
    let talk = shipped();
    let own: Vec<usize> = (0..talk.steps.len())
        .filter(|&i| talk.steps[i].prompt.is_some())
        .collect();
    assert!(own.len() >= 2, "the talk's prompts: {own:?}");
    let mut app = talk_app_with_model(AppArgs {
        talk: Some(None),
        ..AppArgs::default()
    });
    let prompt = |app: &App| app.world().resource::<LlmControls>().prompt.clone();
    let set = |app: &mut App, text: &str| {
        app.world_mut().resource_mut::<LlmControls>().prompt = text.into();
    };
    // Typed before the first step with a prompt: kept there, and at every step after it.
    let typed = "Why do GPUs like matrices?";
    set(&mut app, typed);
    for i in 1..talk.steps.len() {
        press(&mut app, KeyCode::PageDown);
        assert_eq!(app.world().resource::<Talk>().step, i);
        assert_eq!(prompt(&app), typed, "step {}", i + 1);
    }
    // And back: still the speaker's.
    press(&mut app, KeyCode::Home);
    press(&mut app, KeyCode::End);
    assert_eq!(prompt(&app), typed);
    // Emptied: each step's prompt again, its own or the one an earlier step left.
    set(&mut app, "");
    press(&mut app, KeyCode::Home);
    for i in 1..talk.steps.len() {
        press(&mut app, KeyCode::PageDown);
        let want = app.world().resource::<Talk>().state_at(i).unwrap().prompt;
        if i >= own[0] {
            assert_eq!(Some(prompt(&app)), want, "step {}", i + 1);
        }
    }
    for i in (own[0]..talk.steps.len() - 1).rev() {
        press(&mut app, KeyCode::PageUp);
        let want = app.world().resource::<Talk>().state_at(i).unwrap().prompt;
        assert_eq!(Some(prompt(&app)), want, "back at step {}", i + 1);
    }
}

#[test]
fn an_animation_lets_go_when_the_speaker_moves_its_value() {
    let talk = shipped();
    let at = talk
        .steps
        .iter()
        .position(|s| s.animation == Some(Animation::SweepTx))
        .expect("a t_x sweep");
    let mut app = talk_app(AppArgs {
        talk: Some(None),
        talk_step: Some(at + 1),
        ..AppArgs::default()
    });
    app.insert_resource(bevy::time::TimeUpdateStrategy::ManualDuration(
        std::time::Duration::from_millis(100),
    ));
    let tx = |app: &App| app.world().resource::<GraphicsSettings>().model.translation[0];
    app.update();
    let (a, b) = (tx(&app), {
        app.update();
        tx(&app)
    });
    assert_ne!(a, b, "the sweep moves t_x");
    // The speaker drags t_x to 0.25: the sweep stops and the value stays where it was put.
    app.world_mut()
        .resource_mut::<GraphicsSettings>()
        .model
        .translation[0] = 0.25;
    for _ in 0..5 {
        app.update();
    }
    assert_eq!(tx(&app), 0.25);
    assert!(app.world().resource::<Talk>().animation_held);
    // The next step, and back: the sweep plays again.
    press(&mut app, KeyCode::PageDown);
    press(&mut app, KeyCode::PageUp);
    app.update();
    let c = tx(&app);
    app.update();
    assert_ne!(c, tx(&app));
}

#[test]
fn a_step_naming_a_neuron_this_model_lacks_says_so() {
    let text = "(title: \"t\", steps: [(caption: \"x\", scene: Some(llm), neuron: Some((3, 99999))),\n (caption: \"y\", neuron: Some((2, 7)))])";
    let mut app = talk_app_with_model(AppArgs {
        talk: Some(Some(talk_file("neuron.ron", text))),
        ..AppArgs::default()
    });
    let note = app.world().resource::<Talk>().note.clone().expect("a note");
    assert!(
        note.contains("(3, 99999)") && note.contains("1536"),
        "{note}"
    );
    assert_eq!(app.world().resource::<LlmSelection>().neuron, None);
    // The panels draw with no selection; the next step's neuron is selected.
    press(&mut app, KeyCode::PageDown);
    assert_eq!(app.world().resource::<Talk>().note, None);
    assert_eq!(app.world().resource::<LlmSelection>().neuron, Some((2, 7)));
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
    // A clicker's slideshow button: F5 and Esc in turn. F5 with the talk open keeps the step;
    // Esc closes it, F5 opens it where it was.
    press(&mut app, KeyCode::PageDown);
    press(&mut app, KeyCode::PageDown);
    press(&mut app, KeyCode::F5);
    assert_eq!(
        step(&app),
        2,
        "F5 does not throw the speaker back to the start"
    );
    press(&mut app, KeyCode::Escape);
    assert!(!app.world().resource::<Talk>().active);
    press(&mut app, KeyCode::F5);
    assert!(app.world().resource::<Talk>().active, "F5 opens it");
    assert_eq!(step(&app), 2);
    // While the model generates, Esc in scene 2 is the scene's Stop (its button says so), not
    // the talk's close; in another scene, where nothing else takes Esc, it closes the talk.
    let generating = |app: &mut App| {
        app.world_mut()
            .resource_mut::<samemath::llm_scene::LlmView>()
            .status = samemath::llm_scene::EngineStatus::Generating;
    };
    for _ in 2..6 {
        press(&mut app, KeyCode::PageDown);
    }
    assert_eq!(*app.world().resource::<State<Scene>>().get(), Scene::Llm);
    generating(&mut app);
    press(&mut app, KeyCode::Escape);
    assert!(
        app.world().resource::<Talk>().active,
        "Esc stops, in scene 2"
    );
    press(&mut app, KeyCode::Home);
    assert_eq!(
        *app.world().resource::<State<Scene>>().get(),
        Scene::Graphics
    );
    generating(&mut app);
    press(&mut app, KeyCode::Escape);
    assert!(
        !app.world().resource::<Talk>().active,
        "Esc closes, in scene 1"
    );
}

#[test]
fn while_a_field_is_typed_into_only_the_clickers_page_keys_move_the_talk() {
    use samemath::shell::KeyboardFocus;
    let mut app = talk_app(AppArgs {
        talk: Some(None),
        ..AppArgs::default()
    });
    let step = |app: &App| app.world().resource::<Talk>().step;
    let typing = |app: &mut App| {
        app.world_mut().insert_resource(KeyboardFocus {
            typing: true,
            release: false,
        })
    };
    typing(&mut app);
    // Typed into the prompt box: Space, arrows, B, T, digits are the field's.
    for key in [
        KeyCode::Space,
        KeyCode::ArrowRight,
        KeyCode::KeyB,
        KeyCode::KeyT,
        KeyCode::Digit2,
    ] {
        press(&mut app, key);
    }
    assert_eq!(step(&app), 0);
    let talk = app.world().resource::<Talk>();
    assert!(talk.active && !talk.blank);
    assert_eq!(
        *app.world().resource::<State<Scene>>().get(),
        Scene::Graphics,
        "2 typed into the field does not switch scenes"
    );
    // The clicker's PageDown: the talk moves on, and the field is asked to let go.
    press(&mut app, KeyCode::PageDown);
    assert_eq!(step(&app), 1);
    let focus = *app.world().resource::<KeyboardFocus>();
    assert!(focus.release && !focus.typing, "{focus:?}");
    typing(&mut app);
    press(&mut app, KeyCode::PageUp);
    assert_eq!(step(&app), 0);
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

/// One egui pass of 800x450 points (a 1280x720 projector at the large UI's zoom): a prompt box
/// and a Generate button, then what `over` draws (the talk's overlay) above them. Whether
/// Generate was clicked, and the box's and the button's rectangles.
fn stage_pass(
    ctx: &egui::Context,
    events: Vec<egui::Event>,
    over: &dyn Fn(&egui::Context),
) -> (bool, egui::Rect, egui::Rect) {
    let input = egui::RawInput {
        screen_rect: Some(stage_screen()),
        events,
        ..Default::default()
    };
    let mut text = String::from("Why is the sky blue?");
    let mut seen = (false, egui::Rect::NOTHING, egui::Rect::NOTHING);
    let mut out = ctx.run_ui(input, |ui| {
        // Below the top of the race's columns, as the left panel's prompt box is.
        ui.add_space(120.0);
        seen.1 = ui
            .add(egui::TextEdit::multiline(&mut text).id(egui::Id::new("prompt")))
            .rect;
        let generate = ui.button("Generate");
        seen.0 = generate.clicked();
        seen.2 = generate.rect;
        over(ui.ctx());
    });
    // No painter here: the font atlas's upload is dropped on purpose.
    out.textures_delta.clear();
    seen
}

fn stage_screen() -> egui::Rect {
    egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(800.0, 450.0))
}

/// A click at `at` (move, press, release, a pass after); whether it clicked Generate.
fn click_at(ctx: &egui::Context, at: egui::Pos2, over: &dyn Fn(&egui::Context)) -> bool {
    let button = |pressed| egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    };
    [
        vec![egui::Event::PointerMoved(at)],
        vec![button(true)],
        vec![button(false)],
        vec![],
    ]
    .into_iter()
    .fold(false, |clicked, events| {
        stage_pass(ctx, events, over).0 | clicked
    })
}

/// The black screen (B) and the race's columns take the pointer: a click on them neither focuses
/// the prompt box beneath (where Space, the arrows and B would then type instead of driving the
/// talk) nor presses Generate; with nothing over them, the same clicks do both.
#[test]
fn the_blank_screen_and_the_race_take_the_pointer() {
    use samemath::talk::Side;
    use samemath::talk::overlay::{blank_screen, race_panel};
    let side = |label: &str| Side {
        label: label.into(),
        text: "The sky looks blue because air scatters blue light most.".into(),
        tokens: 12,
        first_token_secs: Some(0.4),
        last_token_secs: Some(1.9),
        finished: true,
        ..Side::default()
    };
    let (local, remote) = (side("this machine (CPU)"), side("remote: run.app"));
    let screen = stage_screen();
    let overs: [(&str, Box<dyn Fn(&egui::Context)>); 3] = [
        ("nothing", Box::new(|_| {})),
        (
            "the blank screen",
            Box::new(move |ctx| blank_screen(ctx, screen)),
        ),
        (
            "the race",
            Box::new(move |ctx| race_panel(ctx, screen, [&local, &remote], 2.0)),
        ),
    ];
    for (name, over) in overs {
        let ctx = egui::Context::default();
        let (_, prompt_box, generate) = stage_pass(&ctx, vec![], &*over);
        stage_pass(&ctx, vec![], &*over);
        let pressed = click_at(&ctx, generate.center(), &*over);
        click_at(&ctx, prompt_box.center(), &*over);
        let focused = ctx.memory(|m| m.has_focus(egui::Id::new("prompt")));
        let open = name == "nothing";
        assert_eq!(pressed, open, "{name}: Generate clicked through it");
        assert_eq!(focused, open, "{name}: the prompt box focused through it");
    }
}

/// A GPU step where the GPU backend could not start (WebGL2, a machine without a usable GPU)
/// says so under its caption, which describes kernels that are not running; once the GPU runs,
/// the caption is the file's.
#[test]
fn a_gpu_step_without_the_gpu_backend_says_the_cpu_runs_it() {
    use samemath::llm_scene::{Backend, LlmView};
    use samemath::talk::{BackendName, caption_text};
    use samemath::worker::Event;
    let step = file::TalkStep {
        caption: "The columns are now the kernel's own buffer".into(),
        backend: Some(BackendName::Gpu),
        ..file::TalkStep::default()
    };
    let mut view = LlmView::default();
    assert_eq!(caption_text(&step, &view), step.caption);
    view.apply(Event::GpuFailed(
        "no adapter with compute shaders; the CPU backend runs instead".into(),
    ));
    // The Step after it (the talk's) takes the status over: the note stays with the caption.
    view.apply(Event::prompt(vec![], vec![]));
    let text = caption_text(&step, &view);
    assert!(
        text.starts_with(&step.caption) && text.contains("No GPU backend here: no adapter"),
        "{text}"
    );
    assert!(text.contains("The model runs on the CPU"), "{text}");
    // A CPU step says nothing of it.
    let cpu = file::TalkStep {
        backend: Some(BackendName::Cpu),
        ..step.clone()
    };
    assert_eq!(caption_text(&cpu, &view), cpu.caption);
    view.backend = Backend::Gpu {
        adapter: "a GPU".into(),
        shared_with_renderer: true,
        same_device: None,
        activations: None,
    };
    assert_eq!(caption_text(&step, &view), step.caption);
}

/// A caption bounded on a projector: `{tokens}` of a 400-token prompt of 64-character pieces
/// shows its first tokens and how many more; the caption drawn (this one, or any length) keeps
/// to its share of the stage's height, within the stage, its last row cut; a short one is whole
/// along the stage's bottom.
#[test]
fn a_long_caption_and_a_long_prompt_stay_within_the_stage() {
    use samemath::llm_scene::LlmView;
    use samemath::talk::overlay::{CAPTION_SHARE, caption_layout};
    use samemath::talk::{CAPTION_PIECE_CHARS, CAPTION_TOKENS, caption_text};
    let view = LlmView {
        prompt_tokens: (0..400)
            .map(|i| llm::TokenInfo {
                id: i,
                piece: format!(" {}", "w".repeat(63)),
            })
            .collect(),
        ..LlmView::default()
    };
    let step = file::TalkStep {
        caption: "An audience's question\nSmolLM2 splits it into tokens: {tokens}".into(),
        ..file::TalkStep::default()
    };
    let text = caption_text(&step, &view);
    let more = format!("\u{2026} and {} more", 400 - CAPTION_TOKENS);
    assert!(text.ends_with(&more), "{text}");
    assert_eq!(text.matches(" | ").count(), CAPTION_TOKENS - 1, "{text}");
    assert!(
        text.chars().count() < 80 + CAPTION_TOKENS * (CAPTION_PIECE_CHARS + 4),
        "{} characters",
        text.chars().count()
    );
    let ctx = egui::Context::default();
    ctx.begin_pass(egui::RawInput {
        screen_rect: Some(stage_screen()),
        ..Default::default()
    });
    let painter = ctx.layer_painter(egui::LayerId::background());
    // The 3D view between scene 2's panels, below the top bar.
    let stage = egui::Rect::from_min_max(egui::pos2(230.0, 36.0), egui::pos2(570.0, 450.0));
    for long in [text, "word ".repeat(400)] {
        let (at, galley) = caption_layout(&painter, stage, long.clone());
        let plate = egui::Rect::from_min_size(at, galley.size()).expand(10.0);
        assert!(
            plate.height() <= stage.height() * CAPTION_SHARE + 0.5,
            "{} of {} points",
            plate.height(),
            stage.height()
        );
        assert!(stage.contains_rect(plate), "{plate:?} out of {stage:?}");
        let last = galley.rows.last().unwrap().text();
        assert!(galley.elided && last.ends_with('\u{2026}'), "{last:?}");
        assert!(galley.rows.len() >= 2);
    }
    let short = "Scaling is another one: v' = S\u{b7}v";
    let (at, galley) = caption_layout(&painter, stage, short.into());
    assert_eq!(galley.text(), short);
    assert!(stage.contains_rect(egui::Rect::from_min_size(at, galley.size())));
    assert!(at.y > stage.center().y, "along the bottom: {at:?}");
    ctx.end_pass().textures_delta.clear();
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
    assert!(
        e.contains("kitchen") && e.contains("line 1") && e.contains("field `scene`"),
        "{e}"
    );
    // A value of the wrong type names its field and line too.
    let bad_type =
        "(title: \"t\", steps: [\n (caption: \"x\",\n  scale: Some((1.0, \"big\", 1.0)))])";
    let e = file::parse(bad_type, "type.ron").unwrap_err();
    assert!(e.contains("line 3") && e.contains("field `scale`"), "{e}");
    // A number out of range, found after parsing: its step, field and line.
    let far = "(title: \"t\", steps: [\n (caption: \"x\"),\n (caption: \"y\",\n  light: Some((1e9, 0.0)))])";
    let e = file::parse(far, "far.ron").unwrap_err();
    assert!(
        e.contains("line 4") && e.contains("step 2") && e.contains("field `light`"),
        "{e}"
    );
    let bad_view = "(title: \"t\", steps: [(caption: \"x\", view: Some(\"sideways\"))])";
    let e = file::parse(bad_view, "view.ron").unwrap_err();
    assert!(e.contains("step 1") && e.contains("field `view`"), "{e}");
    let long = "(title: \"t\", steps: [(caption: \"a\\nb\\nc\\nd\")])";
    assert!(
        file::parse(long, "long.ron")
            .unwrap_err()
            .contains("4 lines")
    );
    // One line of 400 characters is no shorter on the screen than many: its length is bounded.
    let wide = |n: usize| {
        format!(
            "(title: \"t\", steps: [(caption: \"short\\n{}\")])",
            "x".repeat(n)
        )
    };
    let e = file::parse(&wide(400), "wide.ron").unwrap_err();
    assert!(
        e.contains("step 1")
            && e.contains("field `caption`")
            && e.contains("line 2 of the caption is 400 characters"),
        "{e}"
    );
    assert!(file::parse(&wide(file::MAX_CAPTION_LINE_CHARS), "fits.ron").is_ok());
    assert!(file::parse("(title: \"t\", steps: [])", "empty.ron").is_err());
    let bad_term = "(title: \"t\", steps: [(caption: \"x\",\n highlight: Some(teapot))])";
    let e = file::parse(bad_term, "term.ron").unwrap_err();
    assert!(e.contains("teapot") && e.contains("line 2"), "{e}");
    let bad_url = "(title: \"t\", steps: [(caption: \"x\", remote: Some(\"ftp://x\"))])";
    let e = file::parse(bad_url, "url.ron").unwrap_err();
    assert!(e.contains("step 1") && e.contains("remote"), "{e}");
    // Through the app: a missing file, an unknown field and a bad value each give their
    // message, and the app runs on without the talk.
    let dir = std::env::temp_dir().join(format!("samemath-badtalk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        (dir.join("missing.ron"), None, "missing.ron"),
        (dir.join("unknown.ron"), Some(unknown), "captoin"),
        (dir.join("value.ron"), Some(bad_value), "field `scene`"),
    ];
    for (path, text, says) in files {
        if let Some(text) = text {
            std::fs::write(&path, text).unwrap();
        }
        let mut app = talk_app(AppArgs {
            talk: Some(Some(path.clone())),
            ..AppArgs::default()
        });
        let t = app.world().resource::<Talk>();
        assert!(!t.active);
        let e = t.error.clone().unwrap();
        assert!(
            e.contains(&*path.to_string_lossy()) && e.contains(says),
            "{e}"
        );
        press(&mut app, KeyCode::Digit2);
        assert_eq!(*app.world().resource::<State<Scene>>().get(), Scene::Llm);
        press(&mut app, KeyCode::KeyT);
        assert!(!app.world().resource::<Talk>().active, "no talk to open");
    }
}

#[test]
fn each_step_renders_and_differs_from_its_neighbours() {
    let talk = shipped();
    // Each frame without the talk's own plates (caption, counter): what differs is the app.
    let mut previous: Option<(image::RgbImage, Vec<[f32; 4]>)> = None;
    for i in 0..talk.steps.len() {
        let n = (i + 1).to_string();
        let shot = crate::render::render_at(
            &format!("talk_{n:0>2}"),
            "1280x720",
            serde_json::json!({}),
            &["--talk", "--talk-step", &n, "--large-ui", "--steps", "1"],
        );
        assert_eq!(shot.meta["talk"]["step"], i + 1);
        // The step that puts the model on the GPU draws the world from the kernel's buffer.
        let state = talk
            .steps
            .iter()
            .take(i + 1)
            .fold(file::TalkStep::default(), |s, step| s.then(step));
        if state.backend == Some(samemath::talk::BackendName::Gpu)
            && state.scene == Some(SceneName::Llm)
        {
            let llm = &shot.meta["llm"];
            assert_eq!(llm["backend"]["kind"], "gpu", "step {n}: {}", shot.stderr);
            assert_eq!(llm["world"]["values_path"], "kernel buffer", "step {n}");
        }
        let plates: Vec<[f32; 4]> =
            serde_json::from_value(shot.meta["talk"]["plates"].clone()).unwrap();
        assert!(!plates.is_empty(), "step {n}: no caption drawn");
        let img = shot.image;
        let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert!(colours.len() > 50, "step {n}: {} colours", colours.len());
        if let Some((prev, prev_plates)) = &previous {
            let covered = |x: u32, y: u32| {
                plates.iter().chain(prev_plates).any(|r| {
                    let (x, y) = (x as f32, y as f32);
                    x >= r[0] - 1.0
                        && y >= r[1] - 1.0
                        && x <= r[0] + r[2] + 1.0
                        && y <= r[1] + r[3] + 1.0
                })
            };
            let (mut differing, mut seen) = (0usize, 0usize);
            for (x, y, a) in img.enumerate_pixels() {
                if covered(x, y) {
                    continue;
                }
                seen += 1;
                differing += usize::from(a.0 != prev.get_pixel(x, y).0);
            }
            let share = differing as f32 / seen.max(1) as f32;
            println!(
                "talk step {n}: {:.1}% of the pixels outside the captions differ from step {i}",
                share * 100.0
            );
            assert!(share > 0.005, "step {n} looks like step {i}");
        }
        previous = Some((img, plates));
    }
}
