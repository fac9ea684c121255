//! Speed of the game generator end to end, each figure beside the limit measured in
//! the same run:
//!
//! - `simulate` on the embedded store and broker with batch tables: games/s and
//!   events/s until the tables are on disk, beside the CPU the run used;
//! - `simulate` with per-game tables (two durable files per game), beside the disk's
//!   rate for such files measured just before and just after;
//! - `simulate --store redis`: games/s beside Redis's own CPU time over the run and
//!   the commands it processed per game;
//! - `server` and `player --closed-world` as separate processes over TCP, one runtime
//!   thread each (two processes on two cores): games/s beside the CPU each used;
//! - `simulate --rate R` for R from 10 to 10,000 games/s: the pace held
//!   (`completion_rate`) against the rate asked.
//!
//! The first and the fourth rows also stand beside what their WebSocket transport
//! carries alone: 200 connections each sending a game request and waiting for the
//! same frame back from an echo endpoint, served like the game's (`net::serve`, the
//! same HTTP upgrade, the same read buffer), in process and between two processes
//! over TCP. Divided by the requests a game takes (the server's own count in the TCP
//! row), that is the most games/s the transport could carry with no game at all
//! behind it; the lobby frames a server pushes come on top, so the true ceiling is
//! lower still. Over TCP both sides of the echo run one runtime thread, as the
//! fourth row's processes do.
//!
//! Every row runs the `superhero` binary as a user would and reads its `--json`
//! summary. Run: `cargo bench --bench generator`. SUPERHERO_BENCH_DIR picks the folder
//! written to (default ./bench-data; on the disk, not a tmpfs);
//! SUPERHERO_TEST_REDIS_HOST and SUPERHERO_TEST_REDIS_PORT say where Redis is (default
//! 127.0.0.1:6379): its database 15 is flushed and used, and without a Redis that row
//! is reported and skipped.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::Message;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use superhero::game::protocol::game_user_request;
use superhero::game::{GameToken, UserToken};
use superhero::net::{ConnectionLimits, ConnectionStats, Dial, Listeners};
use superhero::server::READ_BUFFER_BYTES;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Bots and games per bot of a run.
#[derive(Clone, Copy)]
struct Load {
    bots: usize,
    games: usize,
}

impl Load {
    fn args(self) -> Vec<String> {
        vec![
            "--bots".into(),
            self.bots.to_string(),
            "--games".into(),
            self.games.to_string(),
        ]
    }

    fn describe(self) -> String {
        format!("{} bots × {} games", self.bots, self.games)
    }
}

/// How much each measure does.
struct Sizes {
    batch: Load,
    per_game: Load,
    disk_files: usize,
    redis: Load,
    tcp: Load,
    /// Rates asked, and about how long each is held.
    rates: Vec<f64>,
    rate_seconds: f64,
    /// The fewest and the most games a rate run plays.
    rate_games: (f64, f64),
    /// How long the transport alone is measured.
    echo_seconds: f64,
}

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs this file without
/// it, and then a quick pass only checks that every measure works.
fn sizes() -> Sizes {
    if std::env::args().any(|a| a == "--bench") {
        Sizes {
            // Long enough that the start and the drain are a small part. Fifty bots
            // keep both cores busy; each bot more costs CPU on every game (the
            // connections' buffers and timers no longer fit the caches): 250 µs of
            // CPU a game at 25 or 50 bots, 270 at 100, 290 at 200.
            batch: Load {
                bots: 50,
                games: 2_000,
            },
            per_game: Load {
                bots: 200,
                games: 20,
            },
            disk_files: 1_000,
            // Long enough, too, that the start (200 logins) and the drain are a
            // small part of the run.
            redis: Load {
                bots: 200,
                games: 100,
            },
            // As for the batch row: a server's CPU a game grows with the bots
            // connected to it, 324 µs at 40 or 50 bots and 410 µs at 200.
            tcp: Load {
                bots: 50,
                games: 400,
            },
            rates: vec![10.0, 100.0, 1_000.0, 10_000.0],
            rate_seconds: 5.0,
            rate_games: (100.0, 20_000.0),
            echo_seconds: 3.0,
        }
    } else {
        let small = Load { bots: 10, games: 2 };
        Sizes {
            batch: small,
            per_game: small,
            disk_files: 10,
            redis: small,
            tcp: small,
            rates: vec![20.0],
            rate_seconds: 1.0,
            rate_games: (10.0, 20.0),
            echo_seconds: 0.2,
        }
    }
}

struct Row {
    what: String,
    value: f64,
    unit: &'static str,
    limit: String,
    share: Option<f64>,
    note: String,
}

fn superhero() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_superhero"));
    c.env_remove("LOG_LEVEL");
    c
}

/// CPU seconds of this process's waited-for children, from /proc (0 elsewhere).
fn children_cpu() -> f64 {
    proc_cpu("self", 13)
}

/// CPU seconds of process `pid` so far.
fn process_cpu(pid: u32) -> f64 {
    proc_cpu(&pid.to_string(), 11)
}

/// Two adjacent tick counters of /proc/<pid>/stat (user and system), counted from
/// the field after the process's state, in seconds.
fn proc_cpu(pid: &str, first: usize) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, fields)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = fields.split_whitespace().collect();
    let ticks: f64 = (first..first + 2)
        .filter_map(|i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU time a process used, and the wall-clock time it ran.
#[derive(Clone, Copy)]
struct Used {
    cpu_s: f64,
    wall_s: f64,
}

impl Used {
    fn cores(self) -> f64 {
        self.cpu_s / self.wall_s
    }
}

/// Runs `superhero --json <args>` to the end: its summary and what it used.
fn run_json(args: &[String]) -> (Value, Used) {
    let cpu_before = children_cpu();
    let started = Instant::now();
    let out = superhero()
        .arg("--json")
        .args(args)
        .output()
        .expect("the superhero binary runs");
    let used = Used {
        cpu_s: children_cpu() - cpu_before,
        wall_s: started.elapsed().as_secs_f64(),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
        })
        .unwrap_or_else(|| {
            panic!(
                "superhero {args:?} printed no summary; stdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    if !out.status.success() {
        eprintln!(
            "superhero {args:?} reported a problem: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (summary, used)
}

fn number(summary: &Value, field: &str) -> f64 {
    summary[field].as_f64().unwrap_or_else(|| {
        panic!("the summary has no number {field}: {summary}");
    })
}

/// `simulate` with `args` writing into `out`.
fn simulate(out: &Path, load: Load, args: &[&str]) -> (Value, Used) {
    let mut all: Vec<String> = vec!["simulate".into(), "--output-dir".into()];
    all.push(out.display().to_string());
    all.extend(load.args());
    all.extend(args.iter().map(|a| a.to_string()));
    let (summary, used) = run_json(&all);
    let problems = number(&summary, "bot_errors") + number(&summary, "missing_games");
    if problems > 0.0 {
        eprintln!("simulate {args:?}: bot errors or missing games: {summary}");
    }
    (summary, used)
}

const BATCH: [&str; 5] = ["--batch-games", "10000", "--batch-seconds", "1", "--clean"];

fn cpu_note(used: Used) -> String {
    format!("CPU {:.2} of {} cores", used.cores(), cores())
}

fn embedded_batch(dir: &Path, load: Load, alone: Echo, requests: f64) -> Row {
    let (s, used) = simulate(&dir.join("batch"), load, &BATCH);
    let games_per_s = number(&s, "games_per_s");
    Row {
        what: "simulate, embedded store and broker, batch tables".into(),
        value: games_per_s,
        unit: "games/s",
        limit: format!(
            "the in-process transport alone: {}; {}",
            alone.describe(requests),
            cpu_note(used)
        ),
        share: Some(games_per_s / alone.games_per_s(requests)),
        note: format!(
            "{}; {:.0} games, {:.0} events/s",
            load.describe(),
            number(&s, "games_completed"),
            number(&s, "events_per_s")
        ),
    }
}

/// What the WebSocket transport carried alone (see the file's head), and the CPU it
/// took.
#[derive(Clone, Copy)]
struct Echo {
    round_trips_per_s: f64,
    cores: f64,
}

impl Echo {
    /// The most games/s the transport alone carries at `requests` a game.
    fn games_per_s(self, requests: f64) -> f64 {
        self.round_trips_per_s / requests
    }

    fn describe(self, requests: f64) -> String {
        format!(
            "{:.0} games/s ({:.0} round trips/s ÷ {requests:.1} requests a game, CPU {:.2})",
            self.games_per_s(requests),
            self.round_trips_per_s,
            self.cores
        )
    }
}

/// Connections of the transport measure: as many as the embedded row's 50 bots hold
/// (four each).
const ECHO_CONNECTIONS: usize = 200;

/// In the environment of this bench's own executable, makes it the echo server of the
/// TCP measure.
const ECHO_SERVER_ENV: &str = "SUPERHERO_BENCH_ECHO_SERVER";

/// One WebSocket endpoint, `/echo`, that sends every text frame back.
fn echo_router() -> Router {
    Router::new().route(
        "/echo",
        get(|ws: WebSocketUpgrade| async move {
            // Read through a buffer of the game server's size, as its clients do below:
            // each read prepares the whole buffer.
            ws.read_buffer_size(READ_BUFFER_BYTES)
                .on_upgrade(|mut socket| async move {
                    while let Some(Ok(message)) = socket.recv().await {
                        if let Message::Text(text) = message
                            && socket.send(Message::Text(text)).await.is_err()
                        {
                            break;
                        }
                    }
                })
        }),
    )
}

/// Round trips a second of [`ECHO_CONNECTIONS`] clients on `dial`, each sending a
/// game request and waiting for it to come back, over `seconds` once all are
/// connected; and the CPU `cpu` counted meanwhile, in cores.
async fn echo_round_trips(dial: Dial, seconds: f64, cpu: impl Fn() -> f64) -> Echo {
    use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
    let request = game_user_request(&GameToken::new_random(), &UserToken::new_random());
    let request = Utf8Bytes::from(request);
    let done = Arc::new(AtomicU64::new(0));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut clients = Vec::with_capacity(ECHO_CONNECTIONS);
    for _ in 0..ECHO_CONNECTIONS {
        let mut ws = dial
            .open(
                "/echo",
                WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES),
            )
            .await
            .expect("the echo endpoint opens");
        let (request, done, stopping) = (request.clone(), done.clone(), stopping.clone());
        clients.push(tokio::spawn(async move {
            while !*stopping.borrow() {
                ws.send(Message::Text(request.clone()))
                    .await
                    .expect("the request goes out");
                match ws.next().await {
                    Some(Ok(Message::Text(_))) => done.fetch_add(1, Ordering::Relaxed),
                    other => panic!("the echo endpoint answered {other:?}"),
                };
            }
        }));
    }
    let (before, cpu_before, started) = (done.load(Ordering::Relaxed), cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let round_trips = done.load(Ordering::Relaxed) - before;
    let (cpu_s, wall_s) = (cpu() - cpu_before, started.elapsed().as_secs_f64());
    let _ = stop.send(true);
    for client in clients {
        client.await.expect("an echo client ends");
    }
    Echo {
        round_trips_per_s: round_trips as f64 / wall_s,
        cores: cpu_s / wall_s,
    }
}

/// Serves [`echo_router`] on `listeners` for ever, as the game's server is served.
async fn serve_echo_on(listeners: impl Into<Listeners>) -> std::io::Result<()> {
    superhero::net::serve(
        listeners,
        echo_router(),
        ConnectionLimits::default(),
        Arc::new(ConnectionStats::default()),
        std::future::pending(),
    )
    .await
}

/// The transport alone in this process, as `simulate` runs it.
fn echo_in_process(runtime: &tokio::runtime::Runtime, seconds: f64) -> Echo {
    runtime.block_on(async {
        let (dialer, listener) = superhero::net::local();
        tokio::spawn(serve_echo_on(listener));
        let own = || process_cpu(std::process::id());
        echo_round_trips(Dial::Local(dialer), seconds, own).await
    })
}

/// The echo server of [`echo_over_tcp`]: says where it listens, then serves until
/// it is killed.
fn serve_echo() {
    let runtime = one_thread();
    runtime.block_on(async {
        let listener = superhero::net::bind("127.0.0.1:0")
            .await
            .expect("the echo server listens");
        let port = listener.local_addr().expect("a bound port").port();
        println!("echo ws://127.0.0.1:{port}");
        std::io::stdout().flush().expect("stdout");
        serve_echo_on(listener)
            .await
            .expect("the echo server serves");
    });
}

/// The transport alone between two processes over TCP, as `server` and `player` run
/// it: this process is the clients, a copy of it the echo server.
fn echo_over_tcp(seconds: f64) -> Echo {
    let exe = std::env::current_exe().expect("the bench's own executable");
    let mut server = Server(
        Command::new(exe)
            .env(ECHO_SERVER_ENV, "1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the echo server starts"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the echo server says where it listens");
    let url = line
        .trim()
        .strip_prefix("echo ")
        .expect("an echo URL")
        .to_string();
    let pid = server.0.id();
    let both = move || process_cpu(std::process::id()) + process_cpu(pid);
    one_thread().block_on(echo_round_trips(Dial::Url(url), seconds, both))
}

/// A runtime on the calling thread alone, as `--runtime-threads 1` makes.
fn one_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn per_game(dir: &Path, load: Load, disk_files: usize) -> Row {
    // A file the size of one game's GAME_META table file.
    let sample = vec![0x5a_u8; 3_000];
    let before = common::disk_rate(&dir.join("disk-before"), &sample, disk_files);
    let (s, used) = simulate(&dir.join("per-game"), load, &[]);
    let after = common::disk_rate(&dir.join("disk-after"), &sample, disk_files);
    let disk = (before + after) / 2.0;
    let games = number(&s, "games_per_s");
    Row {
        what: "simulate, embedded, per-game tables (2 durable files a game)".into(),
        value: games,
        unit: "games/s",
        limit: format!("disk {disk:.0} files/s ({before:.0} before, {after:.0} after)"),
        share: Some(2.0 * games / disk),
        note: format!(
            "{}; {:.0} games; {}",
            load.describe(),
            number(&s, "games_completed"),
            cpu_note(used)
        ),
    }
}

/// Redis's INFO fields as numbers.
fn redis_info(c: &mut redis::Connection) -> std::collections::HashMap<String, f64> {
    let info: String = redis::cmd("INFO").arg("everything").query(c).unwrap();
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            // `cmdstat_<command>:calls=N,usec=…` counts as `cmdstat_<command>_calls`.
            match v.strip_prefix("calls=") {
                Some(calls) => Some((format!("{k}_calls"), calls.split(',').next()?.parse().ok()?)),
                None => Some((k.to_string(), v.trim().parse().ok()?)),
            }
        })
        .collect()
}

fn redis_store(dir: &Path, load: Load) -> Result<Row, String> {
    let host = std::env::var("SUPERHERO_TEST_REDIS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("SUPERHERO_TEST_REDIS_PORT").unwrap_or_else(|_| "6379".into());
    let url = format!("redis://{host}:{port}/15");
    let mut c = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .map_err(|e| format!("no Redis at {url}: {e}"))?;
    let _: () = redis::cmd("FLUSHDB")
        .query(&mut c)
        .map_err(|e| e.to_string())?;
    let before = redis_info(&mut c);
    let (s, used) = simulate(
        &dir.join("redis"),
        load,
        &[&["--store", &url][..], &BATCH].concat(),
    );
    let after = redis_info(&mut c);
    let delta = |k: &str| after.get(k).unwrap_or(&0.0) - before.get(k).unwrap_or(&0.0);
    let redis_cpu = delta("used_cpu_user") + delta("used_cpu_sys");
    let redis_cores = redis_cpu / used.wall_s;
    let games = number(&s, "games_completed");
    let _: () = redis::cmd("FLUSHDB")
        .query(&mut c)
        .map_err(|e| e.to_string())?;
    Ok(Row {
        what: "simulate --store redis, batch tables".into(),
        value: number(&s, "games_per_s"),
        unit: "games/s",
        limit: format!("Redis CPU {redis_cores:.2} of its 1 core"),
        share: Some(redis_cores),
        note: format!(
            "{}; {games:.0} games; a game: {:.0} Redis commands ({:.0} script calls), \
             Redis CPU {:.0} µs, simulate CPU {:.0} µs; {}",
            load.describe(),
            delta("total_commands_processed") / games,
            (delta("cmdstat_evalsha_calls") + delta("cmdstat_fcall_calls")) / games,
            redis_cpu / games * 1e6,
            used.cpu_s / games * 1e6,
            cpu_note(used)
        ),
    })
}

/// A running `superhero server`, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `superhero server` on a free port with `args`, and its URL once it listens.
fn start_server(args: &[&str]) -> (Server, String) {
    let mut server = Server(
        superhero()
            .args(["server", "--host", "127.0.0.1", "--port", "0"])
            .args(["--log-level", "WARNING"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts"),
    );
    let (tx, rx) = mpsc::channel();
    let streams: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(server.0.stdout.take().unwrap()),
        Box::new(server.0.stderr.take().unwrap()),
    ];
    for stream in streams {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the server says where it listens");
        if let Some(at) = line.find("ws://") {
            let url = line[at..].split_whitespace().next().unwrap().to_string();
            return (server, url);
        }
    }
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a bound port").port()
}

/// The requests a server answered in all, from its Prometheus metrics at `address`.
fn requests_answered(address: &str) -> f64 {
    let mut http = std::net::TcpStream::connect(address).expect("the metrics endpoint");
    write!(http, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("asking");
    let mut text = String::new();
    http.read_to_string(&mut text).expect("the metrics");
    text.lines()
        .filter(|l| l.starts_with(superhero::telemetry::names::REQUESTS))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The flags giving a process one runtime thread. Two processes on two cores run
/// fastest so: with a thread on each core each, `server` and `player` made 2,613–2,717
/// games/s at 50 bots, against 2,888–2,986 with one thread each.
const ONE_THREAD: [&str; 2] = ["--runtime-threads", "1"];

/// The TCP row, and the requests a game took in it.
fn server_and_player(load: Load, alone: Echo) -> (Row, f64) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let (server, url) = start_server(&[&ONE_THREAD[..], &["--metrics", &metrics]].concat());
    let server_cpu = process_cpu(server.0.id());
    let started = Instant::now();
    let mut args: Vec<String> = [
        &["player"][..],
        &ONE_THREAD,
        &["--url", &url, "--closed-world"],
    ]
    .concat()
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(load.args());
    let (s, player_cpu) = run_json(&args);
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = process_cpu(server.0.id()) - server_cpu;
    let games = number(&s, "games_completed");
    let requests = requests_answered(&metrics) / games;
    drop(server);
    let games_per_s = number(&s, "games_per_s");
    let row = Row {
        what: "server + player --closed-world, separate processes, TCP, a thread each".into(),
        value: games_per_s,
        unit: "games/s",
        limit: format!(
            "the TCP transport alone: {}; CPU: server {:.2} + player {:.2} of {} cores",
            alone.describe(requests),
            server_cpu / elapsed,
            player_cpu.cpu_s / elapsed,
            cores()
        ),
        share: Some(games_per_s / alone.games_per_s(requests)),
        note: format!(
            "{}; {games:.0} games, embedded store, no broker",
            load.describe()
        ),
    };
    (row, requests)
}

/// `simulate --rate` held for about `seconds`.
fn rate(dir: &Path, asked: f64, seconds: f64, (fewest, most): (f64, f64)) -> Row {
    let games = (asked * seconds).clamp(fewest, most);
    // Enough bots for the games in flight, and not many more: every bot's connections
    // cost CPU on every game (asked for 10,000 games/s, 50 bots made 8,100, 100 made
    // 7,900 and 800 made 4,500–5,800). A game takes 2.4 joins on average.
    let bots = (asked / 200.0).clamp(20.0, 50.0) as usize;
    let load = Load {
        bots,
        games: (games * 2.4 / bots as f64).ceil() as usize + 1,
    };
    let asked_arg = asked.to_string();
    let (s, used) = simulate(
        &dir.join(format!("rate-{asked}")),
        load,
        &[&["--rate", &asked_arg][..], &BATCH].concat(),
    );
    let held = number(&s, "completion_rate");
    Row {
        what: format!("simulate --rate {asked}, batch tables"),
        value: held,
        unit: "games/s",
        limit: format!("{asked} games/s asked"),
        share: Some(held / asked),
        note: format!(
            "{}; {:.0} games in {:.1} s; {}",
            load.describe(),
            number(&s, "games_completed"),
            number(&s, "elapsed_s"),
            cpu_note(used)
        ),
    }
}

fn main() {
    if std::env::var_os(ECHO_SERVER_ENV).is_some() {
        return serve_echo();
    }
    let sizes = sizes();
    let dir = common::bench_dir();
    std::fs::create_dir_all(&dir).expect("creating the bench folder");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let in_process = echo_in_process(&runtime, sizes.echo_seconds);
    let over_tcp = echo_over_tcp(sizes.echo_seconds);
    // The TCP row runs first: it counts the requests a game takes.
    let (tcp, requests) = server_and_player(sizes.tcp, over_tcp);
    let mut rows = vec![
        embedded_batch(&dir, sizes.batch, in_process, requests),
        per_game(&dir, sizes.per_game, sizes.disk_files),
    ];
    match redis_store(&dir, sizes.redis) {
        Ok(row) => rows.push(row),
        Err(why) => eprintln!("skipped the Redis store: {why}"),
    }
    rows.push(tcp);
    for asked in &sizes.rates {
        rows.push(rate(&dir, *asked, sizes.rate_seconds, sizes.rate_games));
    }

    println!(
        "\n| measure | result | unit | the limit, same run | share of the limit | notes |\n|---|---:|---|---|---:|---|"
    );
    for r in rows {
        let share = r
            .share
            .map_or(String::new(), |s| format!("{:.1}%", 100.0 * s));
        println!(
            "| {} | {:.0} | {} | {} | {share} | {} |",
            r.what, r.value, r.unit, r.limit, r.note
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
