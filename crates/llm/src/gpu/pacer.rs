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
//!
//! What a frame takes without the model changes while the model runs: the first step brings the
//! world's columns, which cost the renderer more than the frames before them. So the time
//! without the model is looked at again now and then: the model holds its work back for a few
//! frames (a probe), and a frame with no model work in it or in the frame before counts as idle.

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
/// A probe of the frame time without the model is due after this many frames with model work,
const PROBE_FRAMES: u32 = 120;
/// or, on a slow renderer, after this long, once at least `MIN_PROBE_FRAMES` went by; or after
/// those few frames when the frames stay slow with the GPU backend's share at its least (then it
/// is the scene that got slower, not the model that takes too much).
const PROBE_AFTER: Duration = Duration::from_secs(20);
const MIN_PROBE_FRAMES: u32 = 8;
/// The frames a probe may hold the model back, when no quiet frame came (work still in flight).
const MAX_PROBE_FRAMES: u64 = 6;
/// What an idle frame after a stretch of model work weighs in the idle time: the scene may have
/// changed meanwhile, so the new look counts for more than the old.
const PROBE_WEIGHT: f64 = 0.75;
/// What each new frame weighs in a running frame time (an exponential moving average).
const EMA_WEIGHT: f64 = 0.1;
/// The least GPU time lent per frame.
const MIN_BUDGET: Duration = Duration::from_micros(500);

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
    /// The CPU backend worked in the current frame (a step started or ended in it).
    cpu_touched: bool,
    /// Frames in a row with no model work in them; frames since the last idle sample, and when
    /// that was.
    quiet: u32,
    since_idle: u32,
    idle_at: Option<Instant>,
    /// The frame a probe started in: the GPU backend holds its work back until it ends.
    probe: Option<u64>,
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
                cpu_touched: false,
                quiet: 0,
                since_idle: 0,
                idle_at: None,
                probe: None,
            }),
        }
    }
}

fn ema(old: Option<f64>, new: f64) -> Option<f64> {
    weigh(old, new, EMA_WEIGHT)
}

fn weigh(old: Option<f64>, new: f64, w: f64) -> Option<f64> {
    Some(old.map_or(new, |o| (1.0 - w) * o + w * new))
}

impl State {
    /// A new look at the frame time without the model is due.
    fn probe_due(&self, now: Instant) -> bool {
        // The GPU backend's share at its least and the frames still slow (the CPU backend's
        // long rests bring quiet frames of their own). Holding back costs the model little then.
        let idle = self.idle_ms.unwrap_or(f64::MAX);
        let squeezed =
            self.budget <= MIN_BUDGET * 2 && self.busy_ms.is_some_and(|b| b > idle * TARGET_RATIO);
        self.since_idle >= PROBE_FRAMES
            || (self.since_idle >= MIN_PROBE_FRAMES
                && (squeezed || self.idle_at.is_none_or(|t| now - t >= PROBE_AFTER)))
    }

    /// Three frames' time, by the slowest frame time known (a probe's: the frame its model
    /// work ended in, and two quiet ones), at most 3 s.
    fn three_frames(&self) -> Duration {
        let frame = [self.busy_ms, self.cpu_ms, self.idle_ms]
            .into_iter()
            .flatten()
            .fold(0.0, f64::max);
        Duration::from_secs_f64(frame * 3.0 / 1e3).min(Duration::from_secs(3))
    }

    /// How long a wait for the next frame may last: three frames' time, at least 250 ms, so a
    /// window that stopped drawing (minimised) does not stop the model, and a slow renderer's
    /// frame is still waited out.
    fn frame_wait(&self) -> Duration {
        self.three_frames().max(Duration::from_millis(250))
    }
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
            // Lend more while frames stay near the idle time, less when they grow. The growth is
            // 1.1x a 60 Hz frame, by the frame's time (at most 1.5x): a slow renderer's frames
            // get the model's share back in seconds, not minutes.
            if let (Some(idle), Some(busy)) = (s.idle_ms, s.busy_ms) {
                let cap = Duration::from_secs_f64(idle * 0.9 / 1e3);
                let grow = 1.1f64.powf(ms / 16.7).clamp(1.1, 1.5);
                s.budget = if busy > idle * TARGET_RATIO {
                    s.budget.mul_f64(0.8)
                } else {
                    s.budget.mul_f64(grow).min(cap)
                }
                .max(MIN_BUDGET);
            }
        }
        // Idle: a frame without model work after one without (the renderer runs a frame
        // behind, so the first may still hold the model's last work).
        let worked = s.busy || s.cpu_working || s.cpu_touched;
        s.quiet = if worked { 0 } else { s.quiet.saturating_add(1) };
        if s.quiet >= 2 {
            let w = if s.since_idle >= MIN_PROBE_FRAMES {
                PROBE_WEIGHT
            } else {
                EMA_WEIGHT
            };
            s.idle_ms = weigh(s.idle_ms, ms, w);
            s.since_idle = 0;
            s.idle_at = Some(now);
        } else {
            s.since_idle = s.since_idle.saturating_add(1);
        }
        s.frame += 1;
        // The GPU backend's probe: it ends with its idle sample, or after a few frames without
        // one (work still in flight), and then the next waits its turn again.
        s.probe = match s.probe {
            Some(_) if s.since_idle == 0 => None,
            Some(start) if s.frame < start + MAX_PROBE_FRAMES => Some(start),
            Some(_) => {
                s.since_idle = 0;
                s.idle_at = Some(now);
                None
            }
            None if s.busy && s.probe_due(now) => Some(s.frame),
            None => None,
        };
        s.spent = Duration::ZERO;
        s.busy = false;
        s.cpu_touched = false;
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

    /// Wait until this frame has budget left (or the next frame starts), and until a probe of
    /// the frame time without the model ends. Gives up waiting after a few frames' time (at
    /// least 250 ms), so a window that stopped drawing (minimised) does not stop the model.
    pub(super) fn wait_turn(&self) {
        let started = Instant::now();
        let (frame, limit) = match self.state.lock() {
            Ok(s) if s.spent < s.budget && s.probe.is_none() => return,
            Ok(s) => (s.frame, s.frame_wait()),
            Err(_) => return,
        };
        while started.elapsed() < limit {
            std::thread::sleep(Duration::from_micros(500));
            let go = self
                .state
                .lock()
                .map_or(true, |s| s.frame != frame && s.probe.is_none());
            if go {
                return;
            }
        }
    }

    /// A CPU step starts: the frames until it ends count as the CPU backend's.
    pub fn cpu_step_started(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.cpu_working = true;
            s.cpu_touched = true;
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
        s.cpu_touched = true;
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
        let mut rest = took
            .mul_f64((1.0 - s.cpu_duty) / s.cpu_duty)
            .min(MAX_CPU_REST);
        // A probe: rest long enough for two quiet frames after the one this step ended in.
        if s.probe_due(Instant::now()) {
            rest = rest.max(s.three_frames());
        }
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

    /// A renderer whose frames take `scene` ms plus the GPU time the model's chunks took in
    /// them; the model spends its whole budget each frame, except while a probe holds it back.
    fn gpu_frames(p: &FramePacer, scene: f64, frames: usize) -> Vec<f64> {
        (0..frames)
            .map(|_| {
                let held = p.state.lock().unwrap().probe.is_some();
                let spent = if held { Duration::ZERO } else { p.budget() };
                if !held {
                    p.charge(spent, 8);
                }
                let ms = scene + spent.as_secs_f64() * 1e3;
                p.frame(Duration::from_secs_f64(ms / 1e3));
                ms
            })
            .collect()
    }

    #[test]
    fn the_gpu_backend_gets_its_share_when_the_scene_grew_while_it_ran() {
        let p = FramePacer::default();
        // Before the first step: cheap frames (no world columns yet).
        for _ in 0..100 {
            p.frame(Duration::from_millis(10));
        }
        // The first step brought the columns: 30 ms frames from then on, the model's work on
        // top. Compared with the old 10 ms, every frame looked too slow, and the budget sat at
        // its floor for good.
        let frames = gpu_frames(&p, 30.0, 3000);
        let idle = p.state.lock().unwrap().idle_ms.unwrap();
        assert!(
            (idle - 30.0).abs() < 1.5,
            "idle time looked at again: {idle:.2} ms"
        );
        let budget = p.budget().as_secs_f64() * 1e3;
        assert!(
            budget > 2.0,
            "the model's share grew back: {budget:.2} ms a frame"
        );
        let last = &frames[frames.len() - 300..];
        let mean = last.iter().sum::<f64>() / last.len() as f64;
        assert!(
            mean < 30.0 * (TARGET_RATIO + 0.1),
            "frames stay near the target: {mean:.2} ms"
        );
        // Probes are few: the model held back in a small share of the frames.
        let held = last.iter().filter(|&&ms| ms == 30.0).count();
        assert!(
            held * 10 < last.len(),
            "{held} of {} frames held back",
            last.len()
        );
    }

    #[test]
    fn the_cpu_backend_rests_less_when_the_scene_grew_while_it_ran() {
        let p = FramePacer::default();
        for _ in 0..100 {
            p.frame(Duration::from_millis(10));
        }
        // The world came: 30 ms frames. A CPU step spans one frame and slows it to 32 ms, under
        // the target; the frames of its rest take the scene's 30 ms. Compared with the old
        // 10 ms, every cycle looked too slow, and the duty sat at its floor for good.
        for _ in 0..400 {
            p.cpu_step_started();
            p.frame(Duration::from_millis(32));
            let rest = p.cpu_rest(Duration::from_millis(20));
            for _ in 0..rest.as_millis().div_ceil(30) {
                p.frame(Duration::from_millis(30));
            }
        }
        let idle = p.state.lock().unwrap().idle_ms.unwrap();
        assert!(
            (idle - 30.0).abs() < 1.5,
            "idle time looked at again: {idle:.2} ms"
        );
        let duty = p.cpu_duty();
        assert!(duty > 0.5, "the CPU backend's duty recovered: {duty:.2}");
    }

    #[test]
    fn a_probe_ends_without_a_quiet_frame_after_a_few_frames() {
        let p = FramePacer::default();
        p.frame(Duration::from_millis(10));
        // Work charged in every frame, a probe or not (a chunk that never ends in time).
        for _ in 0..200 {
            p.charge(Duration::from_micros(600), 4);
            p.frame(Duration::from_millis(30));
        }
        let s = p.state.lock().unwrap();
        assert!(
            s.probe
                .is_none_or(|start| s.frame < start + MAX_PROBE_FRAMES),
            "probe from frame {:?} still on at frame {}",
            s.probe,
            s.frame
        );
    }
}
