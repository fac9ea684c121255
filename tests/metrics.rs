//! `--metrics`: a real Prometheus (Debian's, which `scripts/test` installs) scrapes
//! a running simulation, and what it answers through its HTTP query API agrees with
//! the run's own summary; `/healthz` follows the store and the broker of a worker
//! through an outage of its Redis.

mod common;

use std::time::{Duration, Instant};

use common::{Service, WAIT, free_port, http_get, n};
use serde_json::Value;

/// A Prometheus of the test's own, scraping `targets` (job name → HOST:PORT) every
/// half second, its data in a folder of its own.
struct Prometheus {
    addr: String,
    _process: Service,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(targets: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("superhero-prom-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n",
        );
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let program = std::env::var("SUPERHERO_TEST_PROMETHEUS").unwrap_or("prometheus".into());
        let mut command = std::process::Command::new(program);
        command
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"));
        let process = Service::spawn(
            command,
            "Server is ready to receive web requests",
            Duration::from_secs(60),
        );
        Self {
            addr,
            _process: process,
            dir,
        }
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = http_get(&self.addr, &format!("/api/v1/query?query={encoded}"));
        assert!(status.contains("200"), "{promql}: {status} {body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["status"], "success", "{promql}: {body}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query that yields one sample, if it yields any.
    fn value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        let sample = result.first()?;
        sample["value"][1].as_str()?.parse().ok()
    }

    /// Waits until the query yields `expected`; fails with what it yields last.
    fn until(&self, promql: &str, expected: f64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.value(promql);
            if got == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} is {got:?}, not {expected}, after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A simulation paced to last a few seconds, scraped while it runs and after it
/// (its dashboard keeps the process up): Prometheus's figures are the summary's.
#[test]
fn prometheus_scrapes_a_running_simulation() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let prometheus = Prometheus::start(&[("simulate", &metrics)]);
    // Prometheus scrapes a new target only after a few seconds: from its first
    // (failed) scrape on, each half second is seen.
    let up = "up{job=\"simulate\"}";
    prometheus.until(up, 0.0, WAIT * 2);
    let out = std::env::temp_dir().join(format!("superhero-metrics-{}", uuid::Uuid::new_v4()));
    // Games per bot: about 300 games in all, some 5 s at 60 a second.
    let bots = 20;
    let games = 40;
    let rate = 60.0;
    let sim = Service::start(
        &[
            "--json",
            "--output-dir",
            out.to_str().unwrap(),
            "simulate",
            "--bots",
            &bots.to_string(),
            "--games",
            &games.to_string(),
            "--rate",
            &rate.to_string(),
            "--no-progress",
            "--metrics",
            &metrics,
            "--dashboard",
            "--dashboard-port",
            "0",
        ],
        "metrics: http://",
    );
    prometheus.until(up, 1.0, WAIT);
    // Seen while games are being written: some, not all.
    let written = "superhero_games_written_total{job=\"simulate\"}";
    let deadline = Instant::now() + WAIT * 3;
    let mid_run = loop {
        match prometheus.value(written) {
            Some(w) if w > 0.0 => break w,
            _ => {
                assert!(Instant::now() < deadline, "no game written seen");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let deadline = Instant::now() + WAIT * 3;
    while !sim.lines().iter().any(|l| l.contains("dashboard stays up")) {
        assert!(Instant::now() < deadline, "{}", sim.lines().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let summary = common::last_json(&sim.lines());
    let completed = n(&summary, "games_completed");
    assert!(completed > 0, "{summary}");
    assert!(
        mid_run < completed as f64,
        "Prometheus saw {mid_run} games written while the run went on, of {completed}"
    );
    assert_eq!(n(&summary, "missing_games"), 0, "{summary}");
    assert_eq!(n(&summary, "duplicate_games"), 0, "{summary}");

    // After the run, the last scrapes hold the summary's counts.
    let within = WAIT;
    prometheus.until(written, n(&summary, "games_written") as f64, within);
    let bot_games = "superhero_bot_games_completed_total{job=\"simulate\"}";
    prometheus.until(bot_games, completed as f64, within);
    let ended = "sum(superhero_games_ended_total{job=\"simulate\",outcome!=\"timed_out\"})";
    prometheus.until(ended, completed as f64, within);
    let published = "sum(superhero_events_published_total{job=\"simulate\"})";
    prometheus.until(published, n(&summary, "events_published") as f64, within);
    let dropped = "sum(superhero_events_dropped_total{job=\"simulate\"})";
    prometheus.until(dropped, n(&summary, "events_dropped") as f64, within);
    let failed = "superhero_requests_total{job=\"simulate\",status!=\"ok\"}";
    let requests = format!("sum({failed}) or vector(0)");
    prometheus.until(&requests, 0.0, within);
    // Each bot logged in once, and each player of a completed game opened its lobby.
    let logins = "superhero_requests_total{job=\"simulate\",endpoint=\"login\",status=\"ok\"}";
    prometheus.until(logins, bots as f64, within);
    let lobbies = "superhero_requests_total{job=\"simulate\",endpoint=\"lobby\",status=\"ok\"}";
    let joined = prometheus.query(lobbies);
    let joined: f64 = joined[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        joined >= 2.0 * completed as f64,
        "{joined} lobbies for {completed} games"
    );
    let writes = "superhero_write_duration_seconds_count{job=\"simulate\"}";
    let files_per_write = 2.0;
    prometheus.until(
        writes,
        n(&summary, "files_written") as f64 / files_per_write,
        within,
    );

    // The rate Prometheus saw over the run is the pace the summary reports, within
    // what sampling every half second allows.
    let samples = prometheus.query(&format!("{written}[5m]"));
    let points: Vec<(f64, f64)> = samples[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_f64().unwrap(),
                p[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let last = points.last().unwrap().1;
    let first_growing = points.iter().position(|p| p.1 > 0.0).unwrap();
    let first_full = points.iter().position(|p| p.1 == last).unwrap();
    assert!(
        first_full > first_growing,
        "one scrape saw the whole run: {points:?}"
    );
    let (t0, w0) = points[first_growing.saturating_sub(1)];
    let (t1, w1) = points[first_full];
    let seen_rate = (w1 - w0) / (t1 - t0);
    let summary_rate = summary["games_per_s"].as_f64().unwrap();
    let ratio = seen_rate / summary_rate;
    eprintln!(
        "games written: {seen_rate:.1}/s seen by Prometheus, {summary_rate:.1}/s in the summary"
    );
    assert!(
        (0.67..1.5).contains(&ratio),
        "Prometheus saw {seen_rate:.1} games/s, the summary says {summary_rate:.1}: {points:?}"
    );
    let (clean, _) = sim.terminate();
    assert!(clean);
    let _ = std::fs::remove_dir_all(&out);
}

/// `/healthz` answers 200 while a worker's store and broker answer, 503 naming them
/// while their Redis is down, and 200 again once it is back; the worker lives on.
#[test]
fn healthz_follows_the_store_and_the_broker() {
    let port = free_port();
    let redis = common::redis_server(&[], "127.0.0.1", port);
    let store = format!("redis://127.0.0.1:{port}/0");
    let broker = format!("redis-streams://127.0.0.1:{port}/0");
    let metrics = format!("127.0.0.1:{}", free_port());
    let out = std::env::temp_dir().join(format!("superhero-healthz-{}", uuid::Uuid::new_v4()));
    let mut worker = Service::start(
        &[
            "worker",
            "--store",
            &store,
            "--broker",
            &broker,
            "--output-dir",
            out.to_str().unwrap(),
            "--metrics",
            &metrics,
        ],
        "superhero worker:",
    );
    let health = || http_get(&metrics, "/healthz");
    let (status, body) = health();
    assert!(status.contains("200"), "{status}\n{body}");
    assert!(
        body.contains("store: ok") && body.contains("broker: ok"),
        "{body}"
    );
    let (status, body) = http_get(&metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("superhero_games_written_total 0"), "{body}");

    redis.kill();
    let deadline = Instant::now() + WAIT;
    let (status, body) = loop {
        let (status, body) = health();
        if status.contains("503") || Instant::now() >= deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.contains("503"), "{status}\n{body}");
    assert!(
        !body.contains("store: ok") && !body.contains("broker: ok"),
        "{body}"
    );
    assert!(worker.running(), "the worker outlives its Redis");

    let _redis = common::redis_server(&[], "127.0.0.1", port);
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let (status, body) = health();
        if status.contains("200") {
            break;
        }
        assert!(Instant::now() < deadline, "{status}\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (clean, lines) = worker.terminate();
    assert!(clean, "{}", lines.join("\n"));
    let _ = std::fs::remove_dir_all(&out);
}
