//! A connection of its own to Redis, spoken to in RESP2 directly and read with the
//! `redis-protocol` parser, for the two readers that carry every message: pub/sub
//! subscriptions and Redis Streams reads.
//!
//! The client library decodes each reply into a tree of generic values through a
//! parser combinator, about a microsecond a value: over a quarter of the CPU of a
//! process running the fan-out (its messages cross two subscriptions), and as much
//! of a Redis Streams consumer's. Here a reply is found in the read buffer as ranges,
//! and only payloads are copied out. Commands go out in order and their replies come
//! back in order, so a caller may keep several under way.

use std::time::Duration;

use bytes::BytesMut;
use redis::{ConnectionAddr, ConnectionInfo};
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::redis_client::RESPONSE_TIMEOUT;

/// Bytes read from the socket at a time, at least.
const READ_CHUNK: usize = 64 * 1024;

/// The longest reply accepted: longer, and the connection is given up (Redis's own
/// default ceiling for one value is 512 MiB; nothing sent here comes near this).
const MAX_REPLY: usize = 64 * 1024 * 1024;

/// An open, authenticated connection, on the database the address names.
pub(super) struct RespConnection {
    stream: TcpStream,
    buf: BytesMut,
}

/// One whole reply: its frame, as ranges into its bytes.
pub(super) struct Reply {
    pub frame: RangeFrame,
    pub bytes: BytesMut,
}

impl Reply {
    /// The bytes of a string frame of this reply.
    pub fn text(&self, frame: &RangeFrame) -> Option<&[u8]> {
        match frame {
            RangeFrame::BulkString((from, to)) | RangeFrame::SimpleString((from, to)) => {
                self.bytes.get(*from..*to)
            }
            _ => None,
        }
    }

    /// Redis's error message, if the reply is an error.
    pub fn error(&self) -> Option<String> {
        match self.frame {
            RangeFrame::Error((from, to)) => Some(
                String::from_utf8_lossy(self.bytes.get(from..to).unwrap_or_default()).into_owned(),
            ),
            _ => None,
        }
    }
}

/// The items of an array frame; nothing for anything else (a null reply among them).
pub(super) fn items(frame: &RangeFrame) -> &[RangeFrame] {
    match frame {
        RangeFrame::Array(items) => items,
        _ => &[],
    }
}

impl RespConnection {
    /// Connects as `info` says, authenticates if it names a password, and selects its
    /// database.
    pub(super) async fn open(info: &ConnectionInfo) -> Result<Self, String> {
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.as_str(), *port),
            other => return Err(format!("readers need a TCP address, not {other}")),
        };
        let stream = tokio::time::timeout(RESPONSE_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| format!("no connection to {host}:{port} within {RESPONSE_TIMEOUT:?}"))?
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut conn = Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = vec!["AUTH".as_bytes()];
            auth.extend(settings.username().map(str::as_bytes));
            auth.push(password.as_bytes());
            conn.ask(&auth, "AUTH").await?;
        }
        if settings.db() != 0 {
            let db = settings.db().to_string();
            conn.ask(&[b"SELECT", db.as_bytes()], "SELECT").await?;
        }
        Ok(conn)
    }

    /// Sends one command and waits for its reply; Redis's error is the error.
    pub(super) async fn ask(&mut self, args: &[&[u8]], what: &str) -> Result<Reply, String> {
        self.send(args).await?;
        let reply = self.reply_within(RESPONSE_TIMEOUT).await?;
        match reply.error() {
            Some(e) => Err(format!("Redis refused {what}: {e}")),
            None => Ok(reply),
        }
    }

    /// Writes one command, its arguments as bulk strings.
    pub(super) async fn send(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| format!("writing to Redis: {e}"))
    }

    /// The next whole reply, or pushed message, taken off the buffer.
    pub(super) async fn reply(&mut self) -> Result<Reply, String> {
        loop {
            if let Some((frame, len)) = decode_range(&self.buf).map_err(|e| e.to_string())? {
                let bytes = self.buf.split_to(len);
                return Ok(Reply { frame, bytes });
            }
            if self.buf.len() > MAX_REPLY {
                return Err(format!("a reply longer than {MAX_REPLY} bytes"));
            }
            self.buf.reserve(READ_CHUNK);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err("Redis closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading from Redis: {e}")),
            }
        }
    }

    /// [`Self::reply`], or an error after `wait` with none.
    pub(super) async fn reply_within(&mut self, wait: Duration) -> Result<Reply, String> {
        tokio::time::timeout(wait, self.reply())
            .await
            .map_err(|_| format!("no reply from Redis within {wait:?}"))?
    }
}
