//! The Redis store's key names, in its two layouts.
//!
//! On one Redis server ([`Keyspace::Single`]) the names are the original
//! simulator's: `games:<g>:status`, `games:participants`, `games:players:<n>`,
//! `users`, and the channel `games:<g>:signal`.
//!
//! On a Redis Cluster ([`Keyspace::Cluster`]) a script may only touch keys of one
//! hash slot, so every key of a game carries the game token as its hash tag
//! (`games:{<g>}:status`) and the indexes that span games are split:
//!
//! | single server | cluster |
//! |---|---|
//! | `games:<g>…` | `games:{<g>}…` |
//! | `games:participants` (member `<g>`) | `games:{<g>}:joined` (member `<g>`) |
//! | `games:open:<n>`, `games:players:<n>` | `games:open:{<n>.<k>}`, `games:players:{<n>.<k>}`, shard `k` of [`SHARDS`] |
//! | (one script makes a game) | `games:forming:{<n>}`: the game a find made last, for finds making one at the same moment |
//! | `users` (name → token) | `users:{<name>}` (token) |
//! | `users:tokens`, `users:games` | `users:tokens:{<t>}` (fields `name`, `game`) |
//! | channel `games:<g>:signal` | sharded channel `games:{<g>}:signal` |
//!
//! `superheros` keeps its name in both: one hash, read once when a server starts.

use crate::game::{GameToken, UserToken};

/// How many shards each cluster index (joinable games, games by player count) has.
pub const SHARDS: u32 = 8;

/// Which key layout a store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyspace {
    /// One Redis server, the original's names.
    Single,
    /// A Redis Cluster, names hash-tagged by game and by user.
    Cluster,
}

impl Keyspace {
    /// The prefix of every key of game `g`: `games:<g>`, or `games:{<g>}` on a
    /// cluster. `None` for a token a cluster cannot tag: empty, or holding a brace
    /// (its keys would then not share a hash slot); no game has such a token.
    pub fn game(self, g: &str) -> Option<String> {
        match self {
            Self::Single => Some(format!("games:{g}")),
            Self::Cluster if taggable(g) => Some(format!("games:{{{g}}}")),
            Self::Cluster => None,
        }
    }

    /// The sorted set holding how many players joined game `g` (the game is its
    /// member), given the game's prefix.
    pub fn joined(self, prefix: &str) -> String {
        match self {
            Self::Single => "games:participants".to_string(),
            Self::Cluster => format!("{prefix}:joined"),
        }
    }

    /// The set of joinable games for `n` players: on a cluster, shard `shard` of it.
    pub fn open(self, n: u8, shard: u32) -> String {
        match self {
            Self::Single => format!("games:open:{n}"),
            Self::Cluster => format!("games:open:{{{n}.{shard}}}"),
        }
    }

    /// The list of games for `n` players: on a cluster, shard `shard` of it.
    pub fn players(self, n: u8, shard: u32) -> String {
        match self {
            Self::Single => format!("games:players:{n}"),
            Self::Cluster => format!("games:players:{{{n}.{shard}}}"),
        }
    }

    /// The lonely game of record for `n` players on a cluster: the game a find that
    /// drew no joinable game made last, which other finds that made one at the same
    /// moment give theirs up for (`games:forming:{<n>}`).
    pub fn forming(self, n: u8) -> String {
        format!("games:forming:{{{n}}}")
    }

    /// A cluster user's record, `users:tokens:{<t>}`: a hash of `name` and `game`
    /// (the game the user joined last).
    pub fn user(self, user: &UserToken) -> String {
        format!("users:tokens:{{{user}}}")
    }

    /// The key naming a cluster user's token by name, `users:{<name>}`.
    pub fn user_name(self, name: &str) -> String {
        format!("users:{{{name}}}")
    }
}

/// The index shard a game belongs to on a cluster: FNV-1a of its token.
pub fn shard(g: &GameToken) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in g.as_str().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h % SHARDS
}

/// Whether a token can be a hash tag of its own.
fn taggable(token: &str) -> bool {
    !token.is_empty() && !token.contains(['{', '}'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_server_names_are_the_originals() {
        let g = GameToken::from("abc");
        let p = Keyspace::Single.game(&g).unwrap();
        assert_eq!(p, "games:abc");
        assert_eq!(Keyspace::Single.joined(&p), "games:participants");
        assert_eq!(Keyspace::Single.open(2, 5), "games:open:2");
        assert_eq!(Keyspace::Single.players(3, 1), "games:players:3");
    }

    #[test]
    fn cluster_names_share_a_slot_per_game() {
        let g = GameToken::from("abc");
        let p = Keyspace::Cluster.game(&g).unwrap();
        assert_eq!(p, "games:{abc}");
        assert_eq!(Keyspace::Cluster.joined(&p), "games:{abc}:joined");
        assert_eq!(Keyspace::Cluster.open(2, 5), "games:open:{2.5}");
        assert_eq!(Keyspace::Cluster.forming(2), "games:forming:{2}");
        assert_eq!(Keyspace::Cluster.players(2, 5), "games:players:{2.5}");
        assert_eq!(
            Keyspace::Cluster.user(&UserToken::from("t")),
            "users:tokens:{t}"
        );
        for bad in ["", "a}b", "{x"] {
            assert_eq!(Keyspace::Cluster.game(&GameToken::from(bad)), None);
        }
        assert!((0..100).all(|i| shard(&GameToken::from(format!("g{i}"))) < SHARDS));
    }
}
