//! Which decode step the GPU backend runs, folded (RMSNorm made inside the q/k/v and gate/up
//! products, SwiGLU inside the down product: 5 dispatches a layer) or separate (each as a
//! dispatch of its own: 8). Both give the same bits (the engine tests compare them), so the only
//! question is speed, and its answer is the device's: on lavapipe the folded step is twice as
//! slow (every workgroup's redone norm is CPU time), on a GPU whose time goes to dispatches and
//! barriers it can win. Unless the caller sets one (`GpuModel::set_folded`), the model times its
//! first decode steps, the two in turns, and keeps the faster from then on.

use std::sync::Mutex;
use std::time::Duration;

/// Decode steps timed of each variant before the choice; the fastest of each counts (the first
/// steps pay for first use, and a step can be held up by other work on the device).
pub const TRIES: u32 = 4;

/// What a timed step did besides the layers (recording, the logit lens's 30 rows through the
/// head): only steps of the same kind are compared.
pub(crate) type StepKind = (bool, bool);

/// Where the choice stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepChoice {
    /// Set by the caller (`set_folded`), or the browser build, which does not time its steps
    /// (their results come back frames later): separate there.
    Set { folded: bool },
    /// Timing: the steps timed of each variant so far.
    Timing { separate: u32, folded: u32 },
    /// Chosen by timing: the fastest step of each variant.
    Timed {
        folded: bool,
        separate_step: Duration,
        folded_step: Duration,
    },
}

impl StepChoice {
    /// The variant the next step runs.
    pub fn folded(&self) -> bool {
        match *self {
            StepChoice::Set { folded } | StepChoice::Timed { folded, .. } => folded,
            // The variant timed fewer times; separate (the fallback) first.
            StepChoice::Timing { separate, folded } => folded < separate,
        }
    }
}

/// The decode step's variant in words, as the bench and `StepChoice`'s Display name it.
pub fn step_name(folded: bool) -> &'static str {
    if folded {
        "RMSNorm and SwiGLU folded into the products"
    } else {
        "RMSNorm and SwiGLU as dispatches of their own"
    }
}

impl std::fmt::Display for StepChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            StepChoice::Set { folded } => write!(f, "{} (set)", step_name(folded)),
            StepChoice::Timing { separate, folded } => write!(
                f,
                "timing both decode steps ({separate} and {folded} of {TRIES} steps so far)"
            ),
            StepChoice::Timed {
                folded,
                separate_step,
                folded_step,
            } => write!(
                f,
                "{} (timed on this device: fastest step {:.2} ms separate, {:.2} ms folded)",
                step_name(folded),
                separate_step.as_secs_f64() * 1e3,
                folded_step.as_secs_f64() * 1e3
            ),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Chooser {
    state: Mutex<State>,
}

// The browser build sets its variant and times nothing.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
#[derive(Debug)]
struct State {
    choice: StepChoice,
    /// The fastest timed step of each variant (separate, folded), and the kind of step timed.
    best: [Option<Duration>; 2],
    kind: Option<StepKind>,
}

impl State {
    /// `set`: a fixed variant; `None`: time both.
    fn new(set: Option<bool>) -> State {
        let choice = match set {
            Some(folded) => StepChoice::Set { folded },
            None => StepChoice::Timing {
                separate: 0,
                folded: 0,
            },
        };
        State {
            choice,
            best: [None; 2],
            kind: None,
        }
    }
}

impl Chooser {
    /// `set`: a fixed variant; `None`: time both.
    pub(crate) fn new(set: Option<bool>) -> Chooser {
        Chooser {
            state: Mutex::new(State::new(set)),
        }
    }

    pub(crate) fn get(&self) -> StepChoice {
        // A poisoned lock (a panic mid-record): the fallback.
        self.state
            .lock()
            .map_or(StepChoice::Set { folded: false }, |s| s.choice)
    }

    pub(crate) fn set(&self, set: Option<bool>) {
        if let Ok(mut s) = self.state.lock() {
            *s = State::new(set);
        }
    }

    /// A decode step of `kind` that ran the `folded` variant took `took`, from its submit to its
    /// results back. Counts while timing, for steps of the kind timed first.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn record(&self, folded: bool, kind: StepKind, took: Duration) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let StepChoice::Timing {
            mut separate,
            folded: mut folded_n,
        } = s.choice
        else {
            return;
        };
        if *s.kind.get_or_insert(kind) != kind {
            return;
        }
        let i = usize::from(folded);
        s.best[i] = Some(s.best[i].map_or(took, |b| b.min(took)));
        if folded {
            folded_n += 1;
        } else {
            separate += 1;
        }
        s.choice = match s.best {
            [Some(separate_step), Some(folded_step)] if separate >= TRIES && folded_n >= TRIES => {
                StepChoice::Timed {
                    // Folded only when strictly faster: separate is the fallback.
                    folded: folded_step < separate_step,
                    separate_step,
                    folded_step,
                }
            }
            _ => StepChoice::Timing {
                separate,
                folded: folded_n,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: StepKind = (false, false);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs the steps the chooser asks for, `time(folded)` each, until it has chosen.
    fn settle(c: &Chooser, kind: StepKind, time: impl Fn(bool, u32) -> Duration) -> Vec<bool> {
        let mut ran = Vec::new();
        for step in 0..100 {
            let choice = c.get();
            if !matches!(choice, StepChoice::Timing { .. }) {
                break;
            }
            let folded = choice.folded();
            c.record(folded, kind, time(folded, step));
            ran.push(folded);
        }
        ran
    }

    #[test]
    fn times_both_in_turns_and_keeps_the_faster() {
        let c = Chooser::new(None);
        // Folded 3 ms, separate 5 ms, but the first step of each pays 40 ms for first use.
        let ran = settle(&c, OFF, |folded, step| {
            let first_use = if step < 2 { 40 } else { 0 };
            ms(first_use + if folded { 3 } else { 5 })
        });
        assert_eq!(ran.len(), 2 * TRIES as usize);
        assert!(ran.chunks(2).all(|pair| pair == [false, true]));
        assert_eq!(
            c.get(),
            StepChoice::Timed {
                folded: true,
                separate_step: ms(5),
                folded_step: ms(3)
            }
        );
        assert!(c.get().folded());
        // Chosen: later steps do not change it.
        c.record(false, OFF, ms(1));
        assert!(c.get().folded());
    }

    #[test]
    fn separate_wins_ties_and_slower_folded_steps() {
        for folded_ms in [5, 9] {
            let c = Chooser::new(None);
            settle(&c, OFF, |folded, _| ms(if folded { folded_ms } else { 5 }));
            assert!(!c.get().folded(), "folded {folded_ms} ms against 5");
        }
    }

    #[test]
    fn only_steps_of_the_first_kind_count() {
        let c = Chooser::new(None);
        let lens = (true, true);
        c.record(false, OFF, ms(5));
        // A recorded step with the logit lens does other work: not compared.
        c.record(true, lens, ms(50));
        assert_eq!(
            c.get(),
            StepChoice::Timing {
                separate: 1,
                folded: 0
            }
        );
        assert!(c.get().folded());
        settle(&c, OFF, |folded, _| ms(if folded { 4 } else { 5 }));
        assert!(c.get().folded());
    }

    #[test]
    fn a_set_variant_is_kept_and_timing_starts_over_when_unset() {
        let c = Chooser::new(Some(true));
        c.record(false, OFF, ms(1));
        assert_eq!(c.get(), StepChoice::Set { folded: true });
        c.set(Some(false));
        assert!(!c.get().folded());
        c.set(None);
        assert_eq!(
            c.get(),
            StepChoice::Timing {
                separate: 0,
                folded: 0
            }
        );
        settle(&c, OFF, |folded, _| ms(if folded { 2 } else { 5 }));
        assert!(c.get().folded());
    }
}
