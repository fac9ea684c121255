//! A Redis that goes away and comes back: the server answers `STORE UNAVAILABLE`
//! meanwhile, keeps serving what needs no store, and recovers by itself. The Redis
//! here is a private `redis-server` process on its own port, so it can be killed.

mod common;

use std::time::{Duration, Instant};

use common::{Client, error, start_server};
use serde_json::json;
use superhero::server::ServerSettings;
use superhero::store::{RedisConfig, RedisStore};

fn start_redis(port: u16) -> common::Service {
    common::redis_server(&[], "127.0.0.1", port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_survives_a_redis_outage() {
    let port = common::free_port();
    let redis = start_redis(port);
    let store = RedisStore::connect(&RedisConfig {
        url: format!("redis://127.0.0.1:{port}/0"),
    })
    .await
    .unwrap();
    let server = start_server(store, ServerSettings::default()).await;
    let base = server.url.as_str();
    let mut login = Client::connect(base, "/api/v1/login").await;
    let created = login.ask(json!({"PAYLOAD": {"USER": "USER001"}})).await;
    assert_eq!(created, error("USER CREATED"));
    login.recv().await;

    redis.kill();
    assert_eq!(
        login.ask(json!({"PAYLOAD": {"USER": "USER002"}})).await,
        error("STORE UNAVAILABLE")
    );
    // Requests that need no store are still answered, on the same connection.
    login.send_text("{oops").await;
    assert_eq!(login.recv().await, error("MALFORMED JSON IN MESSAGE"));

    // Redis comes back (empty: it keeps nothing on disk); logins work again.
    let redis = start_redis(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = login.ask(json!({"PAYLOAD": {"USER": "USER003"}})).await;
        if reply == error("USER CREATED") {
            assert!(login.recv().await["PAYLOAD"]["USER_TOKEN"].is_string());
            break;
        }
        assert_eq!(reply, error("STORE UNAVAILABLE"));
        assert!(Instant::now() < deadline, "the store never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.kill();
}
