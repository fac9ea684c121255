//! The game server's request handling: each line of the input is one request frame,
//! its first byte choosing the endpoint, sent in order to a fresh server with the
//! embedded store. `$U` and `$G` in a frame stand for the last user and game token a
//! reply handed out, so inputs can log in, find a game and play it. Whatever comes,
//! the server answers every frame and never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use superhero::fixtures::uniform_roster;
use superhero::game::protocol::{ACTION_PATH, FIND_PATH, HERO_PATH, LOBBY_PATH, LOGIN_PATH};
use superhero::server::{Answerer, ServerSettings};
use superhero::store::{GameStore, MemoryStore};

const PATHS: [&str; 6] = [
    LOGIN_PATH,
    FIND_PATH,
    LOBBY_PATH,
    HERO_PATH,
    ACTION_PATH,
    "/nowhere",
];

/// The value of `"KEY": "..."` in a reply, if there is one.
fn token(reply: &str, key: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(reply).ok()?;
    value["PAYLOAD"][key].as_str().map(str::to_string)
}

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let store = MemoryStore::new();
        store
            .replace_roster(&uniform_roster(5, 30, 10))
            .await
            .expect("the embedded store takes a roster");
        let server = Answerer::new(store, ServerSettings::default());
        let (mut user, mut game) = (String::new(), String::new());
        for line in data.split(|b| *b == b'\n').take(64) {
            let Some((&which, frame)) = line.split_first() else {
                continue;
            };
            let path = PATHS[usize::from(which) % PATHS.len()];
            let frame = String::from_utf8_lossy(frame)
                .replace("$U", &user)
                .replace("$G", &game);
            let Some(replies) = server.answer(path, &frame).await else {
                assert_eq!(path, "/nowhere");
                continue;
            };
            if path != LOBBY_PATH {
                assert!(!replies.is_empty(), "{path}: no reply to {frame:?}");
            }
            for reply in &replies {
                let parsed: serde_json::Value =
                    serde_json::from_str(reply).expect("every reply is JSON");
                assert!(parsed.get("PAYLOAD").is_some() || parsed.get("STATUS").is_some());
                user = token(reply, "USER_TOKEN").unwrap_or(user);
                game = token(reply, "GAME_TOKEN").unwrap_or(game);
            }
        }
    });
});
