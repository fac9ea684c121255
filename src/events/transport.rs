//! The logging transport: a `tracing` layer turns every record that names a queue
//! into an event envelope, and a publishing task sends the envelopes to the broker.
//!
//! The layer never blocks the game: it offers each envelope to a bounded buffer.
//! The publishing task drains the buffer in batches and retries a failing broker with
//! backoff; while it retries the buffer fills, and what does not fit is dropped and
//! counted, never silently lost.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use super::Queue;
use crate::backoff::Backoff;
use crate::broker::{Broker, BrokerError, Publisher};

/// One event as consumed. Its task is kept as the JSON it came as, and read only
/// when asked for: a worker passes over most events by their message alone.
#[derive(Clone, Debug, Deserialize)]
pub struct Envelope {
    pub level: String,
    pub timestamp: String,
    pub name: String,
    pub log_message: String,
    #[serde(default)]
    pub task: Option<Box<RawValue>>,
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        fn task(e: &Envelope) -> Option<&str> {
            e.task.as_deref().map(RawValue::get)
        }
        (&self.level, &self.timestamp, &self.name, &self.log_message)
            == (
                &other.level,
                &other.timestamp,
                &other.name,
                &other.log_message,
            )
            && task(self) == task(other)
    }
}

/// An envelope's message and task, borrowed (see [`Envelope::read`]); the other
/// fields must be there, as in an [`Envelope`], and are skipped.
#[derive(Debug, Deserialize)]
pub struct EnvelopeView<'a> {
    #[serde(rename = "level")]
    _level: IgnoredAny,
    #[serde(rename = "timestamp")]
    _timestamp: IgnoredAny,
    #[serde(rename = "name")]
    _name: IgnoredAny,
    #[serde(borrow)]
    pub log_message: Cow<'a, str>,
    #[serde(borrow, default)]
    pub task: Option<&'a RawValue>,
}

#[derive(Debug, Error)]
#[error("not an event envelope: {0}")]
/// A message that is not an event envelope, and why.
pub struct EnvelopeError(String);

impl Envelope {
    /// Reads an envelope, in its plain form or the original's double-encoded form (a
    /// JSON string holding the object).
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Self::decode(bytes, |json| serde_json::from_slice(json))
    }

    /// Calls `f` with the message and the task of the envelope in `bytes`, borrowed
    /// from them (from the decoded string, for the double-encoded form): a worker
    /// reads every event the game logs and needs no more of most. The envelope is
    /// checked as [`Self::parse`] checks it.
    pub fn read<R>(
        bytes: &[u8],
        f: impl FnOnce(EnvelopeView<'_>) -> R,
    ) -> Result<R, EnvelopeError> {
        Self::decode(bytes, |json| serde_json::from_slice(json).map(f))
    }

    /// Calls `read` with the JSON object of an envelope: `bytes` themselves, or the
    /// string they hold in the double-encoded form.
    fn decode<R>(
        bytes: &[u8],
        read: impl FnOnce(&[u8]) -> serde_json::Result<R>,
    ) -> Result<R, EnvelopeError> {
        let error = |e: serde_json::Error| EnvelopeError(e.to_string());
        if bytes.trim_ascii_start().first() == Some(&b'"') {
            let inner: String = serde_json::from_slice(bytes).map_err(error)?;
            return read(inner.as_bytes()).map_err(error);
        }
        read(bytes).map_err(error)
    }

    /// The task, read; `None` when there is none.
    pub fn task_value(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.task.as_ref()?.get()).ok()
    }

    /// A string field of the task, if present.
    pub fn task_str(&self, field: &str) -> Option<String> {
        match self.task_value()?.get_mut(field)?.take() {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The level names of Python's logging, which consumers of the original expect.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// Builds the JSON envelope of one record. `task` must be JSON (it is embedded as
/// is); a task that is not is carried as a JSON string instead.
pub fn envelope_json(
    level: Level,
    timestamp: &str,
    name: &str,
    log_message: &str,
    task: Option<&str>,
) -> String {
    let bytes = envelope_bytes(level, timestamp, name, log_message, task.map(Task::Checked));
    String::from_utf8(bytes).unwrap_or_default()
}

/// The task of a record, and whether it is known to be JSON.
#[derive(Clone, Copy)]
enum Task<'a> {
    /// Logged by [`super::emit`], whose tasks are JSON by its contract: embedded as it
    /// is, without parsing it again for every event the game logs.
    Json(&'a str),
    /// Anything else: embedded if it parses as JSON, else carried as a JSON string.
    Checked(&'a str),
}

impl Task<'_> {
    fn len(self) -> usize {
        match self {
            Task::Json(t) | Task::Checked(t) => t.len(),
        }
    }
}

/// The envelope of [`envelope_json`] as the bytes published: the original's log
/// record, its fields in its order. Written into one buffer of the right size, as
/// it is built for every event the game logs.
fn envelope_bytes(
    level: Level,
    timestamp: &str,
    name: &str,
    log_message: &str,
    task: Option<Task<'_>>,
) -> Vec<u8> {
    // The field names, quotes, separators and the level take under 80 bytes; escapes
    // may grow the strings, and the buffer with them.
    let size = 80 + timestamp.len() + name.len() + log_message.len();
    let mut out = Vec::with_capacity(size + task.map_or(0, Task::len));
    out.extend_from_slice(b"{\"level\":");
    push_json_str(&mut out, level_name(level));
    out.extend_from_slice(b",\"timestamp\":");
    push_json_str(&mut out, timestamp);
    out.extend_from_slice(b",\"name\":");
    push_json_str(&mut out, name);
    out.extend_from_slice(b",\"log_message\":");
    push_json_str(&mut out, log_message);
    match task {
        None => {}
        Some(Task::Json(json)) => {
            out.extend_from_slice(b",\"task\":");
            out.extend_from_slice(json.as_bytes());
        }
        Some(Task::Checked(task)) => {
            out.extend_from_slice(b",\"task\":");
            match serde_json::from_str::<&RawValue>(task) {
                Ok(raw) => out.extend_from_slice(raw.get().as_bytes()),
                Err(_) => push_json_str(&mut out, task),
            }
        }
    }
    out.push(b'}');
    out
}

/// Appends `s` as a JSON string, quoted and escaped.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a vector cannot fail, and a string always serializes.
    let _ = serde_json::to_writer(out, s);
}

/// Calls `f` with the time now in ISO 8601, UTC, with milliseconds:
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`. Each thread formats the date and time of day once a
/// second, and appends the milliseconds in a buffer it keeps.
fn with_now_iso<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static NOW: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let now = chrono::Utc::now();
    // A leap second counts its milliseconds from 1,000.
    let millis = now.timestamp_subsec_millis().min(999);
    crate::game::protocol::with_utc_second(&now, |second| {
        NOW.with_borrow_mut(|out| {
            out.clear();
            out.push_str(second);
            out.push('.');
            for digit in [millis / 100, millis / 10 % 10, millis % 10] {
                out.push(char::from(b'0' + digit as u8));
            }
            out.push('Z');
            f(out)
        })
    })
}

/// Counts of a transport, since its sink was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransportStats {
    /// Envelopes handed to the transport while a broker was connected.
    pub offered: u64,
    /// Envelopes the broker accepted.
    pub published: u64,
    /// Envelopes lost: the buffer was full or the broker stayed down at shutdown.
    pub dropped: u64,
    /// Published, by queue (in [`Queue::index`] order).
    #[serde(skip)]
    pub published_by_queue: [u64; 3],
    /// Dropped, by queue (in [`Queue::index`] order).
    #[serde(skip)]
    pub dropped_by_queue: [u64; 3],
}

impl TransportStats {
    /// What happened between `earlier` and these counts, for one run of many on a
    /// sink.
    pub fn since(&self, earlier: &TransportStats) -> TransportStats {
        TransportStats {
            offered: self.offered.saturating_sub(earlier.offered),
            published: self.published.saturating_sub(earlier.published),
            dropped: self.dropped.saturating_sub(earlier.dropped),
            published_by_queue: [0, 1, 2]
                .map(|i| self.published_by_queue[i].saturating_sub(earlier.published_by_queue[i])),
            dropped_by_queue: [0, 1, 2]
                .map(|i| self.dropped_by_queue[i].saturating_sub(earlier.dropped_by_queue[i])),
        }
    }
}

#[derive(Default)]
struct Counters {
    /// By queue only, the total being their sum: an event offered costs one write to
    /// memory the threads share.
    offered_by_queue: [AtomicU64; 3],
    published: AtomicU64,
    dropped: AtomicU64,
    by_queue: [AtomicU64; 3],
    dropped_by_queue: [AtomicU64; 3],
}

impl Counters {
    fn stats(&self) -> TransportStats {
        TransportStats {
            offered: self
                .offered_by_queue
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .sum(),
            published: self.published.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            published_by_queue: [0, 1, 2].map(|i| self.by_queue[i].load(Ordering::Relaxed)),
            dropped_by_queue: [0, 1, 2].map(|i| self.dropped_by_queue[i].load(Ordering::Relaxed)),
        }
    }

    fn add_dropped(&self, queue: usize, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.dropped_by_queue[queue].fetch_add(n, Ordering::Relaxed);
    }
}

struct Route {
    /// Each queue's event name, `<module>.<queue>` (in [`Queue::index`] order).
    names: [String; 3],
    tx: mpsc::Sender<(Queue, Vec<u8>)>,
}

/// Where the layer sends envelopes: nowhere until a broker is connected.
#[derive(Default)]
pub struct EventSink {
    /// Read for every event, from every thread: a load that writes to no shared
    /// memory, unlike a lock.
    route: ArcSwapOption<Route>,
    /// Held while the route is set or taken.
    routing: Mutex<()>,
    counters: Arc<Counters>,
}

impl EventSink {
    /// A sink connected to no broker yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Its counts so far.
    pub fn stats(&self) -> TransportStats {
        self.counters.stats()
    }

    fn offer(&self, queue: Queue, level: Level, message: &str, task: Option<Task<'_>>) {
        let route = self.route.load();
        let Some(route) = route.as_deref() else {
            return;
        };
        let name = &route.names[queue.index()];
        let json = with_now_iso(|now| envelope_bytes(level, now, name, message, task));
        self.counters.offered_by_queue[queue.index()].fetch_add(1, Ordering::Relaxed);
        if route.tx.try_send((queue, json)).is_err() {
            self.counters.add_dropped(queue.index(), 1);
        }
    }
}

/// The `tracing` layer of the transport; install it for the targets of the queues.
pub struct EventLayer {
    sink: Arc<EventSink>,
}

impl EventLayer {
    /// A layer that offers every queue record to `sink`.
    pub fn new(sink: Arc<EventSink>) -> Self {
        Self { sink }
    }
}

/// The capacity a thread keeps for a record's field between records.
const KEPT_FIELD_BYTES: usize = 16 * 1024;

/// The two fields of a record the envelope carries.
#[derive(Default)]
struct RecordFields {
    message: String,
    task: String,
    has_task: bool,
}

impl RecordFields {
    /// Empties the buffers for the next record; one grown by an unusually large
    /// record is let go rather than kept for the thread's life.
    fn clear(&mut self) {
        for buffer in [&mut self.message, &mut self.task] {
            buffer.clear();
            if buffer.capacity() > KEPT_FIELD_BYTES {
                *buffer = String::new();
            }
        }
        self.has_task = false;
    }

    fn task(&self) -> Option<&str> {
        self.has_task.then_some(self.task.as_str())
    }
}

impl Visit for RecordFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "task" => {
                self.task.push_str(value);
                self.has_task = true;
            }
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "task" => {
                let _ = write!(self.task, "{value:?}");
                self.has_task = true;
            }
            _ => {}
        }
    }
}

thread_local! {
    /// The fields of the record being offered, kept from one record to the next so
    /// that reading a record's fields allocates nothing once the buffers have grown.
    static FIELDS: RefCell<RecordFields> = RefCell::default();
    /// The sink of the queue records logged on this thread, in place of the layer's.
    static THREAD_SINK: RefCell<Option<Arc<EventSink>>> = const { RefCell::new(None) };
}

/// Sends the queue records logged on this thread from now on to `sink` instead of
/// the layer's own (a simulation's shard, whose tasks all run on its thread).
pub fn route_thread_events(sink: Arc<EventSink>) {
    THREAD_SINK.with(|s| *s.borrow_mut() = Some(sink));
}

impl<S: Subscriber> Layer<S> for EventLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(queue) = Queue::from_target(event.metadata().target()) else {
            return;
        };
        let level = *event.metadata().level();
        let from_emit = event.metadata().module_path() == Some(super::EMITTER);
        let offer = |fields: &mut RecordFields| {
            fields.clear();
            event.record(fields);
            let task = fields.task().map(|t| {
                if from_emit {
                    Task::Json(t)
                } else {
                    Task::Checked(t)
                }
            });
            THREAD_SINK.with(|s| match &*s.borrow() {
                Some(sink) => sink.offer(queue, level, &fields.message, task),
                None => self.sink.offer(queue, level, &fields.message, task),
            });
        };
        // A record logged while one is being offered gets buffers of its own.
        FIELDS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut fields) => offer(&mut fields),
            Err(_) => offer(&mut RecordFields::default()),
        });
    }
}

/// Buffered envelopes before the layer starts dropping.
pub const DEFAULT_BUFFER: usize = 262_144;
/// Envelopes published in one call.
const BATCH: usize = 1024;
/// The pause after a failed publish, doubling while the broker stays down.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));

/// A connected transport: the publishing task of one broker.
pub struct EventPipe {
    sink: Arc<EventSink>,
    task: JoinHandle<()>,
    closing: Arc<AtomicBool>,
}

#[derive(Debug, Error)]
#[error("the event transport is already connected to a broker")]
/// A sink feeds one broker at a time.
pub struct AlreadyConnected;

#[derive(Debug, Error)]
/// Why a transport could not be connected.
pub enum PipeError {
    #[error(transparent)]
    AlreadyConnected(#[from] AlreadyConnected),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl EventPipe {
    /// Connects `sink` to a broker: from now on every queue record is published
    /// under the name `<kind>.<queue>` to the broker's topic for its queue. Each
    /// topic is declared first, with the workers' group on theirs, so that workers,
    /// ours or the original's, may join before the first game and miss none.
    pub async fn for_broker(
        sink: &Arc<EventSink>,
        broker: &dyn Broker,
        buffer: usize,
    ) -> Result<Self, PipeError> {
        let topics = Queue::ALL.map(|q| broker.topic_for(q.name()));
        for (queue, topic) in Queue::ALL.iter().zip(&topics) {
            let groups: &[&str] = match queue {
                Queue::Lobby => &[super::WORKER_GROUP],
                Queue::Login | Queue::Game => &[],
            };
            broker.declare(topic, groups).await?;
        }
        Ok(Self::start_with_topics(
            sink,
            broker.publisher().await?,
            broker.kind(),
            topics,
            buffer,
        )?)
    }

    /// Connects `sink` to a publisher, each queue's records going to the topic named
    /// after the queue, under the name `<module>.<queue>`.
    pub fn start(
        sink: &Arc<EventSink>,
        publisher: Box<dyn Publisher>,
        module: &str,
        buffer: usize,
    ) -> Result<Self, AlreadyConnected> {
        let topics = Queue::ALL.map(|q| q.name().to_string());
        Self::start_with_topics(sink, publisher, module, topics, buffer)
    }

    /// As [`Self::start`], with the topic of each queue (in [`Queue::index`] order).
    pub fn start_with_topics(
        sink: &Arc<EventSink>,
        publisher: Box<dyn Publisher>,
        module: &str,
        topics: [String; 3],
        buffer: usize,
    ) -> Result<Self, AlreadyConnected> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        {
            let _routing = sink.routing.lock().unwrap_or_else(|e| e.into_inner());
            if sink.route.load().is_some() {
                return Err(AlreadyConnected);
            }
            sink.route.store(Some(Arc::new(Route {
                names: Queue::ALL.map(|q| format!("{module}.{}", q.name())),
                tx,
            })));
        }
        let closing = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(publish_loop(
            rx,
            publisher,
            topics,
            sink.counters.clone(),
            closing.clone(),
        ));
        Ok(Self {
            sink: sink.clone(),
            task,
            closing,
        })
    }

    /// The sink's counts so far.
    pub fn stats(&self) -> TransportStats {
        self.sink.stats()
    }

    /// Disconnects the sink and publishes what is buffered. A broker that stays down
    /// gets `grace` to come back; whatever is still unpublished then counts as dropped.
    pub async fn finish(self, grace: Duration) -> TransportStats {
        // Dropping the route drops the sender: the task ends once it has drained.
        {
            let _routing = self.sink.routing.lock().unwrap_or_else(|e| e.into_inner());
            self.sink.route.store(None);
        }
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            self.closing.store(true, Ordering::Relaxed);
            task.abort();
            let _ = task.await;
        }
        let counters = &self.sink.counters;
        let s = counters.stats();
        for queue in Queue::ALL {
            let i = queue.index();
            let offered = counters.offered_by_queue[i].load(Ordering::Relaxed);
            let lost = offered.saturating_sub(s.published_by_queue[i] + s.dropped_by_queue[i]);
            counters.add_dropped(i, lost);
        }
        counters.stats()
    }
}

async fn publish_loop(
    mut rx: mpsc::Receiver<(Queue, Vec<u8>)>,
    publisher: Box<dyn Publisher>,
    topics: [String; 3],
    counters: Arc<Counters>,
    closing: Arc<AtomicBool>,
) {
    let mut buf = Vec::with_capacity(BATCH);
    let mut by_queue: [Vec<Vec<u8>>; 3] = Default::default();
    while rx.recv_many(&mut buf, BATCH).await > 0 {
        for (queue, bytes) in buf.drain(..) {
            by_queue[queue.index()].push(bytes);
        }
        for queue in Queue::ALL {
            let batch = &mut by_queue[queue.index()];
            if batch.is_empty() {
                continue;
            }
            let n = batch.len() as u64;
            let topic = &topics[queue.index()];
            if publish_with_retry(&*publisher, topic, batch, &closing).await {
                counters.published.fetch_add(n, Ordering::Relaxed);
                counters.by_queue[queue.index()].fetch_add(n, Ordering::Relaxed);
            }
            batch.clear();
        }
    }
}

/// Publishes one batch, retrying with backoff until the broker takes it; false if
/// the transport is closing and gave up.
async fn publish_with_retry(
    publisher: &dyn Publisher,
    topic: &str,
    batch: &[Vec<u8>],
    closing: &AtomicBool,
) -> bool {
    let mut backoff = BACKOFF;
    let mut failures = 0u32;
    loop {
        match publisher.publish(topic, batch).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::warn!(
                        target: "superhero::events",
                        "broker back after {failures} failed attempts; publishing resumed"
                    );
                }
                return true;
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(
                        target: "superhero::events",
                        "publishing to {topic} failed, retrying with backoff: {e}"
                    );
                }
                failures += 1;
                if closing.load(Ordering::Relaxed) {
                    return false;
                }
                backoff.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601_with_milliseconds() {
        for _ in 0..3 {
            let before = chrono::Utc::now();
            let t = with_now_iso(str::to_owned);
            let after = chrono::Utc::now();
            assert_eq!(t.len(), 24, "{t}");
            let read = chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.3fZ")
                .unwrap()
                .and_utc();
            let millis = read.timestamp_millis();
            assert!(
                before.timestamp_millis() <= millis && millis <= after.timestamp_millis(),
                "{t}"
            );
            std::thread::sleep(std::time::Duration::from_millis(7));
        }
    }

    #[test]
    fn envelope_has_the_original_fields() {
        let json = envelope_json(
            Level::INFO,
            "2026-01-02T03:04:05.000Z",
            "memory.lib.server.lobby",
            "Cleaning Game Records",
            Some(r#"{"game_token":"g","user_token":"u"}"#),
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["timestamp"], "2026-01-02T03:04:05.000Z");
        assert_eq!(v["name"], "memory.lib.server.lobby");
        assert_eq!(v["log_message"], "Cleaning Game Records");
        assert_eq!(v["task"]["game_token"], "g");
        assert_eq!(v.as_object().unwrap().len(), 5);

        let bare = envelope_json(Level::WARN, "t", "n", "m", None);
        let v: serde_json::Value = serde_json::from_str(&bare).unwrap();
        assert_eq!(v["level"], "WARNING");
        assert!(v.get("task").is_none());
    }

    #[test]
    fn a_task_that_is_not_json_is_carried_as_a_string() {
        let json = envelope_json(Level::INFO, "t", "n", "m", Some("not {json"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["task"], "not {json");
    }

    #[test]
    fn plain_and_double_encoded_envelopes_parse_alike() {
        let json = envelope_json(Level::INFO, "t", "n", "m", Some(r#"{"game_token":"g"}"#));
        let plain = Envelope::parse(json.as_bytes()).unwrap();
        let double = serde_json::to_string(&json).unwrap();
        assert_eq!(Envelope::parse(double.as_bytes()).unwrap(), plain);
        assert_eq!(plain.task_str("game_token").as_deref(), Some("g"));
        assert!(Envelope::parse(b"{\"level\":1}").is_err());
        assert!(Envelope::parse(b"\xff").is_err());
    }

    #[test]
    fn a_read_envelope_borrows_its_message_and_task_and_checks_as_parse_does() {
        let json = envelope_json(Level::INFO, "t", "n", "m\"1", Some(r#"{"game_token":"g"}"#));
        let view = |bytes: &[u8]| {
            Envelope::read(bytes, |v| {
                let borrowed = matches!(v.log_message, Cow::Borrowed(_));
                (
                    v.log_message.into_owned(),
                    v.task.map(|t| t.get().to_owned()),
                    borrowed,
                )
            })
        };
        let (message, task, borrowed) = view(json.as_bytes()).unwrap();
        assert_eq!(message, "m\"1");
        assert_eq!(task.as_deref(), Some(r#"{"game_token":"g"}"#));
        assert!(!borrowed, "an escaped message is a copy");
        let double = serde_json::to_string(&json).unwrap();
        assert_eq!(view(double.as_bytes()).unwrap().1, task);
        let bare = envelope_json(Level::INFO, "t", "n", "m", None);
        assert_eq!(view(bare.as_bytes()).unwrap(), ("m".to_owned(), None, true));
        for bad in [
            &b"{\"level\":1}"[..],
            b"\xff",
            br#"{"timestamp":"t","name":"n","log_message":"m"}"#,
        ] {
            assert!(view(bad).is_err(), "{}", String::from_utf8_lossy(bad));
            assert!(Envelope::parse(bad).is_err());
        }
    }
}
