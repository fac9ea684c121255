//! The live dashboard in a real headless Chromium: a plays run with its dashboard,
//! watched by the page until the table shows the final counts, which must be the
//! processor's; the consumption-time chart must have points. The same for a game
//! simulation (`simulate --dashboard`): games by status, per-worker tables and the
//! events-per-second chart against the run's summary. Screenshots are kept as test
//! artifacts. And from the command line: `plays --dashboard` (the address printed,
//! the page and its JSON served, the page staying up after the run until Ctrl-C),
//! and `superhero dashboard` watching a simulation of another process on real
//! brokers (nsqd is the real one when NSQD_ADDRESS names it, as scripts/test does,
//! else the in-test NSQ peer).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::browser::Browser;
use serde_json::Value;
use superhero::broker::MemoryBroker;
use superhero::dashboard::{Dashboard, Sources};
use superhero::plays::feed::PlaysFeed;
use superhero::plays::{self, PlaysSettings};

/// Every row of the windowed play-count table, in order: the page is scrolled through
/// the whole table and what it draws at each position is read back.
/// Each row: [video, plays as data, plays as shown].
const SCAN_PLAYS_TABLE: &str = "
    const wrap = document.getElementById('plays-wrap');
    const step = Math.max(wrap.clientHeight, 100);
    const rows = new Map();
    for (let top = 0; ; top += step) {
        wrap.scrollTop = top;
        window.renderPlaysRows();
        for (const tr of document.querySelectorAll('#plays-table tr.video')) {
            rows.set(Number(tr.dataset.index),
                [tr.dataset.video, Number(tr.dataset.plays), tr.cells[1].textContent]);
        }
        if (wrap.scrollTop + wrap.clientHeight >= wrap.scrollHeight) break;
    }
    wrap.scrollTop = 0;
    window.renderPlaysRows();
    return [...rows.keys()].sort((a, b) => a - b).map(i => rows.get(i));";

/// Polls `script` in the page until it returns true, failing after `limit`.
async fn until(browser: &Browser, script: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let done = browser.client.execute(script, vec![]).await.unwrap();
        if done == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "the page never showed: {script}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plays dashboard served in this process, open in Chromium and connected.
struct PlaysPage {
    browser: Browser,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl PlaysPage {
    async fn open(feed: Arc<PlaysFeed>) -> Self {
        let page = Dashboard::bind(
            "127.0.0.1",
            0,
            Sources {
                plays: Some(feed),
                ..Sources::default()
            },
        )
        .await
        .unwrap();
        let url = page.url().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(page.serve(Default::default(), async {
            let _ = stopped.await;
        }));
        let browser = Browser::start().await;
        browser.client.goto(&url).await.unwrap();
        until(
            &browser,
            "return document.getElementById('connection').textContent === 'live';",
            common::WAIT,
        )
        .await;
        Self {
            browser,
            stop,
            server,
        }
    }

    /// Keeps a screenshot named `artifact`, then closes the browser and the server.
    async fn close(self, artifact: &str) {
        self.browser.screenshot(artifact).await;
        self.browser.close().await;
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_plays_table_ends_with_the_processors_counts() {
    let feed = PlaysFeed::new();
    let page = PlaysPage::open(feed.clone()).await;
    let browser = &page.browser;

    // Real-life mode with a short interval: counts under 100 change as they are
    // played, the others at each tick, while the page watches.
    let settings = PlaysSettings {
        threads: 2,
        messages: 50_000,
        videos: 300,
        update_interval: Duration::from_millis(100),
        pc_ratio: 1,
        real_life: true,
        seed: 11,
        idle: Duration::from_secs(10),
        topic: None,
    };
    let summary = plays::run(Arc::new(MemoryBroker::new()), &settings, feed)
        .await
        .unwrap();
    assert_eq!(summary.messages_consumed, 50_000);

    until(
        browser,
        "return document.getElementById('plays-status').dataset.finished === 'yes' \
         && document.getElementById('videos').textContent === '300';",
        common::WAIT,
    )
    .await;
    let rows = browser
        .client
        .execute(SCAN_PLAYS_TABLE, vec![])
        .await
        .unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 300);
    let mut shown = HashMap::new();
    for row in rows.as_array().unwrap() {
        let plays = row[1].as_u64().unwrap();
        // What a person reads is the same number.
        assert_eq!(row[2].as_str().unwrap().replace(',', ""), plays.to_string());
        shown.insert(row[0].as_str().unwrap().to_string(), plays);
    }
    assert_eq!(shown, summary.counts);
    // Sorted by plays, most played first.
    let column: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_u64().unwrap())
        .collect();
    assert!(
        column.windows(2).all(|w| w[0] >= w[1]),
        "not sorted by plays"
    );

    let stats = browser
        .client
        .execute(
            "return {
                points: Number(document.getElementById('consumption-line').dataset.points),
                drawn: document.getElementById('consumption-line').getAttribute('points').split(' ').length,
                width: document.getElementById('consumption-chart').getBoundingClientRect().width,
                consumed: document.getElementById('consumed').textContent,
                average: document.getElementById('average-ms').textContent,
            };",
            vec![],
        )
        .await
        .unwrap();
    assert!(stats["points"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["drawn"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats["width"].as_f64().unwrap() > 300.0, "{stats}");
    assert_eq!(stats["consumed"], "50,000 / 50,000");
    assert!(
        stats["average"].as_str().unwrap().ends_with(" ms"),
        "{stats}"
    );

    // Sorting by video puts the ids in order.
    browser
        .client
        .execute(
            "document.querySelector('th[data-key=video]').click();",
            vec![],
        )
        .await
        .unwrap();
    let rows = browser
        .client
        .execute(SCAN_PLAYS_TABLE, vec![])
        .await
        .unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 300);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "not sorted by video");

    page.close("dashboard-plays").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_videos_reach_the_page_whole() {
    let feed = PlaysFeed::new();
    let page = PlaysPage::open(feed.clone()).await;
    let browser = &page.browser;

    // Most videos stay under 100 plays, so nearly every count is published as it
    // changes: the heaviest stream of updates the page can get.
    let settings = PlaysSettings {
        threads: 2,
        messages: 200_000,
        videos: 10_000,
        update_interval: Duration::from_millis(200),
        pc_ratio: 1,
        real_life: true,
        seed: 5,
        idle: Duration::from_secs(10),
        topic: None,
    };
    let summary = plays::run(Arc::new(MemoryBroker::new()), &settings, feed)
        .await
        .unwrap();
    assert_eq!(summary.messages_consumed, 200_000);
    until(
        browser,
        "return document.getElementById('plays-status').dataset.finished === 'yes' \
         && document.getElementById('videos').textContent === '10,000';",
        Duration::from_secs(60),
    )
    .await;
    // The DOM holds only the rows in view, whatever the number of videos.
    let drawn = browser
        .client
        .execute(
            "return document.querySelectorAll('#plays-table tr.video').length;",
            vec![],
        )
        .await
        .unwrap();
    assert!(drawn.as_u64().unwrap() < 100, "{drawn} rows drawn");
    let rows = browser
        .client
        .execute(SCAN_PLAYS_TABLE, vec![])
        .await
        .unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 10_000);
    let shown: HashMap<String, u64> = rows
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_u64().unwrap()))
        .collect();
    assert_eq!(shown, summary.counts);
    assert!(
        rows.windows(2)
            .all(|w| w[0][1].as_u64().unwrap() >= w[1][1].as_u64().unwrap()),
        "not sorted by plays"
    );
    // What the page spent on it (a measurement, reported, not a pass mark).
    let cost = browser
        .client
        .execute("return window.dashboardCost;", vec![])
        .await
        .unwrap();
    eprintln!("page cost with 10,000 videos and 200,000 plays: {cost}");
    assert!(cost["events"].as_u64().unwrap() >= 2, "{cost}");
    page.close("dashboard-plays-10000").await;
}

#[test]
fn plays_dashboard_from_the_command_line() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["--json", "plays", "-nm", "3000", "-nv", "30", "--dashboard"])
        .args(["--dashboard-port", "0"])
        .env_remove("LOG_LEVEL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = stderr
        .by_ref()
        .map(|l| l.unwrap())
        .find_map(|l| l.strip_prefix("dashboard: ").map(str::to_string))
        .expect("the dashboard's address on stderr");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "{addr}: localhost by default"
    );
    // The summary comes while the page stays up.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let summary: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(summary["messages_consumed"], 3000);
    let over = stderr.next().unwrap().unwrap();
    assert!(over.contains("until Ctrl-C"), "{over}");

    let (status, body) = common::http_get(&addr, "/");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("superhero dashboard"));
    for fetch in ["src=", "href=", "@import", "url("] {
        assert!(!body.contains(fetch), "the page fetches something: {fetch}");
    }
    let (status, body) = common::http_get(&addr, "/api/plays");
    assert!(status.contains("200"), "{status}");
    let state: Value = serde_json::from_str(&body).unwrap();
    let total: u64 = state["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 3000);
    assert_eq!(state["finished"], true);
    // Read-only: nothing else answers.
    let (status, _) = common::http_get(&addr, "/api/plays/reset");
    assert!(status.contains("404"), "{status}");

    // Ctrl-C ends it.
    interrupt(child);
}

/// Stops a process as Ctrl-C would and waits for it to end well.
fn interrupt(child: std::process::Child) {
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = common::finish_within(child, Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_game_pipeline_view_follows_a_simulation() {
    let out = std::env::temp_dir().join(format!("superhero-dash-{}", uuid::Uuid::new_v4()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .arg("--json")
        .arg("--output-dir")
        .arg(&out)
        .args(["simulate", "--bots", "8", "--games", "40", "--workers", "3"])
        .args(["--rate", "20", "--dashboard", "--dashboard-port", "0"])
        .env_remove("LOG_LEVEL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = stderr
        .by_ref()
        .map(|l| l.unwrap())
        .find_map(|l| l.strip_prefix("dashboard: ").map(str::to_string))
        .expect("the dashboard's address on stderr");
    // Keep stderr drained while the run goes on.
    let drain = std::thread::spawn(move || stderr.map_while(Result::ok).collect::<Vec<_>>());

    // The page watches the run from its start.
    let browser = Browser::start().await;
    browser.client.goto(&url).await.unwrap();
    until(
        &browser,
        "return !document.getElementById('pipeline').classList.contains('hidden');",
        common::WAIT,
    )
    .await;

    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let summary = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let completed = common::n(&summary, "games_completed");
    let written = common::n(&summary, "games_written");
    // A lobby's timeout may be published after the last game's end: wait for both.
    let timed_out = common::n(&summary, "games_timed_out");
    assert!(completed > 0, "{summary}");
    assert_eq!(written, completed, "{summary}");

    let number =
        |id: &str| format!("Number(document.getElementById('{id}').textContent.replace(/,/g, ''))");
    until(
        &browser,
        &format!(
            "return document.getElementById('pipeline-status').dataset.finished === 'yes' \
             && {} === {completed} && {} === 0 && {} >= {timed_out};",
            number("games-completed"),
            number("games-in-progress"),
            number("games-timed-out"),
        ),
        common::WAIT,
    )
    .await;
    let games = browser
        .client
        .execute(
            &format!(
                "return {{ waiting_lobby: {}, timed_out: {} }};",
                number("games-waiting"),
                number("games-timed-out")
            ),
            vec![],
        )
        .await
        .unwrap();
    ended_lobbies_add_up(&games, &summary);
    let shown = browser
        .client
        .execute(
            "return {
                broker: document.getElementById('broker').textContent,
                dropped: document.getElementById('events-dropped').textContent,
                lag: document.getElementById('group-lag').textContent,
                workers: [...document.querySelectorAll('#workers-table tbody tr')]
                    .map(tr => [...tr.cells].map(td => td.textContent)),
                queues: [...document.querySelectorAll('#queues-table tbody tr')]
                    .map(tr => [...tr.cells].map(td => td.textContent)),
                points: [0, 1, 2].map(q => Number(document.getElementById('rate-line-' + q).dataset.points)),
                width: document.getElementById('rate-chart').getBoundingClientRect().width,
            };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown["broker"], "memory", "{shown}");
    assert_eq!(shown["dropped"], "0", "{shown}");
    assert_eq!(shown["lag"], "0", "{shown}");
    let count = |v: &Value| v.as_str().unwrap().replace(',', "").parse::<u64>().unwrap();
    let workers = shown["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3, "{shown}");
    let by_workers: u64 = workers.iter().map(|w| count(&w[2])).sum();
    assert_eq!(by_workers, written, "{shown}");
    // Every lobby event this process published was seen by the dashboard's own group.
    let published = common::n(&summary, "events_published");
    let queues = shown["queues"].as_array().unwrap();
    let seen: u64 = queues.iter().map(|q| count(&q[2])).sum();
    let here: u64 = queues.iter().map(|q| count(&q[3])).sum();
    assert_eq!(here, published, "{shown}");
    assert_eq!(seen, published, "{shown}");
    for points in shown["points"].as_array().unwrap() {
        assert!(points.as_u64().unwrap() >= 2, "{shown}");
    }
    assert!(shown["width"].as_f64().unwrap() > 300.0, "{shown}");

    browser.screenshot("dashboard-game").await;
    browser.close().await;
    interrupt(child);
    drain.join().unwrap();
    let _ = std::fs::remove_dir_all(&out);
}

/// Lobbies that never started are the run's timed-out games and the lobbies its bots
/// left unfilled at the end (each abandoning bot counts one, and the server may or may
/// not have timed such a lobby out before it stopped).
fn ended_lobbies_add_up(games: &Value, summary: &Value) {
    let shown = common::n(games, "waiting_lobby") + common::n(games, "timed_out");
    let timed_out = common::n(summary, "games_timed_out");
    let abandoned = common::n(summary, "lobbies_abandoned");
    assert!(
        common::n(games, "timed_out") >= timed_out,
        "{games} vs {summary}"
    );
    assert!(shown <= timed_out + abandoned, "{games} vs {summary}");
}

/// The pipeline state a dashboard serves as JSON.
fn pipeline_state(addr: &str) -> Value {
    let (status, body) = common::http_get(addr, "/api/pipeline");
    assert!(status.contains("200"), "{status}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_dashboard_command_watches_another_processs_simulation() {
    let redis = common::redis_url(0);
    for broker in [
        redis.clone(),
        redis.replacen("redis://", "redis-fanout://", 1),
        redis.replacen("redis://", "redis-streams://", 1),
        common::amqp_url(),
        common::nats_url(),
        // The real nsqd when NSQD_ADDRESS names it, else the in-test NSQ peer.
        match common::nsqd::http_address() {
            Some(http) => format!("nsq://{}?http={http}", common::nsqd::address()),
            None => format!("nsq://{}", common::nsqd::address()),
        },
    ] {
        // NSQ's figures come from nsqd's HTTP API, which the in-test peer lacks:
        // there, the dashboard clears what it cannot read.
        let has_figures = !broker.starts_with("nsq://") || common::nsqd::http_address().is_some();
        let dash = common::Service::start(
            &["--broker", &broker, "dashboard", "--port", "0"],
            "dashboard: ",
        );
        let addr = dash
            .ready_line
            .trim_start_matches("dashboard: http://")
            .trim_end_matches('/')
            .to_string();
        let out = std::env::temp_dir().join(format!("superhero-dash-{}", uuid::Uuid::new_v4()));
        let run = {
            use common::RunWithin;
            std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
                .args(["--json", "--broker", &broker, "--output-dir"])
                .arg(&out)
                .args(["simulate", "--bots", "6", "--games", "12", "--workers", "2"])
                .env_remove("LOG_LEVEL")
                .output_within()
        };
        let summary = common::summary(&run);
        assert!(run.status.success(), "{broker}: {summary}");
        let completed = common::n(&summary, "games_completed");
        let timed_out = common::n(&summary, "games_timed_out");
        assert!(completed > 0, "{broker}: {summary}");

        let deadline = Instant::now() + common::WAIT;
        let latest = loop {
            let state = pipeline_state(&addr);
            let latest = state["latest"].clone();
            // A lobby's timeout may be published after the last game's end, and the
            // broker's figures are read every two seconds.
            if latest["games"]["completed"] == completed
                && latest["games"]["timed_out"].as_u64() >= Some(timed_out)
                && latest["broker_stats"]
                    .as_array()
                    .is_some_and(|s| s.is_empty() != has_figures)
            {
                break latest;
            }
            assert!(
                Instant::now() < deadline,
                "{broker}: the dashboard showed {latest}, the run {summary}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(latest["games"]["in_progress"], 0, "{broker}: {latest}");
        ended_lobbies_add_up(&latest["games"], &summary);
        // The workers run elsewhere: what the broker says of their group stands in.
        assert_eq!(
            latest["workers"],
            serde_json::json!([]),
            "{broker}: {latest}"
        );
        assert!(latest["events_dropped"].is_null(), "{broker}: {latest}");

        let (ok, _) = dash.terminate();
        assert!(ok, "{broker}");
        let _ = std::fs::remove_dir_all(&out);
    }
}
