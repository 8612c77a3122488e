//! Frame pacing for the GPU backend on the renderer's device: the model's work goes to the
//! shared queue in chunks of dispatches, and each frame lends it only as much GPU time as keeps
//! the frame time near what it is without the model. A fast GPU gets several tokens into a
//! frame, a slow one a part of a token; a frame never waits for a whole token on a slow GPU.
//!
//! Where the device has timestamp queries, each chunk's pass is also timed on the GPU itself
//! (`charge_gpu`): `frame` hands back what the model's kernels took of the GPU in the frame that
//! ended, the app's bar of GPU time per frame.
//!
//! The CPU backend shares the cores with the renderer instead (a software rasterizer, or a
//! machine of two cores): it runs a duty cycle, resting after each token for as long as keeps
//! the frames near the same target (`cpu_rest`); where frames do not slow down it never rests.

use std::sync::Mutex;
use std::time::Duration;

use web_time::Instant;

/// What the frame time may grow to while generating, relative to frames without the model.
const TARGET_RATIO: f64 = 1.2;
/// The same for the CPU backend's cycles, judged on their mean: lower, because the frames
/// during a step are the slow ones and the goal is on the 95th percentile (1.25x idle).
const CPU_TARGET_RATIO: f64 = 1.12;
/// The least share of its time the CPU backend computes (it never stops).
const MIN_CPU_DUTY: f64 = 0.05;
/// The longest rest after one CPU step.
const MAX_CPU_REST: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct FramePacer {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Frames seen (the app calls `frame` once per frame).
    frame: u64,
    /// GPU time lent to the model per frame, and what it used in the current frame.
    budget: Duration,
    spent: Duration,
    /// The model used GPU time in the current frame.
    busy: bool,
    /// What the model's kernels took of the GPU in the current frame, by timestamps (`None`:
    /// no timed chunk finished in it).
    gpu_spent: Option<Duration>,
    /// Frame time without the model, and while generating (moving averages, ms).
    idle_ms: Option<f64>,
    busy_ms: Option<f64>,
    /// Dispatches per submission, sized to half the budget.
    chunk: usize,
    /// The CPU backend's share of the time it computes (1: it never rests), and whether a CPU
    /// step is under way (the frames it spans count as the CPU backend's).
    cpu_duty: f64,
    cpu_working: bool,
    /// Until when the CPU backend's cycle (its rest) lasts, and its frames' time (ms).
    cpu_until: Option<Instant>,
    cpu_ms: Option<f64>,
    /// When the last frame went by (no frames for a while: nothing to pace against).
    last_frame: Option<Instant>,
}

impl Default for FramePacer {
    fn default() -> Self {
        FramePacer {
            state: Mutex::new(State {
                frame: 0,
                budget: Duration::from_millis(2),
                spent: Duration::ZERO,
                busy: false,
                gpu_spent: None,
                idle_ms: None,
                busy_ms: None,
                chunk: 16,
                cpu_duty: 1.0,
                cpu_working: false,
                cpu_until: None,
                cpu_ms: None,
                last_frame: None,
            }),
        }
    }
}

fn ema(old: Option<f64>, new: f64) -> Option<f64> {
    Some(old.map_or(new, |o| 0.9 * o + 0.1 * new))
}

impl FramePacer {
    /// Once per rendered frame, with the time since the previous one. Returns the GPU time the
    /// model's kernels took in the frame that ended, where timestamps measured some (`None`:
    /// no timed work finished in it).
    pub fn frame(&self, delta: Duration) -> Option<Duration> {
        let Ok(mut s) = self.state.lock() else {
            return None;
        };
        let ms = delta.as_secs_f64() * 1e3;
        let now = Instant::now();
        s.last_frame = Some(now);
        // The CPU backend generating: its steps and its rests alike (the duty is judged by the
        // frames of the whole cycle).
        let cpu = s.cpu_working || s.cpu_until.is_some_and(|t| now < t);
        if cpu {
            s.cpu_ms = ema(s.cpu_ms, ms);
        } else if s.busy {
            s.busy_ms = ema(s.busy_ms, ms);
            // Lend more while frames stay near the idle time, less when they grow.
            if let (Some(idle), Some(busy)) = (s.idle_ms, s.busy_ms) {
                let cap = Duration::from_secs_f64(idle * 0.9 / 1e3);
                s.budget = if busy > idle * TARGET_RATIO {
                    s.budget.mul_f64(0.8)
                } else {
                    s.budget.mul_f64(1.1).min(cap)
                }
                .max(Duration::from_micros(500));
            }
        } else {
            s.idle_ms = ema(s.idle_ms, ms);
        }
        s.frame += 1;
        s.spent = Duration::ZERO;
        s.busy = false;
        s.gpu_spent.take()
    }

    /// GPU time the model may use per frame now.
    pub fn budget(&self) -> Duration {
        self.state.lock().map_or(Duration::ZERO, |s| s.budget)
    }

    /// Dispatches to put in the next submission.
    pub(super) fn chunk(&self) -> usize {
        self.state.lock().map_or(16, |s| s.chunk)
    }

    /// Wait until this frame has budget left (or the next frame starts). Gives up waiting after
    /// 250 ms, so a window that stopped drawing (minimised) does not stop the model.
    pub(super) fn wait_turn(&self) {
        let started = Instant::now();
        let frame = match self.state.lock() {
            Ok(s) if s.spent < s.budget => return,
            Ok(s) => s.frame,
            Err(_) => return,
        };
        while started.elapsed() < Duration::from_millis(250) {
            std::thread::sleep(Duration::from_micros(500));
            if self.state.lock().map_or(true, |s| s.frame != frame) {
                return;
            }
        }
    }

    /// A CPU step starts: the frames until it ends count as the CPU backend's.
    pub fn cpu_step_started(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.cpu_working = true;
        }
    }

    /// The CPU backend stopped in the middle of a step (it failed, or the session was
    /// dropped): the frames are idle again.
    pub fn cpu_stopped(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.cpu_working = false;
            s.cpu_until = None;
        }
    }

    /// A CPU step ended after `took`: how long to rest before the next one. Once a step, the
    /// share of the time the model computes (`cpu_duty`) shrinks while the frames of its cycles
    /// (steps and rests) run slower than the target and grows back while they do not. No rest
    /// when no frame has gone by for half a second (a hidden window, a headless run).
    pub fn cpu_rest(&self, took: Duration) -> Duration {
        let Ok(mut s) = self.state.lock() else {
            return Duration::ZERO;
        };
        s.cpu_working = false;
        let drawing = s
            .last_frame
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500));
        if !drawing {
            s.cpu_until = None;
            return Duration::ZERO;
        }
        if let (Some(idle), Some(cpu)) = (s.idle_ms, s.cpu_ms) {
            s.cpu_duty = if cpu > idle * CPU_TARGET_RATIO {
                s.cpu_duty * 0.85
            } else {
                s.cpu_duty * 1.05
            }
            .clamp(MIN_CPU_DUTY, 1.0);
        }
        let rest = took
            .mul_f64((1.0 - s.cpu_duty) / s.cpu_duty)
            .min(MAX_CPU_REST);
        // The rest's frames belong to the cycle, and the next step follows it at once.
        s.cpu_until = Some(Instant::now() + rest + Duration::from_millis(50));
        rest
    }

    /// The CPU backend's share of the time now (for the bench).
    pub fn cpu_duty(&self) -> f64 {
        self.state.lock().map_or(1.0, |s| s.cpu_duty)
    }

    /// A chunk's pass took `took` of the GPU's time, by its timestamps.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(super) fn charge_gpu(&self, took: Duration) {
        if let Ok(mut s) = self.state.lock() {
            *s.gpu_spent.get_or_insert(Duration::ZERO) += took;
        }
    }

    /// `ops` dispatches took `took` of the GPU: by their pass's timestamps where the device has
    /// them, else from submission to completion (which also holds the queue's work before them).
    pub(super) fn charge(&self, took: Duration, ops: usize) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.spent += took;
        s.busy = true;
        let per_op = took.as_secs_f64() / ops.max(1) as f64;
        if per_op > 0.0 {
            let fit = (s.budget.as_secs_f64() / 2.0 / per_op) as usize;
            s.chunk = fit.clamp(1, 4096);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_hands_back_the_gpu_time_its_chunks_took() {
        let p = FramePacer::default();
        assert_eq!(p.frame(Duration::from_millis(16)), None, "nothing timed");
        p.charge_gpu(Duration::from_micros(700));
        p.charge_gpu(Duration::from_micros(300));
        assert_eq!(
            p.frame(Duration::from_millis(16)),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            p.frame(Duration::from_millis(16)),
            None,
            "a new frame starts at none"
        );
    }
}
