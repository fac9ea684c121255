//! The Redis store, on the original simulator's keyspace so that a run can be explored
//! with redis-cli exactly as before (`LLEN games:players:2`, `GET games:<g>:status`,
//! `SMEMBERS games:<g>`, `HGETALL games:<g>:superheros:<p>`, `HGET superheros <id>`);
//! or, given a `redis-cluster://` address, on a Redis Cluster with the same keys
//! hash-tagged by game ([`keys`] has the mapping).
//!
//! Keys added to the original's, each documented in the README: `users:tokens`
//! (token → name, so an unknown token is told in O(1)), `users:games` (token → the
//! game the user joined last, so a user holds one unfinished game at a time),
//! `games:open:<n>` (the set of joinable games, so finding a game does not scan every
//! game ever played), `games:<g>:turns` (the attack counter behind the turn cap and
//! the compare-and-set below), `games:<g>:forfeits` (who forfeited),
//! `games:<g>:lobbies` (whose lobby is open) and `games:<g>:cleaned_by` (who claimed
//! each player's `Cleaning Game Records`, a [`ClaimId`] per player).
//!
//! Every change of a game is one Lua script on the game's keys, so it is atomic
//! however many servers share the store, and each script publishes the game's new
//! [`Signal`] on the channel `games:<g>:signal` ([`signals`]). An attack reads the
//! board in one script, plans it with the pure rules, and applies it with a script
//! that first checks that the turn counter has not moved (compare-and-set), so the
//! rules exist once, in Rust. A store remembers the board its last change of a game
//! left ([`Boards`]), and plans the game's next change on it without reading the game
//! again: the same compare-and-set tells whether anything changed meanwhile (another
//! server's attack), and then the change is planned again on a fresh read.
//!
//! On one server a find is one script too. On a cluster a user's record and the
//! games it may join live in different hash slots, so a find takes steps
//! ([`RedisStore::find_on_cluster`]), each atomic where a guarantee needs it: the
//! join itself checks the game's capacity in the game's slot, so no game is ever
//! over-filled.

mod keys;
mod scripts;
mod signals;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Script, ScriptInvocation};

use self::keys::{Keyspace, SHARDS};
use self::scripts::{STILL_PLAYING, Scripts, UNKNOWN_USER};
use self::signals::{ListenerTask, Registry, read_signal};
use super::{
    Attacked, ClaimId, Extracted, Forfeited, GameStore, Joined, LobbyEntry, Signal, SignalWatch,
    Snapshot, StoreError,
};
use crate::etl::GameExtract;
use crate::game::protocol::{ActionRecord, to_frame};
use crate::game::rules::{self, Board, ForfeitReason, RuleError};
use crate::game::{GameStatus, GameToken, Hero, HeroId, UserToken};
use crate::redis_client::{cluster_builder, connection_manager};
use crate::roster::{RosterHero, hero_from_stored};

/// Where the Redis store is: `redis://…`, or `redis-cluster://[user:password@]host:port[,host:port…]`
/// for a Redis Cluster. The URL may hold a password, so it is never printed as is:
/// `Display` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: String,
}

/// The scheme of a Redis Cluster address.
const CLUSTER_SCHEME: &str = "redis-cluster";

impl RedisConfig {
    /// `redis://host:port/db` from the original's REDIS_HOST / REDIS_PORT / REDIS_DB.
    pub fn from_parts(host: &str, port: u16, db: u32) -> Self {
        Self {
            url: crate::url::redis(host, port, db),
        }
    }

    /// Whether this is one Redis server (not a cluster) at a loopback address, which
    /// then shares this machine's cores with the program.
    pub fn is_one_server_here(&self) -> bool {
        use crate::url::{host_port, is_local};
        self.cluster_nodes().is_none()
            && host_port(&self.url).is_some_and(|(host, _)| is_local(&host))
    }

    /// The nodes of a `redis-cluster://` address as `redis://` URLs, each with the
    /// address's credentials; `None` for any other address.
    pub fn cluster_nodes(&self) -> Option<Vec<String>> {
        let rest = self.url.strip_prefix(CLUSTER_SCHEME)?.strip_prefix("://")?;
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        Some(
            hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{auth}{h}"))
                .collect(),
        )
    }
}

impl fmt::Display for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::url::redact(&self.url))
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisConfig({self})")
    }
}

/// How many times an attack is re-planned when its game changed under it.
const CAS_ATTEMPTS: usize = 5;
/// How long a find on a cluster may hold its user before another find of the same
/// user is let through (a process that dies mid-find holds the user that long).
const FIND_HOLD_MS: u64 = 10_000;
/// Joinable games a find on a cluster draws from each index shard.
const CANDIDATES_PER_SHARD: isize = 4;
/// How many times a find on a cluster draws and makes a game: each time but the last
/// it may give the game it made up for another find's, which may fill before it joins.
const FIND_ATTEMPTS: u32 = 4;

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Sets `key` to `value` unless it holds a value already, which it then returns
/// (`SET … NX GET`, one step).
async fn set_unless_present(
    conn: &mut Conn,
    key: &str,
    value: &impl fmt::Display,
) -> redis::RedisResult<Option<String>> {
    redis::cmd("SET")
        .arg(key)
        .arg(value.to_string())
        .arg("NX")
        .arg("GET")
        .query_async(conn)
        .await
}

/// A find's error: the user's, or the store's.
fn find_error(e: redis::RedisError) -> StoreError {
    match e.code() {
        Some(STILL_PLAYING) => RuleError::StillPlaying.into(),
        Some(UNKNOWN_USER) => StoreError::UnknownUser,
        _ => unavailable(e),
    }
}

/// The Redis store. Clones share a few multiplexed connections, one signal listener
/// and one memory of boards.
#[derive(Clone)]
pub struct RedisStore {
    conns: Arc<Connections>,
    keyspace: Keyspace,
    scripts: &'static Scripts,
    registry: Arc<Registry>,
    boards: Arc<Boards>,
    starts: Arc<Starts>,
    _listener: Arc<ListenerTask>,
}

/// A connection to one Redis server or to a cluster, which routes each command to
/// the node serving its keys.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The boards of games in progress as this process's last change left them. A game's
/// state in progress is fixed by its turn and forfeit counters, which every change
/// moves and the compare-and-set checks, so a remembered board is either still the
/// game's or refused by the script: it can cost a wasted call, never a wrong change.
#[derive(Default)]
struct Boards(Mutex<HashMap<GameToken, Snapshot>>);

impl Boards {
    /// Games remembered at most; past that the memory starts afresh (games whose
    /// server went away would otherwise stay for ever).
    const MOST: usize = 100_000;

    fn take(&self, game: &GameToken) -> Option<Snapshot> {
        self.0.lock().ok()?.remove(game)
    }

    /// The remembered board of a game in progress at `turn`, if that is the one
    /// remembered (it is then the game's board at that turn), left in memory.
    fn at(&self, game: &GameToken, turn: (u32, u32)) -> Option<Snapshot> {
        let boards = self.0.lock().ok()?;
        let snapshot = boards.get(game)?;
        let board = &snapshot.board;
        ((board.turns, board.forfeits) == turn).then(|| snapshot.clone())
    }

    /// Whether a board of the game is remembered: the game is then in progress.
    fn holds(&self, game: &GameToken) -> bool {
        self.0.lock().is_ok_and(|boards| boards.contains_key(game))
    }

    /// Remembers the board a change left, while its game is in progress.
    fn keep(&self, game: &GameToken, snapshot: Snapshot) {
        let Ok(mut boards) = self.0.lock() else {
            return;
        };
        if snapshot.board.status != GameStatus::InProgress {
            boards.remove(game);
            return;
        }
        if boards.len() >= Self::MOST {
            boards.clear();
        }
        boards.insert(game.clone(), snapshot);
    }
}

/// The starts of games under way in this process, one lock per game. Every lobby
/// of a full game asks to start it, usually at the same moment; the second waits for
/// the first, then finds the game started ([`Boards::holds`]) and asks nothing of
/// Redis. A start that failed leaves the game to the next one.
#[derive(Default)]
struct Starts(Mutex<HashMap<GameToken, Arc<tokio::sync::Mutex<()>>>>);

impl Starts {
    fn begin<'a>(&'a self, game: &'a GameToken) -> Starting<'a> {
        let mut starts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let lock = starts.entry(game.clone()).or_default().clone();
        Starting {
            starts: self,
            game,
            lock,
        }
    }
}

/// One start's hold on its game's lock; the last to go forgets the lock.
struct Starting<'a> {
    starts: &'a Starts,
    game: &'a GameToken,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Starting<'_> {
    /// Waits for the starts of the game begun before this one.
    async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        // Every hold is taken under the map's lock: two holders, the map's and this
        // one, mean no other start of the game is under way or waiting.
        let mut starts = self.starts.0.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&self.lock) == 2 {
            starts.remove(self.game);
        }
    }
}

/// The store's connections, taken in turn. One multiplexed connection carries any
/// number of requests, and the more it carries, the more of them go out in one write
/// and come back in one read, on both sides; but its replies are read and parsed by
/// one task, which a server on many cores outruns. So a store opens one connection
/// per two cores, up to four (on a cluster, one to each node per connection).
struct Connections {
    all: Vec<Conn>,
    next: std::sync::atomic::AtomicUsize,
}

impl Connections {
    /// How many connections a store opens on this machine.
    fn count() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores / 2).clamp(1, 4)
    }

    fn next(&self) -> Conn {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.all[i % self.all.len()].clone()
    }
}

/// What a cluster's join of one game did.
enum GameJoin {
    Joined {
        hero: HeroId,
        players: u32,
    },
    /// Full, started, gone or for another player count.
    NotJoinable,
}

impl RedisStore {
    /// Connects, and starts the task that listens for game signals.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let cannot_reach = |e: redis::RedisError| {
            StoreError::Unavailable(format!("cannot reach Redis at {config}: {e}"))
        };
        let count = Connections::count();
        let mut all = Vec::with_capacity(count);
        let (keyspace, registry, listener) = match config.cluster_nodes() {
            None => {
                let client =
                    crate::redis_client::client(&config.url).map_err(StoreError::Unavailable)?;
                for _ in 0..count {
                    all.push(Conn::Single(
                        connection_manager(&client).await.map_err(cannot_reach)?,
                    ));
                }
                let (registry, listener) = signals::listen_single(client, all[0].clone());
                (Keyspace::Single, registry, listener)
            }
            Some(nodes) => {
                let client = cluster_builder(&nodes).build().map_err(cannot_reach)?;
                for _ in 0..count {
                    all.push(Conn::Cluster(
                        client.get_async_connection().await.map_err(cannot_reach)?,
                    ));
                }
                let (registry, listener) =
                    signals::listen_cluster(cluster_builder(&nodes), all[0].clone()).await?;
                (Keyspace::Cluster, registry, listener)
            }
        };
        Ok(Self {
            conns: Arc::new(Connections {
                all,
                next: Default::default(),
            }),
            keyspace,
            scripts: Scripts::of(keyspace),
            registry,
            boards: Arc::default(),
            starts: Arc::default(),
            _listener: Arc::new(listener),
        })
    }

    /// Whether this store is on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.keyspace == Keyspace::Cluster
    }

    /// A call of a game's `script`: its keys (the game's prefix and join index) and
    /// the game as the first argument. An unknown game for a token the keyspace
    /// cannot hold.
    fn game_call(
        &self,
        script: &'static Script,
        game: &GameToken,
    ) -> Result<ScriptInvocation<'static>, StoreError> {
        let prefix = self.keyspace.game(game).ok_or(StoreError::UnknownGame)?;
        let mut call = script.prepare_invoke();
        call.key(&prefix)
            .key(self.keyspace.joined(&prefix))
            .arg(game.as_str());
        Ok(call)
    }

    /// Runs a game's `script` with the game as its argument.
    async fn game_script<T: redis::FromRedisValue>(
        &self,
        script: &'static Script,
        game: &GameToken,
    ) -> Result<T, StoreError> {
        self.game_script_with(script, game, &[]).await
    }

    /// Runs a game's `script` with the game and a user as its arguments.
    async fn game_user_script<T: redis::FromRedisValue>(
        &self,
        script: &'static Script,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<T, StoreError> {
        self.game_script_with(script, game, &[user.as_str()]).await
    }

    /// Runs a game's `script` with the game and then `args` as its arguments.
    async fn game_script_with<T: redis::FromRedisValue>(
        &self,
        script: &'static Script,
        game: &GameToken,
        args: &[&str],
    ) -> Result<T, StoreError> {
        let mut call = self.game_call(script, game)?;
        for arg in args {
            call.arg(*arg);
        }
        call.invoke_async(&mut self.conns.next())
            .await
            .map_err(unavailable)
    }

    /// A game's key `suffix` (`:superheros:<user>`, `:lobbies`…).
    fn game_key(&self, game: &str, suffix: &str) -> Result<String, StoreError> {
        let prefix = self.keyspace.game(game).ok_or(StoreError::UnknownGame)?;
        Ok(format!("{prefix}{suffix}"))
    }

    /// Reads the game, plans a change on what it read, and applies it with `script`
    /// only if no attack or forfeit came in between (the script's compare on its first
    /// three arguments, which this passes: game, turns, forfeits; `plan` adds the
    /// rest, and gives the board the change leaves); re-plans on a lost race, up to
    /// [`CAS_ATTEMPTS`] times. The board this process's last change of the game left
    /// is tried first, without a read; a plan refused on it (it may be out of date)
    /// or a compare that fails is tried again on a fresh read.
    async fn compare_and_set<T>(
        &self,
        game: &GameToken,
        script: &'static Script,
        plan: impl Fn(&Snapshot, &mut ScriptInvocation<'static>) -> Result<(T, Board), StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conns.next();
        let mut remembered = self.boards.take(game);
        let mut reads = 0;
        loop {
            let from_memory = remembered.is_some();
            let snap = match remembered.take() {
                Some(snap) => snap,
                None if reads == CAS_ATTEMPTS => return Err(StoreError::Contended),
                None => {
                    reads += 1;
                    self.snapshot(game).await?.ok_or(StoreError::UnknownGame)?
                }
            };
            let mut call = self.game_call(script, game)?;
            call.arg(snap.board.turns).arg(snap.board.forfeits);
            let (planned, after) = match plan(&snap, &mut call) {
                Ok(p) => p,
                Err(_) if from_memory => continue,
                Err(e) => return Err(e),
            };
            let applied: i64 = call.invoke_async(&mut conn).await.map_err(unavailable)?;
            if applied == 1 {
                let board = Snapshot {
                    board: after,
                    ..snap
                };
                self.boards.keep(game, board);
                return Ok(planned);
            }
        }
    }

    /// Logs a user in on a cluster: the token's record first, so no token is handed
    /// out before the finds it serves can tell it; then the name, unless it has a
    /// token already (and then the fresh record goes).
    async fn login_on_cluster(&self, name: &str) -> Result<(UserToken, bool), StoreError> {
        let mut conn = self.conns.next();
        let fresh = UserToken::new_random();
        let record = self.keyspace.user(&fresh);
        let () = conn
            .hset(&record, "name", name)
            .await
            .map_err(unavailable)?;
        let existing = set_unless_present(&mut conn, &self.keyspace.user_name(name), &fresh)
            .await
            .map_err(unavailable)?;
        match existing {
            None => Ok((fresh, true)),
            Some(token) => {
                let _: i64 = conn.del(&record).await.map_err(unavailable)?;
                Ok((UserToken::from(token), false))
            }
        }
    }

    /// A find on a cluster. The user's record is marked first (refusing a token no
    /// login handed out, and a second find of the same user meanwhile); then the
    /// game the user joined last must be over for them; then joinable games are drawn
    /// from every index shard and joined one by one, each join checking the game's
    /// capacity in its own slot; failing that, a new game is made and indexed. The
    /// record then names the game, and the mark goes.
    async fn find_on_cluster(
        &self,
        user: &UserToken,
        participants: u8,
        new_game: &GameToken,
        candidates: &[Hero],
    ) -> Result<Joined, StoreError> {
        let mut conn = self.conns.next();
        let record = self.keyspace.user(user);
        let last: String = self
            .scripts
            .begin_find
            .key(&record)
            .arg(FIND_HOLD_MS)
            .invoke_async(&mut conn)
            .await
            .map_err(find_error)?;
        let found = self
            .find_game(user, &last, participants, new_game, candidates)
            .await;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Ok(joined) = &found {
            pipe.hset(&record, "game", joined.game.as_str()).ignore();
        }
        pipe.del(format!("{record}:finding")).ignore();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)?;
        found
    }

    async fn find_game(
        &self,
        user: &UserToken,
        last: &str,
        participants: u8,
        new_game: &GameToken,
        candidates: &[Hero],
    ) -> Result<Joined, StoreError> {
        let mut conn = self.conns.next();
        if let Some(prefix) = self.keyspace.game(&GameToken::from(last)) {
            let playing: i64 = self
                .scripts
                .playing
                .key(&prefix)
                .arg(user.as_str())
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if playing == 1 {
                return Err(RuleError::StillPlaying.into());
            }
        }
        let forming = self.keyspace.forming(participants);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let drawn = self.draw(participants).await;
            if let Some(joined) = self.join_any(user, participants, drawn, candidates).await? {
                return Ok(joined);
            }
            let created = self
                .create_game(user, participants, new_game, candidates)
                .await?;
            if created.joined >= u32::from(participants) || attempt == FIND_ATTEMPTS {
                return Ok(created);
            }
            // Finds that drew nothing at the same moment (the players of a game that
            // just ended look for the next one together) each made a game, where one
            // server's single step would have made one for all. One of them is the
            // game of record; the others give theirs up (while no one else is in it)
            // and join it. A find whose move fails (that game filled meanwhile) starts
            // again; at its last attempt it keeps the game it made.
            let record = set_unless_present(&mut conn, &forming, new_game)
                .await
                .map_err(unavailable)?;
            let Some(record) = record.map(GameToken::from) else {
                return Ok(created);
            };
            if record == *new_game || !self.give_up(user, participants, new_game).await? {
                return Ok(created);
            }
            if let Some(joined) = self
                .join_any(user, participants, vec![record.clone()], candidates)
                .await?
            {
                return Ok(joined);
            }
            self.release(&forming, &record).await;
        }
    }

    /// Joinable games for `participants` players drawn from every index shard, in a
    /// random order.
    async fn draw(&self, participants: u8) -> Vec<GameToken> {
        let draws = (0..SHARDS).map(|shard| {
            let mut conn = self.conns.next();
            let key = self.keyspace.open(participants, shard);
            async move {
                let games: Vec<String> = conn
                    .srandmember_multiple(key, CANDIDATES_PER_SHARD)
                    .await
                    .unwrap_or_default();
                games
            }
        });
        let mut games: Vec<GameToken> = futures_util::future::join_all(draws)
            .await
            .into_iter()
            .flatten()
            .map(GameToken::from)
            .collect();
        games.shuffle(&mut rand::rng());
        games
    }

    /// Joins the first of `games` that takes the user. Those found not joinable
    /// leave the index, as does the one this join fills, which also stops being the
    /// game of record.
    async fn join_any(
        &self,
        user: &UserToken,
        participants: u8,
        games: Vec<GameToken>,
        candidates: &[Hero],
    ) -> Result<Option<Joined>, StoreError> {
        for game in games {
            match self
                .join_game(user, participants, &game, false, candidates)
                .await?
            {
                GameJoin::Joined { hero, players } => {
                    if players >= u32::from(participants) {
                        self.unindex_open(participants, &game).await?;
                        self.release(&self.keyspace.forming(participants), &game)
                            .await;
                    }
                    return Ok(Some(Joined {
                        game,
                        hero,
                        created: false,
                        joined: players,
                    }));
                }
                GameJoin::NotJoinable => self.unindex_open(participants, &game).await?,
            }
        }
        Ok(None)
    }

    /// Makes a game with the user in it, and indexes it.
    async fn create_game(
        &self,
        user: &UserToken,
        participants: u8,
        new_game: &GameToken,
        candidates: &[Hero],
    ) -> Result<Joined, StoreError> {
        let GameJoin::Joined { hero, players } = self
            .join_game(user, participants, new_game, true, candidates)
            .await?
        else {
            return Err(StoreError::Unavailable(format!(
                "the new game's token {new_game} is taken"
            )));
        };
        // The game exists and holds the user: the find succeeded. A game left out of
        // the index is found by no one else, and its lobby times it out.
        let shard = keys::shard(new_game);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .rpush(
                self.keyspace.players(participants, shard),
                new_game.as_str(),
            )
            .ignore();
        if players < u32::from(participants) {
            pipe.sadd(self.keyspace.open(participants, shard), new_game.as_str())
                .ignore();
        }
        if let Err(e) = pipe.query_async::<()>(&mut self.conns.next()).await {
            tracing::warn!("game {new_game} is not in the index of joinable games: {e}");
        }
        Ok(Joined {
            game: new_game.clone(),
            hero,
            created: true,
            joined: players,
        })
    }

    /// Deletes a game the user just made, if no one else is in it, and takes it out
    /// of the indexes; false when someone is in it.
    async fn give_up(
        &self,
        user: &UserToken,
        participants: u8,
        game: &GameToken,
    ) -> Result<bool, StoreError> {
        let given_up: i64 = self
            .game_user_script(&self.scripts.give_up, game, user)
            .await?;
        if given_up == 0 {
            return Ok(false);
        }
        self.unlist(participants, game).await?;
        Ok(true)
    }

    /// Takes a game out of a cluster's indexes: the joinable games and the games by
    /// player count.
    async fn unlist(&self, participants: u8, game: &GameToken) -> Result<(), StoreError> {
        let shard = keys::shard(game);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .srem(self.keyspace.open(participants, shard), game.as_str())
            .ignore()
            .lrem(self.keyspace.players(participants, shard), 0, game.as_str())
            .ignore();
        pipe.query_async::<()>(&mut self.conns.next())
            .await
            .map_err(unavailable)
    }

    /// Ends `game`'s term as the game of record in `forming`, unless another took
    /// its place; a failure leaves it to a later find, which finds it full or gone.
    async fn release(&self, forming: &str, game: &GameToken) {
        let released: redis::RedisResult<i64> = self
            .scripts
            .release
            .key(forming)
            .arg(game.as_str())
            .invoke_async(&mut self.conns.next())
            .await;
        if let Err(e) = released {
            tracing::debug!("{forming} still names {game}: {e}");
        }
    }

    /// Joins (or, with `create`, makes and joins) one game on a cluster.
    async fn join_game(
        &self,
        user: &UserToken,
        participants: u8,
        game: &GameToken,
        create: bool,
        candidates: &[Hero],
    ) -> Result<GameJoin, StoreError> {
        let Ok(mut call) = self.game_call(&self.scripts.join_game, game) else {
            return Ok(GameJoin::NotJoinable);
        };
        call.arg(user.as_str())
            .arg(participants)
            .arg(u8::from(create));
        for h in candidates {
            call.arg(h.id).arg(h.attack).arg(h.health);
        }
        let reply: redis::Value = call
            .invoke_async(&mut self.conns.next())
            .await
            .map_err(unavailable)?;
        Ok(match reply {
            redis::Value::Int(_) => GameJoin::NotJoinable,
            reply => {
                let (hero, players): (HeroId, u32) = redis::FromRedisValue::from_redis_value(reply)
                    .map_err(|e| StoreError::Unavailable(format!("game {game}: {e}")))?;
                GameJoin::Joined { hero, players }
            }
        })
    }

    /// Takes a game out of a cluster's index of joinable games.
    async fn unindex_open(&self, participants: u8, game: &GameToken) -> Result<(), StoreError> {
        let key = self.keyspace.open(participants, keys::shard(game));
        self.conns
            .next()
            .srem(key, game.as_str())
            .await
            .map_err(unavailable)
    }
}

type RawSnapshot = (
    String,
    String,
    String,
    String,
    String,
    Vec<String>,
    Vec<String>,
);
type RawExtract = (
    String,
    String,
    String,
    String,
    String,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    String,
);

/// The status a change sets, or '' when it leaves the game's status as it was.
fn changed_status(before: &Board, after: &Board) -> &'static str {
    if before.status == after.status {
        ""
    } else {
        after.status.as_str()
    }
}

fn parse_extract(game: &GameToken, raw: RawExtract) -> Result<GameExtract, StoreError> {
    let (n, status, turns, forfeits, host, order, heroes, logs, batch) = raw;
    let snap = parse_snapshot((n, status, turns, forfeits, host, order, heroes))?;
    Ok(GameExtract {
        game: game.clone(),
        status: snap.board.status,
        participants: snap.participants,
        host: snap.host,
        heroes: snap.board.heroes,
        logs,
        batch: (!batch.is_empty()).then_some(batch),
    })
}

fn parse_snapshot(raw: RawSnapshot) -> Result<Snapshot, StoreError> {
    let (participants, status, turns, forfeits, host, order, heroes) = raw;
    let corrupt = |what: &str| StoreError::Unavailable(format!("unreadable game record: {what}"));
    let participants = participants.parse().map_err(|_| corrupt("participants"))?;
    let status = GameStatus::parse(&status).ok_or_else(|| corrupt("status"))?;
    let turns = turns.parse().map_err(|_| corrupt("turns"))?;
    let forfeits = forfeits.parse().map_err(|_| corrupt("forfeits"))?;
    let mut map = BTreeMap::new();
    for chunk in heroes.chunks_exact(4) {
        let hero = Hero {
            id: chunk[1].parse().map_err(|_| corrupt("hero id"))?,
            attack: chunk[2].parse().map_err(|_| corrupt("hero attack"))?,
            health: chunk[3].parse().map_err(|_| corrupt("hero health"))?,
        };
        map.insert(UserToken::from(chunk[0].as_str()), hero);
    }
    Ok(Snapshot {
        participants,
        host: UserToken::from(host),
        board: Board {
            status,
            order: order.into_iter().map(UserToken::from).collect(),
            heroes: map,
            turns,
            forfeits,
        },
    })
}

impl GameStore for RedisStore {
    async fn replace_roster(&self, heroes: &[RosterHero]) -> Result<(), StoreError> {
        let items: Vec<(HeroId, String)> = heroes.iter().map(|h| (h.id, h.stored_json())).collect();
        let mut pipe = redis::pipe();
        pipe.atomic().del("superheros").ignore();
        for chunk in items.chunks(500) {
            pipe.hset_multiple("superheros", chunk).ignore();
        }
        pipe.query_async::<()>(&mut self.conns.next())
            .await
            .map_err(unavailable)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conns.next())
            .await
            .map_err(unavailable)
    }

    async fn roster(&self) -> Result<Vec<Hero>, StoreError> {
        let all: HashMap<String, String> = self
            .conns
            .next()
            .hgetall("superheros")
            .await
            .map_err(unavailable)?;
        let mut heroes: Vec<Hero> = all
            .iter()
            .filter_map(|(id, json)| hero_from_stored(id.parse().ok()?, json))
            .collect();
        heroes.sort_by_key(|h| h.id);
        Ok(heroes)
    }

    async fn login(&self, name: &str) -> Result<(UserToken, bool), StoreError> {
        if self.is_cluster() {
            return self.login_on_cluster(name).await;
        }
        let (token, created): (String, i64) = self
            .scripts
            .login
            .arg(name)
            .arg(UserToken::new_random().as_str())
            .invoke_async(&mut self.conns.next())
            .await
            .map_err(unavailable)?;
        Ok((UserToken::from(token), created == 1))
    }

    async fn join(
        &self,
        user: &UserToken,
        participants: u8,
        new_game: &GameToken,
        candidates: &[Hero],
    ) -> Result<Joined, StoreError> {
        if self.is_cluster() {
            return self
                .find_on_cluster(user, participants, new_game, candidates)
                .await;
        }
        let mut call = self.scripts.join.prepare_invoke();
        call.arg(user.as_str())
            .arg(participants)
            .arg(new_game.as_str());
        for h in candidates {
            call.arg(h.id).arg(h.attack).arg(h.health);
        }
        let (game, hero, joined, created): (String, HeroId, u32, i64) = call
            .invoke_async(&mut self.conns.next())
            .await
            .map_err(find_error)?;
        Ok(Joined {
            game: GameToken::from(game),
            hero,
            created: created == 1,
            joined,
        })
    }

    async fn snapshot(&self, game: &GameToken) -> Result<Option<Snapshot>, StoreError> {
        let raw: Option<RawSnapshot> = self.game_script(&self.scripts.snapshot, game).await?;
        raw.map(parse_snapshot).transpose()
    }

    async fn start(&self, game: &GameToken) -> Result<Option<Snapshot>, StoreError> {
        let starting = self.starts.begin(game);
        let _turn = starting.turn().await;
        if self.boards.holds(game) {
            return Ok(None);
        }
        let raw: Option<RawSnapshot> = self.game_script(&self.scripts.start, game).await?;
        let Some(started) = raw.map(parse_snapshot).transpose()? else {
            return Ok(None);
        };
        self.boards.keep(game, started.clone());
        Ok(Some(started))
    }

    async fn snapshot_at(
        &self,
        game: &GameToken,
        turn: (u32, u32),
    ) -> Result<Option<Snapshot>, StoreError> {
        match self.boards.at(game, turn) {
            Some(remembered) => Ok(Some(remembered)),
            None => self.snapshot(game).await,
        }
    }

    async fn time_out(&self, game: &GameToken) -> Result<bool, StoreError> {
        let participants: u8 = self.game_script(&self.scripts.time_out, game).await?;
        if participants == 0 {
            return Ok(false);
        }
        if self.is_cluster() {
            self.unindex_open(participants, game).await?;
            self.release(&self.keyspace.forming(participants), game)
                .await;
        }
        Ok(true)
    }

    async fn hero(&self, game: &str, user: &str) -> Result<Option<Hero>, StoreError> {
        let key = self.game_key(game, &format!(":superheros:{user}"))?;
        let (id, attack, health): (Option<HeroId>, Option<u64>, Option<u64>) = self
            .conns
            .next()
            .hmget(key, &["id", "attack", "health"])
            .await
            .map_err(unavailable)?;
        Ok(match (id, attack, health) {
            (Some(id), Some(attack), Some(health)) => Some(Hero { id, attack, health }),
            _ => None,
        })
    }

    async fn attack(
        &self,
        game: &str,
        attacker: &str,
        enemy: &str,
        turn_cap: u32,
        timestamp: &str,
    ) -> Result<Attacked, StoreError> {
        let game = &GameToken::from(game);
        self.compare_and_set(game, &self.scripts.apply_attack, |snap, call| {
            let attack = rules::plan_attack(&snap.board, attacker, enemy, turn_cap)?;
            let record = to_frame(&ActionRecord::attack(game, &attack, timestamp));
            let mut after = snap.board.clone();
            rules::apply(&mut after, &attack);
            let signal = Signal::of(after.status, snap.joined(), &after);
            call.arg(enemy)
                .arg(attack.enemy_health_post)
                .arg(&record)
                .arg(changed_status(&snap.board, &after))
                .arg(signal.encode())
                .arg(u8::from(attack.enemy_died()));
            Ok((Attacked { attack, record }, after))
        })
        .await
    }

    async fn finish_without_enemy(&self, game: &str, user: &str) -> Result<(), StoreError> {
        let game = &GameToken::from(game);
        self.compare_and_set(game, &self.scripts.finish, |snap, call| {
            rules::plan_no_enemy(&snap.board, user)?;
            let mut after = snap.board.clone();
            after.status = GameStatus::Completed;
            call.arg(Signal::of(after.status, snap.joined(), &after).encode());
            Ok(((), after))
        })
        .await
    }

    async fn forfeit(
        &self,
        game: &GameToken,
        user: &UserToken,
        reason: ForfeitReason,
        turn: Option<(u32, u32)>,
        timestamp: &str,
    ) -> Result<Forfeited, StoreError> {
        self.compare_and_set(game, &self.scripts.apply_forfeit, |snap, call| {
            let forfeit = rules::plan_forfeit(&snap.board, user, reason, turn)?;
            let record = to_frame(&ActionRecord::forfeit(game, &forfeit, timestamp));
            let mut after = snap.board.clone();
            rules::apply_forfeit(&mut after, &forfeit);
            let signal = Signal::of(after.status, snap.joined(), &after);
            call.arg(user.as_str())
                .arg(&record)
                .arg(changed_status(&snap.board, &after))
                .arg(signal.encode());
            Ok((Forfeited { forfeit, record }, after))
        })
        .await
    }

    async fn enter_lobby(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<LobbyEntry, StoreError> {
        let entered: i64 = self
            .game_user_script(&self.scripts.enter_lobby, game, user)
            .await?;
        match entered {
            -1 => Err(StoreError::UnknownGame),
            -2 => Ok(LobbyEntry::NotInGame),
            0 => Ok(LobbyEntry::AlreadyOpen),
            n => u8::try_from(n)
                .map(|participants| LobbyEntry::Entered { participants })
                .map_err(|_| StoreError::Unavailable(format!("participants out of range: {n}"))),
        }
    }

    async fn leave_lobby(&self, game: &GameToken, user: &UserToken) -> Result<(), StoreError> {
        self.conns
            .next()
            .srem(self.game_key(game, ":lobbies")?, user.as_str())
            .await
            .map_err(unavailable)
    }

    async fn close_lobby(
        &self,
        game: &GameToken,
        user: &UserToken,
        claim: &ClaimId,
    ) -> Result<bool, StoreError> {
        let claimed: i64 = self
            .game_script_with(
                &self.scripts.close_lobby,
                game,
                &[user.as_str(), claim.as_str()],
            )
            .await?;
        Ok(claimed == 1)
    }

    async fn claim_cleanings(
        &self,
        game: &GameToken,
        claim: &ClaimId,
    ) -> Result<Vec<UserToken>, StoreError> {
        let claimed: Vec<String> = self
            .game_script_with(&self.scripts.claim_cleanings, game, &[claim.as_str()])
            .await?;
        Ok(claimed.into_iter().map(UserToken::from).collect())
    }

    async fn extract(&self, game: &GameToken) -> Result<Option<GameExtract>, StoreError> {
        let raw: Option<RawExtract> = self.game_script(&self.scripts.extract, game).await?;
        raw.map(|raw| parse_extract(game, raw)).transpose()
    }

    async fn extract_for(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<Extracted, StoreError> {
        let reply: redis::Value = self
            .game_user_script(&self.scripts.extract_for, game, user)
            .await?;
        match reply {
            redis::Value::Int(0) => Ok(Extracted::Guest),
            redis::Value::Nil => Ok(Extracted::Gone),
            reply => {
                let raw = <RawExtract as redis::FromRedisValue>::from_redis_value(reply)
                    .map_err(|e| StoreError::Unavailable(format!("game {game}: {e}")))?;
                Ok(Extracted::Game(Box::new(parse_extract(game, raw)?)))
            }
        }
    }

    async fn mark_batch(&self, games: &[GameToken], batch: &str) -> Result<(), StoreError> {
        let keys: Vec<String> = games
            .iter()
            .filter_map(|g| self.game_key(g, ":batch").ok())
            .collect();
        if self.is_cluster() {
            // A cluster's pipeline serves one hash slot: one SET per game, all in
            // flight at once.
            let sets = keys.into_iter().map(|key| {
                let mut conn = self.conns.next();
                async move { conn.set::<_, _, ()>(key, batch).await }
            });
            for set in futures_util::future::join_all(sets).await {
                set.map_err(unavailable)?;
            }
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.set(key, batch).ignore();
        }
        pipe.query_async::<()>(&mut self.conns.next())
            .await
            .map_err(unavailable)
    }

    async fn clean(&self, game: &GameToken, keep: Duration) -> Result<(), StoreError> {
        let Ok(mut call) = self.game_call(&self.scripts.clean, game) else {
            return Ok(());
        };
        // Redis refuses an expiry past its clock's range: 136 years at most.
        call.arg(keep.as_secs().clamp(1, u64::from(u32::MAX)));
        let participants: u8 = call
            .invoke_async(&mut self.conns.next())
            .await
            .map_err(unavailable)?;
        if self.is_cluster() && participants > 0 {
            self.unlist(participants, game).await?;
        }
        Ok(())
    }

    async fn reread(&self, game: &GameToken) -> Result<(), StoreError> {
        if let Some(signal) = read_signal(&mut self.conns.next(), self.keyspace, game).await? {
            self.registry.deliver_read(game, signal);
        }
        Ok(())
    }

    async fn watch(&self, game: &GameToken) -> Result<SignalWatch, StoreError> {
        self.watch_signals(game, None).await
    }

    async fn watch_for(
        &self,
        game: &GameToken,
        player: &UserToken,
    ) -> Result<SignalWatch, StoreError> {
        self.watch_signals(game, Some(player)).await
    }
}

impl RedisStore {
    /// A watch of a game's signals, or of those that concern `player`.
    async fn watch_signals(
        &self,
        game: &GameToken,
        player: Option<&UserToken>,
    ) -> Result<SignalWatch, StoreError> {
        // Register before reading, so that no signal falls between the two. A game
        // another watch of this process read already is current without a read.
        // On a cluster the first watch of a game subscribes to its channel first.
        let watch = self.registry.register(game, player);
        if watch.first {
            self.registry.subscribe(game).await?;
        }
        if !watch.current {
            let signal = read_signal(&mut self.conns.next(), self.keyspace, game)
                .await?
                .ok_or(StoreError::UnknownGame)?;
            self.registry.deliver_read(game, signal);
        }
        Ok(SignalWatch::new(
            watch.rx,
            Some(Box::new(watch.registration)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_address_names_every_node_with_its_credentials() {
        let config = RedisConfig {
            url: "redis-cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001/".into(),
        };
        assert_eq!(
            config.cluster_nodes().unwrap(),
            ["redis://u:pw@10.0.0.1:7000", "redis://u:pw@10.0.0.2:7001"]
        );
        assert!(!config.to_string().contains("pw"), "{config}");
        let plain = RedisConfig {
            url: "redis-cluster://h:1".into(),
        };
        assert_eq!(plain.cluster_nodes().unwrap(), ["redis://h:1"]);
        assert_eq!(RedisConfig::from_parts("h", 1, 0).cluster_nodes(), None);
    }
}
