//! The accept loop: HTTP/1 connections of one request each, with a bound on how long a client
//! may take to send its headers (axum's own `serve` sets no timer, so a client that sends one
//! byte a minute held its connection forever), on how long a write to it may make no progress,
//! and on how many connections are open at once; on shutdown it stops accepting and lets each
//! connection finish its answer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;

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
            // One request a connection (`Connection: close` on each answer). A kept-alive
            // connection we closed when idle could meet a proxy's next request on the way:
            // Cloud Run's front end and Google's load balancers keep theirs for minutes, and
            // a request that arrives as the socket closes is lost (the caller sees a 502).
            // A new connection costs a handshake, nothing beside an answer's generation.
            builder
                .timer(TokioTimer::new())
                .keep_alive(false)
                .header_read_timeout(limits::HEADER_READ);
            let io = TokioIo::new(WriteBound {
                io: tcp,
                stalled: None,
            });
            let conn = builder.serve_connection(io, service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    // Closed now: a new connection is refused at once instead of waiting in the backlog, never
    // answered, until the process exits.
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends.
    let _ = open.acquire_many(limits::CONNECTIONS as u32).await;
    Ok(())
}

/// A connection whose writes must make progress: a write or flush still pending `WRITE_STALL`
/// after it first was fails, and hyper closes the connection. A client that stops reading
/// (its TCP window shut) otherwise held its connection, and the rest of its answer in memory,
/// for good: hyper's own timer covers only reading a request's head.
struct WriteBound<T> {
    io: T,
    /// Set while a write waits; any progress clears it.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteBound<T> {
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limits::WRITE_STALL)));
        if timer.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the answer for too long",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteBound<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteBound<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}
