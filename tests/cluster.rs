//! The game on a real Redis Cluster of the test's own (three masters, a replica of
//! each): two servers, two player processes and three worker processes share it,
//! with RabbitMQ carrying the events. A master is killed with SIGKILL mid-run; its
//! replica takes over, and:
//!
//! - the run goes on and completes: what failed meanwhile is counted (bot errors);
//! - no game ever holds more players than it was made for;
//! - every game ends, and every completed game is written exactly once.
//!
//! The figures it prints are the README's ("Redis Cluster").

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{RedisCluster, Service, WAIT, last_json, n};

/// Every game on the cluster: its token, status, player count and members.
struct Game {
    token: String,
    status: String,
    participants: usize,
    members: usize,
}

fn games(cluster: &RedisCluster) -> Vec<Game> {
    let mut found = Vec::new();
    for port in cluster.masters() {
        let mut node = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("games:{*}:status")
            .query(&mut node)
            .unwrap();
        for key in keys {
            let prefix = &key[..key.len() - ":status".len()];
            let (status, participants, members): (String, Option<usize>, usize) = redis::pipe()
                .get(&key)
                .get(format!("{prefix}:participants"))
                .scard(prefix)
                .query(&mut node)
                .unwrap();
            found.push(Game {
                token: prefix["games:{".len()..prefix.len() - 1].to_string(),
                status,
                participants: participants.unwrap_or(0),
                members,
            });
        }
    }
    found
}

fn is_over(status: &str) -> bool {
    status == "Completed" || status == "Timed Out"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_costs_no_game() {
    let mut cluster = RedisCluster::start();
    let store = cluster.url();
    let broker = common::amqp_url();
    let group = format!("cluster-{}", uuid::Uuid::new_v4().simple());
    let built = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["build-db", "--store", &store])
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");

    let out = std::env::temp_dir().join(format!("superhero-cluster-{}", uuid::Uuid::new_v4()));
    let out_arg = out.to_str().unwrap().to_string();
    let workers: Vec<Service> = (0..3)
        .map(|_| {
            Service::start(
                &[
                    "--json",
                    "--output-dir",
                    &out_arg,
                    "worker",
                    "--group",
                    &group,
                    "--store",
                    &store,
                    "--broker",
                    &broker,
                ],
                "superhero worker:",
            )
        })
        .collect();
    let server = || {
        Service::start(
            &[
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--store",
                &store,
                "--broker",
                &broker,
                "--turn-timeout",
                "1",
                "--lobby-timeout",
                "2",
                "--ping-interval",
                "1",
            ],
            "listening on ws://",
        )
    };
    let servers = [server(), server()];
    // Each server's bots in a process of their own, playing until told to stop;
    // games mix the two servers' bots through the shared store.
    let bots = |url: String, first: &str| {
        Service::start(
            &[
                "--json",
                "player",
                "--url",
                &url,
                "--bots",
                "20",
                "--games",
                "-1",
                "--first-user",
                first,
                "--idle-timeout",
                "5",
            ],
            "bots playing on",
        )
    };
    let players = [bots(servers[0].url(), "0"), bots(servers[1].url(), "100")];
    let playing = Instant::now();

    let written_before = common::games_written_within(&out, 30).await;
    assert!(written_before >= 30, "{written_before} games written");
    let before_kill = playing.elapsed();

    // Kill a master: the cluster fails it over to its replica.
    let victim = cluster.masters()[0];
    cluster.kill(victim);
    let killed = Instant::now();
    let deadline = Instant::now() + WAIT * 3;
    while cluster.masters().len() < 3 {
        assert!(Instant::now() < deadline, "no replica took the slots over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.until_ok();
    let failover = killed.elapsed();

    // The run goes on: 30 more games are written.
    let written_after = common::games_written_within(&out, written_before + 30).await;
    assert!(
        written_after >= written_before + 30,
        "after the failover: {written_after} games written, {written_before} before it"
    );
    let recovered = killed.elapsed();

    // The bots stop taking games and say what failed.
    let mut bot_errors = 0;
    let mut bot_games = 0;
    let stopping = Instant::now();
    for player in players {
        // A player whose bots met errors says so in its exit status; the summary
        // counts them.
        let (_, lines) = player.terminate_within(WAIT * 6);
        let summary = last_json(&lines);
        bot_errors += n(&summary, "bot_errors");
        bot_games += n(&summary, "games_completed");
    }
    let bots_stopped = stopping.elapsed();

    // Every game ends, none over-filled.
    let deadline = Instant::now() + WAIT * 6;
    let all = loop {
        let all = games(&cluster);
        let open: Vec<_> = all
            .iter()
            .filter(|g| !is_over(&g.status))
            .map(|g| (&g.token, &g.status))
            .collect();
        if open.is_empty() {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "{} games did not end: {open:?}",
            open.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let overfilled: Vec<_> = all
        .iter()
        .filter(|g| g.members > g.participants)
        .map(|g| (&g.token, g.members, g.participants))
        .collect();
    assert!(overfilled.is_empty(), "over-filled games: {overfilled:?}");
    let completed: HashSet<&str> = all
        .iter()
        .filter(|g| g.status == "Completed")
        .map(|g| g.token.as_str())
        .collect();

    // Every completed game reaches the tables, once.
    common::until_written_once(&out, &completed);

    let mut worker_summaries = Vec::new();
    for service in servers.into_iter().chain(workers) {
        let (clean, lines) = service.terminate();
        assert!(clean, "{}", lines.join("\n"));
        worker_summaries.push(lines);
    }
    eprintln!(
        "cluster: {written_before} games written in {before_kill:.1?} before the kill; \
         the replica served the killed master's slots after {failover:.1?}; 30 more games \
         were written {recovered:.1?} after the kill; the bots completed {bot_games} games, \
         counted {bot_errors} errors and stopped {bots_stopped:.1?} after SIGTERM; {} games in the store, {} completed, each \
         written once, none over-filled",
        all.len(),
        completed.len(),
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// A watch of a game whose master fails over still hears the game's signals, once
/// the replica serves its slot: nothing but the watch is in flight meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_hear_their_game_after_a_failover() {
    use superhero::game::{GameStatus, GameToken};
    use superhero::store::{GameStore, RedisConfig, RedisStore};

    let mut cluster = RedisCluster::start();
    let config = RedisConfig { url: cluster.url() };
    let a = RedisStore::connect(&config).await.unwrap();
    let heroes: Vec<_> = common::uniform_roster(2, 10, 10)
        .iter()
        .map(|h| h.hero())
        .collect();
    let (p, _) = a.login("W0").await.unwrap();
    let (q, _) = a.login("W1").await.unwrap();
    let g = a
        .join(&p, 2, &GameToken::new_random(), &heroes)
        .await
        .unwrap()
        .game;
    a.join(&q, 2, &GameToken::new_random(), &heroes)
        .await
        .unwrap();
    let started = a.start(&g).await.unwrap().unwrap();
    let mut watch = a.watch(&g).await.unwrap();
    assert_eq!(watch.latest().status, GameStatus::InProgress);

    // Kill the master serving the game.
    let key = format!("games:{{{g}}}:status");
    let owner = cluster
        .masters()
        .into_iter()
        .find(|&port| cluster.cli(port, &["exists", &key]).trim() == "1")
        .expect("a master holds the game");
    cluster.until_replicated(owner);
    cluster.kill(owner);
    let deadline = Instant::now() + WAIT * 3;
    while cluster.masters().len() < 3 {
        assert!(Instant::now() < deadline, "no replica took the slots over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.until_ok();

    // Another server attacks: the watch hears it.
    let b = RedisStore::connect(&config).await.unwrap();
    let first = &started.board.order[0];
    let enemy = &started.board.order[1];
    b.attack(&g, first, enemy, 0, "t").await.unwrap();
    tokio::time::timeout(WAIT, async {
        while watch.latest().turns < 1 {
            watch.changed().await.unwrap();
        }
    })
    .await
    .expect("the watch heard the attack made after the failover");
}
