//! Bounded concurrency with a bounded queue: a ticket holds a slot to generate in; beyond the queue, 503 with Retry-After.

use std::sync::atomic::Ordering;

use axum::response::Response;

use crate::reqlog::Ledger;
use crate::state::Shared;
use crate::wire::unavailable;

/// A slot to generate in, or a 503 when the queue is full. Dropping it frees the slot.
pub(crate) struct Ticket {
    pub(crate) state: Shared,
    pub(crate) _permit: tokio::sync::OwnedSemaphorePermit,
    _place: Place,
    /// The request's record: when it got the slot, and (dropped) when it let go.
    pub(crate) held: Held,
}

/// A slot held for a request; dropping it records when the slot was freed.
pub(crate) struct Held(pub(crate) Ledger);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.freed_slot();
    }
}

/// Counts a request in `in_system` from the moment it asks; dropping it (answered, refused, or
/// its client gone while it waited, when hyper drops the handler at the await) counts it out.
struct Place(Shared);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.in_system.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `ledger`: the request's record (its wait for the slot, the time it holds it).
pub(crate) async fn ticket(state: &Shared, ledger: &Ledger) -> Result<Ticket, Response> {
    let limit = state.options.concurrency.max(1) + state.options.queue;
    let before = state.in_system.fetch_add(1, Ordering::SeqCst);
    let place = Place(state.clone());
    if state.stopping.get().is_some() {
        return Err(shutting_down());
    }
    if before >= limit {
        return Err(unavailable(format!(
            "busy: {} requests generating and {} waiting; try again",
            state.options.concurrency, state.options.queue
        )));
    }
    ledger.asked_slot();
    match state.slots.clone().acquire_owned().await {
        Ok(permit) => {
            ledger.got_slot();
            Ok(Ticket {
                state: state.clone(),
                _permit: permit,
                _place: place,
                held: Held(ledger.clone()),
            })
        }
        // Closed at SIGTERM: those still waiting go elsewhere at once.
        Err(_) => Err(shutting_down()),
    }
}

fn shutting_down() -> Response {
    unavailable("this instance is shutting down; try again".into())
}
