//! Several hosts on one machine: Redis (the store and the Redis Streams broker), two
//! game servers, the bots and the workers each in a network namespace of their own,
//! with an address of their own on a bridge that no traffic leaves (`ip netns`, veth
//! pairs; the test needs root, as `scripts/test` does to install its services). One
//! server's link is cut mid-run, then mended:
//!
//! - the bots on the cut server notice within their idle timeout and stop;
//! - the other server's games go on completing, and the workers keep writing;
//! - once the link is back, every game ends (the cut server's referees forfeit the
//!   players who left) and every completed game is written exactly once.
//!
//! The figures it prints are the README's ("Deploy").

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Service, WAIT, http_get, last_json, n};

/// Runs `ip ARGS`, failing the test with what it said when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` (iproute2) runs");
    assert!(
        out.status.success(),
        "ip {}: {}\n(the multi-host test makes network namespaces: run it as root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Network namespaces joined by a bridge in a namespace of its own, and a link from
/// the test's own namespace to the bridge; all of it removed when dropped.
struct Hosts {
    /// Makes this run's names its own.
    id: String,
    /// The third byte of the subnet `10.77.<subnet>.0/24`.
    subnet: u8,
    names: Vec<&'static str>,
}

impl Hosts {
    fn create(names: &[&'static str]) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..5].to_string();
        let subnet = 1 + (u8::from_str_radix(&id[..2], 16).unwrap() % 250);
        let hosts = Self {
            id,
            subnet,
            names: names.to_vec(),
        };
        let hub = hosts.namespace("hub");
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for (i, name) in names.iter().enumerate() {
            let ns = hosts.namespace(name);
            let (inner, outer) = hosts.link_names(i);
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &outer, "netns", &hub]);
            ip(&["-n", &hub, "link", "set", &outer, "master", "br0", "up"]);
            let cidr = format!("{}/24", hosts.addr(name));
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", &inner]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        // The test's own namespace reaches every host, as an operator would.
        let (mine, outer) = (format!("r{}", hosts.id), format!("o{}", hosts.id));
        ip(&["link", "add", &mine, "type", "veth", "peer", "name", &outer]);
        ip(&["link", "set", &outer, "netns", &hub]);
        ip(&["-n", &hub, "link", "set", &outer, "master", "br0", "up"]);
        let cidr = format!("10.77.{}.1/24", hosts.subnet);
        ip(&["addr", "add", &cidr, "dev", &mine]);
        ip(&["link", "set", &mine, "up"]);
        hosts
    }

    fn namespace(&self, name: &str) -> String {
        format!("sh{}-{name}", self.id)
    }

    /// The host's end of its link and the bridge's end (at most 15 characters).
    fn link_names(&self, i: usize) -> (String, String) {
        (format!("v{}{i}", self.id), format!("h{}{i}", self.id))
    }

    fn addr(&self, name: &str) -> String {
        let i = self.names.iter().position(|n| *n == name).unwrap();
        format!("10.77.{}.{}", self.subnet, 10 + i)
    }

    /// `superhero ARGS` on host `name`.
    fn superhero(&self, name: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(name)])
            .arg(env!("CARGO_BIN_EXE_superhero"))
            .args(args)
            .env_remove("LOG_LEVEL");
        command
    }

    /// Unplugs (`up` false) or plugs back host `name`'s link at the bridge.
    fn plug(&self, name: &str, up: bool) {
        let i = self.names.iter().position(|n| *n == name).unwrap();
        let (_, outer) = self.link_names(i);
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.namespace("hub"), "link", "set", &outer, state]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for name in self.names.iter().copied().chain(["hub"]) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.namespace(name)])
                .status();
        }
        // Gone with its peer in the hub; deleted here in case the hub was not made.
        let _ = Command::new("ip")
            .args(["link", "del", &format!("r{}", self.id)])
            .output();
    }
}

/// The sum of every series of `name` on a `/metrics` page at `addr`.
fn metric(addr: &str, name: &str) -> f64 {
    let (status, body) = http_get(addr, "/metrics");
    assert!(status.contains("200"), "{addr}: {status}");
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `metric` at `addr` reaches `at_least`; how long it took.
fn until_metric(addr: &str, name: &str, at_least: f64, within: Duration) -> Duration {
    let began = Instant::now();
    loop {
        let value = metric(addr, name);
        if value >= at_least {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < within,
            "{name} at {addr} is {value}, not {at_least}, after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each game in the store with its status.
fn statuses(redis: &mut redis::Connection) -> Vec<(String, String)> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("games:*:status")
        .query(redis)
        .unwrap();
    keys.into_iter()
        .map(|key| {
            let status: String = redis::cmd("GET").arg(&key).query(redis).unwrap();
            let game = key["games:".len()..key.len() - ":status".len()].to_string();
            (game, status)
        })
        .collect()
}

#[test]
fn a_server_cut_off_mid_run_costs_no_game() {
    let hosts = Hosts::create(&["redis", "server-a", "server-b", "bots", "workers"]);
    let redis_addr = hosts.addr("redis");
    let on_redis = ["ip", "netns", "exec", &hosts.namespace("redis")];
    let _redis = common::redis_server(&on_redis, &redis_addr, 6379);
    let store = format!("redis://{redis_addr}:6379/0");
    let broker = format!("redis-streams://{redis_addr}:6379/0");
    let built = hosts
        .superhero("redis", &["build-db", "--store", &store])
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");

    let out = std::env::temp_dir().join(format!("superhero-hosts-{}", uuid::Uuid::new_v4()));
    let out_arg = out.to_str().unwrap();
    let workers_metrics = format!("{}:9464", hosts.addr("workers"));
    let workers = Service::spawn(
        hosts.superhero(
            "workers",
            &[
                "--json",
                "--output-dir",
                out_arg,
                "worker",
                "--workers",
                "2",
                "--store",
                &store,
                "--broker",
                &broker,
                "--metrics",
                &workers_metrics,
            ],
        ),
        "superhero worker:",
        WAIT,
    );
    // Turns of 1 s at most, pings every second: a player gone is forfeited soon.
    let server = |name: &str| {
        let host = hosts.addr(name);
        let metrics = format!("{host}:9464");
        let service = Service::spawn(
            hosts.superhero(
                name,
                &[
                    "server",
                    "--host",
                    &host,
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
                    "--metrics",
                    &metrics,
                ],
            ),
            "listening on",
            WAIT,
        );
        (service, metrics, format!("ws://{host}:5678"))
    };
    let (server_a, _metrics_a, url_a) = server("server-a");
    let (server_b, metrics_b, url_b) = server("server-b");
    // Bots of each server in a process of their own, on the bots' host, playing
    // until told to stop; games mix the two servers' bots through the shared store.
    let bots = |url: &str, first: &str| {
        Service::spawn(
            hosts.superhero(
                "bots",
                &[
                    "--json",
                    "player",
                    "--url",
                    url,
                    "--bots",
                    "20",
                    "--games",
                    "-1",
                    "--first-user",
                    first,
                    "--idle-timeout",
                    "3",
                ],
            ),
            "bots playing on",
            WAIT,
        )
    };
    let mut bots_a = bots(&url_a, "0");
    let bots_b = bots(&url_b, "100");
    let playing = Instant::now();

    let written = "superhero_games_written_total";
    let ended = "superhero_games_ended_total";
    until_metric(&workers_metrics, written, 30.0, WAIT * 3);

    // Cut server A off: its bots, Redis and the workers no longer reach it.
    let before_cut = playing.elapsed();
    let written_at_cut = metric(&workers_metrics, written);
    let ended_b_at_cut = metric(&metrics_b, ended);
    hosts.plug("server-a", false);
    let cut = Instant::now();
    // Server B's games go on, and the workers keep writing them.
    let goes_on = until_metric(&metrics_b, ended, ended_b_at_cut + 20.0, WAIT * 2);
    until_metric(&workers_metrics, written, written_at_cut + 20.0, WAIT * 2);
    // Server A's bots hear nothing for their idle timeout and stop, with errors.
    let deadline = Instant::now() + WAIT * 2;
    while bots_a.running() {
        assert!(Instant::now() < deadline, "server A's bots did not notice");
        std::thread::sleep(Duration::from_millis(50));
    }
    let noticed = cut.elapsed();
    let (_, lines) = bots_a.wait();
    let summary_a = last_json(&lines);
    assert!(n(&summary_a, "bot_errors") > 0, "{summary_a}");
    let cut_for = cut.elapsed();
    let during_cut = metric(&workers_metrics, written) - written_at_cut;

    // The link is back: server A's games end (their players left), and nothing is
    // lost. Server B's bots stop taking new games.
    hosts.plug("server-a", true);
    let mended = Instant::now();
    let (clean_b, lines) = bots_b.terminate();
    let summary_b = last_json(&lines);
    assert!(clean_b, "{}", lines.join("\n"));
    let mut redis = redis::Client::open(store.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let deadline = Instant::now() + WAIT * 6;
    let games = loop {
        let games = statuses(&mut redis);
        let open: Vec<_> = games
            .iter()
            .filter(|(_, s)| s != "Completed" && s != "Timed Out")
            .collect();
        if open.is_empty() {
            break games;
        }
        assert!(
            Instant::now() < deadline,
            "{} games did not end after the link came back: {open:?}",
            open.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let all_ended = mended.elapsed();
    let completed: HashSet<&str> = games
        .iter()
        .filter(|(_, s)| s == "Completed")
        .map(|(g, _)| g.as_str())
        .collect();
    // Every completed game reaches the tables, once.
    if let Err(missing) = common::written_once_within(&out, &completed) {
        let said: Vec<String> = [
            ("server A", &server_a),
            ("server B", &server_b),
            ("workers", &workers),
        ]
        .iter()
        .map(|(name, service)| {
            let lines = service.lines();
            let notable: Vec<&String> = lines
                .iter()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("warn") || l.contains("error")
                })
                .take(40)
                .collect();
            format!("{name}:\n{notable:#?}")
        })
        .collect();
        panic!("{missing}\n{}", said.join("\n"));
    }

    for (name, service) in [
        ("server A", server_a),
        ("server B", server_b),
        ("workers", workers),
    ] {
        let (clean, lines) = service.terminate();
        assert!(clean, "{name}:\n{}", lines.join("\n"));
    }
    eprintln!(
        "hosts: before the cut the workers wrote {written_at_cut} games in {before_cut:.1?}; \
         server A's bots noticed the cut in {noticed:.1?} ({} of 20 stopped on an error, \
         after {} games); during the cut server B ended 20 more games in {goes_on:.1?} and \
         the workers wrote {during_cut} games in {cut_for:.1?}; once the link was back \
         every game had ended within {all_ended:.1?}; {} games completed in all, each \
         written once; server B's bots completed {} games",
        n(&summary_a, "bot_errors"),
        n(&summary_a, "games_completed"),
        completed.len(),
        n(&summary_b, "games_completed"),
    );
    let _ = std::fs::remove_dir_all(&out);
}
