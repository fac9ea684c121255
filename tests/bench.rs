//! `superhero bench --quick` on the embedded broker and a real Redis (pub/sub), with
//! two raw consumers and three game workers: the report comes as Markdown on stdout,
//! `report.md`, `report.json` and `report.html`, with numbers that add up (consumed +
//! lost = published; games written + missing = games simulated) and the delivery each
//! broker promises (a work queue delivers each message once and each game is written
//! once; pub/sub broadcasts every message to both consumers and every game to all
//! three workers). The HTML page is opened in a real headless Chromium, its charts
//! measured and a screenshot kept as a test artifact.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::RunWithin;
use common::browser::Browser;
use serde_json::Value;

fn superhero() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"));
    command.env_remove("LOG_LEVEL");
    command
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("superhero-bench-{}", uuid::Uuid::new_v4()))
}

/// One quick bench on memory and Redis pub/sub, shared by the tests of its outputs.
fn quick_report() -> &'static (PathBuf, Output) {
    static RUN: OnceLock<(PathBuf, Output)> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = scratch();
        let brokers = format!("memory,{}", common::redis_url(0));
        let run = superhero()
            .args(["bench", "--quick", "--no-progress", "--consumers", "2"])
            .args([
                "--messages",
                "1500",
                "--workers",
                "3",
                "--brokers",
                &brokers,
            ])
            .arg("--out")
            .arg(&out)
            .output_within();
        assert!(run.status.success(), "{run:?}");
        (out, run)
    })
}

fn report_json(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

#[test]
fn a_quick_bench_prints_the_tables_it_writes() {
    let (out, run) = quick_report();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("| broker | delivery | published/s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| broker | games simulated | games written | duplicate games"),
        "{stdout}"
    );
    assert!(stdout.contains("| memory | work sharing |"), "{stdout}");
    assert!(stdout.contains("| redis-benchmark | "), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .trim(),
        stdout
            .lines()
            .take_while(|l| !l.starts_with("report: "))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
    );
}

/// The game table's row of `broker`, its cells by the header's names.
fn game_row(md: &str, broker: &str) -> std::collections::HashMap<String, String> {
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut lines = md
        .lines()
        .skip_while(|l| !l.starts_with("| broker | games simulated"));
    let header = cells(lines.next().expect("a game table"));
    let row = lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .find(|l| cells(l)[0] == broker)
        .unwrap_or_else(|| panic!("no game row for {broker} in {md}"));
    header.into_iter().zip(cells(row)).collect()
}

#[test]
fn the_game_table_sets_the_pipeline_beside_the_broker_alone() {
    let (out, _) = quick_report();
    let report = report_json(out);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for b in report["brokers"].as_array().unwrap() {
        let name = b["broker"].as_str().unwrap();
        let row = game_row(&md, name);
        let events = b["game"]["events_per_s"].as_f64().unwrap();
        let (alone, how) = match b["sustainable"]["rate_per_s"].as_f64() {
            Some(rate) => (rate, "sustained"),
            None => (b["raw"]["consume_per_s"].as_f64().unwrap(), "throughput"),
        };
        assert_eq!(
            row["the broker alone, msg/s"],
            format!("{alone:.0} ({how})"),
            "{name}: {row:?}"
        );
        assert_eq!(
            row["events/s of that"],
            format!("{:.1}%", 100.0 * events / alone),
            "{name}: {row:?}"
        );
    }
}

fn latency_in_order(latency: &Value) {
    let ms = |f: &str| {
        latency[f]
            .as_f64()
            .unwrap_or_else(|| panic!("{f} in {latency}"))
    };
    assert!(
        ms("p50_ms") > 0.0 && ms("p50_ms") <= ms("p95_ms"),
        "{latency}"
    );
    assert!(
        ms("p95_ms") <= ms("p99_ms") && ms("p99_ms") <= ms("p99_9_ms"),
        "{latency}"
    );
    assert!(
        ms("p99_9_ms") <= ms("p99_99_ms") && ms("p99_99_ms") <= ms("max_ms"),
        "{latency}"
    );
}

#[test]
fn raw_messaging_numbers_add_up() {
    let (out, _) = quick_report();
    let report = report_json(out);
    assert_eq!(report["workloads"]["raw"]["messages"], 1500);
    assert_eq!(report["workloads"]["raw"]["consumers"], 2);
    let brokers = report["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 2);
    for b in brokers {
        assert_eq!(b["status"], "ok", "{b}");
        let raw = &b["raw"];
        let n = |f: &str| common::n(raw, f);
        assert_eq!(n("published"), 1500, "{b}");
        assert_eq!(n("consumed") + n("lost"), n("published"), "{b}");
        assert_eq!(n("lost"), 0, "{b}");
        assert_eq!(n("publish_errors"), 0, "{b}");
        latency_in_order(&raw["latency"]);
        assert!(raw["publish_per_s"].as_f64().unwrap() > 0.0);
        assert!(raw["consume_per_s"].as_f64().unwrap() > 0.0);
        assert!(!b["verdict"].as_array().unwrap().is_empty(), "{b}");
    }
    let memory = &brokers[0];
    assert_eq!(memory["delivery"], "work sharing");
    assert_eq!(memory["raw"]["duplicates"], 0, "{memory}");
    // Pub/sub hands every message to both consumers: one duplicate per message.
    let redis = &brokers[1];
    assert_eq!(redis["delivery"], "broadcast");
    assert_eq!(redis["raw"]["duplicates"], 1500, "{redis}");
    assert!(
        redis["verdict"][0].as_str().unwrap().contains("broadcast"),
        "{redis}"
    );

    // redis-benchmark comes with Redis: its PUBLISH rate beside our pub/sub's; the
    // embedded broker has no tool of its own.
    let baselines = report["baselines"].as_array().unwrap();
    assert_eq!(baselines.len(), 1, "{baselines:?}");
    let publish = &baselines[0];
    assert_eq!(publish["broker"], redis["broker"]);
    assert_eq!(publish["tool"], "redis-benchmark");
    assert_eq!(publish["status"], "ok", "{publish}");
    assert!(publish["consume_per_s"].is_null(), "{publish}");
    let ratio = publish["publish_ratio"].as_f64().unwrap();
    let expected = redis["raw"]["publish_per_s"].as_f64().unwrap()
        / publish["publish_per_s"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9, "{publish}");
}

/// Every network broker's own tool runs beside our raw workload, on the same broker,
/// size and count (scripts/bench-tools installs them; NSQ's needs the real nsqd).
#[test]
fn each_broker_s_own_tool_runs_beside_ours() {
    let out = scratch();
    let redis = common::redis_url(0);
    let mut brokers = vec![
        redis.replacen("redis://", "redis-streams://", 1),
        redis.replacen("redis://", "redis-fanout://", 1),
        common::amqp_url(),
        common::nats_url(),
        common::kafka_url(),
    ];
    if let Ok(nsqd) = std::env::var("NSQD_ADDRESS") {
        brokers.push(format!("nsq://{nsqd}"));
    }
    // Bench keys an earlier run may have left, on a Redis that stays up.
    let scratch_keys = |conn: &mut redis::Connection| -> std::collections::HashSet<String> {
        redis::cmd("KEYS").arg("bench.*").query(conn).unwrap()
    };
    let mut redis_conn = redis::Client::open(redis)
        .unwrap()
        .get_connection()
        .unwrap();
    let before = scratch_keys(&mut redis_conn);
    let run = superhero()
        .args(["bench", "--quick", "--no-progress", "--workloads", "raw"])
        .args(["--messages", "3000", "--size", "100", "--brokers"])
        .arg(brokers.join(","))
        .arg("--out")
        .arg(&out)
        .output_within();
    assert!(run.status.success(), "{run:?}");
    let report = report_json(&out);
    let baselines = report["baselines"].as_array().unwrap();
    let tools: Vec<&str> = baselines
        .iter()
        .map(|b| b["tool"].as_str().unwrap())
        .collect();
    let mut expected = vec![
        "redis-benchmark",
        "redis-benchmark",
        "RabbitMQ PerfTest",
        "nats bench",
        "Kafka perf tools",
    ];
    if brokers.len() == 6 {
        expected.push("nsq bench");
    }
    assert_eq!(tools, expected);
    for (base, broker) in baselines.iter().zip(report["brokers"].as_array().unwrap()) {
        assert_eq!(base["broker"], broker["broker"]);
        assert_eq!(base["status"], "ok", "{base}");
        assert!(base["publish_per_s"].as_f64().unwrap() > 0.0, "{base}");
        assert!(base["publish_ratio"].as_f64().unwrap() > 0.0, "{base}");
        if base["tool"] != "redis-benchmark" {
            assert!(base["consume_per_s"].as_f64().unwrap() > 0.0, "{base}");
            assert!(base["consume_ratio"].as_f64().unwrap() > 0.0, "{base}");
        }
    }
    // What each broker said of the group at the end, nsqd's from its HTTP API.
    for broker in report["brokers"].as_array().unwrap() {
        let names: Vec<&str> = broker["raw"]["broker_stats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert!(!names.is_empty(), "{broker}");
        if broker["broker"].as_str().unwrap().starts_with("nsq://") {
            for name in ["depth", "in flight", "requeued", "timed out", "clients"] {
                assert!(names.contains(&name), "{name} in {names:?}");
            }
        }
    }
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("The brokers' own tools, in the same run:"),
        "{stdout}"
    );
    assert!(!stdout.contains("amqp://guest:guest@"), "{stdout}");
    // The run's scratch topics are gone: on Redis, its streams and fan-out registries.
    let left: Vec<String> = scratch_keys(&mut redis_conn)
        .difference(&before)
        .cloned()
        .collect();
    assert!(left.is_empty(), "left on Redis: {left:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// The search brackets the highest sustainable rate within the quick run's 25%, and
/// the fixed-rate runs go at the asked fractions of it, their counts adding up.
#[test]
fn the_sustainable_rate_is_found_and_latency_measured_at_fractions_of_it() {
    let (out, run) = quick_report();
    let report = report_json(out);
    let search = &report["workloads"]["sustainable"];
    let precision = search["precision"].as_f64().unwrap();
    let fractions: Vec<f64> = report["workloads"]["latency"]["fractions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_f64().unwrap())
        .collect();
    assert_eq!(fractions, [0.1, 0.5, 0.9]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    for b in report["brokers"].as_array().unwrap() {
        let found = &b["sustainable"];
        let probes = found["probes"].as_array().unwrap();
        assert!(!probes.is_empty(), "{found}");
        let ok = found["rate_per_s"].as_f64().unwrap();
        if b["broker"] == "memory" {
            // The embedded broker's limit is this machine's: always found.
            assert_eq!(found["converged"], true, "{found}");
        }
        if found["converged"] == true {
            let bad = found["fails_at"].as_f64().unwrap();
            assert!(ok < bad && bad <= ok * (1.0 + precision), "{found}");
        }
        // Every rate at or under the answer held; every rate over it did not.
        for p in probes {
            let rate = p["rate"].as_f64().unwrap();
            assert_eq!(p["sustained"].as_bool().unwrap(), rate <= ok, "{p}");
            assert_eq!(p["why"].is_null(), rate <= ok, "{p}");
        }
        // The broker's own process during each probe, where it runs here (Redis;
        // the embedded broker is the bench itself).
        let watched = probes
            .iter()
            .all(|p| p["broker_process"]["pid"].as_i64().is_some());
        assert_eq!(watched, b["broker"] != "memory", "{found}");
        // The Markdown says what the JSON says.
        let row = format!("| {} | {ok:.0} |", b["broker"].as_str().unwrap());
        assert!(stdout.contains(&row), "{row} in {stdout}");

        let runs = b["latency"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{b}");
        for (run, fraction) in runs.iter().zip(&fractions) {
            assert_eq!(run["fraction"].as_f64().unwrap(), *fraction);
            let rate = run["rate"].as_f64().unwrap();
            assert!((rate - fraction * ok).abs() < 1e-6 * rate, "{run}");
            let r = &run["result"];
            let n = |f: &str| common::n(r, f);
            assert!(n("published") > 0, "{run}");
            assert_eq!(n("consumed") + n("lost"), n("published"), "{run}");
            latency_in_order(&r["latency"]);
            latency_in_order(&r["publish_latency"]);
            // The time series ends on the run's totals.
            let last = r["series"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["published"], r["published"], "{run}");
            assert_eq!(last["consumed"], r["consumed"], "{run}");
        }
    }
}

/// A consumer killed mid-run: the embedded broker's (a task) loses nothing, Redis
/// pub/sub's (a process of its own, SIGKILLed) loses what was published while no
/// subscriber listened, and both serve the next consumer; the counts add up.
#[test]
fn a_killed_consumer_is_audited() {
    let (out, run) = quick_report();
    let report = report_json(out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("Faults: one producer paced"), "{stdout}");
    let brokers = report["brokers"].as_array().unwrap();
    for b in brokers {
        let f = &b["faults"];
        let n = |k: &str| common::n(f, k);
        assert!(n("published") > 0, "{b}");
        assert_eq!(n("consumed") + n("lost"), n("published"), "{f}");
        let fault = &f["faults"][0];
        assert!(fault["resumed_after_s"].as_f64().is_some(), "{f}");
        // The rate is the asked share of the sustainable rate.
        let sustainable = b["sustainable"]["rate_per_s"].as_f64().unwrap();
        let fraction = report["workloads"]["faults"]["fraction"].as_f64().unwrap();
        assert!((f["rate"].as_f64().unwrap() - sustainable * fraction).abs() < 1e-6 * sustainable);
    }
    let memory = &brokers[0]["faults"];
    assert_eq!(memory["lost"], 0, "{memory}");
    assert!(
        memory["faults"][0]["fault"]
            .as_str()
            .unwrap()
            .contains("task aborted"),
        "{memory}"
    );
    let redis = &brokers[1]["faults"];
    assert!(
        redis["faults"][0]["fault"]
            .as_str()
            .unwrap()
            .starts_with("SIGKILL of the consumer process"),
        "{redis}"
    );
}

/// The recommendation names, per criterion, a broker that was measured and is not
/// the embedded one, the same in the JSON, the Markdown and the page.
#[test]
fn the_recommendation_names_measured_brokers_alike_everywhere() {
    let (out, run) = quick_report();
    let report = report_json(out);
    let measured: Vec<&str> = report["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["broker"].as_str().unwrap())
        .collect();
    let recommendation = report["recommendation"].as_array().unwrap();
    let criteria: Vec<&str> = recommendation
        .iter()
        .map(|r| r["criterion"].as_str().unwrap())
        .collect();
    assert_eq!(
        criteria,
        [
            "exactly-once tables with several workers",
            "throughput headroom over the game pipeline",
            "latency at load",
            "behaviour under faults",
            "operational weight"
        ]
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let redis = measured[1];
    for r in recommendation {
        let broker = r["broker"].as_str().unwrap_or("none");
        if broker != "none" {
            assert!(measured.contains(&broker), "{r}");
            assert_ne!(broker, "memory", "the embedded broker is never recommended");
        }
        let line = format!("- {}: {broker} (", r["criterion"].as_str().unwrap());
        assert!(stdout.contains(&line), "{line} in {stdout}");
        assert!(
            html.contains(&format!(
                "<strong>{}</strong>: <span class=\"broker\">{broker}</span>",
                r["criterion"].as_str().unwrap()
            )),
            "{r}"
        );
    }
    // Pub/sub writes every game three times: no broker here gives exactly-once
    // tables but the embedded one, which is not a candidate.
    assert!(
        recommendation[0]["broker"].is_null(),
        "{}",
        recommendation[0]
    );
    // Redis lost nothing, so it has the headroom; it is the only broker process.
    assert_eq!(recommendation[1]["broker"], redis);
    assert_eq!(recommendation[4]["broker"], redis);
    // Faults: pub/sub loses what is published while no subscriber listens, and the
    // embedded broker is no candidate.
    let redis_faults = &report["brokers"][1]["faults"];
    if common::n(redis_faults, "lost") > 0 {
        assert!(
            recommendation[3]["broker"].is_null(),
            "{}",
            recommendation[3]
        );
        assert!(
            recommendation[3]["why"].as_str().unwrap().contains("lost"),
            "{}",
            recommendation[3]
        );
    } else {
        assert_eq!(recommendation[3]["broker"], redis);
    }
}

#[test]
fn the_game_pipeline_writes_every_game_as_the_broker_delivers() {
    let (out, _) = quick_report();
    let report = report_json(out);
    assert_eq!(report["workloads"]["game"]["workers"], 3);
    let brokers = report["brokers"].as_array().unwrap();
    for b in brokers {
        let game = &b["game"];
        let n = |f: &str| common::n(game, f);
        assert!(n("games_simulated") > 0, "{b}");
        assert_eq!(n("games_written"), n("games_simulated"), "{b}");
        assert_eq!(n("missing_games"), 0, "{b}");
        assert_eq!(n("events_dropped"), 0, "{b}");
        assert!(n("events_published") > n("games_simulated"), "{b}");
        assert!(game["events_per_s"].as_f64().unwrap() > 0.0, "{b}");
        latency_in_order(&game["completion_to_parquet"]);
    }
    // The embedded broker shares the work: each game written once.
    assert_eq!(brokers[0]["game"]["duplicate_games"], 0, "{}", brokers[0]);
    // Pub/sub gives every worker every event: each game written by all three.
    let redis = &brokers[1]["game"];
    assert_eq!(
        redis["duplicate_games"], redis["games_simulated"],
        "{redis}"
    );
    assert!(
        brokers[1]["verdict"].as_array().unwrap().iter().any(|v| v
            .as_str()
            .unwrap()
            .contains("every game written 3 times by 3 workers")),
        "{}",
        brokers[1]
    );
    // The scratch tables are gone; only the report stays.
    let mut left: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["report.html", "report.json", "report.md"]);
}

#[tokio::test]
async fn the_html_report_renders_its_charts_in_chromium() {
    let (out, _) = quick_report();
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no script, no stylesheet or image to fetch.
    for fetch in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(fetch), "report.html contains {fetch}");
    }

    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("file://{}", page.display())).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "superhero bench");
    let charts = c
        .execute(
            "return [...document.querySelectorAll('figure.chart')].map(f => {
                const box = f.querySelector('svg').getBoundingClientRect();
                const bars = [...f.querySelectorAll('rect.bar')]
                    .filter(b => b.getBoundingClientRect().width > 0).length;
                const lines = [...f.querySelectorAll('polyline.line')];
                const wide = lines.filter(l => l.getBoundingClientRect().width > 100).length;
                return { id: f.id, width: box.width, height: box.height, bars,
                         lines: lines.length, wide };
            });",
            vec![],
        )
        .await
        .unwrap();
    let charts = charts.as_array().unwrap();
    let ids: Vec<_> = charts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "raw-throughput",
            "raw-latency",
            "sustainable",
            "fixed-rate-latency",
            "game-throughput",
            "game-latency",
            "losses",
            "raw-rate-over-time",
            "raw-backlog-over-time",
            "fixed-rate-backlog-over-time",
            "faults-rate-over-time",
        ]
    );
    for chart in charts {
        assert!(chart["width"].as_f64().unwrap() > 300.0, "{chart}");
        assert!(chart["height"].as_f64().unwrap() > 50.0, "{chart}");
    }
    let bars = |id: &str| {
        charts.iter().find(|c| c["id"] == id).unwrap()["bars"]
            .as_u64()
            .unwrap()
    };
    // Two brokers: two rates, four percentiles, one event rate each.
    assert_eq!(bars("raw-throughput"), 4);
    assert_eq!(bars("raw-latency"), 8);
    // The sustainable rate beside the throughput; five percentiles at three rates.
    assert_eq!(bars("sustainable"), 4);
    assert_eq!(bars("fixed-rate-latency"), 30);
    assert_eq!(bars("game-throughput"), 2);
    assert_eq!(bars("game-latency"), 8);
    // Only Redis pub/sub duplicates: its raw duplicates and its duplicate games.
    assert_eq!(bars("losses"), 2);
    // A line per broker in each time chart; the quick throughput run is over in a
    // moment, the fixed-rate run's line spans the chart.
    for id in [
        "raw-rate-over-time",
        "raw-backlog-over-time",
        "fixed-rate-backlog-over-time",
        "faults-rate-over-time",
    ] {
        let chart = charts.iter().find(|c| c["id"] == id).unwrap();
        assert_eq!(chart["lines"], 2, "{chart}");
    }
    let fixed = charts
        .iter()
        .find(|c| c["id"] == "fixed-rate-backlog-over-time")
        .unwrap();
    assert_eq!(fixed["wide"], 2, "{fixed}");
    // The environment heads the page: program, start, machine, system, two brokers,
    // Redis naming its version.
    let environment = c
        .execute(
            "return [...document.querySelectorAll('#environment dd')].map(d => d.textContent);",
            vec![],
        )
        .await
        .unwrap();
    let environment = environment.as_array().unwrap();
    assert_eq!(environment.len(), 6, "{environment:?}");
    assert!(
        environment[5].as_str().unwrap().starts_with("Redis "),
        "{environment:?}"
    );
    let verdicts = c
        .execute(
            "return document.querySelectorAll('#verdicts li').length;",
            vec![],
        )
        .await
        .unwrap();
    // Per broker: throughput, sustainable rate, three fixed rates, faults, the game.
    assert_eq!(verdicts, 14);
    let shot = browser.screenshot("bench-report").await;
    assert!(std::fs::metadata(shot).unwrap().len() > 10_000);
    browser.close().await;
}

#[test]
fn json_and_workload_files_drive_a_run() {
    let out = scratch();
    let file = out.with_extension("toml");
    std::fs::write(
        &file,
        "brokers = [\"memory\"]\nworkloads = [\"raw\"]\n[raw]\nmessages = 300\nconsumers = 2\nsize = 64\n",
    )
    .unwrap();
    let run = superhero()
        .args(["bench", "--no-progress", "--json", "--workload"])
        .arg(&file)
        .args(["--size", "32", "--out"])
        .arg(&out)
        .output_within();
    assert!(run.status.success(), "{run:?}");
    let report = common::summary(&run);
    let raw = &report["workloads"]["raw"];
    assert_eq!(raw["messages"], 300);
    assert_eq!(raw["consumers"], 2);
    // The flag wins over the file.
    assert_eq!(raw["size"], 32);
    assert!(report["workloads"].get("game").is_none(), "{report}");
    let brokers = report["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0]["raw"]["consumed"], 300);
    assert!(brokers[0].get("game").is_none(), "{report}");

    // A mistake in the file is named, and nothing runs.
    std::fs::write(&file, "[raw]\nmesages = 300\n").unwrap();
    let run = superhero()
        .args(["bench", "--no-progress", "--workload"])
        .arg(&file)
        .output_within();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("mesages"), "{stderr}");
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn an_unreachable_broker_is_skipped_with_its_reason() {
    let out = scratch();
    let dead = format!("redis-streams://127.0.0.1:{}/0", common::free_port());
    let run = superhero()
        .args(["bench", "--quick", "--no-progress", "--json"])
        .args(["--messages", "200", "--workloads", "raw"])
        .args(["--brokers", &format!("memory,{dead}"), "--out"])
        .arg(&out)
        .output_within();
    assert!(run.status.success(), "{run:?}");
    let report = common::summary(&run);
    let brokers = report["brokers"].as_array().unwrap();
    assert_eq!(brokers[0]["status"], "ok");
    assert_eq!(brokers[1]["status"], "skipped");
    assert!(
        !brokers[1]["reason"].as_str().unwrap().is_empty(),
        "{report}"
    );
    assert!(brokers[1].get("raw").is_none(), "{report}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Prefetch, acks and batches reach each broker as the flags and the workload file's
/// `[settings]` say, a backend's own section first, and the report prints what each
/// broker made of them.
#[test]
fn each_broker_runs_with_its_own_settings() {
    let out = scratch();
    let file = out.with_extension("toml");
    std::fs::write(
        &file,
        "workloads = [\"raw\"]\n[raw]\nmessages = 2000\n[settings]\nprefetch = 64\n\
         [settings.rabbitmq]\nacks = \"none\"\n[settings.kafka]\nacks = \"leader\"\nack_batch = 32\n",
    )
    .unwrap();
    let brokers = format!("{},{}", common::amqp_url(), common::kafka_url());
    let run = superhero()
        .args(["bench", "--no-progress", "--json", "--workload"])
        .arg(&file)
        .args(["--publish-batch", "50", "--brokers", &brokers, "--out"])
        .arg(&out)
        .output_within();
    assert!(run.status.success(), "{run:?}");
    let report = common::summary(&run);
    let brokers = report["brokers"].as_array().unwrap();
    let settings = |i: usize| &brokers[i]["settings"];
    let (rabbit, kafka) = (settings(0), settings(1));
    assert_eq!(rabbit["prefetch_asked"], 64, "{rabbit}");
    assert!(
        rabbit["prefetch"].as_str().unwrap().starts_with("64 "),
        "{rabbit}"
    );
    assert_eq!(rabbit["acks_asked"], "none");
    assert!(
        rabbit["acks"]
            .as_str()
            .unwrap()
            .contains("no publisher confirms"),
        "{rabbit}"
    );
    assert_eq!(
        (&rabbit["ack_batch"], &rabbit["publish_batch"]),
        (&256.into(), &50.into())
    );
    assert!(
        kafka["prefetch"].as_str().unwrap().starts_with("64 "),
        "{kafka}"
    );
    assert_eq!(kafka["acks"], "acks=1");
    assert_eq!(
        (&kafka["ack_batch"], &kafka["publish_batch"]),
        (&32.into(), &50.into())
    );
    for b in brokers {
        let raw = &b["raw"];
        assert_eq!(b["status"], "ok", "{b}");
        assert_eq!(
            raw["consumed"].as_u64().unwrap() + raw["lost"].as_u64().unwrap(),
            raw["published"].as_u64().unwrap(),
            "{raw}"
        );
    }
    // Each message goes out with its key: Kafka keeps a key on one of its
    // partitions, so one consumer sees every key in order.
    assert_eq!(brokers[1]["raw"]["reordered"], 0, "{}", brokers[1]["raw"]);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| broker | prefetch | publisher acknowledgement |"),
        "{md}"
    );
    assert!(md.contains("| acks=1 | 32 | 50 |"), "{md}");
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

/// A broker server of this test's own, stopped at the end whoever started it last
/// (the bench starts it again when it restarts it).
struct OwnServer {
    /// The process this test started (stopped by the bench's restart).
    first: std::process::Child,
    stop: Vec<String>,
}

impl OwnServer {
    fn start(program: &str, args: &[String], port: u16, stop: Vec<String>) -> Self {
        let first = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts (scripts/test installs it): {e}"));
        let server = Self { first, stop };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{program} did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        server
    }
}

impl OwnServer {
    /// A Redis without persistence on `port`.
    fn redis(port: u16) -> Self {
        Self::start(
            "redis-server",
            &[
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--save".into(),
                "".into(),
                "--appendonly".into(),
                "no".into(),
            ],
            port,
            vec![
                "redis-cli".into(),
                "-p".into(),
                port.to_string(),
                "shutdown".into(),
                "nosave".into(),
            ],
        )
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.stop[0])
            .args(&self.stop[1..])
            .status();
        // Gone by now, by the bench's restart or the stop above.
        let _ = self.first.kill();
        let _ = self.first.wait();
    }
}

/// With --restart-broker, the faults run also restarts each broker's server where it
/// runs on this machine (here servers of the test's own, so that no other test loses
/// its broker): the server is stopped and started again as it ran, and the report
/// tells how long it was down and when messages flowed again. NATS keeps its stream
/// on disk and loses nothing; a Redis without persistence loses what it held, and
/// the audit counts it.
#[test]
fn a_restarted_broker_is_audited() {
    let store = scratch();
    // Whichever process serves, the last one started wrote its number here.
    let pid_file = store.with_extension("pid");
    let nats_port = common::free_port();
    let _nats = OwnServer::start(
        "nats-server",
        &[
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            nats_port.to_string(),
            "-sd".into(),
            store.display().to_string(),
            "-P".into(),
            pid_file.display().to_string(),
        ],
        nats_port,
        vec![
            "sh".into(),
            "-c".into(),
            format!("kill $(cat '{}')", pid_file.display()),
        ],
    );
    let redis_port = common::free_port();
    let _redis = OwnServer::redis(redis_port);
    let out = scratch();
    let brokers = format!("nats://127.0.0.1:{nats_port},redis-streams://127.0.0.1:{redis_port}/0");
    let run = superhero()
        // Messages held by the killed consumer come back after 2 s, not 30.
        .args([
            "--claim-after",
            "2",
            "bench",
            "--quick",
            "--no-progress",
            "--json",
        ])
        .args([
            "--restart-broker",
            "--workloads",
            "raw,faults",
            "--messages",
            "2000",
        ])
        .args(["--fault-seconds", "4", "--brokers", &brokers, "--out"])
        .arg(&out)
        .output_within();
    assert!(run.status.success(), "{run:?}");
    let report = common::summary(&run);
    assert_eq!(report["workloads"]["faults"]["restart"], true);
    for b in report["brokers"].as_array().unwrap() {
        let f = &b["faults"];
        let n = |k: &str| common::n(f, k);
        assert_eq!(b["status"], "ok", "{b}");
        assert!(f["not_done"].as_array().unwrap().is_empty(), "{f}");
        let restart = &f["faults"][1];
        assert!(
            restart["fault"]
                .as_str()
                .unwrap()
                .starts_with("the broker's server restarted"),
            "{f}"
        );
        assert!(restart["down_s"].as_f64().unwrap() > 0.0, "{f}");
        assert!(restart["resumed_after_s"].as_f64().is_some(), "{f}");
        assert_eq!(
            n("consumed") - n("unconfirmed_delivered") + n("lost"),
            n("published"),
            "{f}"
        );
    }
    let nats = &report["brokers"][0]["faults"];
    assert_eq!(
        nats["lost"], 0,
        "JetStream keeps its stream on disk: {nats}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("broker restarted: down s"), "{md}");
    std::fs::remove_dir_all(&out).unwrap();
    drop(_nats);
    let _ = std::fs::remove_dir_all(&store);
    let _ = std::fs::remove_file(&pid_file);
}

/// A server that is back only once the producer's time is up (restarted at the very
/// end of the run here) still has its recovery measured: a tail of messages goes out
/// once it is back, counted with the rest.
#[test]
fn a_broker_back_after_the_producer_stopped_gets_a_tail() {
    let redis_port = common::free_port();
    let _redis = OwnServer::redis(redis_port);
    let file = scratch().with_extension("toml");
    std::fs::write(&file, "[faults]\nrestart = true\nrestart_at = 0.99\n").unwrap();
    let out = scratch();
    let broker = format!("redis-streams://127.0.0.1:{redis_port}/0");
    let run = superhero()
        .args(["--claim-after", "2", "bench", "--quick", "--no-progress"])
        .arg("--json")
        .arg("--workload")
        .arg(&file)
        .args(["--workloads", "raw,faults", "--messages", "2000"])
        .args(["--fault-seconds", "1", "--brokers", &broker, "--out"])
        .arg(&out)
        .output_within();
    assert!(run.status.success(), "{run:?}");
    let report = common::summary(&run);
    let f = &report["brokers"][0]["faults"];
    let n = |k: &str| common::n(f, k);
    let restart = &f["faults"][1];
    let back_at = restart["at_s"].as_f64().unwrap() + restart["down_s"].as_f64().unwrap();
    assert!(back_at > 1.0, "back within the run: {f}");
    assert!(n("tail") > 0, "{f}");
    assert!(restart["resumed_after_s"].as_f64().is_some(), "{f}");
    assert_eq!(
        n("consumed") - n("unconfirmed_delivered") + n("lost"),
        n("published"),
        "{f}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("more published once the server was back"),
        "{md}"
    );
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}
