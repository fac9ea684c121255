//! `build-db --pull`. The real Super Hero API cannot be reached from the machines
//! these tests run on, so a STAND-IN serves its reply format here: each hero of the
//! real collection (`../shared/superhero.json`) at `/api/<token>/<id>`, the API's
//! `invalid id` error past the last one and `access denied` for another token, with
//! failures injected where a test asks (a 500, a 429, a reply slower than the
//! client's timeout, an id that always fails).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::RunWithin;
use serde_json::{Value, json};
use std::path::Path;
use superhero::roster::{self, pull};
use superhero::store::{GameStore, MemoryStore};

const TOKEN: &str = "test-token-5f3a9c";

/// What the stand-in does to an id's requests.
#[derive(Clone, Copy)]
enum Trouble {
    /// The first request answers 500, the next ones the hero.
    FailOnce,
    /// The first request answers 429 (too many requests).
    ThrottleOnce,
    /// The first request answers after 3 s.
    SlowOnce,
    /// Every request answers 500.
    Always,
}

#[derive(Default)]
struct Stand {
    heroes: Vec<Value>,
    trouble: HashMap<u32, Trouble>,
    /// Requests per id so far.
    asked: Mutex<HashMap<u32, u32>>,
    /// Requests being answered now, and the most at once.
    in_flight: Mutex<(usize, usize)>,
}

/// Counts a request in [`Stand::in_flight`] while it is answered.
struct Answering<'a>(&'a Stand);

impl<'a> Answering<'a> {
    fn new(stand: &'a Stand) -> Self {
        let mut flight = stand.in_flight.lock().unwrap();
        flight.0 += 1;
        flight.1 = flight.1.max(flight.0);
        Self(stand)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.in_flight.lock().unwrap().0 -= 1;
    }
}

async fn hero(
    State(stand): State<Arc<Stand>>,
    UrlPath((token, id)): UrlPath<(String, String)>,
) -> Response {
    answer(&stand, &token, &id).await
}

async fn answer(stand: &Stand, token: &str, id: &str) -> Response {
    if token != TOKEN {
        return axum::Json(json!({"response": "error", "error": "access denied"})).into_response();
    }
    let Ok(id) = id.parse::<u32>() else {
        return axum::Json(json!({"response": "error", "error": "invalid id"})).into_response();
    };
    let asked = {
        let mut asked = stand.asked.lock().unwrap();
        let n = asked.entry(id).or_default();
        *n += 1;
        *n
    };
    // A reply the client gave up on may still be sleeping here: it is not counted in
    // flight (the client has one request fewer out).
    if let (Some(Trouble::SlowOnce), 1) = (stand.trouble.get(&id), asked) {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let _answering = Answering::new(stand);
    match (stand.trouble.get(&id), asked) {
        (Some(Trouble::FailOnce), 1) | (Some(Trouble::Always), _) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
        }
        (Some(Trouble::ThrottleOnce), 1) => {
            return (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
        }
        _ => {}
    }
    match id.checked_sub(1).and_then(|i| stand.heroes.get(i as usize)) {
        Some(hero) => axum::Json(hero.clone()).into_response(),
        None => axum::Json(json!({"response": "error", "error": "invalid id"})).into_response(),
    }
}

/// The stand-in on a port of its own; its base URL (before `/<token>/<id>`).
async fn stand_in(collection: &Path, trouble: &[(u32, Trouble)]) -> (String, Arc<Stand>) {
    let text = std::fs::read_to_string(collection).unwrap();
    let stand = Arc::new(Stand {
        heroes: serde_json::from_str(&text).unwrap(),
        trouble: trouble.iter().copied().collect(),
        ..Stand::default()
    });
    let app = Router::new()
        .route("/api/{token}/{id}", get(hero))
        .with_state(stand.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api"), stand)
}

fn settings(base_url: &str) -> pull::PullSettings {
    pull::PullSettings {
        base_url: base_url.to_string(),
        timeout: Duration::from_millis(500),
        retry_pause: Duration::from_millis(20),
        ..pull::PullSettings::new(TOKEN.into())
    }
}

/// Through transient failures the whole collection comes, hero for hero as the API
/// sent it, never more than the bound in flight; loaded, it is the roster `--from`
/// the file gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_collection_comes_through_passing_failures() {
    let Some(fixture) = common::real_collection() else {
        return;
    };
    let (base, stand) = stand_in(
        &fixture,
        &[
            (3, Trouble::FailOnce),
            (10, Trouble::ThrottleOnce),
            (20, Trouble::SlowOnce),
            (732, Trouble::FailOnce),
        ],
    )
    .await;
    let settings = settings(&base);
    let pulled = pull::pull(&settings, |_| {}).await.expect("the pull");
    assert!(pulled.failed.is_empty(), "{:?}", pulled.failed);
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    assert_eq!(pulled.heroes.len(), expected.len());
    for (got, want) in pulled.heroes.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    let asked = stand.asked.lock().unwrap().clone();
    for id in [3, 10, 20, 732] {
        assert_eq!(asked[&id], 2, "id {id} retried once");
    }
    let most = stand.in_flight.lock().unwrap().1;
    assert!(
        most <= settings.in_flight,
        "{most} requests in flight at once"
    );

    // Written and loaded as `--from` loads the real file.
    let file = std::env::temp_dir().join(format!("superhero-pull-{}.json", uuid::Uuid::new_v4()));
    pull::write_atomically(&file, &serde_json::to_vec_pretty(&pulled.heroes).unwrap()).unwrap();
    let pulled_roster = roster::parse_api(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let real_roster = roster::parse_api(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    let (a, b) = (MemoryStore::new(), MemoryStore::new());
    a.replace_roster(&pulled_roster).await.unwrap();
    b.replace_roster(&real_roster).await.unwrap();
    let (a, b) = (a.roster().await.unwrap(), b.roster().await.unwrap());
    assert_eq!(a.len(), 732);
    assert_eq!(a, b, "same heroes, same health and attack");
    let _ = std::fs::remove_file(&file);
}

/// An API that fails every request is down, not missing heroes: the pull stops after
/// a few ids in a row instead of walking on to the id bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_failing_everything_stops_the_pull() {
    let Some(fixture) = common::real_collection() else {
        return;
    };
    let trouble: Vec<(u32, Trouble)> = (1..=100).map(|id| (id, Trouble::Always)).collect();
    let (base, stand) = stand_in(&fixture, &trouble).await;
    let settings = settings(&base);
    let stopped = pull::pull(&settings, |_| {}).await;
    match stopped {
        Err(pull::PullError::Unreachable { why, .. }) => assert!(why.contains("in a row"), "{why}"),
        other => panic!("{other:?}"),
    }
    let highest = stand.asked.lock().unwrap().keys().copied().max().unwrap();
    assert!(
        highest <= 8 + settings.in_flight as u32,
        "asked up to id {highest}"
    );
}

/// `superhero build-db --pull` as a user runs it: the token from API_TOKEN, the file
/// written, the roster loaded; a wrong token, an API that cannot be reached and an id
/// that keeps failing write nothing, say why, and never show the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_db_pull_from_the_command_line() {
    let Some(fixture) = common::real_collection() else {
        return;
    };
    let (base, _stand) = stand_in(&fixture, &[(5, Trouble::Always)]).await;
    let dir = std::env::temp_dir().join(format!("superhero-pull-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("superhero.json");
    let run = |token: &str, base: &str, extra: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"));
        command
            .current_dir(&dir)
            .args(["--json", "build-db", "--pull", "--api-url", base])
            .args(["--api-timeout", "1"])
            .args(extra)
            .env("API_TOKEN", token)
            .env_remove("LOG_LEVEL");
        let out = command.output_within();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };

    let (ok, text) = run("wrong-token-77", &base, &[]);
    assert!(!ok && text.contains("access denied"), "{text}");
    assert!(!text.contains("wrong-token-77"), "{text}");
    assert!(!file.exists());

    let nowhere = format!("http://127.0.0.1:{}/api", common::free_port());
    let (ok, text) = run(TOKEN, &nowhere, &[]);
    assert!(!ok && text.contains("cannot be reached"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!file.exists());

    let (ok, text) = run(TOKEN, &base, &[]);
    assert!(
        !ok && text.contains("[5]") && text.contains("--allow-gaps"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!file.exists(), "nothing written with a gap");

    let (ok, text) = run(TOKEN, &base, &["--allow-gaps"]);
    assert!(ok, "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    let summary = common::last_json(&text.lines().map(String::from).collect::<Vec<_>>());
    assert_eq!(summary["heroes"], 731, "{summary}");
    assert_eq!(summary["failed_ids"], json!([5]), "{summary}");
    let written: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written.len(), 731);
    assert!(written.iter().all(|h| h["id"] != "5"));

    // From an API without trouble, the file is the collection, hero for hero.
    let (clean_base, _clean) = stand_in(&fixture, &[]).await;
    let (ok, text) = run(TOKEN, &clean_base, &["--to", "full.json"]);
    assert!(ok, "{text}");
    let full: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("full.json")).unwrap()).unwrap();
    let real: Value = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    assert_eq!(full, real);

    // The file is then reused without the network, as the original intends.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superhero"))
        .current_dir(&dir)
        .args(["--json", "build-db", "--from", "superhero.json"])
        .output_within();
    assert!(out.status.success());
    assert_eq!(common::summary(&out)["heroes"], 731);
    let _ = std::fs::remove_dir_all(&dir);
}
