//! What the hall sees of the talk: the step's caption in large type along the bottom of the 3D
//! view, the speaker's step counter and clock at its top right (C hides them), a black screen for B; and, when a
//! step file could not be read, why.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::race::Race;
use super::{Talk, TalkPlates, TalkRace, TalkStart, caption_text};
use crate::llm_scene::LlmView;
use crate::shell::{SceneViewport, UiSet};

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<TalkPlates>()
        .add_systems(EguiPrimaryContextPass, talk_overlay.in_set(UiSet::Overlay));
}

fn talk_overlay(
    mut contexts: EguiContexts,
    talk: Res<Talk>,
    start: Res<TalkStart>,
    view: Res<LlmView>,
    viewport: Res<SceneViewport>,
    time: Res<Time>,
    race: Res<TalkRace>,
    mut plates: ResMut<TalkPlates>,
) {
    let Ok(ctx) = contexts.ctx_mut() else {
        return;
    };
    plates.0.clear();
    let mut drawn: Vec<egui::Rect> = Vec::new();
    let screen = ctx.content_rect();
    if let Some(e) = &talk.error
        && (start.open || start.file.is_some())
    {
        egui::Area::new(egui::Id::new("talk_error"))
            .order(egui::Order::Foreground)
            .anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, 48.0))
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.colored_label(crate::shell::theme::ERROR, format!("Talk not loaded: {e}"));
                });
            });
    }
    if !talk.active {
        return;
    }
    let painter = ctx.layer_painter(egui::LayerId::new(
        egui::Order::Tooltip,
        egui::Id::new("talk"),
    ));
    if talk.blank {
        // Above everything, tooltips included: the hall sees black.
        ctx.layer_painter(egui::LayerId::new(
            egui::Order::Debug,
            egui::Id::new("talk_blank"),
        ))
        .rect_filled(screen, 0.0, egui::Color32::BLACK);
        return;
    }
    let Some(step) = talk.current() else {
        return;
    };
    // The caption: large, centred along the bottom of the 3D view, on a dark plate.
    let k = viewport.points_per_pixel;
    let v = viewport.physical;
    let stage = if v.width > 1.0 && v.height > 1.0 {
        egui::Rect::from_min_size(
            egui::pos2(v.x * k, v.y * k),
            egui::vec2(v.width * k, v.height * k),
        )
    } else {
        screen
    };
    if step.side_by_side == Some(true) {
        match &race.0 {
            // The race is the step's picture: it spans the window, over the side panels.
            Some(r) => race_panel(&painter, screen, r),
            None => {
                let note = painter.layout_no_wrap(
                    "side by side: waiting for the local model to load".into(),
                    egui::FontId::proportional(20.0),
                    egui::Color32::from_gray(220),
                );
                let at = egui::pos2(stage.center().x - note.size().x / 2.0, stage.min.y + 48.0);
                painter.galley(at, note, egui::Color32::WHITE);
            }
        }
    }
    let text = caption_text(step, &view);
    let size = (stage.width() / 26.0).clamp(18.0, 34.0);
    let galley = painter.layout(
        text,
        egui::FontId::proportional(size),
        egui::Color32::WHITE,
        stage.width() - 32.0,
    );
    let at = egui::pos2(
        stage.center().x - galley.size().x / 2.0,
        stage.max.y - galley.size().y - 24.0,
    );
    let plate = egui::Rect::from_min_size(at, galley.size()).expand(10.0);
    drawn.push(plate);
    painter.rect_filled(plate, 6.0, egui::Color32::from_rgb(8, 9, 12));
    painter.galley(at, galley, egui::Color32::WHITE);
    if let Some(note) = &talk.note {
        let galley = painter.layout(
            note.clone(),
            egui::FontId::proportional(16.0),
            crate::shell::theme::ERROR,
            stage.width() - 32.0,
        );
        let at = egui::pos2(stage.min.x + 12.0, stage.min.y + 36.0);
        drawn.push(small_plate(&painter, at, galley, 200));
    }
    if talk.show_clock {
        let secs = talk
            .started
            .map_or(0.0, |t0| time.elapsed_secs_f64() - t0)
            .max(0.0) as u64;
        let corner = format!(
            "{} / {}   {:02}:{:02}",
            talk.step + 1,
            talk.steps(),
            secs / 60,
            secs % 60
        );
        let galley = painter.layout_no_wrap(
            corner,
            egui::FontId::monospace(14.0),
            egui::Color32::from_gray(200),
        );
        let at = egui::pos2(stage.max.x - galley.size().x - 12.0, stage.min.y + 8.0);
        drawn.push(small_plate(&painter, at, galley, 160));
    }
    let k = k.max(1e-6);
    plates.0 = drawn
        .iter()
        .map(|r| [r.min.x / k, r.min.y / k, r.width() / k, r.height() / k])
        .collect();
}

/// Text at `at` on a dark plate of `alpha`; the plate's rectangle.
fn small_plate(
    painter: &egui::Painter,
    at: egui::Pos2,
    galley: std::sync::Arc<egui::Galley>,
    alpha: u8,
) -> egui::Rect {
    let plate = egui::Rect::from_min_size(at, galley.size()).expand(4.0);
    painter.rect_filled(plate, 3.0, egui::Color32::from_black_alpha(alpha));
    painter.galley(at, galley, egui::Color32::WHITE);
    plate
}

/// The race: two columns across the top of the stage, the local answer and the remote one, each
/// with its figures (time to first token, tokens per second) and what it is doing now.
fn race_panel(painter: &egui::Painter, stage: egui::Rect, race: &Race) {
    let gap = 16.0;
    let width = ((stage.width() - 3.0 * gap) / 2.0).max(120.0);
    let height = (stage.height() * 0.55).max(120.0);
    let now = race.elapsed_secs();
    for (i, side) in [&race.local, &race.remote].into_iter().enumerate() {
        let min = egui::pos2(
            stage.min.x + gap + i as f32 * (width + gap),
            stage.min.y + 64.0,
        );
        let rect = egui::Rect::from_min_size(min, egui::vec2(width, height));
        painter.rect_filled(rect, 6.0, egui::Color32::from_rgb(8, 9, 12));
        painter.rect_stroke(
            rect,
            6.0,
            egui::Stroke::new(1.0, egui::Color32::from_gray(90)),
            egui::StrokeKind::Inside,
        );
        let inner = rect.shrink(12.0);
        let mut y = inner.min.y;
        let line = |text: String, size: f32, colour: egui::Color32, y: &mut f32| {
            let galley = painter.layout(
                text,
                egui::FontId::proportional(size),
                colour,
                inner.width(),
            );
            if *y + galley.size().y <= inner.max.y {
                let h = galley.size().y;
                painter.galley(egui::pos2(inner.min.x, *y), galley, colour);
                *y += h + 6.0;
            }
        };
        line(
            side.label.clone(),
            22.0,
            crate::shell::theme::ACCENT,
            &mut y,
        );
        line(side.figures(), 20.0, egui::Color32::WHITE, &mut y);
        let (status, failed) = side.state_line(i == 1, now);
        let colour = if failed {
            crate::shell::theme::ERROR
        } else {
            egui::Color32::from_gray(200)
        };
        line(status, 18.0, colour, &mut y);
        line(
            side.text.trim().to_string(),
            18.0,
            egui::Color32::from_gray(230),
            &mut y,
        );
    }
}
