//! The selected neuron's dot products: the MLP input x, w_gate·x, w_up·x, SiLU, the product,
//! and the largest terms.

use crate::llm_scene::state::{Backend, LlmSelection, LlmView};
use bevy::prelude::*;
use bevy_egui::egui;

/// The clicked neuron as the dot products that make it.
pub(crate) fn neuron_detail(ui: &mut egui::Ui, view: &LlmView, selection: &LlmSelection) {
    ui.heading("Neuron");
    if matches!(view.backend, Backend::Remote { .. }) {
        ui.weak("A neuron's weights live on the server: its dot products need the local model.");
        return;
    }
    let Some((layer, neuron)) = selection.neuron else {
        ui.weak("Click a neuron in the activation grid.");
        return;
    };
    let (Some(trace), Some(model)) = (&view.trace, &view.model) else {
        ui.weak("No trace yet.");
        return;
    };
    let Some(lt) = trace.layers.get(layer) else {
        return;
    };
    let Some(value) = lt.mlp_activation.get(neuron) else {
        return;
    };
    ui.label(format!("layer {layer}, neuron {neuron}: value {value:.4}"));
    let Some((gate, up)) = model.mlp_rows(layer, neuron) else {
        ui.weak("This model file's weight format is not one the decomposition can read.");
        return;
    };
    let x = &lt.mlp_input;
    if x.len() != gate.len() {
        ui.weak("The trace has no MLP input for this layer.");
        return;
    }
    let g: f32 = gate.iter().zip(x).map(|(w, v)| w * v).sum();
    let u: f32 = up.iter().zip(x).map(|(w, v)| w * v).sum();
    let silu = g / (1.0 + (-g).exp());
    // One wrapped line each: at a projector's large UI the side panel is narrow, and a line
    // wider than it would push the panel past the window's edge.
    let rows = [
        ("x", format!("RMSNorm(residual), {} values", x.len())),
        ("g = w_gate·x", format!("{g:.4}")),
        ("u = w_up·x", format!("{u:.4}")),
        ("silu(g) = g/(1+e^-g)", format!("{silu:.4}")),
        ("silu(g)·u", format!("{:.4}", silu * u)),
        ("engine's value", format!("{value:.4}")),
    ];
    for (name, value) in rows {
        ui.add(
            egui::Label::new(egui::RichText::new(format!("{name}: {value}")).monospace()).wrap(),
        );
    }
    ui.small(
        "The engine multiplies 4-bit weights by 8-bit-rounded inputs (as llama.cpp does); this \
         panel uses the dequantized weights and the f32 input, so the last digits can differ.",
    );
    ui.label("Largest terms of w_gate·x (w·x = Σ wᵢxᵢ):");
    let mut terms: Vec<(usize, f32)> = gate.iter().zip(x).map(|(w, v)| w * v).enumerate().collect();
    terms.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    for (i, t) in terms.iter().take(6) {
        let term = format!("w[{i}]·x[{i}] = {:+.3}·{:+.3} = {t:+.4}", gate[*i], x[*i]);
        ui.add(egui::Label::new(egui::RichText::new(term).monospace()).wrap());
    }
}
