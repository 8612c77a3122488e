//! The browser build's read-back: results come back through the page's event loop, which a
//! blocking wait would freeze, so a step is submitted in one poll of the engine and collected in
//! a later one (the caller sees `LlmError::GpuPending` until then and calls again).

use std::sync::{Arc, Mutex};

use crate::backend::ForwardOutput;
use crate::error::{LlmError, Result};

/// Which step a result in flight belongs to: a call for another one must not take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StepKey {
    pub cache: u64,
    pub pos: usize,
    pub tokens: Vec<u32>,
    pub record: bool,
    pub lens: bool,
}

/// A submitted step whose staging buffer is being mapped.
#[derive(Debug)]
pub(super) struct InFlight {
    key: StepKey,
    len: u64,
    /// Set by wgpu's callback: the mapping's outcome.
    mapped: Arc<Mutex<Option<std::result::Result<(), String>>>>,
}

/// The step of the model whose results are on their way back, if any.
#[derive(Debug, Default)]
pub(crate) struct WebReads {
    in_flight: Mutex<Option<InFlight>>,
}

impl WebReads {
    /// `key`'s results once they are back; `None` when nothing is in flight for it (submit it);
    /// `GpuPending` while a step's results are still on their way (this one's, or an abandoned
    /// session's, whose results are then dropped).
    pub(super) fn collect(&self, key: &StepKey, staging: &wgpu::Buffer) -> Result<Option<Vec<u8>>> {
        let mut slot = self
            .in_flight
            .lock()
            .map_err(|_| LlmError::Gpu("an earlier step failed mid-way".into()))?;
        let Some(flight) = slot.as_ref() else {
            return Ok(None);
        };
        let outcome = flight.mapped.lock().ok().and_then(|m| m.clone());
        let Some(outcome) = outcome else {
            return Err(LlmError::GpuPending);
        };
        let Some(flight) = slot.take() else {
            return Ok(None);
        };
        outcome.map_err(|e| LlmError::Gpu(format!("reading results back: {e}")))?;
        let bytes =
            (flight.key == *key).then(|| staging.slice(..flight.len).get_mapped_range().to_vec());
        staging.unmap();
        Ok(bytes)
    }

    /// Ask for the first `len` bytes of `staging`, for the step just submitted.
    pub(super) fn start(
        &self,
        key: StepKey,
        staging: &wgpu::Buffer,
        len: u64,
    ) -> Result<ForwardOutput> {
        let mapped = Arc::new(Mutex::new(None));
        let done = mapped.clone();
        staging
            .slice(..len)
            .map_async(wgpu::MapMode::Read, move |r| {
                if let Ok(mut m) = done.lock() {
                    *m = Some(r.map_err(|e| e.to_string()));
                }
            });
        let mut slot = self
            .in_flight
            .lock()
            .map_err(|_| LlmError::Gpu("an earlier step failed mid-way".into()))?;
        *slot = Some(InFlight { key, len, mapped });
        Err(LlmError::GpuPending)
    }
}
