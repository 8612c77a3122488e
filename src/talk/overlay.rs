//! What the hall sees of the talk: the step's caption in large type along the bottom of the 3D
//! view (at most `CAPTION_SHARE` of its height), the speaker's step counter and clock at its top
//! right (C hides them), a black screen for B; and, when a step file could not be read, why. The
//! black screen and the race's columns take the pointer: a click on them reaches no widget (the
//! prompt box, Reset, Generate) and no scene beneath.

use bevy::prelude::*;
use bevy_egui::{EguiContexts, EguiPrimaryContextPass, egui};

use super::{Side, Talk, TalkPlates, TalkRace, TalkStart, caption_text};
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
        blank_screen(ctx, screen);
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
            Some(r) => race_panel(ctx, screen, [&r.local, &r.remote], r.elapsed_secs()),
            None => {
                let why = match &view.status {
                    crate::llm_scene::EngineStatus::Loading(s) => {
                        format!("side by side: waiting for the local model ({s})")
                    }
                    _ => "side by side: waiting for the local model to load".into(),
                };
                let note = painter.layout_no_wrap(
                    why,
                    egui::FontId::proportional(20.0),
                    egui::Color32::from_gray(220),
                );
                let at = egui::pos2(stage.center().x - note.size().x / 2.0, stage.min.y + 48.0);
                painter.galley(at, note, egui::Color32::WHITE);
            }
        }
    }
    let (at, galley) = caption_layout(&painter, stage, caption_text(step, &view));
    let plate = egui::Rect::from_min_size(at, galley.size()).expand(CAPTION_PAD);
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

/// The most of the stage's height the caption's plate takes; rows past it are elided.
pub const CAPTION_SHARE: f32 = 0.4;
/// The caption's plate around its text.
const CAPTION_PAD: f32 = 10.0;

/// The caption laid out for `stage`: large type, centred along its bottom, wrapped to its width
/// and cut (its last row ending in "…") to the rows that fit in `CAPTION_SHARE` of its height,
/// so however long a caption (or a prompt's `{tokens}`) it never covers the scene or, above the
/// stage, the top bar. Its top-left corner and its galley.
pub fn caption_layout(
    painter: &egui::Painter,
    stage: egui::Rect,
    text: String,
) -> (egui::Pos2, std::sync::Arc<egui::Galley>) {
    let font = egui::FontId::proportional((stage.width() / 26.0).clamp(18.0, 34.0));
    let room = stage.height() * CAPTION_SHARE - 2.0 * CAPTION_PAD;
    let row = painter.fonts_mut(|f| f.row_height(&font)).max(1.0);
    let mut rows = ((room / row).floor() as usize).max(1);
    let width = (stage.width() - 32.0).max(row);
    let galley = loop {
        let mut job =
            egui::text::LayoutJob::simple(text.clone(), font.clone(), egui::Color32::WHITE, width);
        job.wrap.max_rows = rows;
        let galley = painter.layout_job(job);
        if galley.size().y <= room || rows == 1 {
            break galley;
        }
        rows -= 1;
    };
    let at = egui::pos2(
        stage.center().x - galley.size().x / 2.0,
        (stage.max.y - galley.size().y - 24.0).max(stage.min.y + CAPTION_PAD),
    );
    (at, galley)
}

/// A part of the overlay that takes the pointer: an area of `order` over `rect` that senses
/// clicks and drags, so no widget under it (the prompt box, a button) and no scene gets them.
/// What it shows is painted with the painter returned, on the area's own layer (not through the
/// area's first, invisible sizing pass).
fn cover(ctx: &egui::Context, id: egui::Id, order: egui::Order, rect: egui::Rect) -> egui::Painter {
    let shown = egui::Area::new(id)
        .order(order)
        .fixed_pos(rect.min)
        .constrain(false)
        .interactable(true)
        .sense(egui::Sense::click_and_drag())
        .show(ctx, |ui| {
            ui.set_min_size(rect.size());
            ui.interact(rect, id.with("cover"), egui::Sense::click_and_drag());
        });
    ctx.layer_painter(shown.response.layer_id)
}

/// B: the whole window black, above everything (tooltips included), and taking every click.
pub fn blank_screen(ctx: &egui::Context, screen: egui::Rect) {
    cover(ctx, egui::Id::new("talk_blank"), egui::Order::Debug, screen).rect_filled(
        screen,
        0.0,
        egui::Color32::BLACK,
    );
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

/// The race: two columns across the top of `stage` (the window: they cover the side panels), the
/// local answer and the remote one, each with its figures (time to first token, tokens per
/// second) and what it is doing now (`now`: seconds since the race began). Each column takes the
/// pointer, so a click on it does not reach the prompt box or a button under it.
pub fn race_panel(ctx: &egui::Context, stage: egui::Rect, sides: [&Side; 2], now: f32) {
    let id = egui::Id::new("talk_race");
    let layout = ctx.layer_painter(egui::LayerId::new(egui::Order::Tooltip, id));
    for (i, column) in race_layout(&layout, stage, sides, now)
        .into_iter()
        .enumerate()
    {
        let painter = cover(ctx, id.with(i), egui::Order::Tooltip, column.rect);
        painter.rect_filled(column.rect, 6.0, egui::Color32::from_rgb(8, 9, 12));
        painter.rect_stroke(
            column.rect,
            6.0,
            egui::Stroke::new(1.0, egui::Color32::from_gray(90)),
            egui::StrokeKind::Inside,
        );
        // The layout keeps within the column; the clip makes sure a glyph's overhang does too.
        let inside = painter.with_clip_rect(column.inner);
        for (at, galley) in column.texts {
            inside.galley(at, galley, egui::Color32::WHITE);
        }
    }
}

/// Rows a heading line (the label, the figures, the status) may take before it is elided.
const HEADING_ROWS: usize = 2;
/// Space between the blocks of a column.
const GAP: f32 = 6.0;

/// One column of the race as laid out: its frame, the rectangle its text keeps to, and the text.
struct RaceColumn {
    rect: egui::Rect,
    inner: egui::Rect,
    /// Each block's top-left corner and its galley, top to bottom; the answer is the last.
    texts: Vec<(egui::Pos2, std::sync::Arc<egui::Galley>)>,
}

/// The race's two columns within `stage`: the label, the figures and the status (each at most
/// two rows), then the answer in the room left, always at least one row of it. An answer longer
/// than its room shows its newest rows after an ellipsis (it grows at its end, and on a
/// projector with the large UI a 32-token answer does not fit whole beside a long URL).
fn race_layout(
    painter: &egui::Painter,
    stage: egui::Rect,
    sides: [&Side; 2],
    now: f32,
) -> Vec<RaceColumn> {
    let gap = 16.0;
    let width = ((stage.width() - 3.0 * gap) / 2.0).max(120.0);
    let height = (stage.height() * 0.55).max(120.0);
    let mut columns = Vec::with_capacity(2);
    for (i, side) in sides.into_iter().enumerate() {
        let min = egui::pos2(
            stage.min.x + gap + i as f32 * (width + gap),
            stage.min.y + 64.0,
        );
        let rect = egui::Rect::from_min_size(min, egui::vec2(width, height));
        let inner = rect.shrink(12.0);
        let (status, failed) = side.state_line(i == 1, now);
        let status_colour = if failed {
            crate::shell::theme::ERROR
        } else {
            egui::Color32::from_gray(200)
        };
        let answer = side.text.trim();
        let answer_font = egui::FontId::proportional(18.0);
        // Room kept for a row of the answer, so the lines above never push it off.
        let reserve = if answer.is_empty() {
            0.0
        } else {
            painter.fonts_mut(|f| f.row_height(&answer_font)) + GAP
        };
        let mut texts = Vec::new();
        let mut y = inner.min.y;
        let headings = [
            (side.label.clone(), 22.0, crate::shell::theme::ACCENT),
            (side.figures(), 20.0, egui::Color32::WHITE),
            (status, 18.0, status_colour),
        ];
        for (text, size, colour) in headings {
            let mut job = egui::text::LayoutJob::simple(
                text,
                egui::FontId::proportional(size),
                colour,
                inner.width(),
            );
            job.wrap.max_rows = HEADING_ROWS;
            let galley = painter.layout_job(job);
            let h = galley.size().y;
            if y + h <= inner.max.y - reserve {
                texts.push((egui::pos2(inner.min.x, y), galley));
                y += h + GAP;
            }
        }
        let colour = egui::Color32::from_gray(230);
        if let Some(galley) = newest_rows(
            painter,
            answer,
            answer_font,
            colour,
            inner.width(),
            inner.max.y - y,
        ) {
            texts.push((egui::pos2(inner.min.x, y), galley));
        }
        columns.push(RaceColumn { rect, inner, texts });
    }
    columns
}

/// `text` wrapped to `width` within `height`: all of it, or its newest rows after an ellipsis;
/// `None` when there is no text or not even one row fits.
fn newest_rows(
    painter: &egui::Painter,
    text: &str,
    font: egui::FontId,
    colour: egui::Color32,
    width: f32,
    height: f32,
) -> Option<std::sync::Arc<egui::Galley>> {
    if text.is_empty() || height <= 0.0 {
        return None;
    }
    let full = painter.layout(text.to_string(), font.clone(), colour, width);
    if full.size().y <= height {
        return Some(full);
    }
    let bottom = full.rows.last()?.max_y();
    // From the first row after which the rest fits, one row more each time the ellipsis (which
    // may wrap a row anew) makes it too tall.
    let first = full
        .rows
        .iter()
        .position(|r| bottom - r.min_y() <= height)?;
    for skip_rows in first.max(1)..full.rows.len() {
        let skip: usize = full.rows[..skip_rows]
            .iter()
            .map(|r| r.char_count_including_newline().0)
            .sum();
        let tail: String = text.chars().skip(skip).collect();
        let galley = painter.layout(
            format!("\u{2026}{}", tail.trim_start()),
            font.clone(),
            colour,
            width,
        );
        if galley.size().y <= height {
            return Some(galley);
        }
    }
    // Not even the last row after an ellipsis: that row, its end elided.
    let last: String = full.rows.last()?.text();
    let mut job = egui::text::LayoutJob::simple(format!("\u{2026}{last}"), font, colour, width);
    job.wrap.max_rows = 1;
    job.wrap.break_anywhere = true;
    let galley = painter.layout_job(job);
    (galley.size().y <= height).then_some(galley)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::talk::Side;

    /// The race at 1280x720 with the large UI (zoom 1.6: 800x450 points), a Cloud Run URL that
    /// wraps, both sides' figures and a 150-character answer: the answer is drawn in the room
    /// left, its newest part, within its column.
    #[test]
    fn a_long_answer_beside_a_long_url_shows_its_newest_rows_on_a_projector() {
        let ctx = egui::Context::default();
        ctx.set_zoom_factor(1.6);
        let input = || egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(800.0, 450.0),
            )),
            ..Default::default()
        };
        ctx.begin_pass(input());
        ctx.end_pass().textures_delta.clear();
        let url = "https://samemath-serve-7x2kq4hz3ab-ew.a.run.app";
        assert_eq!(url.len(), 47);
        let answer = "The sky looks blue because air molecules scatter the short blue \
                      wavelengths of sunlight far more than the red ones, a process \
                      called Rayleigh scatter.";
        assert_eq!(answer.len(), 150);
        let figures = |s: Side| Side {
            text: answer.into(),
            tokens: 32,
            first_token_secs: Some(12.41),
            last_token_secs: Some(13.72),
            finished: true,
            ..s
        };
        let local = figures(Side {
            label: "this machine (CPU)".into(),
            ..Side::default()
        });
        // Still answering: its status names the server and the model (two rows).
        let remote = Side {
            finished: false,
            status: "Samemath, model SmolLM2-360M-Instruct-Q8_0.gguf".into(),
            ..figures(Side {
                label: format!("remote: {}", remote::shown_url(url)),
                awake_secs: Some(11.93),
                ..Side::default()
            })
        };
        ctx.begin_pass(input());
        assert_eq!(ctx.pixels_per_point(), 1.6);
        let painter = ctx.layer_painter(egui::LayerId::background());
        let columns = race_layout(&painter, ctx.content_rect(), [&local, &remote], 14.0);
        assert_eq!(columns.len(), 2);
        for (i, column) in columns.iter().enumerate() {
            let texts: Vec<String> = column
                .texts
                .iter()
                .map(|(_, g)| g.text().to_string())
                .collect();
            // The label, the figures, the status and the answer, all inside the column.
            assert_eq!(texts.len(), 4, "side {i}: {texts:?}");
            for (at, galley) in &column.texts {
                let r = egui::Rect::from_min_size(*at, galley.size());
                assert!(
                    column.inner.contains_rect(r),
                    "side {i}: {r:?} out of {:?}",
                    column.inner
                );
            }
            let shown = texts.last().unwrap();
            assert!(
                shown.ends_with("a process called Rayleigh scatter."),
                "side {i}: {shown:?}"
            );
            if i == 1 {
                assert!(shown.starts_with('\u{2026}'), "{shown:?}");
                assert!(shown.chars().count() > 30, "{shown:?}");
            }
        }
        let remote_column = &columns[1];
        // The case of the defect: the whole answer does not fit below the remote's lines.
        let answer_top = remote_column.texts[3].0.y;
        let whole = ctx.fonts_mut(|f| {
            f.layout(
                answer.into(),
                egui::FontId::proportional(18.0),
                egui::Color32::WHITE,
                remote_column.inner.width(),
            )
        });
        assert!(answer_top + whole.size().y > remote_column.inner.max.y);
    }
}
