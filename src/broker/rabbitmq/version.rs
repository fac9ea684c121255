//! The server's name and version. RabbitMQ tells them in the first frame it sends
//! on a connection (connection.start's server properties), which the client
//! library reads but does not hand on; so a connection of its own asks: it sends
//! the protocol header, reads that one frame and hangs up.

use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, parse_frame};
use amq_protocol::protocol::{AMQPClass, connection};
use lapin::types::AMQPValue;
use lapin::uri::{AMQPScheme, AMQPUri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The AMQP 0-9-1 protocol header a client opens with.
const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

/// How long the server has to answer.
const WAIT: Duration = Duration::from_secs(5);

/// The largest connection.start frame read (RabbitMQ's is under 1 KiB).
const MAX_FRAME: usize = 64 * 1024;

/// `RabbitMQ 4.0.5`, or none where the server cannot be asked (a TLS address) or
/// does not answer as RabbitMQ does.
pub(super) async fn server_version(url: &str) -> Option<String> {
    let uri: AMQPUri = url.parse().ok()?;
    if uri.scheme != AMQPScheme::AMQP {
        return None;
    }
    let frame = tokio::time::timeout(WAIT, first_frame(&uri.authority.host, uri.authority.port))
        .await
        .ok()??;
    let Ok((_, AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Start(start))))) =
        parse_frame(frame.as_slice())
    else {
        return None;
    };
    let properties = start.server_properties.inner();
    let text = |key: &str| match properties.get(key) {
        Some(AMQPValue::LongString(s)) => Some(s.to_string()),
        _ => None,
    };
    Some(format!("{} {}", text("product")?, text("version")?))
}

/// The bytes of the first frame the server sends: type, channel, size, payload and
/// the frame's end.
async fn first_frame(host: &str, port: u16) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect((host, port)).await.ok()?;
    stream.write_all(PROTOCOL_HEADER).await.ok()?;
    let mut frame = vec![0; 7];
    stream.read_exact(&mut frame).await.ok()?;
    let size = u32::from_be_bytes([frame[3], frame[4], frame[5], frame[6]]) as usize;
    if size > MAX_FRAME {
        return None;
    }
    frame.resize(7 + size + 1, 0);
    stream.read_exact(&mut frame[7..]).await.ok()?;
    Some(frame)
}
