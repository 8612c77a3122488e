//! `samemath bench`: runs the chosen scene (scene 1 animating) and prints mean and p95 frame
//! time over N frames after a warm-up, then exits. No vsync, so the figures are the real cost.

use bevy::prelude::*;
use bevy::window::PrimaryWindow;

use super::AppOptions;
use crate::graphics::GraphicsSettings;

const WARMUP_FRAMES: u32 = 30;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Last, measure);
}

/// Mean and 95th percentile of frame times, in milliseconds.
pub fn summarize(frame_ms: &[f64]) -> Option<(f64, f64)> {
    if frame_ms.is_empty() {
        return None;
    }
    let mean = frame_ms.iter().sum::<f64>() / frame_ms.len() as f64;
    let mut sorted = frame_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((0.95 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((mean, sorted[rank - 1]))
}

fn measure(
    options: Res<AppOptions>,
    time: Res<Time<Real>>,
    windows: Query<&Window, With<PrimaryWindow>>,
    adapter: Option<Res<bevy::render::renderer::RenderAdapterInfo>>,
    mut settings: Option<ResMut<GraphicsSettings>>,
    mut samples: Local<Vec<f64>>,
    mut frames: Local<u32>,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(bench) = &options.bench else {
        return;
    };
    *frames += 1;
    if *frames == 1
        && let Some(s) = settings.as_mut()
    {
        s.animate = true;
    }
    if *frames <= WARMUP_FRAMES {
        return;
    }
    samples.push(time.delta_secs_f64() * 1000.0);
    if samples.len() < bench.frames.max(1) as usize {
        return;
    }
    let (w, h) = windows
        .single()
        .map(|w| (w.physical_width(), w.physical_height()))
        .unwrap_or((0, 0));
    let adapter = adapter.map_or("unknown adapter".to_string(), |a| {
        format!("{} ({:?})", a.name, a.backend)
    });
    if let Some((mean, p95)) = summarize(&samples) {
        println!(
            "bench scene={:?} window={w}x{h} frames={} adapter={adapter}\n  frame time: mean {mean:.2} ms, p95 {p95:.2} ms ({:.1} fps mean)",
            options.args.scene,
            samples.len(),
            1000.0 / mean
        );
    }
    exit.write(AppExit::Success);
}

#[cfg(test)]
mod tests {
    use super::summarize;

    #[test]
    fn p95_of_known_samples() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let (mean, p95) = summarize(&samples).unwrap();
        assert_eq!(mean, 50.5);
        assert_eq!(p95, 95.0);
        assert!(summarize(&[]).is_none());
    }
}
