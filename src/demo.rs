//! `--demo`: the unattended booth loop. Scene 1 turning, then scene 2 answering the next prompt
//! of a list, a pause on the answer, then the bridge; round and round. Each prompt starts a
//! fresh session (the views are rebuilt, not appended to), so hours of it keep memory flat.
//! While the talk is open (`--demo --talk`, which plays it unattended) the loop waits; closing
//! the talk hands the screen back to it, from the start of a round.

use bevy::prelude::*;

use crate::graphics::GraphicsSettings;
use crate::llm_scene::panels::counted;
use crate::llm_scene::{EngineStatus, LlmAction, LlmControls, LlmView, run_actions};
use crate::shell::Scene;

/// The prompts the booth cycles through.
pub const DEMO_PROMPTS: [&str; 6] = [
    "Why is the sky blue?",
    "What does a GPU do in a video game?",
    "Explain a matrix in one sentence.",
    "Write a haiku about light.",
    "What is a neural network?",
    "Name three planets.",
];

/// How long each part lasts (seconds), and the answer's length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoTimings {
    pub graphics_secs: f32,
    /// Longest wait for an answer before moving on.
    pub answer_max_secs: f32,
    /// Time to read the answer once it is done.
    pub after_answer_secs: f32,
    pub bridge_secs: f32,
    pub max_tokens: usize,
}

impl Default for DemoTimings {
    fn default() -> Self {
        Self {
            graphics_secs: 15.0,
            answer_max_secs: 60.0,
            after_answer_secs: 8.0,
            bridge_secs: 12.0,
            max_tokens: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DemoStep {
    #[default]
    Graphics,
    Answer,
    Read,
    Bridge,
}

#[derive(Resource, Debug, Clone, Default)]
pub struct DemoLoop {
    pub enabled: bool,
    pub timings: DemoTimings,
    pub step: DemoStep,
    /// Seconds spent in the current step.
    pub elapsed: f32,
    /// Full rounds completed.
    pub cycles: usize,
    /// Answers started.
    pub prompts_run: usize,
    /// Exit after this many rounds (`--demo-cycles`).
    pub stop_after: Option<usize>,
    /// The last answer's length in tokens, and whether it ended early (time limit, or failed).
    pub last_answer: Option<(usize, bool)>,
    /// Another part of the app has the screen (the talk, while it is open: it says so each
    /// frame): the loop waits.
    pub held: bool,
}

impl DemoLoop {
    /// The loop `--demo` asks for: `pace_secs` on each scene, `stop_after` rounds (else forever).
    pub fn enabled(pace_secs: f32, stop_after: Option<usize>) -> Self {
        let pace = if pace_secs.is_finite() {
            pace_secs.clamp(0.0, 3600.0)
        } else {
            12.0
        };
        DemoLoop {
            enabled: true,
            stop_after,
            timings: DemoTimings {
                graphics_secs: pace,
                after_answer_secs: pace * 0.6,
                bridge_secs: pace,
                ..DemoTimings::default()
            },
            ..DemoLoop::default()
        }
    }
}

pub fn plugin(app: &mut App) {
    app.init_resource::<DemoLoop>()
        .add_systems(Update, run_demo.before(run_actions));
}

/// The loop's next move; none while the talk is open (it has the screen: the loop stops an answer
/// of its own under way, and starts its round again once the talk closes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_demo(
    time: Res<Time<Real>>,
    mut demo: ResMut<DemoLoop>,
    scene: Res<State<Scene>>,
    mut next: ResMut<NextState<Scene>>,
    view: Res<LlmView>,
    mut controls: ResMut<LlmControls>,
    mut settings: Option<ResMut<GraphicsSettings>>,
    mut actions: MessageWriter<LlmAction>,
    mut exit: MessageWriter<AppExit>,
) {
    if !demo.enabled {
        return;
    }
    if demo.held {
        if demo.step == DemoStep::Answer {
            actions.write(LlmAction::Stop);
        }
        if demo.step != DemoStep::Graphics || demo.elapsed != 0.0 {
            demo.step = DemoStep::Graphics;
            demo.elapsed = 0.0;
        }
        return;
    }
    demo.elapsed += time.delta_secs();
    let t = demo.timings;
    let (want, elapsed) = (demo.step, demo.elapsed);
    let wanted_scene = match want {
        DemoStep::Graphics => Scene::Graphics,
        DemoStep::Answer | DemoStep::Read => Scene::Llm,
        DemoStep::Bridge => Scene::Bridge,
    };
    if *scene.get() != wanted_scene {
        next.set(wanted_scene);
    }
    let advance = |demo: &mut DemoLoop, to: DemoStep| {
        demo.step = to;
        demo.elapsed = 0.0;
    };
    match want {
        DemoStep::Graphics => {
            if let Some(s) = settings.as_mut()
                && !s.animate
            {
                s.animate = true;
            }
            if elapsed >= t.graphics_secs && view.model.is_some() {
                controls.prompt = DEMO_PROMPTS[demo.prompts_run % DEMO_PROMPTS.len()].into();
                controls.chat = true;
                controls.max_tokens = t.max_tokens;
                actions.write(LlmAction::Generate);
                demo.prompts_run += 1;
                advance(&mut demo, DemoStep::Answer);
            }
        }
        DemoStep::Answer => {
            let done = view.status == EngineStatus::Ready && view.last_stop.is_some();
            let failed = matches!(view.status, EngineStatus::Error(_));
            if done || failed || elapsed >= t.answer_max_secs {
                if !done {
                    actions.write(LlmAction::Stop);
                }
                demo.last_answer = Some((view.generated.len(), !done));
                advance(&mut demo, DemoStep::Read);
            }
        }
        DemoStep::Read => {
            if elapsed >= t.after_answer_secs {
                advance(&mut demo, DemoStep::Bridge);
            }
        }
        DemoStep::Bridge => {
            if elapsed >= t.bridge_secs {
                let answer = match demo.last_answer {
                    Some((n, false)) => format!("the last {}", counted(n, "token")),
                    Some((n, true)) => format!("the last cut at {}", counted(n, "token")),
                    None => "no answer yet".to_string(),
                };
                let played = format!("{} ({answer})", counted(demo.prompts_run, "answer"));
                advance(&mut demo, DemoStep::Graphics);
                round_done(&mut demo, &played, &mut actions, &mut exit);
            }
        }
    }
}

/// A round of the booth is done (its own loop's, or the talk played through under `--demo
/// --talk`): the line a `--demo-cycles` run is read by, and the exit after the last round.
pub(crate) fn round_done(
    demo: &mut DemoLoop,
    played: &str,
    actions: &mut MessageWriter<LlmAction>,
    exit: &mut MessageWriter<AppExit>,
) {
    demo.cycles += 1;
    let rss =
        crate::platform::resident_mb().map_or("unknown".to_string(), |mb| format!("{mb:.1} MB"));
    println!("demo: round {} done, {played}, resident {rss}", demo.cycles);
    if demo.stop_after.is_some_and(|n| demo.cycles >= n) {
        actions.write(LlmAction::Stop);
        exit.write(AppExit::Success);
    }
}
