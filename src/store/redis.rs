//! The Redis store, on the original simulator's keyspace so that a run can be explored
//! with redis-cli exactly as before (`LLEN games:players:2`, `GET games:<g>:status`,
//! `SMEMBERS games:<g>`, `HGETALL games:<g>:superheros:<p>`, `HGET superheros <id>`).
//!
//! Keys added to the original's, each documented in the README: `users:tokens`
//! (token → name, so an unknown token is told in O(1)), `users:games` (token → the
//! game the user joined last, so a user holds one unfinished game at a time),
//! `games:open:<n>` (the set of joinable games, so finding a game does not scan every
//! game ever played), `games:<g>:turns` (the attack counter behind the turn cap and
//! the compare-and-set below), `games:<g>:forfeits` (who forfeited),
//! `games:<g>:lobbies` (whose lobby is open) and `games:<g>:cleaned` (whose
//! `Cleaning Game Records` was logged).
//!
//! Every change is one Lua script, so it is atomic however many servers share the
//! store, and each script publishes the game's new [`Signal`] on the channel
//! `games:<g>:signal`. An attack reads the board in one script, plans it with the pure
//! rules, and applies it with a script that first checks that the turn counter has
//! not moved (compare-and-set), so the rules exist once, in Rust. A store remembers
//! the board its last change of a game left ([`Boards`]), and plans the game's next
//! change on it without reading the game again: the same compare-and-set tells
//! whether anything changed meanwhile (another server's attack), and then the change
//! is planned again on a fresh read.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, ScriptInvocation};
use tokio::sync::watch;

use super::{
    Attacked, Extracted, Forfeited, GameStore, Joined, LobbyEntry, Signal, SignalWatch, Snapshot,
    StoreError,
};
use crate::backoff::Backoff;
use crate::etl::GameExtract;
use crate::game::protocol::{ActionRecord, to_frame};
use crate::game::rules::{self, Board, ForfeitReason, RuleError};
use crate::game::{GameStatus, GameToken, Hero, HeroId, UserToken};
use crate::redis_client::connection_manager;
use crate::roster::{RosterHero, hero_from_stored};

/// Where the Redis store is. The URL may hold a password, so it is never printed
/// as is: `Display` masks it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: String,
}

impl RedisConfig {
    /// `redis://host:port/db` from the original's REDIS_HOST / REDIS_PORT / REDIS_DB.
    pub fn from_parts(host: &str, port: u16, db: u32) -> Self {
        Self {
            url: crate::url::redis(host, port, db),
        }
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
/// The pattern every game's signal channel matches.
const SIGNAL_PATTERN: &str = "games:*:signal";

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The Redis store. Clones share a few multiplexed connections, one signal listener
/// and one memory of boards.
#[derive(Clone)]
pub struct RedisStore {
    conns: Arc<Connections>,
    registry: Arc<Registry>,
    boards: Arc<Boards>,
    _listener: Arc<ListenerTask>,
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

/// The store's connections, taken in turn. One multiplexed connection carries any
/// number of requests, and the more it carries, the more of them go out in one write
/// and come back in one read, on both sides; but its replies are read and parsed by
/// one task, which a server on many cores outruns. So a store opens one connection
/// per two cores, up to four.
struct Connections {
    all: Vec<ConnectionManager>,
    next: std::sync::atomic::AtomicUsize,
}

impl Connections {
    /// How many connections a store opens on this machine.
    fn count() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores / 2).clamp(1, 4)
    }

    fn next(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.all[i % self.all.len()].clone()
    }
}

impl RedisStore {
    /// Connects, and starts the task that listens for game signals.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let client = crate::redis_client::client(&config.url).map_err(StoreError::Unavailable)?;
        let count = Connections::count();
        let mut all = Vec::with_capacity(count);
        for _ in 0..count {
            all.push(connection_manager(&client).await.map_err(|e| {
                StoreError::Unavailable(format!("cannot reach Redis at {config}: {e}"))
            })?);
        }
        let conns = Arc::new(Connections {
            all,
            next: Default::default(),
        });
        let registry = Arc::new(Registry::default());
        let listener = tokio::spawn(listen(client, conns.next(), Arc::downgrade(&registry)));
        Ok(Self {
            conns,
            registry,
            boards: Arc::default(),
            _listener: Arc::new(ListenerTask(listener.abort_handle())),
        })
    }

    /// Runs `script` with a game as its argument.
    async fn game_script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        game: &GameToken,
    ) -> Result<T, StoreError> {
        script
            .arg(game.as_str())
            .invoke_async(&mut self.conns.next())
            .await
            .map_err(unavailable)
    }

    /// Runs `script` with a game and a user as its arguments.
    async fn game_user_script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<T, StoreError> {
        script
            .arg(game.as_str())
            .arg(user.as_str())
            .invoke_async(&mut self.conns.next())
            .await
            .map_err(unavailable)
    }

    /// The underlying connection, for callers that read the keyspace directly.
    pub fn connection(&self) -> ConnectionManager {
        self.conns.next()
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
            let mut call = script.prepare_invoke();
            call.arg(game.as_str())
                .arg(snap.board.turns)
                .arg(snap.board.forfeits);
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

    async fn fetch_signal(
        conn: &mut ConnectionManager,
        game: &GameToken,
    ) -> Result<Option<Signal>, StoreError> {
        let text: Option<String> = SIGNAL
            .arg(game.as_str())
            .invoke_async(conn)
            .await
            .map_err(unavailable)?;
        Ok(text.as_deref().and_then(Signal::decode))
    }
}

/// Ends the signal listener when the last clone of the store goes.
struct ListenerTask(tokio::task::AbortHandle);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The games this process watches, each with the channel its lobbies listen on.
#[derive(Default)]
struct Registry {
    games: Mutex<HashMap<GameToken, Watched>>,
}

/// One watched game.
struct Watched {
    tx: watch::Sender<Signal>,
    /// How many watches hold it.
    watchers: usize,
    /// Whether its channel holds the game's state read since it was registered: from
    /// then on, every change reaches it through the listener (which re-reads every
    /// watched game after a lost connection), so a later watch need not read again.
    current: bool,
}

impl Watched {
    fn offer(&self, signal: Signal) {
        self.tx.send_if_modified(|cur| {
            let newer = signal.is_newer_than(cur);
            if newer {
                *cur = signal;
            }
            newer
        });
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GameToken, Watched>> {
        self.games.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a watch of `game`; the bool says whether its channel is current already.
    fn register(
        self: &Arc<Self>,
        game: &GameToken,
    ) -> (watch::Receiver<Signal>, Registration, bool) {
        let mut games = self.lock();
        let entry = games.entry(game.clone()).or_insert_with(|| {
            let unknown = Signal {
                status: GameStatus::Initializing,
                joined: 0,
                turns: 0,
                forfeits: 0,
                current: None,
            };
            Watched {
                tx: watch::channel(unknown).0,
                watchers: 0,
                current: false,
            }
        });
        entry.watchers += 1;
        let rx = entry.tx.subscribe();
        let current = entry.current;
        let registration = Registration {
            registry: self.clone(),
            game: game.clone(),
        };
        (rx, registration, current)
    }

    /// Passes a signal on to the game's watchers unless they have seen a later one.
    fn deliver(&self, game: &GameToken, signal: Signal) {
        if let Some(watched) = self.lock().get(game) {
            watched.offer(signal);
        }
    }

    /// Delivers a signal read from the store after the game was registered.
    fn deliver_read(&self, game: &GameToken, signal: Signal) {
        if let Some(watched) = self.lock().get_mut(game) {
            watched.offer(signal);
            watched.current = true;
        }
    }

    fn watched(&self) -> Vec<GameToken> {
        self.lock().keys().cloned().collect()
    }
}

struct Registration {
    registry: Arc<Registry>,
    game: GameToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut games = self.registry.lock();
        if let Some(watched) = games.get_mut(&self.game) {
            watched.watchers -= 1;
            if watched.watchers == 0 {
                games.remove(&self.game);
            }
        }
    }
}

/// Listens on every game's signal channel and hands signals to local watchers. After
/// a lost connection it re-reads the state of every watched game, so a signal
/// published while it was away is not missed.
async fn listen(client: redis::Client, mut conn: ConnectionManager, registry: Weak<Registry>) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.psubscribe(SIGNAL_PATTERN).await {
                Ok(()) => {
                    backoff.reset();
                    let Some(reg) = registry.upgrade() else {
                        return;
                    };
                    for game in reg.watched() {
                        if let Ok(Some(signal)) = RedisStore::fetch_signal(&mut conn, &game).await {
                            reg.deliver_read(&game, signal);
                        }
                    }
                    drop(reg);
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(reg) = registry.upgrade() else {
                            return;
                        };
                        let channel = msg.get_channel_name();
                        let Some(game) = channel
                            .strip_prefix("games:")
                            .and_then(|c| c.strip_suffix(":signal"))
                        else {
                            continue;
                        };
                        let payload: String = msg.get_payload().unwrap_or_default();
                        if let Some(signal) = Signal::decode(&payload) {
                            reg.deliver(&GameToken(game.to_string()), signal);
                        }
                    }
                    tracing::warn!("lost the Redis signal subscription; reconnecting");
                }
                Err(e) => tracing::warn!("cannot subscribe to game signals: {e}"),
            },
            Err(e) => tracing::warn!("cannot open the Redis signal connection: {e}"),
        }
        if registry.strong_count() == 0 {
            return;
        }
        backoff.wait().await;
    }
}

// Lua scripts. Keys are built inside the scripts from the game token, as the
// original's names demand; this store targets a single Redis server, not a cluster.

/// Shared helpers: whether a game is still in its lobby, how many joined it, and
/// how to give a key added to a game after its cleaning the same time to live.
const LUA_HELPERS: &str = r"
local function is_open(st)
  return st == 'Initializing' or st == 'Waiting Lobby'
end
local function is_over(st)
  return st == 'Completed' or st == 'Timed Out'
end
local function joined(g)
  local s = redis.call('ZSCORE', 'games:participants', g)
  if s then return tonumber(s) end
  return 0
end
local function expire_like_status(p, key)
  local ttl = redis.call('PTTL', p .. ':status')
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
";

/// The error code of a find refused because the user still plays another game.
const STILL_PLAYING: &str = "STILL_PLAYING";
/// The error code of a find with a token no login handed out.
const UNKNOWN_USER: &str = "UNKNOWN_USER";

static LOGIN: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('HGET', 'users', ARGV[1])
if t then return {t, 0} end
redis.call('HSET', 'users', ARGV[1], ARGV[2])
redis.call('HSET', 'users:tokens', ARGV[2], ARGV[1])
return {ARGV[2], 1}
",
    )
});

/// ARGV: user, participants, token for a new game, then (id, attack, health) triples.
static JOIN: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_HELPERS}
local user, n, fresh = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('HEXISTS', 'users:tokens', user) == 0 then
  return redis.error_reply('{UNKNOWN_USER} no user has this token')
end
local last = redis.call('HGET', 'users:games', user)
if last then
  local st = redis.call('GET', 'games:' .. last .. ':status')
  if st and st ~= 'Completed' and st ~= 'Timed Out' then
    local hp = redis.call('HGET', 'games:' .. last .. ':superheros:' .. user, 'health')
    if hp and tonumber(hp) > 0 then
      return redis.error_reply('{STILL_PLAYING} the user still plays game ' .. last)
    end
  end
end
local open_key = 'games:open:' .. n
local game = false
local created = 0
for _, g in ipairs(redis.call('SRANDMEMBER', open_key, 8)) do
  if not is_open(redis.call('GET', 'games:' .. g .. ':status')) or joined(g) >= n then
    redis.call('SREM', open_key, g)
  elseif redis.call('SISMEMBER', 'games:' .. g, user) == 0 then
    game = g
    break
  end
end
if not game then
  game = fresh
  created = 1
  redis.call('RPUSH', 'games:players:' .. n, game)
  redis.call('ZADD', 'games:participants', 0, game)
  redis.call('SET', 'games:' .. game .. ':participants', n)
  redis.call('SET', 'games:' .. game .. ':status', 'Waiting Lobby')
  redis.call('SET', 'games:' .. game .. ':host', user)
  redis.call('SADD', open_key, game)
end
local pick = false
for i = 4, #ARGV, 3 do
  if redis.call('SISMEMBER', 'games:' .. game .. ':superheros', ARGV[i]) == 0 then
    pick = i
    break
  end
end
if not pick then return redis.error_reply('no free hero among the candidates') end
local count = tonumber(redis.call('ZINCRBY', 'games:participants', 1, game))
redis.call('SADD', 'games:' .. game, user)
redis.call('HSET', 'games:' .. game .. ':superheros:' .. user,
  'id', ARGV[pick], 'attack', ARGV[pick + 1], 'health', ARGV[pick + 2])
redis.call('SADD', 'games:' .. game .. ':superheros', ARGV[pick])
if count >= n then redis.call('SREM', open_key, game) end
redis.call('HSET', 'users:games', user, game)
redis.call('PUBLISH', 'games:' .. game .. ':signal', 'Waiting Lobby|' .. count .. '|0|0|')
return {{game, ARGV[pick], count, created}}
"
    ))
});

/// `snapshot(g)`: participants, status, turns, forfeits, host, order and the members'
/// heroes as flat (token, id, attack, health) quadruples; false for an unknown game.
const LUA_SNAPSHOT: &str = r"
local function snapshot(g)
  local p = 'games:' .. g
  local n = redis.call('GET', p .. ':participants')
  if not n then return false end
  local heroes = {}
  for _, m in ipairs(redis.call('SMEMBERS', p)) do
    local h = redis.call('HMGET', p .. ':superheros:' .. m, 'id', 'attack', 'health')
    heroes[#heroes + 1] = m
    heroes[#heroes + 1] = h[1] or ''
    heroes[#heroes + 1] = h[2] or ''
    heroes[#heroes + 1] = h[3] or ''
  end
  return {n, redis.call('GET', p .. ':status') or '', redis.call('GET', p .. ':turns') or '0',
    tostring(redis.call('SCARD', p .. ':forfeits')), redis.call('GET', p .. ':host') or '', redis.call('LRANGE', p .. ':order', 0, -1), heroes}
end
";

/// ARGV: game. The game's snapshot; nil for an unknown game.
static SNAPSHOT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(&format!("{LUA_SNAPSHOT}\nreturn snapshot(ARGV[1])")));

/// The game's snapshot with its log list and batch mark appended; nil for an unknown
/// game or one already cleaned (no longer in `games:participants`).
const LUA_EXTRACT: &str = r"
local function extract(g)
  if not redis.call('ZSCORE', 'games:participants', g) then return false end
  local snap = snapshot(g)
  if not snap then return false end
  snap[#snap + 1] = redis.call('LRANGE', 'games:' .. g .. ':logs', 0, -1)
  snap[#snap + 1] = redis.call('GET', 'games:' .. g .. ':batch') or ''
  return snap
end
";

/// ARGV: game. Its extract.
static EXTRACT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        "{LUA_SNAPSHOT}{LUA_EXTRACT}\nreturn extract(ARGV[1])"
    ))
});

/// ARGV: game, user. 0 when the user is not the game's host (nothing else is read),
/// else the game's extract.
static EXTRACT_FOR: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_SNAPSHOT}{LUA_EXTRACT}
if redis.call('ZSCORE', 'games:participants', ARGV[1])
    and redis.call('GET', 'games:' .. ARGV[1] .. ':host') ~= ARGV[2] then return 0 end
return extract(ARGV[1])
"
    ))
});

/// ARGV: game, seconds to keep its keys. The original's cleaning, plus the keys this
/// store adds: hero hashes, order, status, participants, host, members, taken heroes
/// and turn counter expire; the game leaves `games:participants`,
/// `games:players:<n>` and `games:open:<n>`; its log list is deleted.
static CLEAN: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local g, ttl = ARGV[1], tonumber(ARGV[2])
local p = 'games:' .. g
local n = redis.call('GET', p .. ':participants')
for _, m in ipairs(redis.call('SMEMBERS', p)) do
  redis.call('EXPIRE', p .. ':superheros:' .. m, ttl)
end
for _, k in ipairs({p .. ':order', p .. ':status', p .. ':participants', p .. ':host', p,
    p .. ':superheros', p .. ':turns', p .. ':forfeits', p .. ':lobbies', p .. ':cleaned',
    p .. ':batch'}) do
  redis.call('EXPIRE', k, ttl)
end
redis.call('ZREM', 'games:participants', g)
if n then
  redis.call('LREM', 'games:players:' .. n, 0, g)
  redis.call('SREM', 'games:open:' .. n, g)
end
redis.call('DEL', p .. ':logs')
return 1
",
    )
});

/// ARGV: game. The game's snapshot if this call started it, nil otherwise. The turn
/// order is the members sorted byte by byte, as Rust sorts strings (Lua's own string
/// order follows the server's locale).
static START: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_HELPERS}{LUA_SNAPSHOT}
local g = ARGV[1]
local p = 'games:' .. g
local n = tonumber(redis.call('GET', p .. ':participants') or '0')
local count = joined(g)
if not is_open(redis.call('GET', p .. ':status')) or count < n then return false end
local order = redis.call('SMEMBERS', p)
if #order == 0 then return false end
table.sort(order, function(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end)
redis.call('SET', p .. ':status', 'Starting')
redis.call('DEL', p .. ':order')
redis.call('RPUSH', p .. ':order', unpack(order))
redis.call('SET', p .. ':turns', 0)
redis.call('SET', p .. ':status', 'In-Progress')
redis.call('PUBLISH', p .. ':signal', 'In-Progress|' .. count .. '|0|0|' .. order[1])
return snapshot(g)
"
    ))
});

/// ARGV: game.
static TIME_OUT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_HELPERS}
local g = ARGV[1]
local p = 'games:' .. g
local n = tonumber(redis.call('GET', p .. ':participants') or '0')
local count = joined(g)
if not is_open(redis.call('GET', p .. ':status')) or count >= n then return 0 end
redis.call('SET', p .. ':status', 'Timed Out')
redis.call('SREM', 'games:open:' .. n, g)
redis.call('PUBLISH', p .. ':signal', 'Timed Out|' .. count .. '|0|0|')
return 1
"
    ))
});

/// Whether a game is still in progress at the turn (attacks, forfeits) it was
/// planned on, ARGV[2] and ARGV[3]: the compare of every compare-and-set below.
const LUA_AT_TURN: &str = r"
local function at_turn(p)
  return redis.call('GET', p .. ':status') == 'In-Progress'
    and (redis.call('GET', p .. ':turns') or '0') == ARGV[2]
    and redis.call('SCARD', p .. ':forfeits') == tonumber(ARGV[3])
end
";

/// ARGV: game, expected turns, expected forfeits, enemy, enemy health after, log
/// record, new status ('' when it stays In-Progress), signal, and 1 when the enemy
/// died. The turn order moves as the rules move it: the dead enemy leaves it and the
/// attacker, at its front, goes last.
static APPLY_ATTACK: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_AT_TURN}
local p = 'games:' .. ARGV[1]
if not at_turn(p) then return 0 end
redis.call('HSET', p .. ':superheros:' .. ARGV[4], 'health', ARGV[5])
redis.call('RPUSH', p .. ':logs', ARGV[6])
if ARGV[9] == '1' then redis.call('LREM', p .. ':order', 0, ARGV[4]) end
redis.call('LMOVE', p .. ':order', p .. ':order', 'LEFT', 'RIGHT')
redis.call('SET', p .. ':turns', tonumber(ARGV[2]) + 1)
if ARGV[7] ~= '' then redis.call('SET', p .. ':status', ARGV[7]) end
redis.call('PUBLISH', p .. ':signal', ARGV[8])
return 1
"
    ))
});

/// ARGV: game, expected turns, expected forfeits, the player, log record, new status
/// ('' when it stays In-Progress), signal. The player leaves the turn order.
static APPLY_FORFEIT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_AT_TURN}
local p = 'games:' .. ARGV[1]
if not at_turn(p) then return 0 end
redis.call('HSET', p .. ':superheros:' .. ARGV[4], 'health', 0)
redis.call('SADD', p .. ':forfeits', ARGV[4])
redis.call('RPUSH', p .. ':logs', ARGV[5])
redis.call('LREM', p .. ':order', 0, ARGV[4])
if ARGV[6] ~= '' then redis.call('SET', p .. ':status', ARGV[6]) end
redis.call('PUBLISH', p .. ':signal', ARGV[7])
return 1
"
    ))
});

/// ARGV: game, expected turns, expected forfeits, signal. Completes a game still in
/// progress at the expected turn; a game already completed is left as it is.
static FINISH: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_AT_TURN}
local p = 'games:' .. ARGV[1]
if redis.call('GET', p .. ':status') == 'Completed' then return 1 end
if not at_turn(p) then return 0 end
redis.call('SET', p .. ':status', 'Completed')
redis.call('PUBLISH', p .. ':signal', ARGV[4])
return 1
"
    ))
});

/// ARGV: game, user. The game's participants if the user's lobby was marked open,
/// 0 if it already was, -1 for an unknown game, -2 for a user who did not join it.
static ENTER_LOBBY: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_HELPERS}
local p = 'games:' .. ARGV[1]
local n = redis.call('GET', p .. ':participants')
if not n then return -1 end
if redis.call('SISMEMBER', p, ARGV[2]) == 0 then return -2 end
local added = redis.call('SADD', p .. ':lobbies', ARGV[2])
expire_like_status(p, p .. ':lobbies')
if added == 0 then return 0 end
return tonumber(n)
"
    ))
});

/// ARGV: game, user. Closes the user's lobby; then 1 the first time a member of a
/// game that is over has their cleaning claimed, 0 otherwise.
static CLOSE_LOBBY: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_HELPERS}
local p = 'games:' .. ARGV[1]
redis.call('SREM', p .. ':lobbies', ARGV[2])
if not is_over(redis.call('GET', p .. ':status')) then return 0 end
if redis.call('SISMEMBER', p, ARGV[2]) == 0 then return 0 end
local added = redis.call('SADD', p .. ':cleaned', ARGV[2])
expire_like_status(p, p .. ':cleaned')
return added
"
    ))
});

/// ARGV: game. The members of a game that is over whose cleaning no one claimed
/// yet, each now claimed, the host first.
static CLAIM_CLEANINGS: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_HELPERS}
local p = 'games:' .. ARGV[1]
if not is_over(redis.call('GET', p .. ':status')) then return {{}} end
local host = redis.call('GET', p .. ':host')
local members = redis.call('SMEMBERS', p)
local claimed = {{}}
local function claim(m)
  if redis.call('SADD', p .. ':cleaned', m) == 1 then claimed[#claimed + 1] = m end
end
for _, m in ipairs(members) do
  if m == host then claim(m) end
end
for _, m in ipairs(members) do
  if m ~= host then claim(m) end
end
expire_like_status(p, p .. ':cleaned')
return claimed
"
    ))
});

/// ARGV: game. The game's current signal, or nil for an unknown game.
static SIGNAL: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(&format!(
        r"{LUA_HELPERS}
local p = 'games:' .. ARGV[1]
local st = redis.call('GET', p .. ':status')
if not st then return false end
local cur = ''
if st == 'In-Progress' then cur = redis.call('LINDEX', p .. ':order', 0) or '' end
return st .. '|' .. joined(ARGV[1]) .. '|' .. (redis.call('GET', p .. ':turns') or '0') .. '|'
  .. redis.call('SCARD', p .. ':forfeits') .. '|' .. cur
"
    ))
});

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
        map.insert(UserToken(chunk[0].clone()), hero);
    }
    Ok(Snapshot {
        participants,
        host: UserToken(host),
        board: Board {
            status,
            order: order.into_iter().map(UserToken).collect(),
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
        let (token, created): (String, i64) = LOGIN
            .arg(name)
            .arg(UserToken::new_random().as_str())
            .invoke_async(&mut self.conns.next())
            .await
            .map_err(unavailable)?;
        Ok((UserToken(token), created == 1))
    }

    async fn join(
        &self,
        user: &UserToken,
        participants: u8,
        new_game: &GameToken,
        candidates: &[Hero],
    ) -> Result<Joined, StoreError> {
        let mut call = JOIN.prepare_invoke();
        call.arg(user.as_str())
            .arg(participants)
            .arg(new_game.as_str());
        for h in candidates {
            call.arg(h.id).arg(h.attack).arg(h.health);
        }
        let (game, hero, joined, created): (String, HeroId, u32, i64) = call
            .invoke_async(&mut self.conns.next())
            .await
            .map_err(|e| match e.code() {
                Some(STILL_PLAYING) => RuleError::StillPlaying.into(),
                Some(UNKNOWN_USER) => StoreError::UnknownUser,
                _ => unavailable(e),
            })?;
        Ok(Joined {
            game: GameToken(game),
            hero,
            created: created == 1,
            joined,
        })
    }

    async fn snapshot(&self, game: &GameToken) -> Result<Option<Snapshot>, StoreError> {
        let raw: Option<RawSnapshot> = self.game_script(&SNAPSHOT, game).await?;
        raw.map(parse_snapshot).transpose()
    }

    async fn start(&self, game: &GameToken) -> Result<Option<Snapshot>, StoreError> {
        let raw: Option<RawSnapshot> = self.game_script(&START, game).await?;
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
        let timed_out: i64 = self.game_script(&TIME_OUT, game).await?;
        Ok(timed_out == 1)
    }

    async fn hero(&self, game: &GameToken, user: &UserToken) -> Result<Option<Hero>, StoreError> {
        let key = format!("games:{game}:superheros:{user}");
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
        game: &GameToken,
        attacker: &UserToken,
        enemy: &UserToken,
        turn_cap: u32,
        timestamp: &str,
    ) -> Result<Attacked, StoreError> {
        self.compare_and_set(game, &APPLY_ATTACK, |snap, call| {
            let attack = rules::plan_attack(&snap.board, attacker, enemy, turn_cap)?;
            let record = to_frame(&ActionRecord::attack(game, &attack, timestamp.to_string()));
            let mut after = snap.board.clone();
            rules::apply(&mut after, &attack);
            let signal = Signal::of(after.status, snap.joined(), &after);
            call.arg(enemy.as_str())
                .arg(attack.enemy_health_post)
                .arg(&record)
                .arg(changed_status(&snap.board, &after))
                .arg(signal.encode())
                .arg(u8::from(attack.enemy_died()));
            Ok((Attacked { attack, record }, after))
        })
        .await
    }

    async fn finish_without_enemy(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<(), StoreError> {
        self.compare_and_set(game, &FINISH, |snap, call| {
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
        self.compare_and_set(game, &APPLY_FORFEIT, |snap, call| {
            let forfeit = rules::plan_forfeit(&snap.board, user, reason, turn)?;
            let record = to_frame(&ActionRecord::forfeit(
                game,
                &forfeit,
                timestamp.to_string(),
            ));
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
        let entered: i64 = self.game_user_script(&ENTER_LOBBY, game, user).await?;
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
            .srem(format!("games:{game}:lobbies"), user.as_str())
            .await
            .map_err(unavailable)
    }

    async fn close_lobby(&self, game: &GameToken, user: &UserToken) -> Result<bool, StoreError> {
        let claimed: i64 = self.game_user_script(&CLOSE_LOBBY, game, user).await?;
        Ok(claimed == 1)
    }

    async fn claim_cleanings(&self, game: &GameToken) -> Result<Vec<UserToken>, StoreError> {
        let claimed: Vec<String> = self.game_script(&CLAIM_CLEANINGS, game).await?;
        Ok(claimed.into_iter().map(UserToken).collect())
    }

    async fn extract(&self, game: &GameToken) -> Result<Option<GameExtract>, StoreError> {
        let raw: Option<RawExtract> = self.game_script(&EXTRACT, game).await?;
        raw.map(|raw| parse_extract(game, raw)).transpose()
    }

    async fn extract_for(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<Extracted, StoreError> {
        let reply: redis::Value = self.game_user_script(&EXTRACT_FOR, game, user).await?;
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
        let mut pipe = redis::pipe();
        for game in games {
            pipe.set(format!("games:{game}:batch"), batch).ignore();
        }
        pipe.query_async::<()>(&mut self.conns.next())
            .await
            .map_err(unavailable)
    }

    async fn clean(&self, game: &GameToken, keep: Duration) -> Result<(), StoreError> {
        let _: i64 = CLEAN
            .arg(game.as_str())
            // Redis refuses an expiry past its clock's range: 136 years at most.
            .arg(keep.as_secs().clamp(1, u64::from(u32::MAX)))
            .invoke_async(&mut self.conns.next())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn watch(&self, game: &GameToken) -> Result<SignalWatch, StoreError> {
        // Register before reading, so that no signal falls between the two. A game
        // another watch of this process read already is current without a read.
        let (rx, registration, current) = self.registry.register(game);
        if !current {
            let signal = Self::fetch_signal(&mut self.conns.next(), game)
                .await?
                .ok_or(StoreError::UnknownGame)?;
            self.registry.deliver_read(game, signal);
        }
        Ok(SignalWatch::new(rx, Some(Box::new(registration))))
    }
}
