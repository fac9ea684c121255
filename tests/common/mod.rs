//! Helpers shared by the integration tests: a real Redis database per test, a real
//! server on an ephemeral port, and a plain WebSocket client.
//!
//! Redis databases are handed out per test so that tests running in parallel never
//! see each other's keys: protocol 1 and 10-12, redis_game 2, roster_import 3 and 13,
//! scale 4, bad_input 5, store_contract 6-9, pipeline 14 and 15. Pub/sub channels are
//! shared across databases, but they are named after random game tokens.

#![allow(dead_code)]

pub mod browser;
pub mod nsqd;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use redis::AsyncCommands;
use serde_json::Value;
use superhero::net::{ClientSocket, Dial, Listeners, LocalDialer};
use superhero::server::{self, ServerSettings};
use superhero::store::{GameStore, RedisConfig, RedisStore};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn redis_url(db: u32) -> String {
    let host = std::env::var("SUPERHERO_TEST_REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("SUPERHERO_TEST_REDIS_PORT").unwrap_or_else(|_| "6379".into());
    format!("redis://{host}:{port}/{db}")
}

/// The test RabbitMQ (SUPERHERO_TEST_AMQP_URL, else guest on 127.0.0.1:5672).
pub fn amqp_url() -> String {
    std::env::var("SUPERHERO_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The test NATS server with JetStream (SUPERHERO_TEST_NATS_URL, else 127.0.0.1:4222).
pub fn nats_url() -> String {
    std::env::var("SUPERHERO_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The test Kafka-API broker (SUPERHERO_TEST_KAFKA_URL, else 127.0.0.1:9092).
pub fn kafka_url() -> String {
    std::env::var("SUPERHERO_TEST_KAFKA_URL").unwrap_or_else(|_| "kafka://127.0.0.1:9092".into())
}

/// A plain connection to test database `db`, emptied first.
pub async fn fresh_db(db: u32) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url(db)).expect("a valid Redis URL");
    let mut conn = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .expect("Redis answers in time (is it running? scripts/test starts it)")
        .expect("Redis is reachable (scripts/test starts it)");
    let () = redis::cmd("FLUSHDB")
        .query_async(&mut conn)
        .await
        .expect("FLUSHDB");
    conn
}

/// A Redis store on test database `db`, emptied first.
pub async fn fresh_redis_store(db: u32) -> (RedisStore, redis::aio::MultiplexedConnection) {
    let conn = fresh_db(db).await;
    let store = RedisStore::connect(&RedisConfig { url: redis_url(db) })
        .await
        .expect("the Redis store connects");
    (store, conn)
}

#[allow(unused_imports)]
pub use superhero::fixtures::uniform_roster;

/// How a test reaches its in-process game server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A real socket on an ephemeral loopback port.
    Tcp,
    /// In-process streams (`superhero::net::local`), as `simulate`'s bots use.
    InProcess,
}

/// The in-process servers of this test binary, by the `inproc://` base URL their
/// [`TestServer`] gives, so that code taking a base URL reaches them too.
static LOCAL_SERVERS: std::sync::LazyLock<std::sync::Mutex<BTreeMap<String, LocalDialer>>> =
    std::sync::LazyLock::new(Default::default);

/// A game server running in this process until dropped.
pub struct TestServer {
    /// `ws://127.0.0.1:PORT`, or `inproc://ID` for an in-process server.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Ok(mut servers) = LOCAL_SERVERS.lock() {
            servers.remove(&self.url);
        }
    }
}

impl TestServer {
    /// How bots reach this server.
    pub fn dial(&self) -> Dial {
        dial(&self.url)
    }
}

/// How to reach the server at `base`: over TCP, or in-process for `inproc://`.
pub fn dial(base: &str) -> Dial {
    match LOCAL_SERVERS.lock().unwrap().get(base) {
        Some(dialer) => Dial::Local(dialer.clone()),
        None => Dial::Url(base.to_string()),
    }
}

pub async fn start_server<S: GameStore>(store: S, settings: ServerSettings) -> TestServer {
    start_server_over(store, settings, Transport::Tcp).await
}

pub async fn start_server_over<S: GameStore>(
    store: S,
    settings: ServerSettings,
    transport: Transport,
) -> TestServer {
    let (listeners, url) = match transport {
        Transport::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
            let addr = listener.local_addr().expect("a local address");
            (Listeners::from(listener), format!("ws://{addr}"))
        }
        Transport::InProcess => {
            let (dialer, listener) = superhero::net::local();
            let url = format!("inproc://{}", uuid::Uuid::new_v4().simple());
            LOCAL_SERVERS.lock().unwrap().insert(url.clone(), dialer);
            (Listeners::from(listener), url)
        }
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listeners, store, settings, async {
        let _ = stopped.await;
    }));
    TestServer {
        url,
        stop: Some(stop),
    }
}

/// A WebSocket client for one endpoint.
pub struct Client {
    pub ws: ClientSocket,
}

impl Client {
    pub async fn connect(base: &str, path: &str) -> Self {
        let ws = tokio::time::timeout(WAIT, dial(base).open(path, WebSocketConfig::default()))
            .await
            .expect("connect in time")
            .expect("the WebSocket handshake succeeds");
        Self { ws }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Sends a frame the server may refuse by closing the connection mid-way.
    pub async fn try_send_text(&mut self, text: &str) -> bool {
        self.ws.send(Message::text(text)).await.is_ok()
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// The next text frame, parsed.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a reply in time")
                .expect("the connection stays open")
                .expect("a readable frame");
            if let Message::Text(text) = msg {
                return serde_json::from_str(&text).expect("the server sends JSON");
            }
        }
    }

    /// Sends a text frame as is and returns the next frame.
    #[allow(dead_code)]
    pub async fn ask_text(&mut self, text: &str) -> Value {
        self.send_text(text).await;
        self.recv().await
    }

    /// Sends a request and returns the next frame.
    pub async fn ask(&mut self, value: Value) -> Value {
        self.send(value).await;
        self.recv().await
    }

    /// Whether the server closes the connection (within the wait limit).
    pub async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// The error reply with this status message.
pub fn error(message: &str) -> Value {
    serde_json::json!({"PAYLOAD": {}, "STATUS": message})
}

/// Logs a user in and returns its token.
pub async fn login(base: &str, name: &str) -> String {
    let mut c = Client::connect(base, "/api/v1/login").await;
    c.send(serde_json::json!({"PAYLOAD": {"USER": name}})).await;
    loop {
        let frame = c.recv().await;
        if let Some(token) = frame["PAYLOAD"]["USER_TOKEN"].as_str() {
            return token.to_string();
        }
        assert_eq!(frame, error("USER CREATED"));
    }
}

/// Every key of a Redis database with its content, to check that nothing changed.
pub async fn keyspace(conn: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, String> {
    let keys: Vec<String> = conn.keys("*").await.expect("KEYS");
    let mut out = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .expect("TYPE");
        let value = match kind.as_str() {
            "string" => conn.get::<_, String>(&key).await.expect("GET"),
            "list" => format!(
                "{:?}",
                conn.lrange::<_, Vec<String>>(&key, 0, -1)
                    .await
                    .expect("LRANGE")
            ),
            "set" => {
                let mut members: Vec<String> = conn.smembers(&key).await.expect("SMEMBERS");
                members.sort();
                format!("{members:?}")
            }
            "hash" => format!(
                "{:?}",
                conn.hgetall::<_, BTreeMap<String, String>>(&key)
                    .await
                    .expect("HGETALL")
            ),
            "zset" => format!(
                "{:?}",
                conn.zrange_withscores::<_, Vec<(String, f64)>>(&key, 0, -1)
                    .await
                    .expect("ZRANGE")
            ),
            other => other.to_string(),
        };
        out.insert(key, value);
    }
    out
}

/// A `superhero` process of a test: its output is collected line by line; killed when
/// dropped.
pub struct Service {
    child: std::process::Child,
    /// The first output line holding the readiness marker.
    pub ready_line: String,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Starts `superhero ARGS` and waits until a line of its output contains `ready`.
    pub fn start(args: &[&str], ready: &str) -> Self {
        Self::start_within(args, ready, WAIT)
    }

    /// As [`Self::start`], waiting at most `wait` for `ready`.
    pub fn start_within(args: &[&str], ready: &str, wait: Duration) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"));
        command.args(args).env_remove("LOG_LEVEL");
        Self::spawn(command, ready, wait)
    }

    /// Starts any program the same way; its standard input is a pipe, which
    /// [`Self::close_stdin`] closes.
    pub fn spawn(mut command: std::process::Command, ready: &str, wait: Duration) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let args: Vec<_> = std::iter::once(command.get_program())
            .chain(command.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?} starts: {e}"));
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        // Drain both streams for the whole run so the process never blocks on a pipe.
        let mut readers = Vec::new();
        for stream in streams {
            let (lines, ready_tx, marker) = (lines.clone(), ready_tx.clone(), ready.to_string());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains(&marker) {
                        let _ = ready_tx.send(line.clone());
                    }
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        let ready_line = ready_rx.recv_timeout(wait).unwrap_or_else(|_| {
            panic!(
                "{args:?} did not print {ready:?} within {wait:?}; output:\n{}",
                lines.lock().unwrap().join("\n")
            )
        });
        Self {
            child,
            ready_line,
            lines,
            readers,
        }
    }

    /// Everything it printed so far, standard output and error interleaved.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Closes its standard input and waits, at most [`WAIT`], for it to end; returns
    /// whether it exited successfully and everything it printed.
    pub fn close_stdin(mut self) -> (bool, Vec<String>) {
        drop(self.child.stdin.take());
        self.wait_for_exit()
    }

    /// The first `ws://` address in the readiness line.
    pub fn url(&self) -> String {
        self.ready_line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .expect("a ws:// address")
            .to_string()
    }

    /// Kills the process with SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        self.child.kill().expect("the process can be killed");
        let _ = self.child.wait();
    }

    /// Stops the process as Ctrl-C would and returns whether it exited successfully
    /// and everything it printed.
    pub fn interrupt(mut self) -> (bool, Vec<String>) {
        self.signal("INT");
        self.wait_for_exit()
    }

    /// Stops the process as a service manager would (SIGTERM) and returns whether it
    /// exited successfully and everything it printed.
    pub fn terminate(mut self) -> (bool, Vec<String>) {
        self.signal("TERM");
        self.wait_for_exit()
    }

    /// Sends it a signal (`kill -NAME`), without waiting for anything.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    /// Waits, at most [`WAIT`], until a line of its output contains `marker`.
    pub fn wait_for_line(&self, marker: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        while !self.lines().iter().any(|l| l.contains(marker)) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {marker:?} within {WAIT:?}; output:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("waiting for the process")
            .is_none()
    }

    /// Waits, at most [`WAIT`], for it to end by itself; returns whether it exited
    /// successfully and everything it printed.
    pub fn wait(mut self) -> (bool, Vec<String>) {
        self.wait_for_exit()
    }

    /// [`Self::terminate`], waiting at most `wait`.
    pub fn terminate_within(mut self, wait: Duration) -> (bool, Vec<String>) {
        self.signal("TERM");
        self.wait_within(wait)
    }

    fn wait_for_exit(&mut self) -> (bool, Vec<String>) {
        self.wait_within(WAIT)
    }

    fn wait_within(&mut self, wait: Duration) -> (bool, Vec<String>) {
        let deadline = std::time::Instant::now() + wait;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the process") {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let lines = self.lines();
                let last = &lines[lines.len().saturating_sub(40)..];
                panic!(
                    "the process did not stop within {wait:?}; its last lines:\n{}",
                    last.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipes close with the process: the readers end after its last line.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let lines = self.lines.lock().unwrap().clone();
        (status.success(), lines)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `superhero player` with `bots` bots of 3 games each, closed-world, on the server
/// at `url`; returns how many games completed (at least one).
pub fn play(url: &str, bots: u32) -> u64 {
    let player = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["player", "--url", url, "--bots", &bots.to_string()])
        .args(["--games", "3", "--closed-world", "--json"])
        .args(["--log-level", "WARNING"])
        .output_within();
    assert!(player.status.success(), "{player:?}");
    let played = summary(&player);
    let completed = n(&played, "games_completed");
    assert!(completed > 0, "{played}");
    completed
}

/// A `redis-server` of a test's own on `bind:port`, keeping nothing on disk, started
/// through `prefix` (`ip netns exec NS` for another host; empty for this one) and
/// ready when it returns: a test may kill it and start another on the same port.
pub fn redis_server(prefix: &[&str], bind: &str, port: u16) -> Service {
    let (program, before) = match prefix.split_first() {
        Some((program, rest)) => (*program, rest),
        None => ("redis-server", &[][..]),
    };
    let mut command = std::process::Command::new(program);
    if !prefix.is_empty() {
        command.args(before).arg("redis-server");
    }
    let port = port.to_string();
    command.args(["--bind", bind, "--port", &port, "--protected-mode", "no"]);
    command.args(["--save", "", "--appendonly", "no"]);
    Service::spawn(command, "Ready to accept connections", WAIT)
}

/// The real hero collection (`../shared/superhero.json`), if present. Outside CI a
/// checkout without it skips the tests that need it (and says so); in CI (CI=true)
/// its absence fails them, so that CI never passes having tested nothing.
pub fn real_collection() -> Option<std::path::PathBuf> {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/superhero.json");
    if path.exists() {
        Some(path)
    } else {
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !in_ci,
            "{} is absent, and CI must test the real collection",
            path.display()
        );
        eprintln!(
            "SKIPPED: {} is absent; the real-collection tests do not run",
            path.display()
        );
        None
    }
}

/// A plain HTTP/1.0 GET: status line and body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the tables under `out` hold every one of the `completed` games, and
/// then checks that each is written exactly once and that no other game is.
pub fn until_written_once(out: &std::path::Path, completed: &std::collections::HashSet<&str>) {
    if let Err(missing) = written_once_within(out, completed) {
        panic!("{missing}");
    }
}

/// [`until_written_once`], but the games still missing after a while are an error
/// naming them, for the caller to add what it knows.
pub fn written_once_within(
    out: &std::path::Path,
    completed: &std::collections::HashSet<&str>,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + WAIT * 3;
    let audit = loop {
        let audit = superhero::audit::audit(out).unwrap();
        let written = audit.complete_games();
        if completed.iter().all(|g| written.contains(g)) {
            break audit;
        }
        if std::time::Instant::now() >= deadline {
            let missing: Vec<_> = completed.iter().filter(|g| !written.contains(*g)).collect();
            return Err(format!(
                "{} of {} completed games written; missing: {missing:?}",
                written.len(),
                completed.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let twice: Vec<_> = audit
        .files_per_game
        .iter()
        .filter(|(_, n)| n[0] > 1 || n[1] > 1)
        .collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    assert_eq!(audit.complete_games().len(), completed.len());
    Ok(())
}

/// Waits until both tables under `out` hold `games` games, failing after a while.
pub async fn until_games_written(out: &std::path::Path, games: u64, what: &str) {
    let written = games_written_within(out, games).await;
    assert!(
        written >= games,
        "{what}: {written} of {games} games written"
    );
}

/// Waits until both tables under `out` hold `games` games, or a while has passed;
/// returns how many they hold.
pub async fn games_written_within(out: &std::path::Path, games: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    loop {
        let written = superhero::audit::audit(out).unwrap().complete_games().len() as u64;
        if written >= games || tokio::time::Instant::now() >= deadline {
            return written;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The JSON summary a `superhero … --json` run printed as its last line of stdout;
/// fails with everything it printed when there is none.
pub fn summary(output: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The last JSON object among a process's output lines (logs may follow it).
pub fn last_json(lines: &[String]) -> Value {
    lines
        .iter()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
        })
        .unwrap_or_else(|| panic!("no JSON summary in:\n{}", lines.join("\n")))
}

/// A count field of a summary.
pub fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// How long a whole `superhero` run in a test may take before it counts as hung.
pub const RUN_LIMIT: Duration = Duration::from_secs(300);

/// `Command::output` with a limit.
pub trait RunWithin {
    /// Runs the command to the end, as `output` does, but kills it and fails with
    /// what it printed if it takes longer than [`RUN_LIMIT`]: a hung run fails its
    /// test instead of stalling the whole suite.
    fn output_within(&mut self) -> std::process::Output;
}

impl RunWithin for std::process::Command {
    fn output_within(&mut self) -> std::process::Output {
        use std::process::Stdio;
        let child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        finish_within(child, RUN_LIMIT)
    }
}

/// Waits for a child started with piped stdout and stderr, at most `limit`; kills it
/// and fails with what it printed when it is still running then.
pub fn finish_within(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    use std::io::Read;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => std::process::Output {
            status,
            stdout,
            stderr,
        },
        None => {
            let tail = |b: &[u8]| {
                let text = String::from_utf8_lossy(b).into_owned();
                let start = text.len().saturating_sub(4000);
                let start = (start..text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(text.len());
                text[start..].to_string()
            };
            panic!(
                "still running after {limit:?}, killed; stdout ends:\n{}\nstderr ends:\n{}",
                tail(&stdout),
                tail(&stderr)
            )
        }
    }
}

/// A Redis Cluster of a test's own, three masters and a replica of each, on free
/// ports of this machine; each node keeps only its node file, in a folder of its own
/// that goes with the cluster. Ready when [`Self::start`] returns: every slot is
/// served and every node says so.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    nodes: Vec<Option<Service>>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// How long a node may go unanswered before the cluster fails it over.
    pub const NODE_TIMEOUT_MS: u64 = 1_000;

    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "superhero-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        let ports = cluster_ports(6);
        let mut nodes = Vec::new();
        for port in &ports {
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let mut command = std::process::Command::new("redis-server");
            let port = port.to_string();
            let timeout = Self::NODE_TIMEOUT_MS.to_string();
            command.args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port,
                "--protected-mode",
                "no",
            ]);
            command.args(["--save", "", "--appendonly", "no"]);
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                &timeout,
            ]);
            // A replica's first copy starts at once, not after the default 5 s wait
            // for more replicas.
            command.args(["--repl-diskless-sync-delay", "0"]);
            command.arg("--dir").arg(&node_dir);
            nodes.push(Some(Service::spawn(
                command,
                "Ready to accept connections",
                WAIT,
            )));
        }
        let mut create = std::process::Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        create.args(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let created = create.output().expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = Self { ports, nodes, dir };
        cluster.until_ok();
        cluster
    }

    /// `redis-cluster://127.0.0.1:p1,…` naming every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis-cluster://{}", hosts.join(","))
    }

    /// `redis-cli ARGS` on the node at `port`: its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The ports of the nodes running that serve slots as masters.
    pub fn masters(&self) -> Vec<u16> {
        self.running()
            .into_iter()
            .filter(|&p| self.cli(p, &["role"]).starts_with("master"))
            .collect()
    }

    fn running(&self) -> Vec<u16> {
        self.ports
            .iter()
            .zip(&self.nodes)
            .filter(|(_, n)| n.is_some())
            .map(|(p, _)| *p)
            .collect()
    }

    /// Waits until every running node says the cluster is ok (all slots served) and
    /// every replica holds a copy of its master (so that it may take over).
    pub fn until_ok(&self) {
        let deadline = std::time::Instant::now() + WAIT * 3;
        loop {
            let states: Vec<String> = self
                .running()
                .into_iter()
                .map(|p| {
                    let role = self.cli(p, &["info", "replication"]);
                    format!("{}{role}", self.cli(p, &["cluster", "info"]))
                })
                .collect();
            let ok = |s: &String| {
                s.contains("cluster_state:ok")
                    && (s.contains("role:master") || s.contains("master_link_status:up"))
            };
            if states.iter().all(ok) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster is not ok: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the replicas of the master at `port` hold every write it had
    /// taken so far: replication is asynchronous, so a master killed before that
    /// takes its latest writes with it.
    pub fn until_replicated(&self, port: u16) {
        let field = |info: &str, name: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .and_then(|v| v.parse().ok())
        };
        let written = field(
            &self.cli(port, &["info", "replication"]),
            "master_repl_offset:",
        )
        .expect("a master reports its replication offset");
        let deadline = std::time::Instant::now() + WAIT * 3;
        loop {
            let info = self.cli(port, &["info", "replication"]);
            let offsets: Vec<u64> = info
                .lines()
                .filter(|l| l.starts_with("slave"))
                .filter_map(|l| l.split(',').find_map(|kv| kv.strip_prefix("offset=")))
                .filter_map(|v| v.trim().parse().ok())
                .collect();
            if !offsets.is_empty() && offsets.iter().all(|&o| o >= written) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the replicas of {port} did not catch up to {written}: {info}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the node at `port` with SIGKILL.
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|&p| p == port).unwrap();
        if let Some(node) = self.nodes[i].take() {
            node.kill();
        }
    }

    /// Empties every master.
    pub fn flush(&self) {
        for port in self.masters() {
            self.cli(port, &["flushall"]);
        }
    }

    /// Every key of every master matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for port in self.masters() {
            let out = self.cli(port, &["--scan", "--pattern", pattern]);
            keys.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
        keys
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` ports, each free with the port 10000 above it (a cluster node's bus), and
/// never handed out before in this process (clusters of tests running at once).
fn cluster_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let base = (std::process::id() % 500) as u16 * 20;
    let mut ports = Vec::new();
    while ports.len() < n {
        let p = 20_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000;
        if free(p) && free(p + 10_000) {
            ports.push(p);
        }
    }
    ports
}
