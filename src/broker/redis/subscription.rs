//! One pub/sub subscription on a TCP connection of its own, read frame by frame with
//! the `redis-protocol` parser.
//!
//! The client library's subscriber decodes each pushed message into a generic value
//! through a parser combinator, about a microsecond a message: over a quarter of the
//! CPU of a process running the fan-out, whose messages cross two subscriptions. Here
//! a message is found in the read buffer as ranges and only its payload is copied out.

use bytes::{Buf, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo};
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::redis_client::RESPONSE_TIMEOUT;

/// Bytes read from the socket at a time, at least.
const READ_CHUNK: usize = 64 * 1024;

/// The longest frame accepted: longer, and the subscription is dropped (Redis's own
/// default ceiling for one value is 512 MiB; nothing published here comes near this).
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A subscribed connection.
pub(super) struct Subscription {
    stream: TcpStream,
    buf: BytesMut,
}

/// A whole frame Redis pushed on the subscription: a message's payload, or anything
/// else (confirmations, pongs), which is skipped.
enum Push {
    Message(Vec<u8>),
    Other,
}

impl Subscription {
    /// Connects as `info` says, authenticates if it names a password, and subscribes
    /// `channel`; from the return on, nothing published there is missed.
    pub(super) async fn open(info: &ConnectionInfo, channel: &str) -> Result<Self, String> {
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.as_str(), *port),
            other => return Err(format!("subscriptions need a TCP address, not {other}")),
        };
        let stream = tokio::time::timeout(RESPONSE_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| format!("no connection to {host}:{port} within {RESPONSE_TIMEOUT:?}"))?
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut sub = Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        };
        tokio::time::timeout(RESPONSE_TIMEOUT, sub.handshake(info, channel))
            .await
            .map_err(|_| {
                format!("Redis did not confirm the subscription within {RESPONSE_TIMEOUT:?}")
            })?
            .map(|()| sub)
    }

    async fn handshake(&mut self, info: &ConnectionInfo, channel: &str) -> Result<(), String> {
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = vec!["AUTH"];
            auth.extend(settings.username());
            auth.push(password);
            self.send(&auth).await?;
            if let (RangeFrame::Error(e), frame) = self.reply().await? {
                return Err(format!("Redis refused AUTH: {}", text(&frame, e)));
            }
        }
        self.send(&["SUBSCRIBE", channel]).await?;
        match self.reply().await? {
            (RangeFrame::Error(e), frame) => {
                Err(format!("Redis refused SUBSCRIBE: {}", text(&frame, e)))
            }
            (RangeFrame::Array(items), frame)
                if items
                    .first()
                    .is_some_and(|k| bulk(&frame, k) == Some(b"subscribe")) =>
            {
                Ok(())
            }
            _ => Err("Redis answered SUBSCRIBE with something else".into()),
        }
    }

    /// Writes one command, its arguments as bulk strings.
    async fn send(&mut self, args: &[&str]) -> Result<(), String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| format!("writing to Redis: {e}"))
    }

    /// The next whole frame, with the bytes it spans (taken off the buffer).
    async fn reply(&mut self) -> Result<(RangeFrame, BytesMut), String> {
        loop {
            if let Some((frame, len)) = decode_range(&self.buf).map_err(|e| e.to_string())? {
                return Ok((frame, self.buf.split_to(len)));
            }
            self.fill().await?;
        }
    }

    /// Reads more from the socket; an error once Redis has closed it.
    async fn fill(&mut self) -> Result<(), String> {
        if self.buf.len() > MAX_FRAME {
            return Err(format!("a frame longer than {MAX_FRAME} bytes"));
        }
        self.buf.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Err("Redis closed the connection".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("reading from Redis: {e}")),
        }
    }

    /// The payload of the next message published on the channel; an error once the
    /// connection is lost or Redis sent what is not RESP.
    pub(super) async fn next(&mut self) -> Result<Vec<u8>, String> {
        loop {
            while let Some(push) = self.take()? {
                if let Push::Message(payload) = push {
                    return Ok(payload);
                }
            }
            self.fill().await?;
        }
    }

    /// The next whole frame in the buffer, taken off it.
    fn take(&mut self) -> Result<Option<Push>, String> {
        let Some((frame, len)) = decode_range(&self.buf).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let push = match &frame {
            // A message is [message, channel, payload].
            RangeFrame::Array(items)
                if items.len() == 3 && bulk(&self.buf, &items[0]) == Some(b"message") =>
            {
                match bulk(&self.buf, &items[2]) {
                    Some(payload) => Push::Message(payload.to_vec()),
                    None => return Err("a pub/sub message without a payload".into()),
                }
            }
            RangeFrame::Error(e) => return Err(format!("Redis: {}", text(&self.buf, *e))),
            _ => Push::Other,
        };
        self.buf.advance(len);
        Ok(Some(push))
    }
}

/// The bytes of a bulk or simple string frame.
fn bulk<'b>(buf: &'b [u8], frame: &RangeFrame) -> Option<&'b [u8]> {
    match frame {
        RangeFrame::BulkString((from, to)) | RangeFrame::SimpleString((from, to)) => {
            buf.get(*from..*to)
        }
        _ => None,
    }
}

fn text(buf: &[u8], (from, to): (usize, usize)) -> String {
    String::from_utf8_lossy(buf.get(from..to).unwrap_or_default()).into_owned()
}
