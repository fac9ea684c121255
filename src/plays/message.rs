//! The play message on the queue: JSON with the video id and its enqueue time, as in
//! the original, plus a sequence number so a redelivered message counts once.
//!
//! `{"video_id":"6f1c…","enqueued_at":1763884800.123456,"seq":42}` — `enqueued_at`
//! is seconds since the Unix epoch, as Python's `time.time()` gives it.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Sequence numbers of one run stay below this (2^28 messages): the processor keeps
/// one bit per number to count each message once.
pub const MAX_SEQ: u64 = 1 << 28;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlayMessage<'a> {
    /// Borrowed from the message unless it has escapes.
    #[serde(borrow)]
    pub video_id: Cow<'a, str>,
    pub enqueued_at: f64,
    pub seq: u64,
}

#[derive(Debug, Error, PartialEq)]
pub enum MessageError {
    #[error("not a play message: {0}")]
    Json(String),
    #[error("a play message needs a video_id")]
    NoVideo,
    #[error("sequence number {0} is out of range (at most {MAX_SEQ})")]
    Seq(u64),
    #[error("enqueued_at {0} is not a time")]
    Time(f64),
}

impl<'a> PlayMessage<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MessageError> {
        let m: PlayMessage<'a> =
            serde_json::from_slice(bytes).map_err(|e| MessageError::Json(e.to_string()))?;
        if m.video_id.is_empty() {
            return Err(MessageError::NoVideo);
        }
        if m.seq >= MAX_SEQ {
            return Err(MessageError::Seq(m.seq));
        }
        if !m.enqueued_at.is_finite() || m.enqueued_at < 0.0 {
            return Err(MessageError::Time(m.enqueued_at));
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of a string and two numbers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Now, in seconds since the Unix epoch.
pub fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let m = PlayMessage {
            video_id: "6f1c2b4e-0000-4000-8000-000000000001".into(),
            enqueued_at: 1_763_884_800.25,
            seq: 42,
        };
        let bytes = m.to_bytes();
        assert_eq!(PlayMessage::parse(&bytes).unwrap(), m);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"video_id\""), "{text}");
        assert!(text.contains("\"enqueued_at\""), "{text}");
    }

    #[test]
    fn bad_messages_are_named() {
        assert!(matches!(
            PlayMessage::parse(b"{\"video"),
            Err(MessageError::Json(_))
        ));
        let escaped = PlayMessage::parse(br#"{"video_id":"a\u0062","enqueued_at":1,"seq":1}"#);
        assert_eq!(escaped.unwrap().video_id, "ab");
        assert_eq!(
            PlayMessage::parse(br#"{"video_id":"","enqueued_at":1,"seq":1}"#),
            Err(MessageError::NoVideo)
        );
        assert_eq!(
            PlayMessage::parse(br#"{"video_id":"a","enqueued_at":1,"seq":268435456}"#),
            Err(MessageError::Seq(MAX_SEQ))
        );
        assert_eq!(
            PlayMessage::parse(br#"{"video_id":"a","enqueued_at":-1,"seq":1}"#),
            Err(MessageError::Time(-1.0))
        );
    }
}
