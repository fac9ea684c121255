//! Connections inside one process: a client asks a [`LocalDialer`] for a stream, and
//! the server's accept loop takes the other end from the matching [`LocalListener`],
//! exactly as it takes a socket from a TCP listener. What runs over the stream is
//! unchanged — the HTTP upgrade, the WebSocket frames, the handlers — only the kernel
//! is left out: no descriptors, no system calls, no loopback copies.

use std::io;

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// Bytes one direction of an in-process connection holds before its writer waits for
/// the reader: more than the largest message a server reads, so that a frame never
/// waits on half of itself.
pub const LOCAL_BUFFER_BYTES: usize = 128 * 1024;

/// Connections handed to the server's accept loop and not yet taken.
const PENDING_CONNECTIONS: usize = 1024;

/// Opens in-process connections to one server.
#[derive(Clone, Debug)]
pub struct LocalDialer {
    server: mpsc::Sender<DuplexStream>,
}

/// The server's end: the in-process connections clients opened.
#[derive(Debug)]
pub struct LocalListener {
    clients: mpsc::Receiver<DuplexStream>,
}

/// A dialer and the listener it reaches.
pub fn local() -> (LocalDialer, LocalListener) {
    let (server, clients) = mpsc::channel(PENDING_CONNECTIONS);
    (LocalDialer { server }, LocalListener { clients })
}

impl LocalDialer {
    /// A new connection; refused once the server stopped listening.
    pub async fn connect(&self) -> io::Result<DuplexStream> {
        let (client, server) = tokio::io::duplex(LOCAL_BUFFER_BYTES);
        self.server.send(server).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the in-process server has stopped",
            )
        })?;
        Ok(client)
    }
}

impl LocalListener {
    /// The next connection; `None` once every dialer is gone.
    pub async fn accept(&mut self) -> Option<DuplexStream> {
        self.clients.recv().await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn bytes_cross_both_ways_and_a_stopped_server_refuses() {
        let (dialer, mut listener) = local();
        let mut client = dialer.connect().await.unwrap();
        let mut server = listener.accept().await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server.write_all(b"pong").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        drop(listener);
        let refused = dialer.connect().await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn the_listener_ends_with_its_dialers() {
        let (dialer, mut listener) = local();
        drop(dialer);
        assert!(listener.accept().await.is_none());
    }
}
