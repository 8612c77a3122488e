//! A connected remote server, as the engine holds it: natively the client and the runtime it
//! blocks on; in the browser, the way to the task on the page's event loop that owns the client.

#[cfg(target_arch = "wasm32")]
use std::sync::mpsc::Sender;
#[cfg(target_arch = "wasm32")]
use std::sync::mpsc::channel;

use llm::{CancelToken, GenerationRequest, StopReason};

use super::EventSender;
use super::protocol::Event;

#[cfg(not(target_arch = "wasm32"))]
pub(super) struct RemoteLink {
    client: remote::RemoteClient,
    runtime: tokio::runtime::Runtime,
}

#[cfg(target_arch = "wasm32")]
pub(super) struct RemoteLink {
    requests: Sender<(GenerationRequest, CancelToken)>,
    /// Answers asked for and not yet ended (queued or running in the connection's task).
    answers: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The probe's outcome, set by the connection's task: `PROBING`, `ANSWERED` or `ENDED`.
    state: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

#[cfg(target_arch = "wasm32")]
const PROBING: u8 = 0;
#[cfg(target_arch = "wasm32")]
const ANSWERED: u8 = 1;
#[cfg(target_arch = "wasm32")]
const ENDED: u8 = 2;

/// What a failed probe says (a stopped one: that it was stopped).
fn probe_error(e: remote::RemoteError) -> String {
    match e {
        remote::RemoteError::Cancelled => "Connect was stopped".to_string(),
        e => e.to_string(),
    }
}

/// A client for `config` on a runtime of its own, and the server's answer to its probe (the
/// cold start of a serverless endpoint is spent in this call; every wait in it is bounded by the
/// client's timeouts and retries, `cancel` ends it within a second, and its waits are reported
/// to `on_status`).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_remote(
    config: remote::RemoteConfig,
    cancel: &CancelToken,
    on_status: &mut dyn FnMut(String),
) -> Result<
    (
        remote::RemoteClient,
        tokio::runtime::Runtime,
        remote::ServerInfo,
    ),
    String,
> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut client = remote::RemoteClient::new(config).map_err(|e| e.to_string())?;
    let mut on_event = |e: remote::RemoteEvent| {
        if let remote::RemoteEvent::Status(s) = e {
            on_status(s);
        }
    };
    let info = runtime
        .block_on(client.probe_watched(cancel, &mut on_event))
        .map_err(probe_error)?;
    Ok((client, runtime, info))
}

/// Probe the server at `config`: natively now (`Connected` or the error is sent), returning the
/// link on success; in the browser a task probes and reports, and the link is returned at once.
/// Stop (`cancel`) ends the probe within a second.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn connect(
    config: remote::RemoteConfig,
    events: &EventSender,
    cancel: &CancelToken,
) -> Option<RemoteLink> {
    let url = config.url.clone();
    let mut on_status = |s: String| {
        let _ = events.send(Event::Status(s));
    };
    match open_remote(config, cancel, &mut on_status) {
        Ok((client, runtime, info)) => {
            let model = client.model().map(String::from);
            let _ = events.send(Event::Connected { url, info, model });
            Some(RemoteLink { client, runtime })
        }
        Err(e) => {
            let _ = events.send(Event::Error(e));
            None
        }
    }
}

/// Browser build: the client lives in a task on the page's event loop; it probes, reports
/// `Connected` (then generation goes there) or the error, and answers requests in turn.
#[cfg(target_arch = "wasm32")]
pub(super) fn connect(
    config: remote::RemoteConfig,
    events: &EventSender,
    cancel: &CancelToken,
) -> Option<RemoteLink> {
    let url = config.url.clone();
    let mut client = match remote::RemoteClient::new(config) {
        Ok(c) => c,
        Err(e) => {
            let _ = events.send(Event::Error(e.to_string()));
            return None;
        }
    };
    let (requests, incoming) = channel::<(GenerationRequest, CancelToken)>();
    let answers = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ended = answers.clone();
    let (events, cancel) = (events.clone(), cancel.clone());
    let state = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(PROBING));
    let outcome = state.clone();
    wasm_bindgen_futures::spawn_local(async move {
        use std::sync::atomic::Ordering;
        let mut on_event = |e: remote::RemoteEvent| {
            if let remote::RemoteEvent::Status(s) = e {
                let _ = events.send(Event::Status(s));
            }
        };
        // The outcome is set before the event, so the engine has the link when the panel
        // acts on `Connected`.
        match client.probe_watched(&cancel, &mut on_event).await {
            Ok(info) => {
                outcome.store(ANSWERED, Ordering::SeqCst);
                let model = client.model().map(String::from);
                let _ = events.send(Event::Connected { url, info, model });
            }
            Err(e) => {
                outcome.store(ENDED, Ordering::SeqCst);
                let _ = events.send(Event::Error(probe_error(e)));
                return;
            }
        }
        loop {
            match incoming.try_recv() {
                Ok((request, token)) => {
                    answer_remote(&mut client, &request, &token, &events).await;
                    ended.fetch_sub(1, Ordering::SeqCst);
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    remote::sleep(std::time::Duration::from_millis(30)).await;
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        }
    });
    Some(RemoteLink {
        requests,
        answers,
        state,
    })
}

impl RemoteLink {
    /// Whether the server answered the probe: `None` while it is still probing (the browser's
    /// link comes back at once), `Some(false)` when the probe failed or was stopped.
    pub(super) fn answered(&self) -> Option<bool> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            Some(true)
        }
        #[cfg(target_arch = "wasm32")]
        {
            match self.state.load(std::sync::atomic::Ordering::SeqCst) {
                PROBING => None,
                s => Some(s == ANSWERED),
            }
        }
    }

    /// One answer, its steps and end sent as events; false when the link is gone.
    pub(super) fn answer(
        &mut self,
        request: &GenerationRequest,
        token: &CancelToken,
        events: &EventSender,
    ) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.runtime
                .block_on(answer_remote(&mut self.client, request, token, events));
            true
        }
        #[cfg(target_arch = "wasm32")]
        {
            // The connection's task sends the events.
            let _ = events;
            use std::sync::atomic::Ordering;
            self.answers.fetch_add(1, Ordering::SeqCst);
            let sent = self.requests.send((request.clone(), token.clone())).is_ok();
            if !sent {
                self.answers.fetch_sub(1, Ordering::SeqCst);
            }
            sent
        }
    }

    /// Whether an answer is queued or running beside the engine (the browser's connection
    /// task; natively the engine thread is inside each answer, never beside it).
    pub(super) fn answering(&self) -> bool {
        #[cfg(target_arch = "wasm32")]
        {
            self.answers.load(std::sync::atomic::Ordering::SeqCst) > 0
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            false
        }
    }
}

/// Whether an answer stopped (its token cancelled) still says how it ended. Natively yes: the
/// engine thread is inside the answer, so its end (Paused) comes in order, before whatever the
/// engine does next. In the browser the answer runs in the connection's task beside the
/// engine, which has already said what the stop meant (Paused for Stop, ResetDone,
/// Disconnected, or the next answer's prompt): a late word from the stopped answer would land
/// in the middle of what came after it.
const STOPPED_ANSWERS_SAY_SO: bool = cfg!(not(target_arch = "wasm32"));

/// One answer from the remote server, its steps and end sent as the engine's events.
async fn answer_remote(
    client: &mut remote::RemoteClient,
    request: &GenerationRequest,
    token: &CancelToken,
    events: &EventSender,
) {
    use remote::{RemoteError, RemoteEvent};
    // Stopped or replaced before it began (queued behind an answer a newer request ended).
    if token.is_cancelled() {
        if STOPPED_ANSWERS_SAY_SO {
            let _ = events.send(Event::Paused);
        }
        return;
    }
    let _ = events.send(Event::prompt(Vec::new(), Vec::new()));
    let mut on_event = |e: RemoteEvent| {
        // Once stopped, what the server still sends is not shown (the app may have moved on
        // to a new answer, a reset view or the local engine): only the end below.
        if token.is_cancelled() {
            return;
        }
        let _ = events.send(match e {
            RemoteEvent::Status(s) => Event::Status(s),
            RemoteEvent::Prompt { tokens, embeddings } => Event::prompt(tokens, embeddings),
            RemoteEvent::Step(s) => Event::RemoteStep(s),
        });
    };
    let result = client.generate(request, token, &mut on_event).await;
    if token.is_cancelled() && !STOPPED_ANSWERS_SAY_SO {
        return;
    }
    let _ = events.send(match result {
        Ok(summary) => Event::Finished(summary.stop.unwrap_or(StopReason::EndToken)),
        Err(RemoteError::Cancelled) => Event::Paused,
        Err(e) => Event::Error(e.to_string()),
    });
}
