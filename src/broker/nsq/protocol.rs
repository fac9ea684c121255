//! The NSQ TCP protocol (version 2), client side: the commands a client sends and the
//! frames nsqd sends back, as nsqd documents them.
//!
//! A client opens with the magic `"  V2"`. Commands are a line of text, some followed
//! by a body of `[u32 size][bytes]`; nsqd answers with frames of
//! `[u32 size][u32 frame type][data]` (size counts the type and the data), all
//! integers big-endian. Frame types: 0 response (`OK`, `CLOSE_WAIT`, `_heartbeat_`,
//! or IDENTIFY's JSON), 1 error (`E_INVALID ...`), 2 message
//! (`[i64 timestamp ns][u16 attempts][16-byte id][body]`).

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The four bytes a client sends first.
pub const MAGIC: &[u8; 4] = b"  V2";
/// The response nsqd sends as a heartbeat; a client answers it with NOP.
pub const HEARTBEAT: &[u8] = b"_heartbeat_";
/// The largest frame read; nsqd's own limits are far smaller (1 MiB messages).
pub const MAX_FRAME: usize = 64 << 20;
/// What a frame's buffer starts with before its bytes come.
const FIRST_READ: usize = 64 << 10;

const FRAME_RESPONSE: u32 = 0;
const FRAME_ERROR: u32 = 1;
const FRAME_MESSAGE: u32 = 2;
/// Timestamp, attempts and id, before a message's body.
const MESSAGE_HEADER: usize = 8 + 2 + 16;

/// A message's id, 16 printable bytes.
pub type MessageId = [u8; 16];

/// What can go wrong on an NSQ connection.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame from nsqd: {0}")]
    Malformed(String),
    /// nsqd answered with an error frame (`E_BAD_TOPIC ...`).
    #[error("nsqd refused: {0}")]
    Refused(String),
}

/// A frame from nsqd.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Response(Vec<u8>),
    Error(String),
    Message(Message),
}

/// A message as delivered.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub timestamp_ns: i64,
    /// How many times nsqd has delivered it, this time included.
    pub attempts: u16,
    pub id: MessageId,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, Frame::Response(data) if data == HEARTBEAT)
    }

    /// Decodes a frame's type and data (what follows the size).
    pub fn decode(frame_type: u32, mut data: Vec<u8>) -> Result<Frame, ProtocolError> {
        match frame_type {
            FRAME_RESPONSE => Ok(Frame::Response(data)),
            FRAME_ERROR => Ok(Frame::Error(String::from_utf8_lossy(&data).into_owned())),
            FRAME_MESSAGE => {
                if data.len() < MESSAGE_HEADER {
                    return Err(ProtocolError::Malformed(format!(
                        "message frame of {} bytes, shorter than its {MESSAGE_HEADER}-byte header",
                        data.len()
                    )));
                }
                let timestamp_ns = i64::from_be_bytes(data[0..8].try_into().unwrap_or_default());
                let attempts = u16::from_be_bytes([data[8], data[9]]);
                let mut id = [0u8; 16];
                id.copy_from_slice(&data[10..MESSAGE_HEADER]);
                let body = data.split_off(MESSAGE_HEADER);
                Ok(Frame::Message(Message {
                    timestamp_ns,
                    attempts,
                    id,
                    body,
                }))
            }
            other => Err(ProtocolError::Malformed(format!(
                "unknown frame type {other}"
            ))),
        }
    }
}

/// Reads one frame.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, ProtocolError> {
    let size = r.read_u32().await? as usize;
    if !(4..=MAX_FRAME).contains(&size) {
        return Err(ProtocolError::Malformed(format!(
            "frame size {size} (expected 4 to {MAX_FRAME})"
        )));
    }
    let frame_type = r.read_u32().await?;
    // Memory follows the bytes that come, not the size announced: a peer that
    // announces 64 MiB and sends nothing costs a little buffer, not 64 MiB.
    let want = size - 4;
    let mut data = Vec::with_capacity(want.min(FIRST_READ));
    let got = r.take(want as u64).read_to_end(&mut data).await?;
    if got < want {
        return Err(ProtocolError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Frame::decode(frame_type, data)
}

/// Reads frames until one that is not a heartbeat; heartbeats are counted in `beats`
/// for the caller to answer.
pub async fn read_reply<R: AsyncRead + Unpin>(
    r: &mut R,
    beats: &mut usize,
) -> Result<Frame, ProtocolError> {
    loop {
        let frame = read_frame(r).await?;
        if frame.is_heartbeat() {
            *beats += 1;
        } else {
            return Ok(frame);
        }
    }
}

/// Expects `OK`.
pub fn expect_ok(frame: Frame) -> Result<(), ProtocolError> {
    match frame {
        Frame::Response(data) if data == b"OK" => Ok(()),
        Frame::Error(e) => Err(ProtocolError::Refused(e)),
        other => Err(ProtocolError::Malformed(format!(
            "expected OK, got {other:?}"
        ))),
    }
}

/// A client's IDENTIFY settings (the fields this client sets).
#[derive(Debug, Serialize)]
pub struct Identify {
    pub client_id: String,
    pub hostname: String,
    pub user_agent: String,
    pub feature_negotiation: bool,
    /// Milliseconds between heartbeats; -1 turns them off.
    pub heartbeat_interval: i64,
    /// Milliseconds before nsqd gives an unfinished message to another client; 0 for
    /// nsqd's default.
    pub msg_timeout: u64,
    /// Milliseconds nsqd may hold messages for this client to send them together
    /// (nsqd's default is 250).
    pub output_buffer_timeout: i64,
}

/// IDENTIFY's answer with feature negotiation (the fields this client reads).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Negotiated {
    pub max_rdy_count: i64,
    pub version: String,
    pub max_msg_timeout: u64,
    pub msg_timeout: u64,
    pub auth_required: bool,
}

fn line(parts: &[&str]) -> Vec<u8> {
    let mut out = parts.join(" ").into_bytes();
    out.push(b'\n');
    out
}

fn with_body(mut head: Vec<u8>, body: &[u8]) -> Vec<u8> {
    head.extend_from_slice(&(body.len() as u32).to_be_bytes());
    head.extend_from_slice(body);
    head
}

pub fn identify(settings: &Identify) -> Vec<u8> {
    let json = serde_json::to_vec(settings).unwrap_or_default();
    with_body(line(&["IDENTIFY"]), &json)
}

pub fn sub(topic: &str, channel: &str) -> Vec<u8> {
    line(&["SUB", topic, channel])
}

pub fn rdy(count: i64) -> Vec<u8> {
    line(&["RDY", &count.to_string()])
}

pub fn fin(id: &MessageId) -> Vec<u8> {
    line(&["FIN", &String::from_utf8_lossy(id)])
}

/// Gives a message back, to be delivered again after `delay_ms`.
pub fn req(id: &MessageId, delay_ms: u64) -> Vec<u8> {
    line(&["REQ", &String::from_utf8_lossy(id), &delay_ms.to_string()])
}

pub fn nop() -> Vec<u8> {
    line(&["NOP"])
}

pub fn publish(topic: &str, body: &[u8]) -> Vec<u8> {
    with_body(line(&["PUB", topic]), body)
}

/// Several messages in one command: `[u32 body size][u32 count]([u32 size][bytes])*`.
pub fn mpub(topic: &str, bodies: &[&[u8]]) -> Vec<u8> {
    let size = 4 + bodies.iter().map(|b| 4 + b.len()).sum::<usize>();
    let mut out = line(&["MPUB", topic]);
    out.reserve(4 + size);
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.extend_from_slice(&(bodies.len() as u32).to_be_bytes());
    for b in bodies {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// Whether nsqd accepts `name` as a topic or channel: 1 to 64 characters of
/// `[.a-zA-Z0-9_-]`, optionally ending in `#ephemeral`.
pub fn valid_name(name: &str) -> bool {
    let base = name.strip_suffix("#ephemeral").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 64
        && !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(frame_type: u32, data: &[u8]) -> Vec<u8> {
        let mut out = ((data.len() + 4) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&frame_type.to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    #[tokio::test]
    async fn reads_each_frame_type() {
        let mut msg = 1_700_000_000_000_000_000i64.to_be_bytes().to_vec();
        msg.extend_from_slice(&3u16.to_be_bytes());
        msg.extend_from_slice(b"0123456789abcdef");
        msg.extend_from_slice(b"body\n\0");
        let mut wire = framed(0, b"OK");
        wire.extend(framed(0, HEARTBEAT));
        wire.extend(framed(
            1,
            b"E_BAD_TOPIC PUB topic name \"x y\" is not valid",
        ));
        wire.extend(framed(2, &msg));
        let mut r = wire.as_slice();
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Frame::Response(b"OK".to_vec())
        );
        assert!(read_frame(&mut r).await.unwrap().is_heartbeat());
        assert!(
            matches!(read_frame(&mut r).await.unwrap(), Frame::Error(e) if e.starts_with("E_BAD_TOPIC"))
        );
        let Frame::Message(m) = read_frame(&mut r).await.unwrap() else {
            panic!("a message frame");
        };
        assert_eq!(m.timestamp_ns, 1_700_000_000_000_000_000);
        assert_eq!(m.attempts, 3);
        assert_eq!(&m.id, b"0123456789abcdef");
        assert_eq!(m.body, b"body\n\0");
        assert!(read_frame(&mut r).await.is_err(), "end of input");
    }

    #[tokio::test]
    async fn rejects_bad_frames_without_panicking() {
        for wire in [
            framed(2, b"short"),
            framed(7, b"x"),
            vec![0, 0, 0, 2, 0, 0],
            (MAX_FRAME as u32 + 1).to_be_bytes().to_vec(),
            vec![0, 0, 0, 9, 0, 0, 0, 0, b'O'],
            // The largest size announced, then a few bytes and the end.
            [
                &(MAX_FRAME as u32).to_be_bytes()[..],
                &[0, 0, 0, 2],
                b"12345678",
            ]
            .concat(),
        ] {
            let mut r = wire.as_slice();
            assert!(read_frame(&mut r).await.is_err(), "{wire:?}");
        }
    }

    #[tokio::test]
    async fn heartbeats_are_counted_and_skipped() {
        let mut wire = framed(0, HEARTBEAT);
        wire.extend(framed(0, HEARTBEAT));
        wire.extend(framed(0, b"OK"));
        let mut beats = 0;
        let frame = read_reply(&mut wire.as_slice(), &mut beats).await.unwrap();
        assert_eq!(beats, 2);
        expect_ok(frame).unwrap();
        assert!(expect_ok(Frame::Error("E_INVALID x".into())).is_err());
        assert!(expect_ok(Frame::Response(b"CLOSE_WAIT".to_vec())).is_err());
    }

    #[test]
    fn commands_are_encoded_as_documented() {
        assert_eq!(
            sub("lib.server.lobby", "superhero_sim"),
            b"SUB lib.server.lobby superhero_sim\n"
        );
        assert_eq!(rdy(250), b"RDY 250\n");
        assert_eq!(fin(b"0123456789abcdef"), b"FIN 0123456789abcdef\n");
        assert_eq!(req(b"0123456789abcdef", 0), b"REQ 0123456789abcdef 0\n");
        assert_eq!(nop(), b"NOP\n");
        assert_eq!(publish("t", b"hi"), b"PUB t\n\0\0\0\x02hi");
        assert_eq!(
            mpub("t", &[b"a", b"bc"]),
            b"MPUB t\n\0\0\0\x0f\0\0\0\x02\0\0\0\x01a\0\0\0\x02bc"
        );
        let id = identify(&Identify {
            client_id: "c".into(),
            hostname: "h".into(),
            user_agent: "u".into(),
            feature_negotiation: true,
            heartbeat_interval: -1,
            msg_timeout: 2000,
            output_buffer_timeout: 25,
        });
        assert!(id.starts_with(b"IDENTIFY\n"));
        let size = u32::from_be_bytes(id[9..13].try_into().unwrap()) as usize;
        let json: serde_json::Value = serde_json::from_slice(&id[13..]).unwrap();
        assert_eq!(size, id.len() - 13);
        assert_eq!(json["feature_negotiation"], true);
        assert_eq!(json["msg_timeout"], 2000);
        assert_eq!(json["output_buffer_timeout"], 25);
    }

    #[test]
    fn names_follow_nsqd_rules() {
        for ok in [
            "lib.server.lobby",
            "superhero_sim",
            "a-b",
            "x#ephemeral",
            &"a".repeat(64),
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "#ephemeral", "é", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
