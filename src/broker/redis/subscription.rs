//! One pub/sub subscription, on a connection of its own read directly ([`super::resp`]).

use redis::ConnectionInfo;

use super::resp::{RespConnection, items};

/// A subscribed connection.
pub(super) struct Subscription {
    conn: RespConnection,
}

impl Subscription {
    /// Connects as `info` says and subscribes `channel`; from the return on, nothing
    /// published there is missed.
    pub(super) async fn open(info: &ConnectionInfo, channel: &str) -> Result<Self, String> {
        let mut conn = RespConnection::open(info).await?;
        let confirmed = conn
            .ask(&[b"SUBSCRIBE", channel.as_bytes()], "SUBSCRIBE")
            .await?;
        let kind = items(&confirmed.frame).first();
        if kind.and_then(|k| confirmed.text(k)) != Some(b"subscribe") {
            return Err("Redis answered SUBSCRIBE with something else".into());
        }
        Ok(Self { conn })
    }

    /// The payload of the next message published on the channel; an error once the
    /// connection is lost or Redis sent what is not RESP. Whatever else Redis pushes
    /// (confirmations, pongs) is skipped.
    pub(super) async fn next(&mut self) -> Result<Vec<u8>, String> {
        loop {
            let push = self.conn.reply().await?;
            if let Some(e) = push.error() {
                return Err(format!("Redis: {e}"));
            }
            // A message is [message, channel, payload].
            if let [kind, _, payload] = items(&push.frame)
                && push.text(kind) == Some(b"message")
            {
                return match push.text(payload) {
                    Some(p) => Ok(p.to_vec()),
                    None => Err("a pub/sub message without a payload".into()),
                };
            }
        }
    }
}
