//! The brokers' own benchmark tools, run in the same evaluation right after our
//! adapter, on the same broker with the same message size and count, so that the
//! report gives our rates as a share of what the broker's own client reaches:
//!
//! | broker | tool | what it does |
//! |---|---|---|
//! | Redis pub/sub, fan-out | `redis-benchmark` | PUBLISH, pipelined 64 deep, to as many `redis-cli` subscribers as our consumers |
//! | Redis Streams | `redis-benchmark` | XADD, pipelined 64 deep |
//! | RabbitMQ | PerfTest | persistent messages, publisher confirms, a consumer acking each |
//! | NATS JetStream | `nats bench js` | asynchronous publish, then a durable consumer double-acking |
//! | Kafka | ProducerPerformance, ConsumerPerformance | `acks=all` and a consumer group at once, as ours run |
//! | NSQ | `bench_writer`, `bench_reader` | MPUB, and a channel reader FINishing each |
//!
//! Each runs as its authors meant it to (NATS's tool publishes, then consumes what
//! was published; PerfTest, NSQ's, Kafka's pair and ours do both at once), with as
//! many producers and consumers as our run where the tool takes a count. A tool that
//! is not installed is reported as such (`scripts/bench-tools` installs them all,
//! where [`Tools`] looks for them); one that fails, with why.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use super::raw::{RawResult, RawWorkload};
use crate::broker::{Broker, kafka, nsq};
use crate::url::redact;

/// How long one tool may run before it counts as failed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);
/// Unconfirmed publishes PerfTest keeps going (our adapter has a batch of up to
/// 256 unconfirmed).
const CONFIRM_WINDOW: usize = 1024;
/// Unacknowledged messages PerfTest's consumer may hold, as ours (RabbitMQ adapter).
const PREFETCH: usize = 1024;

/// Where the tools are: `DIR/bin/<program>` (else the PATH) and `DIR/<name>/libs`
/// for the Java ones (run with the `java` of the PATH).
#[derive(Clone, Debug)]
pub struct Tools {
    dir: PathBuf,
}

impl Tools {
    /// Tools under `dir` (scripts/bench-tools installs into
    /// `~/.cache/superhero-tools`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The program `name`: `DIR/bin/name`, else on the PATH.
    fn program(&self, name: &str) -> Option<PathBuf> {
        let own = self.dir.join("bin").join(name);
        if own.is_file() {
            return Some(own);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }

    /// `java` and the class path of the jars in `DIR/name/libs`.
    fn java(&self, name: &str) -> Option<(PathBuf, String)> {
        let libs = self.dir.join(name).join("libs");
        let has_jars = std::fs::read_dir(&libs).ok()?.flatten().any(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("jar"))
        });
        if !has_jars {
            return None;
        }
        Some((self.program("java")?, format!("{}/*", libs.display())))
    }

    fn missing(&self, what: &str) -> String {
        format!(
            "{what} not found under {} nor on the PATH (scripts/bench-tools installs it)",
            self.dir.display()
        )
    }
}

/// One tool's rates beside ours.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    /// The broker of the report it ran on.
    pub broker: String,
    pub tool: String,
    /// What ran, in short (passwords masked).
    pub command: String,
    /// `ok`, `not installed` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The tool's rates (None: it does not measure that side).
    pub publish_per_s: Option<f64>,
    pub consume_per_s: Option<f64>,
    /// Ours over the tool's.
    pub publish_ratio: Option<f64>,
    pub consume_ratio: Option<f64>,
}

impl Baseline {
    fn new(broker: &str, tool: &str, command: String) -> Self {
        Self {
            broker: broker.to_string(),
            tool: tool.to_string(),
            command,
            status: "ok",
            reason: None,
            publish_per_s: None,
            consume_per_s: None,
            publish_ratio: None,
            consume_ratio: None,
        }
    }

    fn not_installed(mut self, reason: String) -> Self {
        self.status = "not installed";
        self.reason = Some(reason);
        self
    }

    fn failed(mut self, reason: String) -> Self {
        self.status = "failed";
        self.reason = Some(reason);
        self
    }

    /// Sets the tool's rates and our share of them.
    fn rates(mut self, publish: Option<f64>, consume: Option<f64>, ours: &RawResult) -> Self {
        let ratio = |ours: f64, theirs: Option<f64>| {
            theirs.filter(|t| *t > 0.0 && ours > 0.0).map(|t| ours / t)
        };
        self.publish_per_s = publish;
        self.consume_per_s = consume;
        self.publish_ratio = ratio(ours.publish_per_s, publish);
        self.consume_ratio = ratio(ours.consume_per_s, consume);
        self
    }
}

/// What a native run needs to know of ours.
pub struct Beside<'a> {
    /// The broker's name in the report.
    pub name: &'a str,
    /// Its registry backend (`redis`, `rabbitmq`, ...).
    pub backend: &'a str,
    /// Its URL.
    pub url: &'a str,
    /// The opened broker, to declare what a tool expects to exist.
    pub broker: &'a dyn Broker,
    pub workload: &'a RawWorkload,
    /// Our result on it.
    pub ours: &'a RawResult,
}

/// Runs the broker's own tools (none for the embedded broker).
pub async fn measure(tools: &Tools, beside: &Beside<'_>) -> Vec<Baseline> {
    match beside.backend {
        "redis" | "redis-fanout" => vec![redis_benchmark(tools, beside, "PUBLISH").await],
        "redis-streams" => vec![redis_benchmark(tools, beside, "XADD").await],
        "rabbitmq" => vec![perf_test(tools, beside).await],
        "nats" => vec![nats_bench(tools, beside).await],
        "kafka" => vec![kafka_perf(tools, beside).await],
        "nsq" => vec![nsq_bench(tools, beside).await],
        _ => Vec::new(),
    }
}

/// A scratch name no earlier run used.
fn scratch(sep: char) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("superhero{sep}native{sep}{}", &id[..12])
}

/// Runs a tool to its end, at most [`TOOL_TIMEOUT`]; its standard output and error.
async fn run(mut command: tokio::process::Command) -> Result<(String, String), String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let running = command.output();
    let out = tokio::time::timeout(TOOL_TIMEOUT, running)
        .await
        .map_err(|_| format!("still running after {TOOL_TIMEOUT:?}, stopped"))?
        .map_err(|e| format!("could not start: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        // A Java tool's exception says more than the last line of its stack trace.
        let lines = || stderr.lines().chain(stdout.lines());
        let said = lines()
            .find(|l| l.contains("Exception") || l.contains("error:"))
            .or_else(|| lines().rfind(|l| !l.trim().is_empty()))
            .unwrap_or("no output");
        return Err(format!("exited with {}: {}", out.status, said.trim()));
    }
    Ok((stdout, stderr))
}

async fn redis_benchmark(tools: &Tools, b: &Beside<'_>, command: &str) -> Baseline {
    let n = b.workload.messages.to_string();
    let subscribers = if command == "PUBLISH" {
        b.workload.consumers.max(1)
    } else {
        0
    };
    let what = format!(
        "{command} -P 64 -c 1, {} messages of {} bytes{}",
        b.workload.messages,
        b.workload.size,
        if subscribers > 0 {
            format!(", {subscribers} redis-cli subscriber(s) receiving")
        } else {
            String::new()
        }
    );
    let base = Baseline::new(b.name, "redis-benchmark", what);
    let Some(program) = tools.program("redis-benchmark") else {
        return base.not_installed(tools.missing("redis-benchmark"));
    };
    let Some((host, port)) = redis_address(b.url) else {
        return base.failed(format!("no Redis address in {}", redact(b.url)));
    };
    let payload = "x".repeat(b.workload.size);
    let key = scratch('.');
    let args: Vec<&str> = match command {
        "PUBLISH" => vec!["PUBLISH", &key, &payload],
        _ => vec!["XADD", &key, "MAXLEN", "~", "100000", "*", "data", &payload],
    };
    // A PUBLISH nobody receives costs Redis a lookup; ours have their consumers
    // receiving, so the tool's get as many.
    let listening = match subscribe(&host, &port, &key, subscribers).await {
        Ok(children) => children,
        Err(e) => return base.failed(e),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args([
        "-h", &host, "-p", &port, "-q", "-P", "64", "-c", "1", "-n", &n,
    ])
    .args(&args);
    let result = run(cmd).await;
    drop(listening);
    if command == "XADD" {
        let mut del = tokio::process::Command::new("redis-cli");
        del.args(["-h", &host, "-p", &port, "DEL", &key]);
        let _ = run(del).await;
    }
    match result.map(|(out, _)| parse_redis_benchmark(&out)) {
        Ok(Some(rate)) => base.rates(Some(rate), None, b.ours),
        Ok(None) => base.failed("no rate in its output".into()),
        Err(e) => base.failed(e),
    }
}

/// `n` `redis-cli` subscribers of `channel`, their output thrown away, once Redis
/// counts them all; they go when dropped.
async fn subscribe(
    host: &str,
    port: &str,
    channel: &str,
    n: usize,
) -> Result<Vec<tokio::process::Child>, String> {
    let mut children = Vec::new();
    for _ in 0..n {
        let child = tokio::process::Command::new("redis-cli")
            .args(["-h", host, "-p", port, "SUBSCRIBE", channel])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("redis-cli could not start: {e}"))?;
        children.push(child);
    }
    if n == 0 {
        return Ok(children);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut count = tokio::process::Command::new("redis-cli");
        count.args(["-h", host, "-p", port, "PUBSUB", "NUMSUB", channel]);
        let (out, _) = run(count).await?;
        let subscribed = out
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<usize>().ok());
        if subscribed >= Some(n) {
            return Ok(children);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "its {n} redis-cli subscriber(s) did not subscribe within 10 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn perf_test(tools: &Tools, b: &Beside<'_>) -> Baseline {
    let w = b.workload;
    let producers = w.producers.max(1);
    let what = format!(
        "{producers} producer(s), {} consumer(s), {} persistent messages of {} bytes, \
         confirms (window {CONFIRM_WINDOW}), prefetch {PREFETCH}, an ack each",
        w.consumers.max(1),
        w.messages,
        w.size
    );
    let base = Baseline::new(b.name, "RabbitMQ PerfTest", what);
    let Some((java, classpath)) = tools.java("perf-test") else {
        return base.not_installed(tools.missing("PerfTest (perf-test/libs and java)"));
    };
    let per_producer = w.messages.div_ceil(producers as u64).to_string();
    let mut cmd = tokio::process::Command::new(java);
    cmd.args([
        "-cp",
        &classpath,
        "com.rabbitmq.perf.PerfTest",
        "--uri",
        b.url,
    ])
    .args(["-x", &producers.to_string()])
    .args(["-y", &w.consumers.max(1).to_string()])
    .args(["-s", &w.size.to_string(), "-C", &per_producer])
    .args(["-ew", "empty", "-f", "persistent"])
    .args(["-c", &CONFIRM_WINDOW.to_string()])
    .args(["-q", &PREFETCH.to_string()])
    .args(["-u", &scratch('.'), "-ad", "true"]);
    match run(cmd).await.map(|(out, _)| parse_perf_test(&out)) {
        Ok(Some((sent, received))) => base.rates(Some(sent), Some(received), b.ours),
        Ok(None) => base.failed("no rates in its output".into()),
        Err(e) => base.failed(redact_in(&e, b.url)),
    }
}

async fn nats_bench(tools: &Tools, b: &Beside<'_>) -> Baseline {
    let w = b.workload;
    let what = format!(
        "js pub async ({} client(s)), then js consume --doubleack ({} client(s)), \
         {} messages of {} bytes",
        w.producers.max(1),
        w.consumers.max(1),
        w.messages,
        w.size
    );
    let base = Baseline::new(b.name, "nats bench", what);
    let Some(nats) = tools.program("nats") else {
        return base.not_installed(tools.missing("nats (natscli)"));
    };
    let stream = scratch('_');
    let subject = stream.replace('_', ".");
    let common = |cmd: &mut tokio::process::Command| {
        cmd.args(["-s", b.url, "--no-context"]);
    };
    let msgs = w.messages.to_string();
    let size = format!("{}B", w.size);
    let mut publish = tokio::process::Command::new(&nats);
    common(&mut publish);
    publish
        .args([
            "bench", "js", "pub", "async", &subject, "--create", "--purge",
        ])
        .args(["--stream", &stream, "--msgs", &msgs, "--size", &size])
        .args([
            "--clients",
            &w.producers.max(1).to_string(),
            "--no-progress",
        ]);
    let mut consume = tokio::process::Command::new(&nats);
    common(&mut consume);
    consume
        .args(["bench", "js", "consume", "--stream", &stream, "--doubleack"])
        .args(["--msgs", &msgs, "--size", &size, "--no-progress"])
        .args(["--clients", &w.consumers.max(1).to_string()]);
    let result =
        publish_then_consume((publish, parse_nats_bench), (consume, parse_nats_bench)).await;
    let mut remove = tokio::process::Command::new(&nats);
    common(&mut remove);
    remove.args(["stream", "rm", &stream, "-f"]);
    let _ = run(remove).await;
    match result {
        Ok((p, c)) => base.rates(Some(p), Some(c), b.ours),
        Err(e) => base.failed(redact_in(&e, b.url)),
    }
}

async fn kafka_perf(tools: &Tools, b: &Beside<'_>) -> Baseline {
    let w = b.workload;
    let what = format!(
        "ProducerPerformance acks=all and ConsumerPerformance at once, as ours run \
         (one each; the consumer's fetch rate, its group's join left out), {} messages \
         of {} bytes",
        w.messages, w.size
    );
    let base = Baseline::new(b.name, "Kafka perf tools", what);
    let Some((java, classpath)) = tools.java("kafka") else {
        return base.not_installed(tools.missing("Kafka's tools (kafka/libs and java)"));
    };
    let bootstrap = match kafka::bootstrap_from_url(b.url) {
        Ok(servers) => servers,
        Err(e) => return base.failed(e.to_string()),
    };
    let topic = scratch('.');
    // Topics are declared, never left to the broker to make: as many partitions as
    // ours get.
    if let Err(e) = b.broker.declare(&topic, &[]).await {
        return base.failed(format!("declaring the topic: {e}"));
    }
    let group = format!("{topic}.group");
    let logging = tools.dir.join("kafka").join("log4j2.properties");
    let java_cmd = |class: &str| {
        let mut cmd = tokio::process::Command::new(&java);
        if logging.is_file() {
            cmd.arg(format!("-Dlog4j2.configurationFile={}", logging.display()))
                .arg("-Dsuperhero.kafka.log.level=WARN");
        }
        cmd.args(["-cp", &classpath, class]);
        cmd
    };
    let mut produce = java_cmd("org.apache.kafka.tools.ProducerPerformance");
    produce
        .args(["--topic", &topic, "--num-records", &w.messages.to_string()])
        .args(["--record-size", &w.size.to_string(), "--throughput", "-1"])
        .args(["--bootstrap-server", &bootstrap])
        .args(["--command-property", "acks=all"]);
    let mut consume = java_cmd("org.apache.kafka.tools.ConsumerPerformance");
    consume
        .args(["--bootstrap-server", &bootstrap, "--topic", &topic])
        .args(["--messages", &w.messages.to_string(), "--timeout", "30000"])
        .args(["--group", &group]);
    let result = publish_and_consume(
        (produce, parse_kafka_producer),
        (consume, parse_kafka_consumer),
    )
    .await;
    super::raw::delete_scratch(b.broker, &topic, &[&group]).await;
    match result {
        Ok((p, c)) => base.rates(Some(p), Some(c), b.ours),
        Err(e) => base.failed(e),
    }
}

async fn nsq_bench(tools: &Tools, b: &Beside<'_>) -> Baseline {
    // NSQ's tools run for a time, not a count, with a connection per core: as long
    // as our run took, both at once.
    let ours = b.ours;
    let took = if ours.consume_per_s > 0.0 {
        ours.consumed as f64 / ours.consume_per_s
    } else {
        1.0
    };
    let runfor = Duration::from_secs_f64(took.clamp(1.0, 30.0));
    let what = format!(
        "bench_writer and bench_reader at once for {:.1} s (MPUB batches of 200; RDY \
         2500, a FIN each), messages of {} bytes",
        runfor.as_secs_f64(),
        b.workload.size
    );
    let base = Baseline::new(b.name, "nsq bench", what);
    let (Some(writer), Some(reader)) = (
        tools.program("nsq_bench_writer"),
        tools.program("nsq_bench_reader"),
    ) else {
        return base.not_installed(tools.missing("nsq_bench_writer and nsq_bench_reader"));
    };
    let address = match nsq::address_from_url(b.url) {
        Ok(address) => address,
        Err(e) => return base.failed(e.to_string()),
    };
    let topic = scratch('_');
    let run_for = format!("{}ms", runfor.as_millis());
    let size = b.workload.size.to_string();
    let mut read = tokio::process::Command::new(reader);
    read.args(["--nsqd-tcp-address", &address, "--topic", &topic])
        .args(["--channel", "bench", "--size", &size, "--runfor", &run_for]);
    let mut write = tokio::process::Command::new(writer);
    write
        .args(["--nsqd-tcp-address", &address, "--topic", &topic])
        .args(["--size", &size, "--runfor", &run_for]);
    let (read, write) = tokio::join!(run(read), run(write));
    super::raw::delete_scratch(b.broker, &topic, &["bench"]).await;
    let rate = |r: Result<(String, String), String>, side: &str| {
        let (_, err) = r?;
        parse_nsq_bench(&err).ok_or(format!("no {side} rate in its output"))
    };
    match (rate(write, "writer"), rate(read, "reader")) {
        (Ok(p), Ok(c)) => base.rates(Some(p), Some(c), b.ours),
        (Err(e), _) | (_, Err(e)) => base.failed(e),
    }
}

/// A tool that publishes, then one that consumes what was published: their rates,
/// each read from its standard output.
async fn publish_then_consume(
    (publish, publish_rate): (tokio::process::Command, fn(&str) -> Option<f64>),
    (consume, consume_rate): (tokio::process::Command, fn(&str) -> Option<f64>),
) -> Result<(f64, f64), String> {
    let (published, _) = run(publish).await?;
    let (consumed, _) = run(consume).await?;
    rates((&published, publish_rate), (&consumed, consume_rate))
}

/// A tool that publishes and one that consumes, at once (the consumer reads the
/// topic from its start, so it misses nothing it joins late for): their rates,
/// each read from its standard output.
async fn publish_and_consume(
    (publish, publish_rate): (tokio::process::Command, fn(&str) -> Option<f64>),
    (consume, consume_rate): (tokio::process::Command, fn(&str) -> Option<f64>),
) -> Result<(f64, f64), String> {
    let (consumed, published) = tokio::join!(run(consume), run(publish));
    rates((&published?.0, publish_rate), (&consumed?.0, consume_rate))
}

/// The publish and consume rates read from the two tools' standard outputs.
fn rates(
    (published, publish_rate): (&str, fn(&str) -> Option<f64>),
    (consumed, consume_rate): (&str, fn(&str) -> Option<f64>),
) -> Result<(f64, f64), String> {
    let published = publish_rate(published).ok_or("no publish rate in its output")?;
    let consumed = consume_rate(consumed).ok_or("no consume rate in its output")?;
    Ok((published, consumed))
}

/// `e` with the password of `url` masked, wherever a tool repeated it.
fn redact_in(e: &str, url: &str) -> String {
    e.replace(url, &redact(url))
}

/// Host and port of a `redis…://host:port/db` URL.
pub fn redis_address(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "6379"));
    Some((host.to_string(), port.to_string()))
}

/// The first number of `text` from `at`, with `,` as thousands separators.
fn number_after(text: &str, at: &str) -> Option<f64> {
    let rest = &text[text.find(at)? + at.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

/// "XADD ...: 123456.79 requests per second, p50=...", after progress lines that end
/// in carriage returns.
fn parse_redis_benchmark(out: &str) -> Option<f64> {
    let end = out.rfind(" requests per second")?;
    let start = out[..end].rfind(':')? + 1;
    out[start..end].trim().parse().ok()
}

/// "id: test-1, sending rate avg: 8156 msg/s" and "... receiving rate avg: 8156 msg/s"
fn parse_perf_test(out: &str) -> Option<(f64, f64)> {
    Some((
        number_after(out, "sending rate avg:")?,
        number_after(out, "receiving rate avg:")?,
    ))
}

/// "NATS JetStream asynchronous publisher stats: 109,259 msgs/sec ~ 10 MiB/sec ~ ..."
fn parse_nats_bench(out: &str) -> Option<f64> {
    let line = out
        .lines()
        .rfind(|l| l.contains(" stats: ") && l.contains("msgs/sec"))?;
    number_after(line, " stats:")
}

/// The last line: "200000 records sent, 24758.603615 records/sec (2.36 MB/sec), ..."
fn parse_kafka_producer(out: &str) -> Option<f64> {
    let line = out.lines().rfind(|l| l.contains("records sent,"))?;
    number_after(line, "records sent,")
}

/// The column `fetch.nMsg.sec` of "start.time, end.time, ..." and the line after it.
fn parse_kafka_consumer(out: &str) -> Option<f64> {
    let mut lines = out.lines().skip_while(|l| !l.contains("fetch.nMsg.sec"));
    let header: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let values: Vec<&str> = lines.next()?.split(',').map(str::trim).collect();
    let at = header.iter().position(|h| *h == "fetch.nMsg.sec")?;
    values.get(at)?.parse().ok()
}

/// "[bench_writer] 2026/12/02 01:46:00 duration: 1.0s - 9.5mb/s - 50000.000ops/s - 20.0us/op"
fn parse_nsq_bench(out: &str) -> Option<f64> {
    let line = out.lines().rfind(|l| l.contains("ops/s"))?;
    let field = line.split(" - ").find(|f| f.ends_with("ops/s"))?;
    field.trim_end_matches("ops/s").trim().parse().ok()
}

/// The folder scripts/bench-tools installs into by default, `~/.cache/superhero-tools`.
pub fn default_dir() -> PathBuf {
    Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/superhero-tools")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_give_benchmark_addresses() {
        assert_eq!(
            redis_address("redis://h:6380/0"),
            Some(("h".into(), "6380".into()))
        );
        assert_eq!(
            redis_address("redis-streams://:pw@h/2"),
            Some(("h".into(), "6379".into()))
        );
    }

    #[test]
    fn each_tool_s_rates_are_read_from_its_output() {
        assert_eq!(
            parse_redis_benchmark(
                "XADD x * data x: rps=0.0 (overall: nan) avg_msec=nan\r\
                 XADD x * data x: 123456.79 requests per second, p50=0.2 msec\n"
            ),
            Some(123_456.79)
        );
        let perf = "id: test-1, time 1.0 s, sent: 8394 msg/s\n\
                    id: test-1, sending rate avg: 8156 msg/s\n\
                    id: test-1, receiving rate avg: 8150 msg/s\n";
        assert_eq!(parse_perf_test(perf), Some((8156.0, 8150.0)));
        let nats = "01:34:49 Using stream: s\n\nNATS JetStream asynchronous publisher \
                    stats: 109,259 msgs/sec ~ 10 MiB/sec ~ min: 2,175.53us\n";
        assert_eq!(parse_nats_bench(nats), Some(109_259.0));
        let producer = "52714 records sent, 10542.8 records/sec (1.01 MB/sec)\n\
                        200000 records sent, 24758.603615 records/sec (2.36 MB/sec), 3615.77 ms avg latency\n";
        assert_eq!(parse_kafka_producer(producer), Some(24_758.603_615));
        let consumer = "start.time, end.time, data.consumed.in.MB, MB.sec, \
                        data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, \
                        fetch.MB.sec, fetch.nMsg.sec\n\
                        2026-12-02 01:00:00:000, 2026-12-02 01:00:03:000, 19.07, 6.35, \
                        200000, 66666.67, 2000, 1000, 19.07, 200000.0\n";
        assert_eq!(parse_kafka_consumer(consumer), Some(200_000.0));
        let nsq = "[bench_writer] 2026/12/02 01:46:00 duration: 1.0002s - 9.537mb/s - \
                   50000.125ops/s - 20.000us/op\n";
        assert_eq!(parse_nsq_bench(nsq), Some(50_000.125));
        assert_eq!(parse_perf_test("nothing"), None);
        assert_eq!(parse_kafka_consumer("start.time, fetch.nMsg.sec\n"), None);
    }

    #[test]
    fn ratios_are_ours_over_theirs() {
        let ours = RawResult {
            publish_per_s: 50.0,
            consume_per_s: 0.0,
            ..RawResult::default()
        };
        let b = Baseline::new("r", "t", "c".into()).rates(Some(100.0), Some(10.0), &ours);
        assert_eq!(b.publish_ratio, Some(0.5));
        assert_eq!(b.consume_ratio, None, "nothing of ours consumed: no ratio");
    }

    #[tokio::test]
    async fn a_missing_tool_is_reported_not_skipped() {
        let tools = Tools::new(PathBuf::from("/nonexistent"));
        let workload = RawWorkload {
            messages: 10,
            size: 16,
            idle: Duration::from_secs(1),
            ..RawWorkload::default()
        };
        let broker = crate::broker::MemoryBroker::new();
        let ours = RawResult::default();
        let beside = Beside {
            name: "rabbitmq",
            backend: "rabbitmq",
            url: "amqp://u:secret@h:5672/%2f",
            broker: &broker,
            workload: &workload,
            ours: &ours,
        };
        let got = measure(&tools, &beside).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].status, "not installed", "{got:?}");
        assert!(
            got[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("scripts/bench-tools")
        );
    }
}
