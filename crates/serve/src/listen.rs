//! The accept loop: HTTP/1 connections with a bound on how long a client may take to send its
//! headers (axum's own `serve` sets no timer, so a client that sends one byte a minute held its
//! connection forever) and on how many connections are open at once; on shutdown it stops
//! accepting and lets each connection finish its answer.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::args::limits;

/// Serve `app` on `listener` until `shutdown` resolves, then until the open connections end.
pub(crate) async fn serve_until(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let open = Arc::new(Semaphore::new(limits::CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // At the connection bound, new ones wait in the kernel's backlog until one closes.
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: wait a moment, do not spin.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // No Nagle: a small streamed chunk must not wait for the client's delayed ACK (~40 ms).
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits::HEADER_READ);
            let conn = builder.serve_connection(TokioIo::new(tcp), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends.
    let _ = open.acquire_many(limits::CONNECTIONS as u32).await;
    Ok(())
}
