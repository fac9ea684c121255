//! The client side: opening a WebSocket to a game server, over TCP or in-process.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::http::header::{
    CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::{Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::local::LocalDialer;

/// Where a client reaches a game server.
#[derive(Clone, Debug)]
pub enum Dial {
    /// A `ws://host:port` base URL, reached over TCP.
    Url(String),
    /// A server in this process, reached without sockets.
    Local(LocalDialer),
}

impl fmt::Display for Dial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dial::Url(url) => f.write_str(url),
            Dial::Local(_) => f.write_str("the in-process server"),
        }
    }
}

/// A client's WebSocket, whichever way it was opened.
pub type ClientSocket = WebSocketStream<Stream>;

/// Why a WebSocket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{0} is not a ws:// URL with a host (TLS is not built in)")]
    Url(String),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the server answered {0} instead of switching to a WebSocket")]
    Refused(StatusCode),
    #[error("the server's Sec-WebSocket-Accept does not match the key sent")]
    BadAccept,
}

impl Dial {
    /// Opens a WebSocket to `path` (such as `/api/v1/login`) on this server: an HTTP/1.1
    /// upgrade request over a new connection, then WebSocket frames on it, read
    /// through a buffer of `config`'s read size. (The WebSocket library's own client
    /// handshake reads through 4 KiB that then stay with the connection for its life:
    /// most of an idle bot's memory.)
    pub async fn open(
        &self,
        path: &str,
        config: WebSocketConfig,
    ) -> Result<ClientSocket, DialError> {
        let (io, host, target) = match self {
            Dial::Url(base) => {
                let url = format!("{}{path}", base.trim_end_matches('/'));
                let bad = || DialError::Url(crate::url::redact(&url));
                let uri: Uri = url.parse().map_err(|_| bad())?;
                let host = match (uri.scheme_str(), uri.host()) {
                    (Some("ws"), Some(host)) => host,
                    _ => return Err(bad()),
                };
                let port = uri.port_u16().unwrap_or(80);
                let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
                // Requests are small frames waiting on their reply: send them at once.
                tcp.set_nodelay(true)?;
                // Host and port, never credentials.
                let authority = match uri.port_u16() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                };
                // The base URL's own path, if any, comes before the endpoint's.
                let target = uri
                    .path_and_query()
                    .map_or(path, |p| p.as_str())
                    .to_string();
                (Stream::Tcp(tcp), authority, target)
            }
            Dial::Local(dialer) => {
                let io = Stream::Local(dialer.connect().await?);
                (io, "localhost".to_string(), path.to_string())
            }
        };
        let key = generate_key();
        let request = Request::get(target.as_str())
            .header(HOST, host)
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "websocket")
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_KEY, &key)
            .body(Empty::<Bytes>::new())
            .map_err(|_| DialError::Url(target.clone()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        // The connection is driven until the upgrade takes it over.
        let upgrade = async {
            let response = sender.send_request(request).await?;
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                return Err(DialError::Refused(response.status()));
            }
            let accept = response.headers().get(SEC_WEBSOCKET_ACCEPT);
            if accept.map(|a| a.as_bytes()) != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
                return Err(DialError::BadAccept);
            }
            Ok(hyper::upgrade::on(response).await?)
        };
        let (upgraded, _) = tokio::try_join!(upgrade, async {
            conn.with_upgrades().await.map_err(DialError::from)
        })?;
        // Back to the bare stream: the HTTP read buffer (8 KiB) is let go, and what
        // the server may have sent right after its answer goes to the WebSocket.
        let parts = upgraded
            .downcast::<TokioIo<Stream>>()
            .map_err(|_| DialError::Io(io::Error::other("an upgraded stream of another type")))?;
        let early = parts.read_buf.to_vec();
        let stream = parts.io.into_inner();
        Ok(WebSocketStream::from_partially_read(stream, early, Role::Client, Some(config)).await)
    }
}

/// A TCP socket or an in-process stream.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Local(DuplexStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            Stream::Local(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            Stream::Local(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(io) => Pin::new(io).poll_flush(cx),
            Stream::Local(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            Stream::Local(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_ws_urls_with_a_host_are_dialed() {
        for bad in [
            "http://localhost:1",
            "wss://localhost:1",
            "ws://",
            "not a url",
        ] {
            let err = Dial::Url(bad.into())
                .open("/api/v1/login", WebSocketConfig::default())
                .await
                .unwrap_err();
            assert!(matches!(err, DialError::Url(_)), "{bad}: {err}");
        }
        let err = Dial::Url("wss://user:secret@localhost:1".into())
            .open("/", WebSocketConfig::default())
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[tokio::test]
    async fn a_stopped_in_process_server_refuses() {
        let (dialer, listener) = super::super::local();
        drop(listener);
        let err = Dial::Local(dialer)
            .open("/api/v1/login", WebSocketConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DialError::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused),
            "{err}"
        );
    }
}
