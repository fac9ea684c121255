//! Importing the real Super Hero API collection (`../shared/superhero.json`), in the
//! library and through `superhero build-db --from` into a real Redis.

mod common;

use std::process::Command;

use common::{RunWithin, fresh_db, redis_url};
use redis::AsyncCommands;
use serde_json::Value;
use superhero::roster;

use common::real_collection as fixture;

#[test]
fn the_real_collection_parses() {
    let Some(path) = fixture() else { return };
    let heroes = roster::parse_api(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(heroes.len(), 732);
    let a_bomb = &heroes[0];
    assert_eq!((a_bomb.id, a_bomb.name.as_str()), (1, "A-Bomb"));
    assert_eq!(a_bomb.hero().health, 3_040_000);
    assert_eq!(a_bomb.hero().attack, 26_112);
    let ids: Vec<u32> = heroes.iter().map(|h| h.id).collect();
    assert_eq!(ids, (1..=732).collect::<Vec<_>>());
    // "null" counts as 1, so a hero without stats has health 10 and attack 1.
    assert!(
        heroes
            .iter()
            .any(|h| h.hero().health == 10 && h.hero().attack == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_db_imports_the_real_collection_into_redis() {
    let Some(path) = fixture() else { return };
    let mut redis = fresh_db(3).await;
    let out = Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["build-db", "--json", "--store", &redis_url(3), "--from"])
        .arg(&path)
        .output_within();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["heroes"], 732);
    assert_eq!(summary["first_name"], "A-Bomb");
    assert_eq!(summary["first_health"], 3_040_000);
    assert_eq!(summary["first_attack"], 26_112);

    let count: usize = redis.hlen("superheros").await.unwrap();
    assert_eq!(count, 732);
    let stored: String = redis.hget("superheros", 1).await.unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["name"], "A-Bomb");
    assert_eq!(stored["powerstats"]["health"], 3_040_000);
    assert_eq!(stored["powerstats"]["attack"], 26_112);
    assert_eq!(stored["powerstats"]["strength"], 100);
    assert!(stored.get("response").is_none() && stored.get("id").is_none());
    assert_eq!(stored["biography"]["full-name"], "Richard Milhouse Jones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_db_refuses_a_broken_file_and_keeps_the_roster() {
    let mut redis = fresh_db(13).await;
    let () = redis
        .hset("superheros", 1, r#"{"powerstats":{"health":5,"attack":5}}"#)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("superhero-roster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"[{"id": "1", "powerstats": {"speed": "very"}}]"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_superhero"))
        .args(["build-db", "--store", &redis_url(13), "--from"])
        .arg(&bad)
        .output_within();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("speed"), "{stderr}");
    let count: usize = redis.hlen("superheros").await.unwrap();
    assert_eq!(count, 1, "a failed import leaves the roster as it was");
    std::fs::remove_dir_all(&dir).unwrap();
}
