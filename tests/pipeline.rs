//! `superhero simulate` end to end, as a user runs it: its JSON summary is checked
//! against the Parquet files on disk, read back with the arrow reader and with
//! pyarrow; the podium of every game is checked against the heroes and, on Redis,
//! against the attack logs.
//!
//! Redis databases: 14 and 15 (see `common`).

mod common;

use common::{RunWithin, n};

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::{Array, RecordBatch, StringArray, UInt8Array, UInt16Array, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use redis::AsyncCommands;
use serde_json::Value;
use superhero::game::Hero;

fn scratch_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("superhero-{name}-{}", uuid::Uuid::new_v4()))
}

/// Runs `superhero simulate --json` and returns its exit success and summary.
fn simulate(out: &Path, args: &[&str]) -> (bool, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_superhero"))
        .arg("simulate")
        .arg("--json")
        .arg("--output-dir")
        .arg(out)
        .args(args)
        .env_remove("LOG_LEVEL")
        .env_remove("SUPERHERO_STORE")
        .env_remove("SUPERHERO_BROKER")
        .env_remove("LOGGER_MODULE")
        .output_within();
    (output.status.success(), common::summary(&output))
}

#[derive(Clone, Debug)]
struct Podium {
    user: String,
    rank: u8,
    rounds: u16,
    received: u64,
    sent: u64,
}

/// Everything the tables hold, read with the arrow reader.
#[derive(Default)]
struct Tables {
    files: usize,
    /// game → user → hero id
    meta: BTreeMap<String, BTreeMap<String, u16>>,
    podium: BTreeMap<String, Vec<Podium>>,
    meta_rows: usize,
    podium_rows: usize,
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has the wrong type"))
}

fn read_batches(path: &Path) -> Vec<RecordBatch> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    for rg in builder.metadata().row_groups() {
        for col in rg.columns() {
            assert!(
                matches!(col.compression(), Compression::GZIP(_)),
                "{}: {:?}",
                path.display(),
                col.compression()
            );
        }
    }
    builder.build().unwrap().map(|b| b.unwrap()).collect()
}

fn read_tables(out: &Path) -> Tables {
    let mut t = Tables::default();
    for entry in std::fs::read_dir(out.join("superhero/GAME_META")).unwrap() {
        let path = entry.unwrap().path();
        t.files += 1;
        for b in read_batches(&path) {
            let (g, u, h) = (
                column::<StringArray>(&b, "game_token"),
                column::<StringArray>(&b, "user_token"),
                column::<UInt16Array>(&b, "superhero_id"),
            );
            for i in 0..b.num_rows() {
                t.meta_rows += 1;
                t.meta
                    .entry(g.value(i).to_string())
                    .or_default()
                    .insert(u.value(i).to_string(), h.value(i));
            }
        }
    }
    for entry in std::fs::read_dir(out.join("superhero/GAME_PODIUM")).unwrap() {
        let path = entry.unwrap().path();
        t.files += 1;
        for b in read_batches(&path) {
            let g = column::<StringArray>(&b, "game_token");
            let u = column::<StringArray>(&b, "user_token");
            let rank = column::<UInt8Array>(&b, "rank");
            let rounds = column::<UInt16Array>(&b, "rounds");
            let received = column::<UInt64Array>(&b, "damage_received");
            let sent = column::<UInt64Array>(&b, "damage_sent");
            for i in 0..b.num_rows() {
                t.podium_rows += 1;
                t.podium
                    .entry(g.value(i).to_string())
                    .or_default()
                    .push(Podium {
                        user: u.value(i).to_string(),
                        rank: rank.value(i),
                        rounds: rounds.value(i),
                        received: received.value(i),
                        sent: sent.value(i),
                    });
            }
        }
    }
    t
}

/// Checks every game's podium against the heroes the players had.
fn check_podiums(t: &Tables, heroes: &HashMap<u32, Hero>) {
    for (game, rows) in &t.podium {
        let meta = &t.meta[game];
        let mut ranks: Vec<u8> = rows.iter().map(|r| r.rank).collect();
        ranks.sort_unstable();
        assert_eq!(
            ranks,
            (1..=rows.len() as u8).collect::<Vec<_>>(),
            "game {game}"
        );
        let sent: u64 = rows.iter().map(|r| r.sent).sum();
        let received: u64 = rows.iter().map(|r| r.received).sum();
        assert_eq!(sent, received, "game {game}: damage adds up");
        let mut survivors = 0;
        for r in rows {
            let hero = heroes[&u32::from(meta[&r.user])];
            // Every attack deals the attacker's attack.
            assert_eq!(r.sent, u64::from(r.rounds) * hero.attack, "game {game}");
            let alive = r.received < hero.health;
            if alive {
                survivors += 1;
            }
            if r.rank == 1 {
                assert!(alive, "game {game}: the winner has health left");
            }
        }
        assert!(survivors >= 1, "game {game}");
        // The eliminated rank below every survivor.
        for r in rows
            .iter()
            .filter(|r| r.received >= heroes[&u32::from(meta[&r.user])].health)
        {
            assert!(usize::from(r.rank) > survivors, "game {game}: {r:?}");
        }
    }
}

/// Reads the tables with pyarrow (a reader this project did not write).
fn pyarrow_summary(out: &Path) -> Value {
    let python = std::env::var("SUPERHERO_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import glob, json, sys
import pyarrow.parquet as pq
out = {}
for table in ("GAME_META", "GAME_PODIUM"):
    files = sorted(glob.glob(sys.argv[1] + "/superhero/" + table + "/*.gz"))
    schemas = set()
    codecs = set()
    rows = 0
    games = set()
    for f in files:
        pf = pq.ParquetFile(f)
        t = pf.read()
        schemas.add(json.dumps([[field.name, str(field.type)] for field in t.schema]))
        for rg in range(pf.metadata.num_row_groups):
            for c in range(pf.metadata.num_columns):
                codecs.add(pf.metadata.row_group(rg).column(c).compression)
        rows += t.num_rows
        games.update(t.column("game_token").to_pylist())
    out[table] = {"files": len(files), "rows": rows, "games": len(games),
                  "schemas": [json.loads(s) for s in schemas], "codecs": sorted(codecs)}
print(json.dumps(out))
"#;
    let output = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e} (scripts/test sets up pyarrow)"));
    assert!(
        output.status.success(),
        "pyarrow could not read the tables (scripts/test installs it in a venv and sets \
         SUPERHERO_TEST_PYTHON):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn synthetic_heroes(seed: u64) -> HashMap<u32, Hero> {
    superhero::roster::synthetic(732, seed)
        .into_iter()
        .map(|h| (h.id, h.hero()))
        .collect()
}

#[test]
fn simulate_writes_every_completed_game_once() {
    let out = scratch_dir("simulate");
    let (ok, s) = simulate(
        &out,
        &[
            "--bots",
            "40",
            "--games",
            "6",
            "--workers",
            "2",
            "--seed",
            "7",
        ],
    );
    assert!(ok, "{s}");
    let completed = n(&s, "games_completed");
    assert!(completed > 0, "{s}");
    assert_eq!(n(&s, "games_written"), completed, "{s}");
    assert_eq!(n(&s, "missing_games"), 0);
    assert_eq!(n(&s, "duplicate_games"), 0);
    assert_eq!(n(&s, "events_dropped"), 0);
    assert_eq!(n(&s, "bot_errors"), 0);
    assert_eq!(n(&s, "games_unfinished"), 0, "{s}");
    assert!(n(&s, "events_published") > completed * 4, "{s}");
    for field in ["elapsed_s", "games_per_s", "events_per_s"] {
        assert!(s[field].as_f64().unwrap() > 0.0, "{field}: {s}");
    }

    // The files on disk say the same.
    let t = read_tables(&out);
    assert_eq!(t.meta.len() as u64, completed);
    assert_eq!(t.podium.len() as u64, completed);
    assert_eq!(t.files as u64, 2 * completed, "one file per game and table");
    assert_eq!(n(&s, "files_written"), 2 * completed);
    check_podiums(&t, &synthetic_heroes(7));

    // pyarrow reads exactly the same.
    let py = pyarrow_summary(&out);
    let meta = &py["GAME_META"];
    assert_eq!(n(meta, "rows"), t.meta_rows as u64);
    assert_eq!(n(meta, "games"), completed);
    assert_eq!(
        meta["schemas"],
        serde_json::json!([[
            ["game_token", "string"],
            ["user_token", "string"],
            ["superhero_id", "uint16"]
        ]])
    );
    let podium = &py["GAME_PODIUM"];
    assert_eq!(n(podium, "rows"), t.podium_rows as u64);
    assert_eq!(
        podium["schemas"],
        serde_json::json!([[
            ["game_token", "string"],
            ["user_token", "string"],
            ["rank", "uint8"],
            ["rounds", "uint16"],
            ["damage_received", "uint64"],
            ["damage_sent", "uint64"]
        ]])
    );
    for table in [meta, podium] {
        assert_eq!(table["codecs"], serde_json::json!(["GZIP"]));
    }

    // And so does `superhero audit`.
    let audit = Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["audit", "--json"])
        .arg(&out)
        .output_within();
    assert!(audit.status.success());
    let a: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(n(&a, "games"), completed);
    assert_eq!(n(&a, "meta_rows"), t.meta_rows as u64);
    assert_eq!(n(&a, "podium_rows"), t.podium_rows as u64);
    assert_eq!(n(&a, "files"), 2 * completed);
    assert_eq!(n(&a, "duplicate_games"), 0);
    assert_eq!(a["schema_ok"], true);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn batch_mode_writes_few_files_and_loses_no_game() {
    let out = scratch_dir("batch");
    let (ok, s) = simulate(
        &out,
        &[
            "--bots",
            "40",
            "--games",
            "6",
            "--workers",
            "2",
            "--batch-games",
            "25",
            "--batch-seconds",
            "1",
            "--clean",
        ],
    );
    assert!(ok, "{s}");
    let completed = n(&s, "games_completed");
    assert_eq!(n(&s, "games_written"), completed, "{s}");
    assert_eq!(n(&s, "missing_games"), 0);
    let t = read_tables(&out);
    assert_eq!(t.meta.len() as u64, completed);
    // Each batch is one file per table: full batches of 25 games, plus the partial
    // batches each worker's 1 s timer flushes while the run lasts, plus one at the end.
    let ticks = s["elapsed_s"].as_f64().unwrap().ceil() as u64;
    let most = 2 * (completed.div_ceil(25) + 2 * (ticks + 1));
    assert!(
        (t.files as u64) <= most,
        "{} files for {completed} games",
        t.files
    );
    check_podiums(&t, &synthetic_heroes(42));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_folder_that_cannot_be_written_fails_the_run() {
    let out = scratch_dir("blocked");
    std::fs::create_dir_all(&out).unwrap();
    let blocked = out.join("file");
    std::fs::write(&blocked, b"x").unwrap();
    let (ok, s) = simulate(
        &blocked,
        &["--bots", "4", "--games", "2", "--drain-timeout", "1"],
    );
    assert!(!ok, "a run whose games are missing must fail: {s}");
    assert!(n(&s, "missing_games") > 0, "{s}");
    assert_eq!(n(&s, "games_written"), 0);
    std::fs::remove_dir_all(&out).unwrap();
}

/// Runs `simulate --store redis://…/db ARGS` on an emptied database; returns a
/// connection to it, the output folder and the summary of a successful run.
async fn simulate_on_redis(
    db: u32,
    args: &[&str],
) -> (redis::aio::MultiplexedConnection, PathBuf, Value) {
    let conn = common::fresh_db(db).await;
    let out = scratch_dir(&format!("redis-{db}"));
    let mut all = vec!["--store".to_string(), common::redis_url(db)];
    all.extend(args.iter().map(|a| a.to_string()));
    let (ok, s) = tokio::task::spawn_blocking({
        let out = out.clone();
        move || simulate(&out, &all.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert!(ok, "{s}");
    (conn, out, s)
}

#[tokio::test]
async fn simulate_on_redis_matches_the_attack_logs() {
    let (mut conn, out, s) =
        simulate_on_redis(14, &["--bots", "30", "--games", "4", "--seed", "11"]).await;
    let completed = n(&s, "games_completed");
    assert!(completed > 0);
    assert_eq!(n(&s, "games_written"), completed);
    let t = read_tables(&out);
    assert_eq!(t.podium.len() as u64, completed);
    check_podiums(&t, &synthetic_heroes(11));

    // Without --clean the logs stay: each podium row matches them.
    for (game, rows) in &t.podium {
        let status: String = conn.get(format!("games:{game}:status")).await.unwrap();
        assert_eq!(status, "Completed");
        let logs: Vec<String> = conn
            .lrange(format!("games:{game}:logs"), 0, -1)
            .await
            .unwrap();
        let mut rounds: HashMap<String, u16> = HashMap::new();
        let mut received: HashMap<String, u64> = HashMap::new();
        for log in &logs {
            let v: Value = serde_json::from_str(log).unwrap();
            let attacker = v["PAYLOAD"]["USER_TOKEN"].as_str().unwrap().to_string();
            let details = &v["STATUS"]["DETAILS"];
            *rounds.entry(attacker).or_default() += 1;
            *received
                .entry(details["ENEMY_TOKEN"].as_str().unwrap().to_string())
                .or_default() += details["ENEMY_DAMAGE"].as_u64().unwrap();
        }
        for r in rows {
            assert_eq!(rounds.get(&r.user).copied().unwrap_or(0), r.rounds);
            assert_eq!(received.get(&r.user).copied().unwrap_or(0), r.received);
        }
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[tokio::test]
async fn cleaning_on_redis_removes_logs_and_sets_expiry() {
    let (mut conn, out, s) = simulate_on_redis(
        15,
        &[
            "--bots",
            "10",
            "--games",
            "3",
            "--clean",
            "--redis-expiry",
            "600",
        ],
    )
    .await;
    let t = read_tables(&out);
    assert_eq!(t.meta.len() as u64, n(&s, "games_completed"));
    for (game, players) in &t.meta {
        let logs: bool = conn.exists(format!("games:{game}:logs")).await.unwrap();
        assert!(!logs, "the log list is deleted");
        let ttl: i64 = conn.ttl(format!("games:{game}:status")).await.unwrap();
        assert!(ttl > 0 && ttl <= 600, "status expires: ttl {ttl}");
        for user in players.keys() {
            let ttl: i64 = conn
                .ttl(format!("games:{game}:superheros:{user}"))
                .await
                .unwrap();
            assert!(ttl > 0, "hero hash expires");
        }
        let score: Option<f64> = conn.zscore("games:participants", game).await.unwrap();
        assert_eq!(score, None, "the game left games:participants");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

/// With a backlog limit of one game, bots wait for the tables after nearly every
/// game: the run still completes and writes every game.
#[test]
fn a_backlog_limit_holds_the_bots_and_loses_nothing() {
    let out = scratch_dir("backlog");
    let (ok, s) = simulate(
        &out,
        &[
            "--bots",
            "20",
            "--games",
            "4",
            "--workers",
            "1",
            "--max-backlog",
            "1",
        ],
    );
    assert!(ok, "{s}");
    assert_eq!(n(&s, "bot_errors"), 0, "{s}");
    let completed = n(&s, "games_completed");
    assert!(completed > 0, "{s}");
    assert_eq!(n(&s, "games_written"), completed, "{s}");
    assert!(n(&s, "backlog_peak") <= completed, "{s}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn rate_paces_the_run() {
    let out = scratch_dir("rate");
    let (ok, s) = simulate(
        &out,
        &["--bots", "10", "--games", "3", "--rate", "8", "--seed", "3"],
    );
    assert!(ok, "{s}");
    let completed = n(&s, "games_completed");
    assert!(completed > 0, "{s}");
    // Joins are spaced for 8 games/s, each counting its share of its game (unpaced,
    // this run goes at hundreds of games/s). How closely the pace holds is measured
    // by `cargo bench --bench generator`, not here.
    for field in ["games_per_s", "completion_rate"] {
        let rate = s[field].as_f64().unwrap();
        assert!(rate <= 12.0, "{field} {rate} with --rate 8: {s}");
    }
    assert_eq!(n(&s, "games_written"), completed);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn shards_write_every_game_once() {
    let out = scratch_dir("shards");
    // Three shards of 20 bots, on however many cores: each has its own store,
    // broker, workers and server, all writing into one folder.
    let (ok, s) = simulate(
        &out,
        &[
            "--shards",
            "3",
            "--bots",
            "60",
            "--games",
            "4",
            "--workers",
            "2",
            "--seed",
            "9",
        ],
    );
    assert!(ok, "{s}");
    let completed = n(&s, "games_completed");
    assert!(completed > 0, "{s}");
    assert_eq!(n(&s, "bots"), 60, "{s}");
    assert_eq!(n(&s, "shards"), 3, "{s}");
    assert_eq!(n(&s, "workers"), 3, "a worker in each shard: {s}");
    assert_eq!(n(&s, "games_written"), completed, "{s}");
    assert_eq!(n(&s, "missing_games"), 0, "{s}");
    assert_eq!(n(&s, "duplicate_games"), 0, "{s}");
    assert_eq!(n(&s, "events_dropped"), 0, "{s}");
    assert_eq!(n(&s, "bot_errors"), 0, "{s}");
    assert_eq!(n(&s, "games_unfinished"), 0, "{s}");
    assert_eq!(n(&s["completion_to_parquet"], "count"), completed, "{s}");
    assert!(n(&s, "events_published") > completed * 4, "{s}");

    let t = read_tables(&out);
    assert_eq!(t.meta.len() as u64, completed);
    assert_eq!(t.podium.len() as u64, completed);
    assert_eq!(t.files as u64, 2 * completed);
    // Every shard plays with the run's roster.
    check_podiums(&t, &synthetic_heroes(9));
    let players: std::collections::HashSet<&String> =
        t.meta.values().flat_map(|users| users.keys()).collect();
    assert!(
        players.len() > 40,
        "bots of every shard played: {}",
        players.len()
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn shards_refuse_what_watches_one_pipeline() {
    let out = scratch_dir("shards-refused");
    for (args, why) in [
        (&["--listen", "127.0.0.1:0"][..], "--listen"),
        (&["--dashboard", "--dashboard-port", "0"][..], "--dashboard"),
        (&["--transport", "tcp"][..], "TCP"),
        (&["--store", "redis://127.0.0.1:1/0"][..], "store"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_superhero"))
            .args(["simulate", "--shards", "2", "--bots", "4", "--output-dir"])
            .arg(&out)
            .args(args)
            .output_within();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} ran");
        assert!(
            stderr.contains("--shards 2") && stderr.contains(why),
            "{args:?}: {stderr}"
        );
    }
    assert!(!out.exists(), "nothing was written");
}
