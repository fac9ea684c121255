//! The broker goes down in the middle of a run and comes back: the game goes on, the
//! events wait in the transport's buffer, the workers reconnect, and the run ends with
//! every completed game written and nothing dropped. Redis Streams runs on a private
//! `redis-server` that keeps its data on disk, so it can be killed with SIGKILL and
//! restarted with what it had; RabbitMQ is the test broker itself, its application
//! stopped and started with rabbitmqctl.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `redis-server` on `port`, writing every change to an append-only file in `dir`.
fn start_redis(port: u16, dir: &Path) -> Child {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test installs it)");
    let deadline = Instant::now() + common::WAIT;
    while !answers(port) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("redis-server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn answers(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "ping"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
}

fn stream_length(port: u16) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "XLEN", "lib.server.lobby"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_run_survives_a_broker_restart() {
    let port = common::free_port();
    let dir = std::env::temp_dir().join(format!("superhero-outage-{}", uuid::Uuid::new_v4()));
    let out = dir.join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = start_redis(port, &dir);

    let simulate = Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["simulate", "--json", "--bots", "30", "--games", "40"])
        .arg("--broker")
        .arg(format!("redis-streams://127.0.0.1:{port}/0"))
        .args(["--claim-after", "2", "--output-dir"])
        .arg(&out)
        .env_remove("LOG_LEVEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Once events flow, the broker dies, stays away for a moment, and comes back.
    let deadline = Instant::now() + common::WAIT;
    while stream_length(port) < 100 {
        assert!(Instant::now() < deadline, "no events reached the broker");
        std::thread::sleep(Duration::from_millis(10));
    }
    redis.kill().unwrap();
    redis.wait().unwrap();
    let down_at = Instant::now();
    // The outage itself: long enough for publishing and consuming to fail and retry.
    std::thread::sleep(Duration::from_millis(1500));
    let mut redis = start_redis(port, &dir);
    let down_for = down_at.elapsed();

    let output = common::finish_within(simulate, common::RUN_LIMIT);
    let s = common::summary(&output);
    redis.kill().unwrap();
    redis.wait().unwrap();

    assert!(
        output.status.success(),
        "after {down_for:?} without the broker: {s}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let completed = s["games_completed"].as_u64().unwrap();
    assert!(completed > 0);
    assert_eq!(s["missing_games"], 0, "{s}");
    assert_eq!(s["events_dropped"], 0, "{s}");
    assert_eq!(s["games_written"].as_u64().unwrap(), completed, "{s}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts the RabbitMQ application again however the test ends.
struct RabbitBack;

impl Drop for RabbitBack {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "start_app"])
            .status();
    }
}

/// The same with RabbitMQ: the test RabbitMQ's application is stopped and started
/// again mid-run (durable queue, persistent messages, so nothing it had is lost).
#[test]
fn a_run_survives_a_rabbitmq_restart() {
    let dir = std::env::temp_dir().join(format!("superhero-rabbit-{}", uuid::Uuid::new_v4()));
    let simulate = Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["simulate", "--json", "--bots", "30", "--games", "40"])
        .arg("--broker")
        .arg(common::amqp_url())
        .arg("--output-dir")
        .arg(&dir)
        .env_remove("LOG_LEVEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Once the workers write, RabbitMQ stops and starts again.
    let deadline = Instant::now() + common::WAIT;
    while superhero::audit::audit(&dir).map_or(0, |a| a.report.files) < 10 {
        assert!(Instant::now() < deadline, "no tables were written");
        std::thread::sleep(Duration::from_millis(10));
    }
    let back = RabbitBack;
    let stopped = Command::new("rabbitmqctl")
        .args(["-q", "stop_app"])
        .status()
        .expect("rabbitmqctl runs");
    assert!(stopped.success());
    drop(back);

    let output = common::finish_within(simulate, common::RUN_LIMIT);
    let s = common::summary(&output);
    assert!(
        output.status.success(),
        "{s}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let completed = s["games_completed"].as_u64().unwrap();
    assert_eq!(s["missing_games"], 0, "{s}");
    assert_eq!(s["events_dropped"], 0, "{s}");
    assert_eq!(s["games_written"].as_u64().unwrap(), completed, "{s}");
    std::fs::remove_dir_all(&dir).unwrap();
}
