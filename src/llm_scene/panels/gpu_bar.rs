//! Scene 2's bar of GPU time per frame: rendering and the LLM's kernels side by side on the one
//! device, against the frame's length, from the GPU's own timestamps (`shell::gpu_time`). Where
//! the adapter has none, or the model does not run on this GPU, the bar says so instead.

use crate::llm_scene::state::{Backend, LlmView};
use crate::shell::gpu_time::GpuFrameTimes;
use crate::shell::theme::ACCENT;
use bevy_egui::egui;

/// Rendering's colour in the bar (the LLM's is the accent).
const RENDER: egui::Color32 = egui::Color32::from_rgb(150, 220, 130);

/// The bar and its legend; returns where the bar was drawn (`None`: nothing measured to draw).
pub(crate) fn gpu_time_bar(
    ui: &mut egui::Ui,
    times: &GpuFrameTimes,
    view: &LlmView,
) -> Option<egui::Rect> {
    let llm_here = view.backend.on_renderer();
    let render = match (times.available, times.render_mean()) {
        (Some(false), _) => {
            ui.small("GPU time per frame: not measurable on this adapter (no timestamp queries)");
            return None;
        }
        (Some(true), Some(render)) => render,
        // Not known yet, or no sample back yet.
        _ => {
            ui.small("GPU time per frame: measuring…");
            return None;
        }
    };
    let llm = times.llm_mean().filter(|_| llm_here);
    let frame = times.frame_mean().unwrap_or(0.0);
    // The bar spans the frame's length (or the GPU's sum, if that is longer).
    let full = frame.max(render + llm.unwrap_or(0.0)).max(1e-6);
    let width = ui.available_width().max(40.0);
    let height = ui.text_style_height(&egui::TextStyle::Small).max(6.0);
    let (rect, response) = ui.allocate_exact_size(egui::vec2(width, height), egui::Sense::hover());
    response.on_hover_text(format!(
        "This GPU's time per frame, by its own timestamps (mean of the last {} frames): \
         rendering, then the LLM's kernels, against the frame's length",
        crate::shell::gpu_time::WINDOW
    ));
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    let x = |ms: f64| rect.left() + (ms / full).clamp(0.0, 1.0) as f32 * rect.width();
    let render_end = x(render).max(rect.left() + 1.0);
    painter.rect_filled(
        egui::Rect::from_min_max(rect.min, egui::pos2(render_end, rect.bottom())),
        0.0,
        RENDER,
    );
    if let Some(llm) = llm {
        let end = x(render + llm).max(render_end + 1.0);
        painter.rect_filled(
            egui::Rect::from_min_max(
                egui::pos2(render_end, rect.top()),
                egui::pos2(end, rect.bottom()),
            ),
            0.0,
            ACCENT,
        );
    }
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 4.0;
        ui.small("GPU per frame:");
        ui.colored_label(
            RENDER,
            egui::RichText::new(format!("render {render:.2} ms")).small(),
        );
        let llm_text = match (&view.backend, llm) {
            (_, Some(ms)) => format!("LLM kernels {ms:.2} ms"),
            // The browser build reads the model's steps back without waiting, and does not
            // time its chunks.
            (b, None) if b.on_renderer() && cfg!(target_arch = "wasm32") => {
                "LLM kernels: not timed in the browser".into()
            }
            (b, None) if b.on_renderer() => "LLM kernels: none yet".into(),
            (Backend::Gpu { .. }, None) => "LLM kernels on another device".into(),
            (Backend::Local, _) => "LLM on the CPU: no GPU kernels".into(),
            (Backend::Remote { .. }, _) => "LLM on the server: no GPU kernels here".into(),
        };
        ui.colored_label(ACCENT, egui::RichText::new(llm_text).small());
        if frame > 0.0 {
            ui.small(format!("of a {frame:.1} ms frame"));
        }
    });
    Some(rect)
}
