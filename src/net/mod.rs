//! Serving HTTP and WebSockets with bounds a public server needs: a cap on open
//! connections (in all, and per peer address), a time limit on reading a request's
//! headers (the WebSocket handshake, and a kept-alive connection waiting for its next
//! request), and counts of what was refused. The game server and the dashboard both
//! serve through [`serve`].
//!
//! A connection counts until its socket closes, upgraded to a WebSocket or not: the
//! slot is held by the socket itself, which the WebSocket takes over.
//!
//! A server also takes connections from clients in its own process ([`local`]), served
//! the same way over in-process streams; clients open either kind through [`Dial`].

mod dial;
mod local;

pub use dial::{ClientSocket, Dial, DialError, Stream};
pub use local::{LOCAL_BUFFER_BYTES, LocalDialer, LocalListener, local};

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The open-file limits of this process (sockets count as files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises this process's soft limit on open files to its hard limit, as far as the
/// system allows, and returns the limits then in force. Every command calls it at
/// start: a default soft limit (often 1,024) is far below what bots and servers need.
pub fn raise_file_limit() -> io::Result<FileLimit> {
    let (_, hard) = rlimit::Resource::NOFILE.get()?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    Ok(FileLimit { soft, hard })
}

/// Connections the kernel queues for a listener before it accepts them (capped by
/// `net.core.somaxconn`). The standard library asks for 128: bots that open their
/// sockets together overflow that, and a client whose handshake is dropped tries again
/// only a second later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener on `addr` ("host:port", a name resolved first; the first
/// address that binds), with address reuse as the standard library sets it and a
/// queue of [`LISTEN_BACKLOG`] connections.
pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for at in tokio::net::lookup_host(addr).await? {
        let socket = if at.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(at).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// Sockets one bot keeps open: one per endpoint it uses (login, find, lobby, hero,
/// action).
pub const SOCKETS_PER_BOT: u64 = 5;

/// Files a process needs beside its bots' sockets: the runtime, the store, the broker,
/// table files being written, a margin.
pub const FILES_BESIDE_BOTS: u64 = 512;

/// Whether `bots` fit in `limit`, their server's side of each socket too when the
/// server runs in the same process; otherwise why not, with the numbers.
pub fn bots_fit(bots: u64, with_server: bool, limit: FileLimit) -> Result<(), String> {
    let sides = if with_server { 2 } else { 1 };
    let needed = bots
        .saturating_mul(SOCKETS_PER_BOT * sides)
        .saturating_add(FILES_BESIDE_BOTS);
    if needed <= limit.soft {
        return Ok(());
    }
    let fit = limit.soft.saturating_sub(FILES_BESIDE_BOTS) / (SOCKETS_PER_BOT * sides);
    Err(format!(
        "{bots} bots need about {needed} open files ({SOCKETS_PER_BOT} sockets each{}, \
         and {FILES_BESIDE_BOTS} more), but this process may open {} (hard limit {}): \
         ask for at most {fit} bots, or raise the limit (ulimit -n)",
        if with_server {
            ", and the server's side of each"
        } else {
            ""
        },
        limit.soft,
        limit.hard,
    ))
}

/// How many connections a server holds open, and how long a client may take to send
/// a request's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections in all; more are answered 503 and closed.
    pub max_connections: usize,
    /// Open connections from one peer address (0: no limit of its own).
    pub max_per_peer: usize,
    /// Time to send a request's headers once connected or after a reply, so that
    /// neither a handshake nor an idle kept-alive connection holds a slot for ever.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_per_peer: 0,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// What a server refused, for its summary.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub accepted: AtomicU64,
    /// Answered 503: the server or the peer was at its cap.
    pub refused: AtomicU64,
    /// `accept` failed (out of descriptors, mostly).
    pub accept_errors: AtomicU64,
}

/// Open connections in all and by peer.
#[derive(Debug, Default)]
struct Slots {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Gate {
    limits: ConnectionLimits,
    slots: Mutex<Slots>,
}

impl Gate {
    /// Takes a slot for a connection from `peer`, or `None` at a cap.
    fn enter(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mine = slots.by_peer.get(&peer).copied().unwrap_or(0);
        let per_peer_full = self.limits.max_per_peer > 0 && mine >= self.limits.max_per_peer;
        if slots.total >= self.limits.max_connections || per_peer_full {
            return None;
        }
        slots.total += 1;
        *slots.by_peer.entry(peer).or_default() += 1;
        Some(Slot {
            gate: self.clone(),
            peer,
        })
    }
}

/// One open connection's place; given back when dropped.
#[derive(Debug)]
struct Slot {
    gate: Arc<Gate>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut slots = self.gate.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.total = slots.total.saturating_sub(1);
        if let Some(n) = slots.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                slots.by_peer.remove(&self.peer);
            }
        }
    }
}

/// A socket holding its connection's slot until it is dropped.
struct Counted {
    io: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The reply to a connection over a cap.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 21\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n";

/// How long a refused client gets to take its 503.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// How long requests being answered get to finish once the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long the accept loop pauses after `accept` failed, so that running out of
/// descriptors does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// What a server accepts connections from: a TCP listener, in-process clients, or
/// both at once.
#[derive(Debug, Default)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub local: Option<LocalListener>,
}

impl From<TcpListener> for Listeners {
    fn from(tcp: TcpListener) -> Self {
        Self {
            tcp: Some(tcp),
            local: None,
        }
    }
}

impl From<LocalListener> for Listeners {
    fn from(local: LocalListener) -> Self {
        Self {
            tcp: None,
            local: Some(local),
        }
    }
}

/// The next socket of `tcp`; never, without one.
async fn accept_tcp(tcp: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match tcp {
        Some(tcp) => tcp.accept().await,
        None => std::future::pending().await,
    }
}

/// The next in-process connection; never, without a listener or once its dialers
/// are all gone.
async fn accept_local(local: &mut Option<LocalListener>) -> DuplexStream {
    if let Some(listener) = local {
        if let Some(io) = listener.accept().await {
            return io;
        }
        *local = None;
    }
    std::future::pending().await
}

/// Serves `router` on `listeners` until `shutdown` completes, then waits for the
/// connections still answering a request (WebSockets run on by themselves; their
/// handlers decide when they end). TCP connections count against `limits`;
/// in-process ones come from this process's own clients and are bounded by them.
pub async fn serve(
    listeners: impl Into<Listeners>,
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Listeners { tcp, mut local } = listeners.into();
    let gate = Arc::new(Gate {
        limits,
        slots: Mutex::new(Slots::default()),
    });
    // Each connection's task holds a sender: when all are gone, so are they.
    let (alive, mut all_gone) = tokio::sync::mpsc::channel::<()>(1);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connections = Connections {
        http,
        router,
        alive,
        stopping,
    };
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer): (TcpStream, SocketAddr) = tokio::select! {
            accepted = accept_tcp(tcp.as_ref()) => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if stats.accept_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!("cannot accept a connection: {e} (counted from now on)");
                    }
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
            io = accept_local(&mut local) => {
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                connections.spawn(io, "in-process");
                continue;
            }
            () = &mut shutdown => break,
        };
        let Some(slot) = gate.enter(peer.ip()) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::telemetry::names::CONNECTIONS_REFUSED).increment(1);
            tokio::spawn(refuse(tcp));
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        // Every request is a small frame waiting on its reply: send it at once.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        connections.spawn(
            Counted {
                io: tcp,
                _slot: slot,
            },
            peer,
        );
    }
    drop((tcp, local));
    let _ = stop.send(true);
    drop(connections);
    // A request that streams for ever (the dashboard's events) does not hold the
    // shutdown past the grace.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, all_gone.recv()).await;
    Ok(())
}

/// What every accepted connection is served with.
struct Connections {
    http: hyper::server::conn::http1::Builder,
    router: Router,
    /// Held by each connection's task.
    alive: tokio::sync::mpsc::Sender<()>,
    /// Turns true when the server stops.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Connections {
    /// Serves HTTP on `io` in a task of its own, with upgrades to WebSockets, until
    /// the client is done or the server stops.
    fn spawn<I>(&self, io: I, peer: impl fmt::Display + Send + 'static)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.router.clone());
        let conn = self
            .http
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let (alive, mut stopping) = (self.alive.clone(), self.stopping.clone());
        tokio::spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                () = async { let _ = stopping.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!("connection from {peer} ended: {e}");
            }
            drop(alive);
        });
    }
}

/// Tells a client over a cap why it is turned away, briefly, and closes.
async fn refuse(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        tcp.write_all(REFUSAL).await?;
        tcp.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crowd connecting at once is queued, not dropped: with the standard 128, the
    /// handshakes past the queue would wait for ever, as nothing here accepts.
    #[tokio::test]
    async fn a_listener_queues_a_crowd_of_connections() {
        const CROWD: usize = 600;
        raise_file_limit().unwrap();
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connects: Vec<_> = (0..CROWD)
            .map(|_| tokio::spawn(TcpStream::connect(addr)))
            .collect();
        let mut open = Vec::with_capacity(CROWD);
        for connect in connects {
            let stream = tokio::time::timeout(Duration::from_secs(30), connect)
                .await
                .expect("a connection the listener dropped")
                .unwrap()
                .unwrap();
            open.push(stream);
        }
        assert_eq!(open.len(), CROWD);
        drop(listener);
    }

    #[test]
    fn slots_cap_in_all_and_per_peer() {
        let gate = Arc::new(Gate {
            limits: ConnectionLimits {
                max_connections: 3,
                max_per_peer: 2,
                header_timeout: Duration::from_secs(1),
            },
            slots: Mutex::new(Slots::default()),
        });
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = gate.enter(a).unwrap();
        let _a2 = gate.enter(a).unwrap();
        assert!(gate.enter(a).is_none(), "per peer");
        let b1 = gate.enter(b).unwrap();
        assert!(gate.enter(b).is_none(), "in all");
        drop(a1);
        assert!(gate.enter(a).is_some(), "a slot given back is free again");
        drop(b1);
        let slots = gate.slots.lock().unwrap();
        assert_eq!(slots.total, 1);
        assert!(!slots.by_peer.contains_key(&b), "no peer left behind");
    }

    #[test]
    fn bots_fit_their_files() {
        let limit = FileLimit {
            soft: 10_512,
            hard: 20_000,
        };
        assert!(bots_fit(2_000, false, limit).is_ok());
        assert!(bots_fit(1_000, true, limit).is_ok());
        let err = bots_fit(1_001, true, limit).unwrap_err();
        assert!(
            err.contains("1001 bots need about 10522 open files"),
            "{err}"
        );
        assert!(err.contains("ask for at most 1000 bots"), "{err}");
        assert!(err.contains("may open 10512 (hard limit 20000)"), "{err}");
        assert!(bots_fit(u64::MAX, true, limit).is_err(), "no overflow");
    }

    #[test]
    fn the_refusal_is_a_whole_http_reply() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
