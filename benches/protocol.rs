//! Reading and writing the protocol's frames, per frame, each beside the floor for
//! the same bytes. A server reads a request for every request a bot sends and writes
//! a reply to it, and a bot reads that reply, so these are paid some 120 times a game.
//!
//! - the server's reading of each game request (find, lobby and hero look-up,
//!   attack): the fields its endpoint needs, with the error the original server gave
//!   for each missing or mistyped one;
//! - a bot's reading of each reply it acts on (the hero look-up's, the attack's, a
//!   lobby's turn and START);
//!
//! beside serde_json scanning the frame and checking it is JSON while keeping nothing
//! (`IgnoredAny`);
//!
//! - the server's writing of its replies (`to_frame`), beside copying the written
//!   frame's bytes into a new string, which any writer must at least do.
//!
//! Each figure is the fastest of several rounds (the least disturbed by whatever
//! else the machine runs), on one thread. Run: `cargo bench --bench protocol`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::LazyLock;
use std::time::Instant;

use serde::de::IgnoredAny;
use superhero::game::protocol::{
    Action, ActionDetails, ActionPayload, ActionRecord, ActionStatus, Find, GAME_HERO_SPEC,
    GAME_START, GAME_TURN, GameStatusField, GameUserText, HeroPayload, HeroReply, HeroView,
    LobbyReply, ServerFrame, StartPayload, StartReply, attack_request, find_request,
    game_user_request, to_frame,
};
use superhero::game::{GameToken, UserToken};

/// Rounds, and calls a round. `cargo bench` passes `--bench`; `cargo test
/// --all-targets` runs this file without it, and then a quick pass only checks that
/// every frame reads and writes.
static ROUNDS: LazyLock<(usize, usize)> = LazyLock::new(|| {
    if std::env::args().any(|a| a == "--bench") {
        (25, 100_000)
    } else {
        (1, 100)
    }
});

/// Nanoseconds per call of `read` on `frame`, the fastest round's.
fn per_frame(frame: &str, read: impl Fn(&str) -> bool) -> f64 {
    per_call(|| assert!(read(black_box(frame)), "the frame reads: {frame}"))
}

/// Nanoseconds per call of `f`, the fastest round's.
fn per_call(mut f: impl FnMut()) -> f64 {
    let (rounds, per_round) = *ROUNDS;
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..per_round {
            f();
        }
        best = best.min(started.elapsed().as_nanos() as f64 / per_round as f64);
    }
    best
}

/// Nanoseconds per frame written from `reply`, and per copy of the frame's bytes.
fn writing<T: serde::Serialize>(reply: &T) -> (usize, f64, f64) {
    let frame = to_frame(reply);
    let write = per_call(|| drop(black_box(to_frame(black_box(reply)))));
    let copy = per_call(|| drop(black_box(black_box(frame.as_str()).to_owned())));
    (frame.len(), write, copy)
}

/// Reads a frame; says whether it read.
type Reader = fn(&str) -> bool;

fn token(n: u8) -> String {
    format!("{n:08x}-5371-40ef-aaa3-1c9a0df1e362")
}

fn main() {
    let game = GameToken::from(token(1));
    let me = UserToken::from(token(2));
    let enemy = UserToken::from(token(3));
    fn hero(user: &UserToken, health: u64) -> HeroView<'_> {
        HeroView {
            token: user,
            id: Some(421),
            attack: 85_652,
            health,
        }
    }

    let requests: [(&str, String, Reader); 3] = [
        ("find", find_request(&me, 3), |f| Find::parse(f).is_ok()),
        ("lobby, hero look-up", game_user_request(&game, &me), |f| {
            GameUserText::parse(f).is_ok()
        }),
        ("attack", attack_request(&game, &me, Some(&enemy)), |f| {
            Action::parse(f).is_ok()
        }),
    ];
    let attack_record = ActionRecord {
        timestamp: "2026-12-04T17:03:47Z".into(),
        payload: ActionPayload {
            game_token: game.as_str().into(),
            user_token: me.as_str().into(),
        },
        status: ActionStatus {
            action: "ATTACK".into(),
            details: ActionDetails::Attack {
                enemy_token: enemy.as_str().into(),
                enemy_damage: 85_652,
                enemy_health_prior: 412_160,
                enemy_health_post: 326_508,
            },
        },
    };
    let hero_reply = HeroReply {
        payload: HeroPayload {
            game_token: game.as_str(),
            user_token: enemy.as_str(),
            hero: hero(&enemy, 326_508),
        },
        status: GameStatusField {
            game: GAME_HERO_SPEC,
        },
    };
    let third = UserToken::from(token(4));
    let start_reply = StartReply {
        payload: StartPayload {
            game_token: game.clone(),
            participants: vec![me.clone(), enemy.clone(), third.clone()],
            participants_heros: [&me, &enemy, &third]
                .into_iter()
                .map(|u| (u.clone(), hero(u, 412_160)))
                .collect::<BTreeMap<_, _>>(),
        },
        status: GameStatusField { game: GAME_START },
    };
    let replies = [
        ("hero look-up", to_frame(&hero_reply)),
        ("attack", to_frame(&attack_record)),
        (
            "lobby: turn",
            to_frame(&LobbyReply::new(game.clone(), GAME_TURN)),
        ),
        ("lobby: START, 3 players", to_frame(&start_reply)),
    ];

    let floor = |frame: &str| per_frame(frame, |f| serde_json::from_str::<IgnoredAny>(f).is_ok());
    println!("| frame | bytes | read (ns) | JSON scan alone (ns) | read / scan |");
    println!("|---|---|---|---|---|");
    let row = |side: &str, name: &str, frame: &str, read: f64| {
        let scan = floor(frame);
        println!(
            "| {side}: {name} | {} | {read:.0} | {scan:.0} | {:.2} |",
            frame.len(),
            read / scan
        );
    };
    for (name, frame, read) in &requests {
        row("server reads", name, frame, per_frame(frame, read));
    }
    for (name, frame) in &replies {
        let read = per_frame(frame, |f| ServerFrame::parse(f).is_some());
        row("bot reads", name, frame, read);
    }

    let written = [
        ("hero look-up", writing(&hero_reply)),
        ("attack", writing(&attack_record)),
        (
            "lobby: turn",
            writing(&LobbyReply::new(game.clone(), GAME_TURN)),
        ),
        ("lobby: START, 3 players", writing(&start_reply)),
    ];
    println!();
    println!("| reply | bytes | written (ns) | copied alone (ns) | written / copied |");
    println!("|---|---|---|---|---|");
    for (name, (bytes, write, copy)) in written {
        println!(
            "| server writes: {name} | {bytes} | {write:.0} | {copy:.0} | {:.2} |",
            write / copy
        );
    }
}
