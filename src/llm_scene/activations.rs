//! The activation grid: every MLP activation of the newest token (30 layers x 1536 neurons for
//! SmolLM2) as one pixel of a GPU texture, laid out as one 48-wide tile per layer, six tiles to a
//! row, redrawn each token. The colormap and the layout are plain functions, so a test can check
//! rendered pixels against the trace.

use bevy::asset::RenderAssetUsages;
use bevy::image::ImageSampler;
use bevy::prelude::*;
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat};
use bevy_egui::{EguiContexts, EguiTextureHandle, egui};

use super::state::{Backend, LlmView};

/// Background between tiles (sRGB bytes).
pub const GAP_COLOR: [u8; 4] = [14, 15, 19, 255];
pub const ZERO: [f32; 3] = [24.0, 26.0, 33.0];
pub const POSITIVE: [f32; 3] = [255.0, 176.0, 48.0];
pub const NEGATIVE: [f32; 3] = [64.0, 150.0, 255.0];

/// Diverging colormap: 0 is near the background, +scale full amber, -scale full blue, linear in
/// between (sRGB bytes).
pub fn activation_color(value: f32, scale: f32) -> [u8; 4] {
    let t = if scale > 0.0 && value.is_finite() {
        (value / scale).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let end = if t >= 0.0 { POSITIVE } else { NEGATIVE };
    let a = t.abs();
    let c = |i: usize| (ZERO[i] + (end[i] - ZERO[i]) * a).round() as u8;
    [c(0), c(1), c(2), 255]
}

/// The colour scale of a grid: the 99th percentile of |activation|, so a few huge neurons do
/// not turn every other one dark.
pub fn color_scale(values: &[f32]) -> f32 {
    let mut mags: Vec<f32> = values
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| v.abs())
        .collect();
    if mags.is_empty() {
        return 1.0;
    }
    let k = ((mags.len() as f32 * 0.99) as usize).min(mags.len() - 1);
    mags.select_nth_unstable_by(k, f32::total_cmp);
    mags[k].max(1e-6)
}

/// Where each (layer, neuron) sits in the texture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridLayout {
    pub layers: usize,
    pub neurons: usize,
    pub tile_w: usize,
    pub tile_h: usize,
    pub tiles_x: usize,
    pub gap: usize,
}

impl GridLayout {
    pub fn new(layers: usize, neurons: usize) -> Self {
        let tile_w = 48;
        Self {
            layers: layers.max(1),
            neurons: neurons.max(1),
            tile_w,
            tile_h: neurons.max(1).div_ceil(tile_w),
            tiles_x: 6,
            gap: 2,
        }
    }

    pub fn tiles_y(&self) -> usize {
        self.layers.div_ceil(self.tiles_x)
    }

    /// Texture size in texels.
    pub fn size(&self) -> (usize, usize) {
        let w = self.tiles_x * self.tile_w + (self.tiles_x - 1) * self.gap;
        let h = self.tiles_y() * self.tile_h + (self.tiles_y() - 1) * self.gap;
        (w, h)
    }

    /// The texel of a neuron.
    pub fn texel(&self, layer: usize, neuron: usize) -> (usize, usize) {
        let (tx, ty) = (layer % self.tiles_x, layer / self.tiles_x);
        (
            tx * (self.tile_w + self.gap) + neuron % self.tile_w,
            ty * (self.tile_h + self.gap) + neuron / self.tile_w,
        )
    }

    /// The neuron under a texel, if any (gaps and the unused end of a tile are none).
    pub fn cell(&self, x: usize, y: usize) -> Option<(usize, usize)> {
        let (tx, ix) = (x / (self.tile_w + self.gap), x % (self.tile_w + self.gap));
        let (ty, iy) = (y / (self.tile_h + self.gap), y % (self.tile_h + self.gap));
        if ix >= self.tile_w || iy >= self.tile_h || tx >= self.tiles_x {
            return None;
        }
        let layer = ty * self.tiles_x + tx;
        let neuron = iy * self.tile_w + ix;
        (layer < self.layers && neuron < self.neurons).then_some((layer, neuron))
    }

    /// RGBA8 texels for the activations of each layer (`values[layer][neuron]`).
    pub fn paint(&self, values: &[Vec<f32>], scale: f32) -> Vec<u8> {
        let (w, h) = self.size();
        let mut out = GAP_COLOR.repeat(w * h);
        for (layer, row) in values.iter().enumerate().take(self.layers) {
            for (neuron, v) in row.iter().enumerate().take(self.neurons) {
                let (x, y) = self.texel(layer, neuron);
                let i = (y * w + x) * 4;
                out[i..i + 4].copy_from_slice(&activation_color(*v, scale));
            }
        }
        out
    }
}

/// The texture and what it currently shows.
#[derive(Resource, Debug, Clone)]
pub struct ActivationTexture {
    pub image: Handle<Image>,
    pub egui_id: Option<egui::TextureId>,
    pub layout: GridLayout,
    pub scale: f32,
    /// `LlmView::revision` painted last.
    pub revision: u64,
}

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Startup, create_texture)
        .add_systems(Update, update_texture);
}

fn blank_image(layout: GridLayout) -> Image {
    let (w, h) = layout.size();
    let mut image = Image::new_fill(
        Extent3d {
            width: w as u32,
            height: h as u32,
            depth_or_array_layers: 1,
        },
        TextureDimension::D2,
        &GAP_COLOR,
        TextureFormat::Rgba8UnormSrgb,
        RenderAssetUsages::all(),
    );
    // One texel per neuron, drawn at whole-number scales: no blending between neurons.
    image.sampler = ImageSampler::nearest();
    image
}

fn create_texture(mut commands: Commands, mut images: ResMut<Assets<Image>>) {
    let layout = GridLayout::new(30, 1536);
    let image = images.add(blank_image(layout));
    commands.insert_resource(ActivationTexture {
        image,
        egui_id: None,
        layout,
        scale: 1.0,
        revision: 0,
    });
}

/// Repaint the texture when a new trace arrives (or the model's shape differs).
fn update_texture(
    view: Res<LlmView>,
    texture: Option<ResMut<ActivationTexture>>,
    mut images: ResMut<Assets<Image>>,
    mut contexts: EguiContexts,
) {
    let Some(mut texture) = texture else {
        return;
    };
    if texture.egui_id.is_none() {
        texture.egui_id =
            Some(contexts.add_image(EguiTextureHandle::Strong(texture.image.clone())));
    }
    if texture.revision == view.revision {
        return;
    }
    texture.revision = view.revision;
    let values: Vec<Vec<f32>> = view
        .trace
        .as_ref()
        .map(|t| t.layers.iter().map(|l| l.mlp_activation.clone()).collect())
        .unwrap_or_default();
    let layout = grid_shape(&view).map_or(texture.layout, |(l, n)| GridLayout::new(l, n));
    let flat: Vec<f32> = values.iter().flatten().copied().collect();
    texture.scale = color_scale(&flat);
    let Some(mut image) = images.get_mut(&texture.image) else {
        return;
    };
    if layout != texture.layout {
        *image = blank_image(layout);
        texture.layout = layout;
    }
    image.data = Some(layout.paint(&values, texture.scale));
}

/// The local model's shape, where the view's numbers come from it: none while a remote server
/// answers, whose model may be another one (its trace then gives the shape).
pub fn local_config(view: &LlmView) -> Option<&llm::LlamaConfig> {
    if matches!(view.backend, Backend::Remote { .. }) {
        return None;
    }
    view.model.as_ref().map(|m| &m.config)
}

/// The activation grid's (layers, neurons): the trace's own where it has activations (a remote
/// server's model may differ from the local one), else the local model's.
pub fn grid_shape(view: &LlmView) -> Option<(usize, usize)> {
    let traced = view.trace.as_ref().and_then(|t| {
        let width = t.layers.first()?.mlp_activation.len();
        (width > 0).then_some((t.layers.len(), width))
    });
    traced.or_else(|| local_config(view).map(|c| (c.n_layer, c.n_ff)))
}

/// `n` with a comma between each three digits, as the captions write sizes (49,152).
pub fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
