//! The live dashboard in a real headless Chromium: a plays run with its dashboard,
//! watched by the page until the table shows the final counts, which must be the
//! processor's; the consumption-time chart must have points. A screenshot is kept
//! as a test artifact. And `plays --dashboard` from the command line: the address
//! printed, the page and its JSON served, and the page staying up after the run
//! until Ctrl-C.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::browser::Browser;
use serde_json::Value;
use superhero::broker::MemoryBroker;
use superhero::dashboard::{Dashboard, Sources};
use superhero::plays::feed::PlaysFeed;
use superhero::plays::{self, PlaysSettings};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_plays_table_ends_with_the_processors_counts() {
    let feed = PlaysFeed::new();
    let page = Dashboard::bind(
        "127.0.0.1",
        0,
        Sources {
            plays: Some(feed.clone()),
        },
    )
    .await
    .unwrap();
    let url = page.url().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(page.serve(async {
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
        &browser,
        "return document.getElementById('plays-status').dataset.finished === 'yes' \
         && document.querySelectorAll('#plays-table tbody tr').length === 300;",
        common::WAIT,
    )
    .await;
    let rows = browser
        .client
        .execute(
            "return [...document.querySelectorAll('#plays-table tbody tr')]
                .map(tr => [tr.dataset.video, Number(tr.dataset.plays), tr.cells[1].textContent]);",
            vec![],
        )
        .await
        .unwrap();
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
    let ids = browser
        .client
        .execute(
            "return [...document.querySelectorAll('#plays-table tbody tr')].map(tr => tr.dataset.video);",
            vec![],
        )
        .await
        .unwrap();
    let ids: Vec<&str> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "not sorted by video");

    browser.screenshot("dashboard-plays").await;
    browser.close().await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// A plain HTTP/1.0 GET: status line and body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
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

    let (status, body) = get(&addr, "/");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("superhero dashboard"));
    for fetch in ["src=", "href=", "@import", "url("] {
        assert!(!body.contains(fetch), "the page fetches something: {fetch}");
    }
    let (status, body) = get(&addr, "/api/plays");
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
    let (status, _) = get(&addr, "/api/plays/reset");
    assert!(status.contains("404"), "{status}");

    // Ctrl-C ends it.
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
