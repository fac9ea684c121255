//! Publish and consume rates of every broker, through the project's own adapters, next
//! to the raw client rate of `redis-benchmark` on the same machine for the Redis
//! commands underneath (PUBLISH, XADD).
//!
//! One consumer (taking what has arrived, up to 256 messages, and acknowledging them
//! together, as a worker does) runs while one publisher sends N messages of S bytes in
//! batches of 1,024, as the event transport does. The publish
//! rate is N over the time to publish; the consume rate N over the time until the last
//! message arrived.
//!
//! Run: `cargo bench --bench brokers` (BENCH_MESSAGES, BENCH_SIZE change N and S;
//! SUPERHERO_TEST_REDIS_*, SUPERHERO_TEST_AMQP_URL, SUPERHERO_TEST_NATS_URL,
//! SUPERHERO_TEST_KAFKA_URL and NSQD_ADDRESS say where the services are; a broker
//! that cannot be reached is reported and skipped; without NSQD_ADDRESS, NSQ is the
//! tests' protocol-level peer, which measures this client, not nsqd).

use std::process::Command;
use std::time::{Duration, Instant};

use superhero::broker::{
    Broker, Delivery, FanoutOptions, KafkaBroker, KafkaOptions, MemoryBroker, NatsBroker,
    NatsOptions, NsqBroker, NsqOptions, RabbitBroker, RabbitOptions, RedisFanoutBroker,
    RedisPubSubBroker, RedisStreamsBroker, StreamsOptions,
};

/// The tests' protocol-level NSQ peer, measured when no real nsqd is given.
#[allow(dead_code)]
#[path = "../tests/common/nsqd.rs"]
mod nsqd;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1024;
/// Messages the consumer acknowledges together at most.
const ACK_BATCH: usize = 256;
/// How long the consumer waits for one more message before it counts the rest lost.
const IDLE: Duration = Duration::from_secs(10);

/// A broker, or why it could not be opened.
type Opened = Result<Box<dyn Broker>, String>;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn redis_host() -> String {
    env_or("SUPERHERO_TEST_REDIS_HOST", "127.0.0.1")
}

fn redis_port() -> String {
    env_or("SUPERHERO_TEST_REDIS_PORT", "6379")
}

struct Measure {
    broker: String,
    publish: Option<f64>,
    consume: Option<f64>,
    note: String,
}

/// Publish and consume rates, and the messages that never arrived (a broker that does
/// not wait for a consumer that falls behind, such as the fan-out, loses some).
async fn measure(
    broker: &dyn Broker,
    messages: usize,
    size: usize,
) -> Result<(f64, f64, usize), String> {
    let topic = format!("bench.{}", uuid::Uuid::new_v4().simple());
    let mut consumer = broker
        .consumer(&topic, "bench")
        .await
        .map_err(|e| e.to_string())?;
    let publisher = broker.publisher().await.map_err(|e| e.to_string())?;
    let payload = vec![b'x'; size];
    let started = Instant::now();
    let receiver = tokio::spawn(async move {
        let (mut got, mut last) = (0, None);
        while got < messages {
            let next = consumer.next_batch(ACK_BATCH.min(messages - got));
            match tokio::time::timeout(IDLE, next).await {
                Ok(Ok(batch)) => {
                    got += batch.len();
                    last = Some(Instant::now());
                    let _ = Delivery::ack_all(batch).await;
                }
                _ => break,
            }
        }
        (got, last)
    });
    let mut left = messages;
    while left > 0 {
        let n = left.min(BATCH);
        let batch = vec![payload.clone(); n];
        publisher
            .publish(&topic, &batch)
            .await
            .map_err(|e| e.to_string())?;
        left -= n;
    }
    let published = started.elapsed().as_secs_f64();
    let (got, last) = receiver.await.map_err(|e| e.to_string())?;
    let last = last.ok_or(format!("no message arrived within {IDLE:?}"))?;
    let consumed = last.duration_since(started).as_secs_f64();
    Ok((
        messages as f64 / published,
        got as f64 / consumed,
        messages - got,
    ))
}

/// `redis-benchmark` running one command, pipelined like the adapters' batches.
fn redis_benchmark(messages: usize, args: &[&str]) -> Option<f64> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            &redis_host(),
            "-p",
            &redis_port(),
            "-q",
            "-P",
            "64",
            "-c",
            "1",
        ])
        .args(["-n", &messages.to_string()])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "XADD ...: 123456.79 requests per second, p50=..."
    let rate = text.rsplit(':').next()?.split_whitespace().next()?;
    rate.parse().ok()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let messages: usize = env_or("BENCH_MESSAGES", if full { "100000" } else { "500" })
        .parse()
        .expect("BENCH_MESSAGES is a number");
    let size: usize = env_or("BENCH_SIZE", "200")
        .parse()
        .expect("BENCH_SIZE is a number");
    let redis = format!("redis://{}:{}/0", redis_host(), redis_port());
    let amqp = env_or(
        "SUPERHERO_TEST_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    let nats = env_or("SUPERHERO_TEST_NATS_URL", "nats://127.0.0.1:4222");
    let kafka = env_or("SUPERHERO_TEST_KAFKA_URL", "kafka://127.0.0.1:9092");
    let (nsq_name, nsq) = match std::env::var("NSQD_ADDRESS") {
        Ok(a) if !a.is_empty() => ("nsq://".to_string(), format!("nsq://{a}")),
        _ => (
            "nsq:// (the tests' protocol peer, not nsqd)".to_string(),
            format!("nsq://{}", nsqd::start()),
        ),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let mut rows = Vec::new();
    runtime.block_on(async {
        let brokers: Vec<(String, Opened)> = vec![
            ("memory://".into(), Ok(Box::new(MemoryBroker::new()))),
            (
                "redis:// (pub/sub)".into(),
                RedisPubSubBroker::connect(&redis)
                    .await
                    .map(|b| Box::new(b) as Box<dyn Broker>)
                    .map_err(|e| e.to_string()),
            ),
            (
                "redis-fanout://".into(),
                RedisFanoutBroker::connect(
                    &redis,
                    FanoutOptions {
                        run_middleware: true,
                    },
                )
                .await
                .map(|b| Box::new(b) as Box<dyn Broker>)
                .map_err(|e| e.to_string()),
            ),
            (
                "redis-streams://".into(),
                RedisStreamsBroker::connect(&redis, StreamsOptions::default())
                    .await
                    .map(|b| Box::new(b) as Box<dyn Broker>)
                    .map_err(|e| e.to_string()),
            ),
            (
                "amqp:// (RabbitMQ)".into(),
                RabbitBroker::connect(
                    &amqp,
                    RabbitOptions {
                        expiry: Some(Duration::from_secs(60)),
                        ..RabbitOptions::default()
                    },
                )
                .await
                .map(|b| Box::new(b) as Box<dyn Broker>)
                .map_err(|e| e.to_string()),
            ),
            (
                "nats:// (JetStream)".into(),
                NatsBroker::connect(
                    &nats,
                    NatsOptions {
                        expiry: Some(Duration::from_secs(60)),
                        ..NatsOptions::default()
                    },
                )
                .await
                .map(|b| Box::new(b) as Box<dyn Broker>)
                .map_err(|e| e.to_string()),
            ),
            (
                "kafka://".into(),
                KafkaBroker::connect(&kafka, KafkaOptions::default())
                    .await
                    .map(|b| Box::new(b) as Box<dyn Broker>)
                    .map_err(|e| e.to_string()),
            ),
            (
                nsq_name,
                NsqBroker::connect(&nsq, NsqOptions::default())
                    .await
                    .map(|b| Box::new(b) as Box<dyn Broker>)
                    .map_err(|e| e.to_string()),
            ),
        ];
        for (name, broker) in brokers {
            let m = match broker {
                Ok(b) => match measure(&*b, messages, size).await {
                    Ok((p, c, lost)) => Measure {
                        broker: name,
                        publish: Some(p),
                        consume: Some(c),
                        note: if lost > 0 {
                            format!("{lost} lost")
                        } else {
                            String::new()
                        },
                    },
                    Err(e) => Measure {
                        broker: name,
                        publish: None,
                        consume: None,
                        note: e,
                    },
                },
                Err(e) => Measure {
                    broker: name,
                    publish: None,
                    consume: None,
                    note: format!("skipped: {e}"),
                },
            };
            rows.push(m);
        }
    });

    let payload = "x".repeat(size);
    let raw = [
        (
            "redis-benchmark PUBLISH",
            redis_benchmark(messages, &["PUBLISH", "bench.raw", &payload]),
        ),
        (
            "redis-benchmark XADD",
            redis_benchmark(
                messages,
                &[
                    "XADD",
                    "bench.raw.stream",
                    "MAXLEN",
                    "~",
                    "100000",
                    "*",
                    "data",
                    &payload,
                ],
            ),
        ),
    ];

    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    println!(
        "\n{messages} messages of {size} bytes, batches of {BATCH}, one consumer acking up to \
         {ACK_BATCH} together\n"
    );
    println!("| broker | published/s | consumed/s | notes |\n|---|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.broker,
            fmt(r.publish),
            fmt(r.consume),
            r.note
        );
    }
    for (what, rate) in raw {
        println!("| {what} (raw client, -P 64) | {} | | |", fmt(rate));
    }
    let failed: Vec<&Measure> = rows.iter().filter(|r| r.publish.is_none()).collect();
    assert!(
        full || failed.is_empty(),
        "every broker must work in the quick pass: {:?}",
        failed
            .iter()
            .map(|r| (&r.broker, &r.note))
            .collect::<Vec<_>>()
    );
}
