//! A protocol-level NSQ daemon for the tests, a stand-in for machines without Go
//! (NSQ is not packaged for Debian). scripts/test builds the real nsqd and sets
//! NSQD_ADDRESS, which runs the same tests against it instead; the peer serves no
//! HTTP API, so the figures nsqd gives there are checked on the real one only.
//!
//! It follows nsqd's published TCP protocol (V2) and the behaviour the NSQ docs give:
//! the `"  V2"` magic; IDENTIFY with feature negotiation, heartbeat interval and
//! message timeout; SUB, RDY, FIN, REQ, TOUCH, PUB, MPUB, NOP, CLS; heartbeats, with a
//! client that misses two closed; topics that keep messages until their first
//! channel; every channel gets every message, its clients share them up to their RDY
//! count; unfinished messages go back to the channel after the client's message
//! timeout (also when the client disconnected), with their attempt count raised;
//! fatal errors (E_INVALID, E_BAD_*) close the connection, E_FIN_FAILED and
//! E_REQ_FAILED do not. Messages live in memory only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MAX_RDY: i64 = 2500;
const MAX_MSG_TIMEOUT_MS: u64 = 900_000;
const DEFAULT_MSG_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_HEARTBEAT_MS: i64 = 30_000;
const MAX_MSG_SIZE: usize = 1 << 20;
const MAX_BODY_SIZE: usize = 5 << 20;

/// nsqd's address for the tests: NSQD_ADDRESS, else a fresh in-test peer.
pub fn address() -> String {
    match std::env::var("NSQD_ADDRESS") {
        Ok(a) if !a.is_empty() => a,
        _ => start(),
    }
}

/// nsqd's HTTP API for the tests: NSQD_HTTP_ADDRESS, else port 4151 of NSQD_ADDRESS's
/// host; none with the peer.
pub fn http_address() -> Option<String> {
    if let Ok(a) = std::env::var("NSQD_HTTP_ADDRESS")
        && !a.is_empty()
    {
        return Some(a);
    }
    let tcp = std::env::var("NSQD_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())?;
    let host = tcp.rsplit_once(':').map_or(tcp.as_str(), |(host, _)| host);
    Some(format!("{host}:4151"))
}

/// Starts a peer on a thread of its own (it outlives any test runtime and serves
/// child processes too); returns its `host:port`.
pub fn start() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("address").to_string())
                .expect("report address");
            let daemon = Arc::new(Mutex::new(Daemon::default()));
            tokio::spawn(requeue_timed_out(daemon.clone()));
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_client(daemon.clone(), stream));
            }
        });
    });
    rx.recv().expect("the NSQ peer starts")
}

#[derive(Clone)]
struct Msg {
    id: [u8; 16],
    timestamp: i64,
    attempts: u16,
    body: Arc<Vec<u8>>,
}

struct InFlight {
    msg: Msg,
    client: u64,
    deadline: Instant,
}

#[derive(Default)]
struct Channel {
    queue: VecDeque<Msg>,
    deferred: Vec<(Instant, Msg)>,
    in_flight: HashMap<[u8; 16], InFlight>,
    clients: Vec<u64>,
    next: usize,
}

#[derive(Default)]
struct Topic {
    /// Messages published while the topic has no channel.
    waiting: VecDeque<Msg>,
    channels: HashMap<String, Channel>,
}

struct Client {
    out: mpsc::UnboundedSender<Vec<u8>>,
    rdy: i64,
    in_flight: i64,
    msg_timeout: Duration,
    sub: Option<(String, String)>,
}

#[derive(Default)]
struct Daemon {
    topics: HashMap<String, Topic>,
    clients: HashMap<u64, Client>,
    next_client: u64,
    next_message: u64,
}

fn frame(frame_type: u32, data: &[u8]) -> Vec<u8> {
    let mut out = ((data.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(data);
    out
}

fn message_frame(m: &Msg) -> Vec<u8> {
    let mut data = m.timestamp.to_be_bytes().to_vec();
    data.extend_from_slice(&m.attempts.to_be_bytes());
    data.extend_from_slice(&m.id);
    data.extend_from_slice(&m.body);
    frame(2, &data)
}

fn valid_name(name: &str) -> bool {
    let base = name.strip_suffix("#ephemeral").unwrap_or(name);
    (1..=64).contains(&name.len())
        && !base.is_empty()
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Daemon {
    fn put(&mut self, topic: &str, bodies: Vec<Vec<u8>>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i64;
        let mut msgs = Vec::with_capacity(bodies.len());
        for body in bodies {
            self.next_message += 1;
            let mut id = [0u8; 16];
            id.copy_from_slice(format!("{:016x}", self.next_message).as_bytes());
            msgs.push(Msg {
                id,
                timestamp: now,
                attempts: 0,
                body: Arc::new(body),
            });
        }
        let t = self.topics.entry(topic.to_string()).or_default();
        if t.channels.is_empty() {
            t.waiting.extend(msgs);
        } else {
            for c in t.channels.values_mut() {
                c.queue.extend(msgs.iter().cloned());
            }
        }
        self.pump();
    }

    fn subscribe(&mut self, client: u64, topic: &str, channel: &str) {
        let t = self.topics.entry(topic.to_string()).or_default();
        let first = t.channels.is_empty();
        let c = t.channels.entry(channel.to_string()).or_default();
        if first {
            c.queue.extend(t.waiting.drain(..));
        }
        c.clients.push(client);
        if let Some(cl) = self.clients.get_mut(&client) {
            cl.sub = Some((topic.to_string(), channel.to_string()));
        }
    }

    /// Sends queued messages to ready clients, round robin within each channel.
    fn pump(&mut self) {
        let now = Instant::now();
        for t in self.topics.values_mut() {
            for c in t.channels.values_mut() {
                while !c.queue.is_empty() && !c.clients.is_empty() {
                    let n = c.clients.len();
                    let ready = (0..n).map(|k| (c.next + k) % n).find(|&i| {
                        self.clients
                            .get(&c.clients[i])
                            .is_some_and(|cl| cl.in_flight < cl.rdy)
                    });
                    let Some(i) = ready else { break };
                    c.next = (i + 1) % n;
                    let id = c.clients[i];
                    let Some(cl) = self.clients.get_mut(&id) else {
                        break;
                    };
                    let mut m = c.queue.pop_front().expect("not empty");
                    m.attempts = m.attempts.saturating_add(1);
                    if cl.out.send(message_frame(&m)).is_err() {
                        c.queue.push_front(m);
                        break;
                    }
                    cl.in_flight += 1;
                    c.in_flight.insert(
                        m.id,
                        InFlight {
                            deadline: now + cl.msg_timeout,
                            msg: m,
                            client: id,
                        },
                    );
                }
            }
        }
    }

    fn channel_of(&mut self, client: u64) -> Option<&mut Channel> {
        let (topic, channel) = self.clients.get(&client)?.sub.clone()?;
        self.topics.get_mut(&topic)?.channels.get_mut(&channel)
    }

    /// Takes a message this client holds out of flight.
    fn settle(&mut self, client: u64, id: &[u8]) -> Option<Msg> {
        let c = self.channel_of(client)?;
        let key: [u8; 16] = id.try_into().ok()?;
        if c.in_flight.get(&key)?.client != client {
            return None;
        }
        let f = c.in_flight.remove(&key)?;
        if let Some(cl) = self.clients.get_mut(&client) {
            cl.in_flight -= 1;
        }
        Some(f.msg)
    }

    fn disconnect(&mut self, client: u64) {
        // Its unfinished messages stay in flight until they time out, as in nsqd.
        if let Some(c) = self.channel_of(client) {
            c.clients.retain(|&x| x != client);
            c.next = 0;
        }
        self.clients.remove(&client);
    }

    fn requeue_expired(&mut self) {
        let now = Instant::now();
        for t in self.topics.values_mut() {
            for c in t.channels.values_mut() {
                let expired: Vec<[u8; 16]> = c
                    .in_flight
                    .iter()
                    .filter(|(_, f)| f.deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in expired {
                    if let Some(f) = c.in_flight.remove(&id) {
                        if let Some(cl) = self.clients.get_mut(&f.client) {
                            cl.in_flight -= 1;
                        }
                        c.queue.push_back(f.msg);
                    }
                }
                let (due, later): (Vec<_>, Vec<_>) =
                    c.deferred.drain(..).partition(|(at, _)| *at <= now);
                c.deferred = later;
                c.queue.extend(due.into_iter().map(|(_, m)| m));
            }
        }
        self.pump();
    }
}

async fn requeue_timed_out(daemon: Arc<Mutex<Daemon>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        daemon.lock().unwrap().requeue_expired();
    }
}

/// What a command did wrong: fatal ones close the connection.
struct Refusal {
    text: String,
    fatal: bool,
}

fn fatal(text: impl Into<String>) -> Refusal {
    Refusal {
        text: text.into(),
        fatal: true,
    }
}

async fn read_body<R: AsyncReadExt + Unpin>(r: &mut R, max: usize) -> Result<Vec<u8>, Refusal> {
    let size = r
        .read_u32()
        .await
        .map_err(|_| fatal("E_BAD_BODY failed to read body size"))? as usize;
    if size == 0 || size > max {
        return Err(fatal(format!("E_BAD_BODY invalid body size {size}")));
    }
    let mut body = vec![0u8; size];
    r.read_exact(&mut body)
        .await
        .map_err(|_| fatal("E_BAD_BODY failed to read body"))?;
    Ok(body)
}

async fn serve_client(daemon: Arc<Mutex<Daemon>>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut magic = [0u8; 4];
    if r.read_exact(&mut magic).await.is_err() || &magic != b"  V2" {
        let _ = w.write_all(&frame(1, b"E_BAD_PROTOCOL bad magic")).await;
        return;
    }
    let (out, mut outbox) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = outbox.recv().await {
            if w.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let id = {
        let mut d = daemon.lock().unwrap();
        d.next_client += 1;
        let id = d.next_client;
        d.clients.insert(
            id,
            Client {
                out: out.clone(),
                rdy: 0,
                in_flight: 0,
                msg_timeout: Duration::from_millis(DEFAULT_MSG_TIMEOUT_MS),
                sub: None,
            },
        );
        id
    };
    let mut heartbeat = Duration::from_millis(DEFAULT_HEARTBEAT_MS as u64);
    let mut beats = true;
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    let mut last_read = Instant::now();
    // Kept across loop turns: a heartbeat may interrupt a line half read.
    let mut line = Vec::new();
    loop {
        let read = tokio::select! {
            read = r.read_until(b'\n', &mut line) => read,
            _ = ticker.tick(), if beats => {
                if last_read.elapsed() >= heartbeat * 2 {
                    let _ = out.send(frame(1, b"E_INVALID missed heartbeats"));
                    break;
                }
                let _ = out.send(frame(0, b"_heartbeat_"));
                continue;
            }
        };
        if !matches!(read, Ok(n) if n > 0) {
            break;
        }
        if line.len() > 1024 {
            let _ = out.send(frame(1, b"E_INVALID command too long"));
            break;
        }
        if line.last() != Some(&b'\n') {
            break;
        }
        last_read = Instant::now();
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        line.clear();
        let parts: Vec<&str> = text.trim_end_matches('\r').split(' ').collect();
        let result: Result<Option<Vec<u8>>, Refusal> = match parts.as_slice() {
            ["NOP"] => Ok(None),
            ["IDENTIFY"] => match read_body(&mut r, MAX_BODY_SIZE).await {
                Err(e) => Err(e),
                Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body) {
                    Err(_) => Err(fatal("E_BAD_BODY IDENTIFY failed to decode JSON body")),
                    Ok(v) => {
                        let timeout = v["msg_timeout"].as_u64().unwrap_or(0);
                        let hb = v["heartbeat_interval"].as_i64().unwrap_or(0);
                        if timeout != 0 && !(1000..=MAX_MSG_TIMEOUT_MS).contains(&timeout) {
                            Err(fatal(format!(
                                "E_BAD_BODY IDENTIFY msg timeout ({timeout}) is invalid"
                            )))
                        } else if !(hb == -1 || hb == 0 || (1000..=60_000).contains(&hb)) {
                            Err(fatal(format!(
                                "E_BAD_BODY IDENTIFY heartbeat interval ({hb}) is invalid"
                            )))
                        } else {
                            let timeout = if timeout == 0 {
                                DEFAULT_MSG_TIMEOUT_MS
                            } else {
                                timeout
                            };
                            if let Some(c) = daemon.lock().unwrap().clients.get_mut(&id) {
                                c.msg_timeout = Duration::from_millis(timeout);
                            }
                            beats = hb != -1;
                            if hb > 0 {
                                heartbeat = Duration::from_millis(hb as u64);
                                ticker = tokio::time::interval(heartbeat);
                                ticker.tick().await;
                            }
                            if v["feature_negotiation"].as_bool() == Some(true) {
                                let answer = serde_json::json!({
                                    "max_rdy_count": MAX_RDY,
                                    "version": "1.3.0-test-peer",
                                    "max_msg_timeout": MAX_MSG_TIMEOUT_MS,
                                    "msg_timeout": timeout,
                                    "tls_v1": false,
                                    "deflate": false,
                                    "deflate_level": 6,
                                    "max_deflate_level": 6,
                                    "snappy": false,
                                    "sample_rate": 0,
                                    "auth_required": false,
                                    "output_buffer_size": 16384,
                                    "output_buffer_timeout": 250,
                                });
                                Ok(Some(answer.to_string().into_bytes()))
                            } else {
                                Ok(Some(b"OK".to_vec()))
                            }
                        }
                    }
                },
            },
            ["SUB", topic, channel] => {
                if !valid_name(topic) {
                    Err(fatal(format!(
                        "E_BAD_TOPIC SUB topic name {topic:?} is not valid"
                    )))
                } else if !valid_name(channel) {
                    Err(fatal(format!(
                        "E_BAD_CHANNEL SUB channel name {channel:?} is not valid"
                    )))
                } else if !beats {
                    // nsqd will not hand messages to a client it cannot check on.
                    Err(fatal("E_INVALID cannot SUB with heartbeats disabled"))
                } else {
                    let mut d = daemon.lock().unwrap();
                    if d.clients.get(&id).is_some_and(|c| c.sub.is_some()) {
                        Err(fatal("E_INVALID cannot SUB in current state"))
                    } else {
                        d.subscribe(id, topic, channel);
                        Ok(Some(b"OK".to_vec()))
                    }
                }
            }
            ["RDY", count] => match count.parse::<i64>() {
                Ok(n) if (0..=MAX_RDY).contains(&n) => {
                    let mut d = daemon.lock().unwrap();
                    if d.clients.get(&id).is_some_and(|c| c.sub.is_some()) {
                        if let Some(c) = d.clients.get_mut(&id) {
                            c.rdy = n;
                        }
                        d.pump();
                        Ok(None)
                    } else {
                        Err(fatal("E_INVALID cannot RDY in current state"))
                    }
                }
                _ => Err(fatal(format!("E_INVALID RDY count {count} out of range"))),
            },
            ["FIN", msg] => {
                let mut d = daemon.lock().unwrap();
                match d.settle(id, msg.as_bytes()) {
                    Some(_) => {
                        d.pump();
                        Ok(None)
                    }
                    None => Err(Refusal {
                        text: format!("E_FIN_FAILED FIN {msg} failed"),
                        fatal: false,
                    }),
                }
            }
            ["REQ", msg, delay] => match delay.parse::<u64>() {
                Err(_) => Err(fatal("E_INVALID REQ could not parse timeout")),
                Ok(delay) => {
                    let mut d = daemon.lock().unwrap();
                    match d.settle(id, msg.as_bytes()) {
                        Some(m) => {
                            if let Some(c) = d.channel_of(id) {
                                if delay == 0 {
                                    c.queue.push_back(m);
                                } else {
                                    let at = Instant::now() + Duration::from_millis(delay);
                                    c.deferred.push((at, m));
                                }
                            }
                            d.pump();
                            Ok(None)
                        }
                        None => Err(Refusal {
                            text: format!("E_REQ_FAILED REQ {msg} failed"),
                            fatal: false,
                        }),
                    }
                }
            },
            ["TOUCH", msg] => {
                let mut d = daemon.lock().unwrap();
                let timeout = d.clients.get(&id).map(|c| c.msg_timeout);
                let touched = d.channel_of(id).and_then(|c| {
                    let key: [u8; 16] = msg.as_bytes().try_into().ok()?;
                    let f = c.in_flight.get_mut(&key).filter(|f| f.client == id)?;
                    f.deadline = Instant::now() + timeout?;
                    Some(())
                });
                touched.map(|_| None).ok_or(Refusal {
                    text: format!("E_TOUCH_FAILED TOUCH {msg} failed"),
                    fatal: false,
                })
            }
            ["PUB", topic] => {
                if !valid_name(topic) {
                    Err(fatal(format!(
                        "E_BAD_TOPIC PUB topic name {topic:?} is not valid"
                    )))
                } else {
                    match read_body(&mut r, MAX_MSG_SIZE).await {
                        Err(e) => Err(fatal(e.text.replace("E_BAD_BODY", "E_BAD_MESSAGE"))),
                        Ok(body) => {
                            daemon.lock().unwrap().put(topic, vec![body]);
                            Ok(Some(b"OK".to_vec()))
                        }
                    }
                }
            }
            ["MPUB", topic] => {
                if !valid_name(topic) {
                    Err(fatal(format!(
                        "E_BAD_TOPIC MPUB topic name {topic:?} is not valid"
                    )))
                } else {
                    match read_body(&mut r, MAX_BODY_SIZE).await.and_then(split_mpub) {
                        Err(e) => Err(e),
                        Ok(bodies) => {
                            daemon.lock().unwrap().put(topic, bodies);
                            Ok(Some(b"OK".to_vec()))
                        }
                    }
                }
            }
            ["CLS"] => {
                if let Some(c) = daemon.lock().unwrap().clients.get_mut(&id) {
                    c.rdy = 0;
                }
                Ok(Some(b"CLOSE_WAIT".to_vec()))
            }
            _ => Err(fatal(format!("E_INVALID invalid command {text:?}"))),
        };
        match result {
            Ok(None) => {}
            Ok(Some(answer)) => {
                let _ = out.send(frame(0, &answer));
            }
            Err(refusal) => {
                let _ = out.send(frame(1, refusal.text.as_bytes()));
                if refusal.fatal {
                    break;
                }
            }
        }
    }
    daemon.lock().unwrap().disconnect(id);
    drop(out);
    let _ = writer.await;
}

/// MPUB's body: `[u32 count]([u32 size][bytes])*`.
fn split_mpub(body: Vec<u8>) -> Result<Vec<Vec<u8>>, Refusal> {
    let bad = |why: &str| fatal(format!("E_BAD_BODY MPUB {why}"));
    let count = u32::from_be_bytes(
        body.get(0..4)
            .ok_or_else(|| bad("no count"))?
            .try_into()
            .unwrap_or_default(),
    );
    let mut at = 4;
    let mut out = Vec::new();
    for _ in 0..count {
        let size = body.get(at..at + 4).ok_or_else(|| bad("truncated"))?;
        let size = u32::from_be_bytes(size.try_into().unwrap_or_default()) as usize;
        if size == 0 || size > MAX_MSG_SIZE {
            return Err(fatal(format!(
                "E_BAD_MESSAGE MPUB message size {size} is invalid"
            )));
        }
        at += 4;
        out.push(
            body.get(at..at + size)
                .ok_or_else(|| bad("truncated"))?
                .to_vec(),
        );
        at += size;
    }
    if count == 0 || at != body.len() {
        return Err(bad("body does not match its count"));
    }
    Ok(out)
}
