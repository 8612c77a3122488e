//! Frame pacing for the GPU backend on the renderer's device: the model's work goes to the
//! shared queue in chunks of dispatches, and each frame lends it only as much GPU time as keeps
//! the frame time near what it is without the model. A fast GPU gets several tokens into a
//! frame, a slow one a part of a token; a frame never waits for a whole token on a slow GPU.

use std::sync::Mutex;
use std::time::Duration;

use web_time::Instant;

/// What the frame time may grow to while generating, relative to frames without the model.
const TARGET_RATIO: f64 = 1.2;

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
    /// Frame time without the model, and while generating (moving averages, ms).
    idle_ms: Option<f64>,
    busy_ms: Option<f64>,
    /// Dispatches per submission, sized to half the budget.
    chunk: usize,
}

impl Default for FramePacer {
    fn default() -> Self {
        FramePacer {
            state: Mutex::new(State {
                frame: 0,
                budget: Duration::from_millis(2),
                spent: Duration::ZERO,
                busy: false,
                idle_ms: None,
                busy_ms: None,
                chunk: 16,
            }),
        }
    }
}

fn ema(old: Option<f64>, new: f64) -> Option<f64> {
    Some(old.map_or(new, |o| 0.9 * o + 0.1 * new))
}

impl FramePacer {
    /// Once per rendered frame, with the time since the previous one.
    pub fn frame(&self, delta: Duration) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let ms = delta.as_secs_f64() * 1e3;
        if s.busy {
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

    /// `ops` dispatches took `took` from submission to completion.
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
