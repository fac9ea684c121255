//! Redis Streams (`redis-streams://host:port/db`): a topic is a stream, a group a
//! consumer group created at the start of the stream, so events published before any
//! worker started wait for it.
//!
//! Each entry holds the payload in the field `data`. A stream is trimmed only of what
//! every group (observers aside) has acknowledged, by its publishers, once a second:
//! nothing unread is lost, and a backlog is bounded by Redis's memory
//! (a publish Redis refuses is counted as dropped by the event transport). A stream
//! no group reads keeps about [`RETAIN_MAX`] entries. A consumer fetches in a task of its
//! own, up to [`FETCH_COUNT`] entries per XREADGROUP, and regularly first claims
//! entries other consumers left (XAUTOCLAIM). Entries a consumer nacks, or
//! holds when it is dropped, are marked idle at once, so the next fetch of any
//! consumer of the group claims them; entries of a consumer whose process died are
//! claimed once idle for the claim time (default [`ABANDONED_AFTER`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::{ConnectionInfo, Value};
use redis_protocol::resp2::types::RangeFrame;

use super::Link;
use super::resp::{Reply, RespConnection, items as frame_items};
use crate::backoff::Backoff;
use crate::broker::Tuning;
use crate::broker::fetched::{Feed, FetchedConsumer};
use crate::broker::{
    Broker, BrokerError, BrokerStat, Consumer, Delivery, FlowSettings, OBSERVER_GROUP, Publisher,
    Semantics, Settle, split_own,
};

const NAME: &str = "Redis Streams";

/// Opens Redis Streams at `redis-streams://…` (its registry entry).
pub(crate) fn open(
    url: String,
    tuning: Tuning,
) -> BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>> {
    let options = StreamsOptions {
        claim_after: tuning.claim_after,
        fetch_count: tuning.flow.prefetch.unwrap_or(FETCH_COUNT).max(1),
    };
    async move { Ok(Arc::new(RedisStreamsBroker::connect(&url, options).await?) as Arc<dyn Broker>) }
        .boxed()
}

/// Idle time after which another consumer takes over a pending entry.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(30);
/// The idle time given to entries handed back, well above [`ABANDONED_AFTER`].
const HANDED_BACK_IDLE_MS: u64 = 24 * 3600 * 1000;
const BLOCK_MS: u64 = 1000;
/// Entries read or claimed in one call, unless the tuning's prefetch says.
pub const FETCH_COUNT: usize = 256;
/// Ids one XACK acknowledges at most.
const ACK_RUN: usize = 1024;
/// How often a busy consumer looks for entries other consumers left.
const CLAIM_CHECK: Duration = Duration::from_millis(100);
/// Entries kept, approximately, of a stream no group reads (what only observers
/// watch: there is no one to lose them).
pub const RETAIN_MAX: u64 = 1_000_000;
/// How often a publisher trims what every group has acknowledged.
const TRIM_EVERY: Duration = Duration::from_secs(1);
const FIELD: &str = "data";

/// How Redis Streams consumers take over what others left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamsOptions {
    /// Entries idle this long in another consumer's hands are taken over.
    pub claim_after: Duration,
    /// Entries one XREADGROUP or XAUTOCLAIM asks for at most.
    pub fetch_count: usize,
}

impl Default for StreamsOptions {
    fn default() -> Self {
        Self {
            claim_after: ABANDONED_AFTER,
            fetch_count: FETCH_COUNT,
        }
    }
}

/// Redis Streams: a stream per topic, a consumer group per group.
#[derive(Clone)]
pub struct RedisStreamsBroker {
    link: Link,
    conn: ConnectionManager,
    options: StreamsOptions,
    /// When each topic was last trimmed by this publisher.
    trimmed: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    crate::broker::unavailable(NAME)(e)
}

impl RedisStreamsBroker {
    /// Connects to `redis-streams://host:port/db` (or `redis://...`).
    pub async fn connect(url: &str, options: StreamsOptions) -> Result<Self, BrokerError> {
        let link = Link::open(url).await?;
        Ok(Self {
            conn: link.conn.clone(),
            link,
            options,
            trimmed: Arc::default(),
        })
    }

    /// Trims from `topic` what every group has acknowledged, and nothing more: the
    /// oldest entry a group still holds (pending) or has yet to read stays, with all
    /// after it. A stream no group reads keeps its last [`RETAIN_MAX`] entries. Returns
    /// how many entries went.
    pub async fn trim_consumed(&self, topic: &str) -> Result<u64, BrokerError> {
        let mut conn = self.conn.clone();
        // No stream yet: nothing to trim.
        let Some(groups) = groups_of(&mut conn, topic).await else {
            return Ok(0);
        };
        let mut floor: Option<(u64, u64)> = None;
        let mut readers = 0;
        for g in items(&groups) {
            let fields = pairs(g);
            let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
            let Some(name) = field("name").and_then(text) else {
                continue;
            };
            // An observer loses what it does not read in time; it holds nothing back.
            if name == OBSERVER_GROUP {
                continue;
            }
            readers += 1;
            let pending = matches!(field("pending"), Some(Value::Int(n)) if *n > 0);
            let oldest = if pending {
                let summary: Value = redis::cmd("XPENDING")
                    .arg(topic)
                    .arg(&name)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                items(&summary).get(1).and_then(text)
            } else {
                field("last-delivered-id").and_then(text)
            };
            // An id that cannot be read keeps everything.
            let Some(id) = oldest.as_deref().and_then(parse_id) else {
                return Ok(0);
            };
            floor = Some(floor.map_or(id, |f| f.min(id)));
        }
        let mut trim = redis::cmd("XTRIM");
        trim.arg(topic);
        match floor {
            Some((ms, seq)) => trim.arg("MINID").arg(format!("{ms}-{seq}")),
            None if readers == 0 => trim.arg("MAXLEN").arg("~").arg(RETAIN_MAX),
            None => return Ok(0),
        };
        trim.query_async(&mut conn).await.map_err(unavailable)
    }

    /// Trims `topic` if this publisher has not for [`TRIM_EVERY`].
    async fn trim_now_and_then(&self, topic: &str) {
        let now = Instant::now();
        {
            let mut trimmed = self.trimmed.lock().unwrap_or_else(|e| e.into_inner());
            let last = trimmed.entry(topic.to_string()).or_insert(now);
            if now.duration_since(*last) < TRIM_EVERY {
                return;
            }
            *last = now;
        }
        if let Err(e) = self.trim_consumed(topic).await {
            tracing::debug!("Redis Streams: trimming {topic}: {e}");
        }
    }
}

/// What XINFO GROUPS says of `topic`'s groups; `None` when the stream does not exist.
async fn groups_of(conn: &mut ConnectionManager, topic: &str) -> Option<Value> {
    redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(topic)
        .query_async(conn)
        .await
        .ok()
}

/// A stream entry id, `ms-seq`.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[async_trait]
impl Broker for RedisStreamsBroker {
    fn kind(&self) -> &'static str {
        "redis-streams"
    }

    fn semantics(&self) -> Semantics {
        Semantics::Queue {
            retains_unconsumed: true,
        }
    }

    async fn publisher(&self) -> Result<Box<dyn Publisher>, BrokerError> {
        Ok(Box::new(self.clone()))
    }

    async fn declare(&self, topic: &str, groups: &[&str]) -> Result<(), BrokerError> {
        // The stream keeps what no group has read; a group made now reads from its
        // start, as a consumer's would.
        for group in groups {
            self.create_group(topic, group, "0").await?;
        }
        Ok(())
    }

    async fn delete(&self, topic: &str, _groups: &[&str]) -> Result<(), BrokerError> {
        // The stream's groups are part of it and go with it.
        redis::cmd("DEL")
            .arg(topic)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.trimmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(topic);
        Ok(())
    }

    async fn consumer(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        // From the start of the stream: what was published before the group existed
        // and not yet taken is work too.
        self.create_group(topic, group, "0").await?;
        self.subscribe(topic, group).await
    }

    async fn observer(&self, topic: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        // From now on: an observer's group starts afresh at the end, every time,
        // without what an earlier observer left unacknowledged.
        if !self.create_group(topic, OBSERVER_GROUP, "$").await? {
            redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(topic)
                .arg(OBSERVER_GROUP)
                .query_async::<()>(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            self.create_group(topic, OBSERVER_GROUP, "$").await?;
        }
        self.subscribe(topic, OBSERVER_GROUP).await
    }

    async fn version(&self) -> Option<String> {
        super::server_version(&mut self.conn.clone()).await
    }

    fn flow(&self) -> FlowSettings {
        FlowSettings {
            prefetch: format!(
                "{} entries per XREADGROUP or XAUTOCLAIM (COUNT)",
                self.options.fetch_count
            ),
            acks: "the XADD reply: in the server's memory, on disk as its appendfsync says".into(),
        }
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        super::ping(&mut self.conn.clone(), NAME).await
    }

    fn lag_figure(&self) -> Option<&'static str> {
        Some("lag")
    }

    async fn stats(&self, topic: &str, group: &str) -> Result<Vec<BrokerStat>, BrokerError> {
        let mut conn = self.conn.clone();
        let length: u64 = redis::cmd("XLEN")
            .arg(topic)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut stats = vec![BrokerStat::new("length", length)];
        // No stream yet: nothing to tell of its groups.
        let Some(groups) = groups_of(&mut conn, topic).await else {
            return Ok(stats);
        };
        for g in items(&groups) {
            let fields = pairs(g);
            let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            if field("name").and_then(|v| text(v)).as_deref() != Some(group) {
                continue;
            }
            for name in ["consumers", "pending", "lag"] {
                if let Some(Value::Int(n)) = field(name) {
                    stats.push(BrokerStat::new(name, (*n).max(0) as u64));
                }
            }
        }
        Ok(stats)
    }
}

impl RedisStreamsBroker {
    /// Creates `group` on `topic` at `start`; false when it already existed.
    async fn create_group(
        &self,
        topic: &str,
        group: &str,
        start: &str,
    ) -> Result<bool, BrokerError> {
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(topic)
            .arg(group)
            .arg(start)
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match created {
            Ok(()) => Ok(true),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Consumer>, BrokerError> {
        let stream = Stream {
            topic: topic.to_string(),
            group: group.to_string(),
            name: uuid::Uuid::new_v4().simple().to_string(),
            claim_after: self.options.claim_after,
            fetch_count: self.options.fetch_count,
        };
        let fetch_conn = self.link.own_connection(NAME).await?;
        let settle_conn = self.link.own_connection(NAME).await?;
        let info = self.link.client.get_connection_info().clone();
        let consumer = FetchedConsumer::spawn(self.options.fetch_count, |tx| {
            fetch(fetch_conn, info, stream.clone(), settle_conn, tx)
        });
        // Hands back whatever this consumer holds, fetched or delivered, so another
        // consumer takes it at once rather than after the claim time.
        let mut conn = self.conn.clone();
        Ok(Box::new(consumer.on_drop(async move {
            let held = match stream.held(&mut conn).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!("Redis Streams: handing back a consumer's entries: {e}");
                    return;
                }
            };
            // The consumer stays in the group: deleting it would drop its entries.
            if let Err(e) = stream.hand_back(&mut conn, &held).await {
                tracing::warn!("Redis Streams: handing back a consumer's entries: {e}");
            }
        })))
    }
}

#[async_trait]
impl Publisher for RedisStreamsBroker {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), BrokerError> {
        let mut pipe = redis::pipe();
        for p in payloads {
            pipe.cmd("XADD")
                .arg(topic)
                .arg("*")
                .arg(FIELD)
                .arg(p.as_slice())
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        self.trim_now_and_then(topic).await;
        Ok(())
    }
}

/// Where one consumer reads.
#[derive(Clone)]
struct Stream {
    topic: String,
    group: String,
    /// This consumer's name in the group.
    name: String,
    claim_after: Duration,
    /// Entries one call asks for at most.
    fetch_count: usize,
}

impl Stream {
    /// Marks entries held by this consumer idle for long, so that the next
    /// XAUTOCLAIM of any consumer takes them.
    async fn hand_back(
        &self,
        conn: &mut ConnectionManager,
        ids: &[String],
    ) -> Result<(), BrokerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.topic).arg(&self.group).arg(&self.name).arg(0);
        for id in ids {
            cmd.arg(id);
        }
        cmd.arg("IDLE").arg(HANDED_BACK_IDLE_MS).arg("JUSTID");
        cmd.query_async::<Value>(conn).await.map_err(unavailable)?;
        Ok(())
    }

    /// The ids this consumer holds unacknowledged.
    async fn held(&self, conn: &mut ConnectionManager) -> Result<Vec<String>, BrokerError> {
        let v: Value = redis::cmd("XPENDING")
            .arg(&self.topic)
            .arg(&self.group)
            .arg("-")
            .arg("+")
            .arg(10_000)
            .arg(&self.name)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(items(&v)
            .iter()
            .filter_map(|e| items(e).first().and_then(text))
            .collect())
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// What [`items`] reads, taken out of the reply.
fn into_items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => Vec::new(),
    }
}

/// The key-value pairs of a reply map (RESP3) or flat array (RESP2).
fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(m) => m.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
        _ => items(v)
            .chunks_exact(2)
            .filter_map(|kv| Some((text(&kv[0])?, &kv[1])))
            .collect(),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Takes the `[id, [field, value, ...]]` entries of a reply; entries without the
/// payload field (deleted meanwhile, or not ours) come back with `None`. The payloads
/// are moved out of the reply, not copied.
fn entries(v: Value) -> Vec<(String, Option<Vec<u8>>)> {
    into_items(v)
        .into_iter()
        .filter_map(|entry| {
            let mut parts = into_items(entry).into_iter();
            let id = text(&parts.next()?)?;
            let payload = parts
                .next()
                .and_then(|fields| payload_of(into_items(fields)));
            Some((id, payload))
        })
        .collect()
}

/// [`entries`] of a list in a reply read directly: each entry's id and payload.
fn frame_entries(reply: &Reply, list: &RangeFrame) -> Vec<(String, Option<Vec<u8>>)> {
    frame_items(list)
        .iter()
        .filter_map(|entry| {
            let parts = frame_items(entry);
            let id = reply.text(parts.first()?)?;
            let payload = parts.get(1).and_then(|fields| {
                frame_items(fields)
                    .chunks_exact(2)
                    .find(|kv| reply.text(&kv[0]) == Some(FIELD.as_bytes()))
                    .and_then(|kv| reply.text(&kv[1]))
                    .map(<[u8]>::to_vec)
            });
            Some((String::from_utf8_lossy(id).into_owned(), payload))
        })
        .collect()
}

/// The value of the payload field among an entry's `field, value` pairs.
fn payload_of(fields: Vec<Value>) -> Option<Vec<u8>> {
    let mut fields = fields.into_iter();
    while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
        if let (Value::BulkString(k), Value::BulkString(v)) = (k, v)
            && k == FIELD.as_bytes()
        {
            return Some(v);
        }
    }
    None
}

/// Fetches entries into the consumer's channel. Reads go out on a connection of
/// their own, [`READS_AHEAD`] at a time, so that Redis answers the next while the
/// last one's entries are parsed and handed over; one connection answers in order,
/// so entries come in the stream's order. Claims go out on `conn`, between reads.
async fn fetch(
    mut conn: ConnectionManager,
    info: ConnectionInfo,
    stream: Stream,
    settle_conn: ConnectionManager,
    tx: Feed,
) {
    // A failure is reported to the consumer once, then retried quietly.
    let mut failing = false;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    // Claiming is checked at most every CLAIM_CHECK while entries flow, and before
    // every wait when they do not.
    let mut claimed_at: Option<std::time::Instant> = None;
    let mut reader: Option<Reader> = None;
    let shared = Arc::new(stream.clone());
    loop {
        let claim = claimed_at.is_none_or(|t| t.elapsed() >= CLAIM_CHECK);
        let fetched = if claim {
            claimed_at = Some(std::time::Instant::now());
            claim_some(&mut conn, &stream).await
        } else {
            Ok(Vec::new())
        };
        let fetched = match fetched {
            Ok(claimed) if claimed.is_empty() => {
                read_some(&mut reader, &info, &mut conn, &stream).await
            }
            other => other,
        };
        match fetched {
            Ok(entries) => {
                failing = false;
                backoff.reset();
                if entries.is_empty() {
                    claimed_at = None;
                }
                for (id, payload, redelivered) in entries {
                    let settle = StreamsSettle {
                        conn: settle_conn.clone(),
                        stream: shared.clone(),
                        id,
                    };
                    let delivery = Delivery::new(payload, redelivered, Box::new(settle));
                    if tx.send(Ok(delivery)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                // What the reads under way fetch is claimed again after the claim time.
                reader = None;
                if !std::mem::replace(&mut failing, true) && tx.send(Err(e)).await.is_err() {
                    return;
                }
                backoff.wait().await;
            }
        }
    }
}

type Fetched = Vec<(String, Vec<u8>, bool)>;

/// XREADGROUPs a consumer keeps under way at once.
const READS_AHEAD: usize = 2;

/// A consumer's reading connection and how many reads it has under way.
struct Reader {
    conn: RespConnection,
    under_way: usize,
}

/// Takes over up to a read's worth of entries other consumers left idle for the
/// claim time (or handed back).
async fn claim_some(conn: &mut ConnectionManager, s: &Stream) -> Result<Fetched, BrokerError> {
    let claimed: Result<Value, _> = redis::cmd("XAUTOCLAIM")
        .arg(&s.topic)
        .arg(&s.group)
        .arg(&s.name)
        .arg(s.claim_after.as_millis() as u64)
        .arg("0-0")
        .arg("COUNT")
        .arg(s.fetch_count)
        .query_async(conn)
        .await;
    let claimed = match claimed {
        Ok(v) => v,
        Err(e) => return Err(regroup(conn, s, e).await),
    };
    let mut out = Vec::new();
    if let Some(list) = into_items(claimed).into_iter().nth(1) {
        collect(conn, s, entries(list), true, &mut out).await?;
    }
    Ok(out)
}

/// The entries of the next read, waiting up to [`BLOCK_MS`] for some; opens the
/// reading connection first if there is none, and keeps [`READS_AHEAD`] reads under
/// way.
async fn read_some(
    reader: &mut Option<Reader>,
    info: &ConnectionInfo,
    conn: &mut ConnectionManager,
    s: &Stream,
) -> Result<Fetched, BrokerError> {
    let r = match reader {
        Some(r) => r,
        None => reader.insert(Reader {
            conn: RespConnection::open(info).await.map_err(unavailable)?,
            under_way: 0,
        }),
    };
    let count = s.fetch_count.to_string();
    let block = BLOCK_MS.to_string();
    let read: [&[u8]; 11] = [
        b"XREADGROUP",
        b"GROUP",
        s.group.as_bytes(),
        s.name.as_bytes(),
        b"COUNT",
        count.as_bytes(),
        b"BLOCK",
        block.as_bytes(),
        b"STREAMS",
        s.topic.as_bytes(),
        b">",
    ];
    while r.under_way < READS_AHEAD {
        r.conn.send(&read).await.map_err(unavailable)?;
        r.under_way += 1;
    }
    let wait = Duration::from_millis(BLOCK_MS) + crate::redis_client::RESPONSE_TIMEOUT;
    let reply = r.conn.reply_within(wait).await.map_err(unavailable)?;
    r.under_way -= 1;
    if let Some(e) = reply.error() {
        if e.starts_with("NOGROUP") {
            make_group(conn, s).await?;
        }
        return Err(unavailable(e));
    }
    // Redis takes the next read while this one is parsed and handed over.
    r.conn.send(&read).await.map_err(unavailable)?;
    r.under_way += 1;
    // [[stream, [entry, ...]]], or null when nothing came.
    let read_entries: Vec<_> = frame_items(&reply.frame)
        .iter()
        .filter_map(|stream| frame_items(stream).get(1))
        .flat_map(|list| frame_entries(&reply, list))
        .collect();
    let mut out = Vec::with_capacity(read_entries.len());
    collect(conn, s, read_entries, false, &mut out).await?;
    Ok(out)
}

/// The error a read met; if it says the group is gone (a Redis restarted without
/// persistence, a stream deleted), the group is made again, from the start of
/// whatever the stream holds now, so that the next read finds it.
async fn regroup(conn: &mut ConnectionManager, s: &Stream, e: redis::RedisError) -> BrokerError {
    if e.code() != Some("NOGROUP") {
        return unavailable(e);
    }
    if let Err(again) = make_group(conn, s).await {
        return again;
    }
    unavailable(e)
}

/// Makes a consumer's group again, from the start of whatever the stream holds now.
async fn make_group(conn: &mut ConnectionManager, s: &Stream) -> Result<(), BrokerError> {
    let made: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&s.topic)
        .arg(&s.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match made {
        Ok(()) => tracing::warn!(
            "Redis Streams: the group {} of {} was gone (the server restarted without its \
             data?); made it again",
            s.group,
            s.topic
        ),
        Err(again) if again.code() == Some("BUSYGROUP") => {}
        Err(again) => return Err(unavailable(again)),
    }
    Ok(())
}

/// Keeps the entries that hold a payload; entries trimmed away meanwhile are
/// acknowledged, as there is nothing left to do with them.
async fn collect(
    conn: &mut ConnectionManager,
    s: &Stream,
    entries: Vec<(String, Option<Vec<u8>>)>,
    redelivered: bool,
    out: &mut Fetched,
) -> Result<(), BrokerError> {
    for (id, payload) in entries {
        match payload {
            Some(p) => out.push((id, p, redelivered)),
            None => ack_ids(conn, s, &[id]).await?,
        }
    }
    Ok(())
}

async fn ack_ids(
    conn: &mut ConnectionManager,
    s: &Stream,
    ids: &[String],
) -> Result<(), BrokerError> {
    redis::cmd("XACK")
        .arg(&s.topic)
        .arg(&s.group)
        .arg(ids)
        .query_async::<()>(conn)
        .await
        .map_err(unavailable)
}

struct StreamsSettle {
    conn: ConnectionManager,
    /// The consumer's stream, shared by its deliveries.
    stream: Arc<Stream>,
    id: String,
}

#[async_trait]
impl Settle for StreamsSettle {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        let mut conn = self.conn.clone();
        ack_ids(&mut conn, &self.stream, std::slice::from_ref(&self.id)).await
    }

    /// One XACK for the ids of this consumer's stream, in runs of [`ACK_RUN`].
    async fn ack_with(
        self: Box<Self>,
        more: Vec<Box<dyn Settle>>,
    ) -> (Result<(), BrokerError>, Vec<Box<dyn Settle>>) {
        let (mine, others) = split_own(more, |s: &StreamsSettle| {
            Arc::ptr_eq(&s.stream, &self.stream)
        });
        let mut ids = Vec::with_capacity(mine.len() + 1);
        ids.push(self.id);
        ids.extend(mine.into_iter().map(|s| s.id));
        let mut conn = self.conn;
        let mut result = Ok(());
        for run in ids.chunks(ACK_RUN) {
            result = ack_ids(&mut conn, &self.stream, run).await;
            if result.is_err() {
                break;
            }
        }
        (result, others)
    }

    async fn nack(self: Box<Self>) -> Result<(), BrokerError> {
        let mut conn = self.conn.clone();
        self.stream
            .hand_back(&mut conn, std::slice::from_ref(&self.id))
            .await
    }
}
