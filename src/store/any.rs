//! The store a command was asked for, chosen at run time: `--store memory`, `redis`
//! (REDIS_HOST/PORT/DB) or a `redis://` URL. [`AnyStore`] is a [`GameStore`] itself,
//! passing every call to the store it holds, so commands are written once for both.

use std::time::Duration;

use super::{
    Attacked, ClaimId, Extracted, Forfeited, GameStore, Joined, LobbyEntry, MemoryStore,
    RedisConfig, RedisStore, SignalWatch, Snapshot, StoreError,
};
use crate::etl::GameExtract;
use crate::game::rules::ForfeitReason;
use crate::game::{GameToken, Hero, UserToken};
use crate::roster::RosterHero;

/// Which store to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded store, in this process only.
    Memory,
    Redis(RedisConfig),
}

impl StoreChoice {
    /// Reads `--store`: `memory`, `redis` (at `redis`, from the original's variables),
    /// a `redis://` / `rediss://` URL, or `redis-cluster://host:port[,host:port…]`.
    pub fn parse(store: &str, redis: RedisConfig) -> Result<Self, UnknownStore> {
        match store {
            "memory" | "memory://" => Ok(Self::Memory),
            "redis" => Ok(Self::Redis(redis)),
            url if url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis-cluster://") =>
            {
                Ok(Self::Redis(RedisConfig {
                    url: url.to_string(),
                }))
            }
            other => Err(UnknownStore(crate::url::redact(other))),
        }
    }

    /// Opens the store; the Redis store must answer.
    pub async fn open(&self) -> Result<AnyStore, StoreError> {
        Ok(match self {
            Self::Memory => AnyStore::Memory(MemoryStore::new()),
            Self::Redis(config) => AnyStore::Redis(RedisStore::connect(config).await?),
        })
    }
}

/// A `--store` that names no store (its password masked).
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown store {0:?}: use memory, redis, redis://host:port/db or redis-cluster://host:port[,host:port…]"
)]
pub struct UnknownStore(String);

/// The embedded store or the Redis store.
#[derive(Clone)]
pub enum AnyStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// Calls the same method on whichever store is held.
macro_rules! each {
    ($store:expr, $s:ident => $call:expr) => {
        match $store {
            AnyStore::Memory($s) => $call,
            AnyStore::Redis($s) => $call,
        }
    };
}

impl GameStore for AnyStore {
    async fn replace_roster(&self, heroes: &[RosterHero]) -> Result<(), StoreError> {
        each!(self, s => s.replace_roster(heroes).await)
    }

    async fn roster(&self) -> Result<Vec<Hero>, StoreError> {
        each!(self, s => s.roster().await)
    }

    async fn login(&self, name: &str) -> Result<(UserToken, bool), StoreError> {
        each!(self, s => s.login(name).await)
    }

    async fn join(
        &self,
        user: &UserToken,
        participants: u8,
        new_game: &GameToken,
        candidates: &[Hero],
    ) -> Result<Joined, StoreError> {
        each!(self, s => s.join(user, participants, new_game, candidates).await)
    }

    async fn snapshot(&self, game: &GameToken) -> Result<Option<Snapshot>, StoreError> {
        each!(self, s => s.snapshot(game).await)
    }

    async fn start(&self, game: &GameToken) -> Result<Option<Snapshot>, StoreError> {
        each!(self, s => s.start(game).await)
    }

    async fn snapshot_at(
        &self,
        game: &GameToken,
        turn: (u32, u32),
    ) -> Result<Option<Snapshot>, StoreError> {
        each!(self, s => s.snapshot_at(game, turn).await)
    }

    async fn time_out(&self, game: &GameToken) -> Result<bool, StoreError> {
        each!(self, s => s.time_out(game).await)
    }

    async fn hero(&self, game: &str, user: &str) -> Result<Option<Hero>, StoreError> {
        each!(self, s => s.hero(game, user).await)
    }

    async fn attack(
        &self,
        game: &str,
        attacker: &str,
        enemy: &str,
        turn_cap: u32,
        timestamp: &str,
    ) -> Result<Attacked, StoreError> {
        each!(self, s => s.attack(game, attacker, enemy, turn_cap, timestamp).await)
    }

    async fn finish_without_enemy(&self, game: &str, user: &str) -> Result<(), StoreError> {
        each!(self, s => s.finish_without_enemy(game, user).await)
    }

    async fn forfeit(
        &self,
        game: &GameToken,
        user: &UserToken,
        reason: ForfeitReason,
        turn: Option<(u32, u32)>,
        timestamp: &str,
    ) -> Result<Forfeited, StoreError> {
        each!(self, s => s.forfeit(game, user, reason, turn, timestamp).await)
    }

    async fn enter_lobby(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<LobbyEntry, StoreError> {
        each!(self, s => s.enter_lobby(game, user).await)
    }

    async fn leave_lobby(&self, game: &GameToken, user: &UserToken) -> Result<(), StoreError> {
        each!(self, s => s.leave_lobby(game, user).await)
    }

    async fn close_lobby(
        &self,
        game: &GameToken,
        user: &UserToken,
        claim: &ClaimId,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.close_lobby(game, user, claim).await)
    }

    async fn claim_cleanings(
        &self,
        game: &GameToken,
        claim: &ClaimId,
    ) -> Result<Vec<UserToken>, StoreError> {
        each!(self, s => s.claim_cleanings(game, claim).await)
    }

    async fn extract(&self, game: &GameToken) -> Result<Option<GameExtract>, StoreError> {
        each!(self, s => s.extract(game).await)
    }

    async fn extract_for(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<Extracted, StoreError> {
        each!(self, s => s.extract_for(game, user).await)
    }

    async fn mark_batch(&self, games: &[GameToken], batch: &str) -> Result<(), StoreError> {
        each!(self, s => s.mark_batch(games, batch).await)
    }

    async fn clean(&self, game: &GameToken, keep: Duration) -> Result<(), StoreError> {
        each!(self, s => s.clean(game, keep).await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        each!(self, s => s.ping().await)
    }

    async fn unfinished_games(&self) -> Option<u64> {
        each!(self, s => s.unfinished_games().await)
    }

    async fn reread(&self, game: &GameToken) -> Result<(), StoreError> {
        each!(self, s => s.reread(game).await)
    }

    async fn watch(&self, game: &GameToken) -> Result<SignalWatch, StoreError> {
        each!(self, s => s.watch(game).await)
    }

    async fn watch_for(
        &self,
        game: &GameToken,
        player: &UserToken,
    ) -> Result<SignalWatch, StoreError> {
        each!(self, s => s.watch_for(game, player).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis() -> RedisConfig {
        RedisConfig::from_parts("db.local", 6380, 3)
    }

    #[test]
    fn store_choices() {
        assert_eq!(
            StoreChoice::parse("redis", redis()).unwrap(),
            StoreChoice::Redis(RedisConfig {
                url: "redis://db.local:6380/3".into()
            })
        );
        assert_eq!(
            StoreChoice::parse("memory", redis()).unwrap(),
            StoreChoice::Memory
        );
        assert_eq!(
            StoreChoice::parse("redis://other:1/2", redis()).unwrap(),
            StoreChoice::Redis(RedisConfig {
                url: "redis://other:1/2".into()
            })
        );
    }

    #[test]
    fn a_bad_store_is_named_without_its_password() {
        let err = StoreChoice::parse("postgres://u:pw@h/db", redis())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw"), "{err}");
        assert!(err.contains("unknown store"), "{err}");
    }

    #[tokio::test]
    async fn the_embedded_store_answers_through_any_store() {
        let store = StoreChoice::Memory.open().await.unwrap();
        assert!(matches!(store, AnyStore::Memory(_)));
        let (user, created) = store.login("USER000").await.unwrap();
        assert!(created);
        assert_eq!(store.login("USER000").await.unwrap(), (user, false));
    }
}
