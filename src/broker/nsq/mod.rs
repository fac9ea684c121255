//! NSQ (`nsq://host:port`: nsqd's TCP address, port 4150 by default), spoken over
//! nsqd's TCP protocol (`protocol.rs`).
//!
//! A topic is an NSQ topic (`lib.server.lobby`) and a group is a channel of it
//! (`superhero_sim` for the workers): every channel gets every message of its topic,
//! and the clients subscribed to one channel share its messages. What is published to
//! a topic before it has any channel waits in the topic for the first one, so events
//! published before the first worker started reach it.
//!
//! A consumer is one connection: IDENTIFY (heartbeats, answered with NOP, and the
//! message timeout), SUB, then RDY for up to [`MAX_IN_FLIGHT`] unfinished messages.
//! Ack is FIN, nack is REQ with no delay. nsqd does not hand back the messages of a
//! client that disconnects at once: they go to another client after the message
//! timeout (`--claim-after`), as on Redis Streams and NATS. nsqd confirms neither FIN
//! nor REQ, so an ack is sent, not confirmed: a connection lost in between means the
//! message comes again (at least once). A lost consumer connection is reopened with
//! backoff; deliveries from the old one are stale.
//!
//! Publishing batches messages into MPUB commands, pipelined, each answered `OK` once
//! nsqd has the messages.
//!
//! The broker's figures of a group come from nsqd's HTTP API (`stats.rs`), at
//! `?http=HOST:PORT` of the URL, else on nsqd's TCP host at port 4151.

pub mod protocol;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, mpsc};

use self::protocol::{Frame, Identify, Negotiated, ProtocolError};
use self::stats::StatsReader;
use super::Tuning;
use super::fetched::{Feed, FetchedConsumer};
use super::{
    Broker, BrokerError, BrokerStat, Consumer, Delivery, FlowSettings, OBSERVER_GROUP, Publisher,
    Semantics, Settle,
};
use crate::backoff::{self, Backoff};

const NAME: &str = "NSQ";

/// Opens NSQ at `nsq://…` (its registry entry).
pub(super) fn open(
    url: String,
    tuning: Tuning,
) -> BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>> {
    async move {
        let options = NsqOptions {
            msg_timeout: tuning.claim_after,
            http_address: Some(http_address_from_url(&url)?),
            max_in_flight: tuning
                .flow
                .prefetch
                .map_or(MAX_IN_FLIGHT, |n| n.clamp(1, i64::MAX as usize) as i64),
            ..NsqOptions::default()
        };
        Ok(Arc::new(NsqBroker::connect(&url, options).await?) as Arc<dyn Broker>)
    }
    .boxed()
}

/// nsqd's TCP port.
pub const DEFAULT_PORT: u16 = 4150;
/// nsqd's HTTP port.
pub const DEFAULT_HTTP_PORT: u16 = 4151;
/// Unfinished messages one consumer may hold (RDY), if nsqd allows that many,
/// unless the tuning's prefetch says.
pub const MAX_IN_FLIGHT: i64 = 1024;
/// How long to wait for nsqd to accept a connection and answer IDENTIFY.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of message bodies in one MPUB (nsqd's default body limit is 5 MiB).
const MPUB_BYTES: usize = 1 << 20;
/// nsqd's bounds for a client's message timeout (its default maximum is 15 min).
const MSG_TIMEOUT_MS: (u64, u64) = (1_000, 900_000);
/// How long nsqd may hold a consumer's messages to send them together: the least
/// nsqd allows by default (`--min-output-buffer-timeout`), not its 250 ms default,
/// which a quiet topic's last messages would otherwise wait out.
const OUTPUT_BUFFER_TIMEOUT_MS: i64 = 25;

/// How consumers are set up, and where nsqd's figures are read.
#[derive(Clone, Debug)]
pub struct NsqOptions {
    /// How long a delivered message may stay unfinished before nsqd gives it to
    /// another client (IDENTIFY's msg_timeout, 1 s to 15 min).
    pub msg_timeout: Duration,
    /// How often nsqd checks a consumer's connection with a heartbeat (1 s to 60 s);
    /// a consumer that misses two is disconnected.
    pub heartbeat: Duration,
    /// nsqd's HTTP API (`host:port`), where [`Broker::stats`] reads its figures and
    /// [`Broker::delete`] deletes; None: no figures, and no deleting.
    pub http_address: Option<String>,
    /// Unfinished messages one consumer may hold (RDY), at most nsqd's
    /// `--max-rdy-count`.
    pub max_in_flight: i64,
}

impl Default for NsqOptions {
    fn default() -> Self {
        Self {
            msg_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            http_address: None,
            max_in_flight: MAX_IN_FLIGHT,
        }
    }
}

/// NSQ: a topic per topic, a channel per group.
pub struct NsqBroker {
    address: String,
    options: NsqOptions,
    publisher: Arc<NsqPublisher>,
    stats: Option<StatsReader>,
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    super::unavailable(NAME)(e)
}

fn protocol_error(e: ProtocolError) -> BrokerError {
    match e {
        // A bad topic, channel or message is refused whatever the retries.
        ProtocolError::Refused(r)
            if r.starts_with("E_BAD_TOPIC")
                || r.starts_with("E_BAD_CHANNEL")
                || r.starts_with("E_BAD_MESSAGE") =>
        {
            BrokerError::Config(format!("NSQ refused: {r}"))
        }
        other => unavailable(other),
    }
}

/// nsqd's `host:port` from `nsq://host[:port][/]`.
pub(crate) fn address_from_url(url: &str) -> Result<String, BrokerError> {
    let rest = url
        .strip_prefix("nsq://")
        .ok_or_else(|| BrokerError::Config(format!("not an nsq:// URL: {url:?}")))?;
    let host_port = rest.split(['/', '?']).next().unwrap_or_default();
    if host_port.is_empty() || host_port.contains('@') {
        return Err(BrokerError::Config(
            "an NSQ URL is nsq://host[:port] (nsqd's TCP address)".into(),
        ));
    }
    Ok(with_port(host_port, DEFAULT_PORT))
}

/// `host_port`, with `port` added when it has none.
fn with_port(host_port: &str, port: u16) -> String {
    let has_port = match host_port.rsplit_once(':') {
        Some((host, port)) => !host.ends_with(':') && port.parse::<u16>().is_ok(),
        None => false,
    };
    if has_port && !host_port.ends_with(']') {
        host_port.to_string()
    } else {
        format!("{host_port}:{port}")
    }
}

/// nsqd's HTTP `host:port` from `nsq://host[:port][?http=HOST[:PORT]]`: the `http`
/// parameter, else the TCP host on port 4151.
fn http_address_from_url(url: &str) -> Result<String, BrokerError> {
    let tcp = address_from_url(url)?;
    let asked = url
        .split_once('?')
        .into_iter()
        .flat_map(|(_, query)| query.split('&'))
        .find_map(|pair| pair.strip_prefix("http="));
    Ok(match asked {
        Some("") => {
            return Err(BrokerError::Config(
                "an NSQ URL's http= names nsqd's HTTP address, HOST[:PORT]".into(),
            ));
        }
        Some(address) => with_port(address, DEFAULT_HTTP_PORT),
        None => {
            let host = tcp.rsplit_once(':').map_or(tcp.as_str(), |(host, _)| host);
            format!("{host}:{DEFAULT_HTTP_PORT}")
        }
    })
}

fn check_name(what: &str, name: &str) -> Result<(), BrokerError> {
    if protocol::valid_name(name) {
        Ok(())
    } else {
        Err(BrokerError::Config(format!(
            "{name:?} is not a valid NSQ {what} name (1 to 64 of [.a-zA-Z0-9_-])"
        )))
    }
}

/// One open connection, past IDENTIFY.
struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: BufWriter<OwnedWriteHalf>,
    negotiated: Negotiated,
}

impl Conn {
    /// `heartbeat`: None turns heartbeats off.
    async fn open(
        address: &str,
        heartbeat: Option<Duration>,
        msg_timeout: Duration,
    ) -> Result<Conn, BrokerError> {
        let handshake = async {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let (r, w) = stream.into_split();
            let mut conn = Conn {
                reader: BufReader::new(r),
                writer: BufWriter::new(w),
                negotiated: Negotiated::default(),
            };
            let settings = Identify {
                client_id: format!("superhero-{}", std::process::id()),
                hostname: hostname(),
                user_agent: concat!("superhero/", env!("CARGO_PKG_VERSION")).into(),
                feature_negotiation: true,
                heartbeat_interval: heartbeat
                    .map_or(-1, |h| h.as_millis().clamp(1_000, 60_000) as i64),
                msg_timeout: (msg_timeout.as_millis() as u64)
                    .clamp(MSG_TIMEOUT_MS.0, MSG_TIMEOUT_MS.1),
                output_buffer_timeout: OUTPUT_BUFFER_TIMEOUT_MS,
            };
            conn.writer.write_all(protocol::MAGIC).await?;
            conn.writer
                .write_all(&protocol::identify(&settings))
                .await?;
            conn.writer.flush().await?;
            let mut beats = 0;
            conn.negotiated = match protocol::read_reply(&mut conn.reader, &mut beats).await? {
                Frame::Response(data) if data.first() == Some(&b'{') => {
                    serde_json::from_slice(&data).map_err(|e| {
                        ProtocolError::Malformed(format!("IDENTIFY answer is not JSON: {e}"))
                    })?
                }
                Frame::Response(data) if data == b"OK" => Negotiated::default(),
                Frame::Error(e) => return Err(ProtocolError::Refused(e)),
                other => {
                    return Err(ProtocolError::Malformed(format!(
                        "unexpected answer to IDENTIFY: {other:?}"
                    )));
                }
            };
            Ok(conn)
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| unavailable(format!("nsqd at {address} did not answer")))?
            .map_err(|e| match e {
                ProtocolError::Io(e) => unavailable(format!("cannot reach nsqd at {address}: {e}")),
                other => protocol_error(other),
            })?;
        if conn.negotiated.auth_required {
            return Err(BrokerError::Config(format!(
                "nsqd at {address} requires AUTH, which superhero does not speak"
            )));
        }
        Ok(conn)
    }

    /// Sends a command that nsqd answers with `OK`.
    async fn command(&mut self, command: &[u8]) -> Result<(), ProtocolError> {
        self.writer.write_all(command).await?;
        self.writer.flush().await?;
        self.reply().await
    }

    /// Reads the next reply, answering any heartbeat on the way.
    async fn reply(&mut self) -> Result<(), ProtocolError> {
        let mut beats = 0;
        let frame = protocol::read_reply(&mut self.reader, &mut beats).await?;
        for _ in 0..beats {
            self.writer.write_all(&protocol::nop()).await?;
        }
        protocol::expect_ok(frame)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl NsqBroker {
    /// Connects to nsqd at `nsq://host:port`, failing if it does not answer.
    pub async fn connect(url: &str, options: NsqOptions) -> Result<Self, BrokerError> {
        let address = address_from_url(url)?;
        let publisher = Arc::new(NsqPublisher {
            address: address.clone(),
            conn: Mutex::new(None),
        });
        *publisher.conn.lock().await = Some(publisher.open().await?);
        let stats = options.http_address.clone().map(StatsReader::new);
        Ok(Self {
            address,
            options,
            publisher,
            stats,
        })
    }
}

#[async_trait]
impl Broker for NsqBroker {
    fn kind(&self) -> &'static str {
        "nsq"
    }

    fn semantics(&self) -> Semantics {
        Semantics::Queue {
            retains_unconsumed: true,
        }
    }

    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError> {
        Ok(Box::new(self.publisher.clone()))
    }

    fn flow(&self) -> FlowSettings {
        FlowSettings {
            prefetch: format!(
                "{} unfinished per consumer (RDY, at most nsqd's --max-rdy-count)",
                self.options.max_in_flight
            ),
            acks: "nsqd's OK to each PUB or MPUB: in its memory, on disk past --mem-queue-size"
                .into(),
        }
    }

    async fn version(&self) -> Option<String> {
        let reader = self.stats.as_ref()?;
        reader.version().await.map(|v| format!("nsqd {v}"))
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        match &self.stats {
            Some(reader) => reader.ping().await,
            // Without its HTTP address: a connection that nsqd greets (IDENTIFY).
            None => self.publisher.open().await.map(drop),
        }
    }

    fn lag_figure(&self) -> Option<&'static str> {
        Some("depth")
    }

    async fn stats(&self, topic: &str, group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        match &self.stats {
            Some(reader) => reader.read(topic, group).await,
            None => Ok(Vec::new()),
        }
    }

    async fn delete(&self, topic: &str, _groups: &[&str]) -> Result<(), BrokerError> {
        // The topic's channels, the groups, go with it.
        check_name("topic", topic)?;
        match &self.stats {
            Some(api) => api.delete_topic(topic).await,
            None => Err(BrokerError::Config(
                "deleting a topic takes nsqd's HTTP address (nsq://HOST:PORT?http=HOST:PORT)"
                    .into(),
            )),
        }
    }

    async fn observer(&self, topic: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        // An ephemeral channel goes with its last client, and keeps no backlog on disk.
        // Each observer has its own: nsqd deletes a channel its last client left in
        // the background, and refuses a SUB to it until it is gone (E_SUB_FAILED).
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.consumer(topic, &format!("{OBSERVER_GROUP}.{}#ephemeral", &id[..12]))
            .await
    }

    async fn declare(&self, topic: &str, groups: &[&str]) -> Result<(), BrokerError> {
        // nsqd makes a topic and its channel at the first SUB. A topic with no channel
        // keeps its messages for the first channel made, which would take them all:
        // the groups' channels are made now, so each gets every message from here on.
        // A connection that never sends RDY is sent nothing. (nsqd refuses SUB on a
        // connection without heartbeats.)
        check_name("topic", topic)?;
        for group in groups {
            check_name("channel", group)?;
            let mut conn = Conn::open(
                &self.address,
                Some(self.options.heartbeat),
                self.options.msg_timeout,
            )
            .await?;
            conn.command(&protocol::sub(topic, group))
                .await
                .map_err(protocol_error)?;
        }
        Ok(())
    }

    async fn consumer(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        check_name("topic", topic)?;
        check_name("channel", group)?;
        let target = Subscription {
            address: self.address.clone(),
            topic: topic.to_string(),
            channel: group.to_string(),
            options: self.options.clone(),
        };
        // The first subscription fails fast; later ones are retried for ever.
        let mut conn = target.open().await?;
        Ok(Box::new(FetchedConsumer::spawn(
            self.options.max_in_flight as usize,
            |tx| async move {
                loop {
                    let lost = serve(conn, &tx).await;
                    if tx.is_closed() {
                        return;
                    }
                    tracing::warn!(
                        "NSQ: lost the consumer of {}/{} ({lost}); reconnecting",
                        target.topic,
                        target.channel
                    );
                    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
                    conn = backoff::until_ok("NSQ: subscribing again", backoff, || target.open())
                        .await;
                }
            },
        )))
    }
}

/// Where a consumer subscribes.
struct Subscription {
    address: String,
    topic: String,
    channel: String,
    options: NsqOptions,
}

impl Subscription {
    /// Connects, subscribes and says how many messages it takes.
    async fn open(&self) -> Result<Conn, BrokerError> {
        let mut conn = Conn::open(
            &self.address,
            Some(self.options.heartbeat),
            self.options.msg_timeout,
        )
        .await?;
        conn.command(&protocol::sub(&self.topic, &self.channel))
            .await
            .map_err(protocol_error)?;
        let max = conn.negotiated.max_rdy_count;
        let wanted = self.options.max_in_flight;
        let rdy = if max > 0 { wanted.min(max) } else { wanted };
        conn.writer
            .write_all(&protocol::rdy(rdy))
            .await
            .map_err(unavailable)?;
        conn.writer.flush().await.map_err(unavailable)?;
        Ok(conn)
    }
}

/// Feeds a subscribed connection's messages to `tx` until the connection fails or
/// the consumer goes; says why it ended.
async fn serve(conn: Conn, tx: &Feed) -> String {
    let Conn {
        mut reader,
        mut writer,
        ..
    } = conn;
    // Commands for nsqd (FIN, REQ, NOP) go through one writer task; settles hold a
    // weak sender, so they turn stale when this connection ends.
    let (commands, mut outbox) = mpsc::unbounded_channel::<Vec<u8>>();
    let writing = tokio::spawn(async move {
        while let Some(command) = outbox.recv().await {
            if writer.write_all(&command).await.is_err() {
                return;
            }
            while let Ok(more) = outbox.try_recv() {
                if writer.write_all(&more).await.is_err() {
                    return;
                }
            }
            if writer.flush().await.is_err() {
                return;
            }
        }
    });
    let why = loop {
        let frame = tokio::select! {
            frame = protocol::read_frame(&mut reader) => frame,
            _ = tx.closed() => break "consumer dropped".to_string(),
        };
        match frame {
            Ok(frame) if frame.is_heartbeat() => {
                let _ = commands.send(protocol::nop());
            }
            Ok(Frame::Message(m)) => {
                let settle = NsqSettle {
                    id: m.id,
                    commands: commands.downgrade(),
                };
                let delivery = Delivery::new(m.body, m.attempts > 1, Box::new(settle));
                if tx.send(Ok(delivery)).await.is_err() {
                    break "consumer dropped".to_string();
                }
            }
            // A FIN or REQ for a message nsqd had already timed out: it was (or will
            // be) delivered again, which the caller learns no more about here.
            Ok(Frame::Error(e))
                if e.starts_with("E_FIN_FAILED")
                    || e.starts_with("E_REQ_FAILED")
                    || e.starts_with("E_TOUCH_FAILED") =>
            {
                tracing::debug!("NSQ: {e}");
            }
            Ok(Frame::Error(e)) => break format!("nsqd refused: {e}"),
            Ok(Frame::Response(r)) => {
                tracing::debug!("NSQ: unexpected response {:?}", String::from_utf8_lossy(&r));
            }
            Err(e) => break e.to_string(),
        }
    };
    drop(commands);
    let _ = writing.await;
    why
}

/// One connection for publishing, opened again after a failure.
struct NsqPublisher {
    address: String,
    conn: Mutex<Option<Conn>>,
}

impl NsqPublisher {
    async fn open(&self) -> Result<Conn, BrokerError> {
        // No heartbeats: nothing reads this connection between publishes.
        Conn::open(&self.address, None, NsqOptions::default().msg_timeout).await
    }
}

#[async_trait]
impl Publisher for NsqPublisher {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        check_name("topic", topic)?;
        if payloads.is_empty() {
            return Ok(());
        }
        let mut state = self.conn.lock().await;
        let conn = match state.as_mut() {
            Some(conn) => conn,
            None => state.insert(self.open().await?),
        };
        let result = async {
            // Every MPUB is written before the first answer is read.
            let mut sent = 0;
            for chunk in mpub_chunks(payloads) {
                let command = if chunk.len() == 1 {
                    protocol::publish(topic, &chunk[0])
                } else {
                    let bodies: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                    protocol::mpub(topic, &bodies)
                };
                conn.writer.write_all(&command).await?;
                sent += 1;
            }
            conn.writer.flush().await?;
            let mut first_error = None;
            for _ in 0..sent {
                if let Err(e) = conn.reply().await {
                    let fatal = matches!(e, ProtocolError::Io(_) | ProtocolError::Malformed(_));
                    first_error.get_or_insert(e);
                    if fatal {
                        break;
                    }
                }
            }
            match first_error {
                None => Ok(()),
                Some(e) => Err(e),
            }
        }
        .await;
        if result.is_err() {
            // nsqd closes a connection after most errors: start afresh next time.
            *state = None;
        }
        result.map_err(protocol_error)
    }
}

/// Splits payloads into runs of at most [`MPUB_BYTES`] (a larger message goes alone).
fn mpub_chunks(payloads: &[Vec<u8>]) -> Vec<&[Vec<u8>]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in payloads.iter().enumerate() {
        if i > start && bytes + p.len() > MPUB_BYTES {
            chunks.push(&payloads[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += p.len();
    }
    chunks.push(&payloads[start..]);
    chunks
}

struct NsqSettle {
    id: protocol::MessageId,
    commands: mpsc::WeakUnboundedSender<Vec<u8>>,
}

impl NsqSettle {
    fn send(&self, command: Vec<u8>) -> Result<(), BrokerError> {
        match self.commands.upgrade() {
            Some(commands) if commands.send(command).is_ok() => Ok(()),
            _ => Err(BrokerError::Stale),
        }
    }
}

#[async_trait]
impl Settle for NsqSettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        self.send(protocol::fin(&self.id))
    }

    async fn nack(self: Box<Self>) -> Result<(), BrokerError> {
        self.send(protocol::req(&self.id, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_nsqd_addresses() {
        assert_eq!(address_from_url("nsq://h:4150").unwrap(), "h:4150");
        assert_eq!(address_from_url("nsq://h").unwrap(), "h:4150");
        assert_eq!(address_from_url("nsq://10.0.0.1:9/").unwrap(), "10.0.0.1:9");
        assert_eq!(address_from_url("nsq://[::1]").unwrap(), "[::1]:4150");
        assert_eq!(address_from_url("nsq://[::1]:7").unwrap(), "[::1]:7");
        assert!(address_from_url("nsq://").is_err());
        assert!(address_from_url("nsq://user:pw@h:1").is_err());
        assert!(address_from_url("nats://h:1").is_err());
    }

    #[test]
    fn urls_give_nsqd_http_addresses() {
        assert_eq!(http_address_from_url("nsq://h:4150").unwrap(), "h:4151");
        assert_eq!(http_address_from_url("nsq://h:9").unwrap(), "h:4151");
        assert_eq!(
            http_address_from_url("nsq://[::1]:7").unwrap(),
            "[::1]:4151"
        );
        assert_eq!(http_address_from_url("nsq://h:9?http=g:8").unwrap(), "g:8");
        assert_eq!(
            http_address_from_url("nsq://h?x=1&http=g").unwrap(),
            "g:4151"
        );
        assert!(http_address_from_url("nsq://h?http=").is_err());
    }

    #[test]
    fn large_batches_are_split() {
        let small = vec![vec![0u8; 100]; 3];
        assert_eq!(mpub_chunks(&small).len(), 1);
        let big = vec![vec![0u8; MPUB_BYTES / 2 + 1]; 3];
        assert_eq!(
            mpub_chunks(&big)
                .iter()
                .map(|c| c.len())
                .collect::<Vec<_>>(),
            [1, 1, 1]
        );
        let huge = vec![vec![0u8; MPUB_BYTES * 2], vec![1u8; 10], vec![2u8; 10]];
        assert_eq!(
            mpub_chunks(&huge)
                .iter()
                .map(|c| c.len())
                .collect::<Vec<_>>(),
            [1, 2]
        );
    }
}
