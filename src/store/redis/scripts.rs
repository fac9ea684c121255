//! The Redis store's Lua scripts, one set per [`Keyspace`].
//!
//! Every script that touches a game takes the game's key prefix as `KEYS[1]` and the
//! sorted set of its join count as `KEYS[2]` (both in the game's hash slot on a
//! cluster), and the game token as `ARGV[1]`; every key it names is built from
//! `KEYS[1]`. The two sets differ in a prelude: on a cluster, signals go out with
//! `SPUBLISH` on the game's sharded channel, and indexes in other hash slots are left
//! to the caller (`SINGLE` is false).

use std::sync::LazyLock;

use redis::Script;

use super::keys::Keyspace;

/// The error code of a find refused because the user still plays another game.
pub const STILL_PLAYING: &str = "STILL_PLAYING";
/// The error code of a find with a token no login handed out.
pub const UNKNOWN_USER: &str = "UNKNOWN_USER";

/// One keyspace's scripts.
pub struct Scripts {
    /// ARGV: name, a fresh token. Single server only.
    pub login: Script,
    /// ARGV: user, participants, token for a new game, then (id, attack, health)
    /// triples. Single server only: the whole find in one step.
    pub join: Script,
    /// ARGV: game, user, participants, 1 to create the game, then hero triples. A
    /// cluster's join of one game: {hero, players} when the user joined, or is in it
    /// already while it is in its lobby (a find runs alone per user, and the user's
    /// last game is over for them, so that is this find's own join, answered again: a
    /// client resends a command whose reply a failing node lost); -1 when the game is
    /// not joinable (full, started, or for another count; or, to create, taken).
    pub join_game: Script,
    /// ARGV: game, user. Deletes a game still in its lobby whose only member is the
    /// user (a cluster's find giving up the game it just made): 1, else 0.
    pub give_up: Script,
    /// KEYS: a key. ARGV: a value. Deletes the key if it still holds the value.
    pub release: Script,
    /// KEYS: a cluster user's record. ARGV: how long a find may take (ms). Marks a
    /// find of the user under way; the game the user joined last ('' for none).
    pub begin_find: Script,
    /// ARGV: user. 1 while the user is in play in the game (in its lobby, or alive in
    /// it while in progress).
    pub playing: Script,
    /// ARGV: game. The game's snapshot; nil for an unknown game.
    pub snapshot: Script,
    /// ARGV: game. Its extract.
    pub extract: Script,
    /// ARGV: game, user. 0 when the game is not yet cleaned and the user is not its
    /// host (its logs are not read), else the game's extract.
    pub extract_for: Script,
    /// ARGV: game, seconds to keep its keys. The game's player count, or 0 for an
    /// unknown game.
    pub clean: Script,
    /// ARGV: game. The game's snapshot if this call started it, nil otherwise.
    pub start: Script,
    /// ARGV: game. The game's player count if this call timed it out, else 0.
    pub time_out: Script,
    /// ARGV: game, expected turns, expected forfeits, enemy, enemy health after, log
    /// record, new status ('' when it stays In-Progress), signal, 1 when the enemy
    /// died.
    pub apply_attack: Script,
    /// ARGV: game, expected turns, expected forfeits, the player, log record, new
    /// status ('' when it stays In-Progress), signal.
    pub apply_forfeit: Script,
    /// ARGV: game, expected turns, expected forfeits, signal.
    pub finish: Script,
    /// ARGV: game, user. The game's participants if the user's lobby was marked
    /// open, 0 if it already was, -1 for an unknown game, -2 for a user who did not
    /// join it.
    pub enter_lobby: Script,
    /// ARGV: game, user, claim id. Closes the user's lobby; then 1 when the member of
    /// a game that is over has their cleaning claimed by the id (now or before), 0
    /// otherwise.
    pub close_lobby: Script,
    /// ARGV: game, claim id. The members of a game that is over whose cleaning the id
    /// claimed (now or before), those no one had claimed now claimed, the host first.
    pub claim_cleanings: Script,
    /// ARGV: game. The game's current signal, or nil for an unknown game.
    pub signal: Script,
}

static SINGLE: LazyLock<Scripts> = LazyLock::new(|| Scripts::new(Keyspace::Single));
static CLUSTER: LazyLock<Scripts> = LazyLock::new(|| Scripts::new(Keyspace::Cluster));

impl Scripts {
    /// The scripts of a keyspace.
    pub fn of(keyspace: Keyspace) -> &'static Self {
        match keyspace {
            Keyspace::Single => &SINGLE,
            Keyspace::Cluster => &CLUSTER,
        }
    }

    fn new(keyspace: Keyspace) -> Self {
        let prelude = match keyspace {
            Keyspace::Single => "local SINGLE = true\nlocal PUBLISH = 'PUBLISH'\n",
            Keyspace::Cluster => "local SINGLE = false\nlocal PUBLISH = 'SPUBLISH'\n",
        };
        let build = |parts: &[&str]| {
            let mut text = format!("{prelude}{HELPERS}");
            for part in parts {
                text.push_str(part);
            }
            Script::new(&text)
        };
        Self {
            login: build(&[LOGIN]),
            join: build(&[MEMBERS, &JOIN]),
            join_game: build(&[MEMBERS, JOIN_GAME]),
            give_up: build(&[GIVE_UP]),
            release: build(&[RELEASE]),
            begin_find: build(&[&BEGIN_FIND]),
            playing: build(&[PLAYING]),
            snapshot: build(&[SNAPSHOT, "return snapshot(KEYS[1])"]),
            extract: build(&[SNAPSHOT, EXTRACT, "return extract(false)"]),
            extract_for: build(&[SNAPSHOT, EXTRACT, "return extract(ARGV[2])"]),
            clean: build(&[CLEAN]),
            start: build(&[SNAPSHOT, START]),
            time_out: build(&[TIME_OUT]),
            apply_attack: build(&[AT_TURN, APPLY_ATTACK]),
            apply_forfeit: build(&[AT_TURN, APPLY_FORFEIT]),
            finish: build(&[AT_TURN, FINISH]),
            enter_lobby: build(&[ENTER_LOBBY]),
            close_lobby: build(&[CLAIM_CLEANING, CLOSE_LOBBY]),
            claim_cleanings: build(&[CLAIM_CLEANING, CLAIM_CLEANINGS]),
            signal: build(&[SIGNAL]),
        }
    }
}

/// Shared helpers: a game's signal, whether it is in its lobby or over, how many
/// joined it, whether a user is still in play in it, and how to give a key added to
/// a game after its cleaning the same time to live.
const HELPERS: &str = r"
local function publish(p, msg)
  redis.call(PUBLISH, p .. ':signal', msg)
end
local function is_open(st)
  return st == 'Initializing' or st == 'Waiting Lobby'
end
local function is_over(st)
  return st == 'Completed' or st == 'Timed Out'
end
local function joined(jkey, g)
  local s = redis.call('ZSCORE', jkey, g)
  if s then return tonumber(s) end
  return 0
end
local function still_playing(p, user)
  local st = redis.call('GET', p .. ':status')
  if not st or is_over(st) then return false end
  local hp = redis.call('HGET', p .. ':superheros:' .. user, 'health')
  return hp and tonumber(hp) > 0
end
local function expire_like_status(p, key)
  local ttl = redis.call('PTTL', p .. ':status')
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
";

const LOGIN: &str = r"
local t = redis.call('HGET', 'users', ARGV[1])
if t then return {t, 0} end
redis.call('HSET', 'users', ARGV[1], ARGV[2])
redis.call('HSET', 'users:tokens', ARGV[2], ARGV[1])
return {ARGV[2], 1}
";

/// How a game is created and how a member is added to it, with the first hero of
/// the triples from ARGV[first] not taken in it; `add_member` gives the hero's
/// ARGV index and the players after the join, or false when every candidate is
/// taken.
const MEMBERS: &str = r"
local function create_game(p, jkey, g, n, user)
  redis.call('ZADD', jkey, 0, g)
  redis.call('MSET', p .. ':participants', n, p .. ':status', 'Waiting Lobby', p .. ':host', user)
end
local function add_member(p, jkey, g, user, first)
  local pick = false
  for i = first, #ARGV, 3 do
    if redis.call('SISMEMBER', p .. ':superheros', ARGV[i]) == 0 then
      pick = i
      break
    end
  end
  if not pick then return false end
  local count = tonumber(redis.call('ZINCRBY', jkey, 1, g))
  redis.call('SADD', p, user)
  redis.call('HSET', p .. ':superheros:' .. user,
    'id', ARGV[pick], 'attack', ARGV[pick + 1], 'health', ARGV[pick + 2])
  redis.call('SADD', p .. ':superheros', ARGV[pick])
  publish(p, 'Waiting Lobby|' .. count .. '|0|0|')
  return {pick, count}
end
";

static JOIN: LazyLock<String> = LazyLock::new(|| {
    format!(
        r"
local user, n, fresh = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local jkey = 'games:participants'
if redis.call('HEXISTS', 'users:tokens', user) == 0 then
  return redis.error_reply('{UNKNOWN_USER} no user has this token')
end
local last = redis.call('HGET', 'users:games', user)
if last and still_playing('games:' .. last, user) then
  return redis.error_reply('{STILL_PLAYING} the user still plays game ' .. last)
end
local open_key = 'games:open:' .. n
local game = false
local created = 0
for _, g in ipairs(redis.call('SRANDMEMBER', open_key, 8)) do
  if not is_open(redis.call('GET', 'games:' .. g .. ':status')) or joined(jkey, g) >= n then
    redis.call('SREM', open_key, g)
  elseif redis.call('SISMEMBER', 'games:' .. g, user) == 0 then
    game = g
    break
  end
end
local p
if game then
  p = 'games:' .. game
else
  game = fresh
  created = 1
  p = 'games:' .. game
  redis.call('RPUSH', 'games:players:' .. n, game)
  create_game(p, jkey, game, n, user)
  redis.call('SADD', open_key, game)
end
local added = add_member(p, jkey, game, user, 4)
if not added then return redis.error_reply('no free hero among the candidates') end
if added[2] >= n then redis.call('SREM', open_key, game) end
redis.call('HSET', 'users:games', user, game)
return {{game, ARGV[added[1]], added[2], created}}
"
    )
});

const JOIN_GAME: &str = r"
local p, jkey = KEYS[1], KEYS[2]
local g, user, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
if is_open(redis.call('GET', p .. ':status')) and redis.call('SISMEMBER', p, user) == 1 then
  return {redis.call('HGET', p .. ':superheros:' .. user, 'id'), joined(jkey, g)}
end
if ARGV[4] == '1' then
  if redis.call('EXISTS', p .. ':status') == 1 then return -1 end
  create_game(p, jkey, g, n, user)
elseif not is_open(redis.call('GET', p .. ':status'))
    or tonumber(redis.call('GET', p .. ':participants') or '0') ~= n
    or joined(jkey, g) >= n then
  return -1
end
local added = add_member(p, jkey, g, user, 5)
if not added then return redis.error_reply('no free hero among the candidates') end
return {ARGV[added[1]], added[2]}
";

const GIVE_UP: &str = r"
local p, g, user = KEYS[1], ARGV[1], ARGV[2]
if not is_open(redis.call('GET', p .. ':status')) then return 0 end
if redis.call('SCARD', p) ~= 1 or redis.call('SISMEMBER', p, user) == 0 then return 0 end
redis.call('DEL', p, p .. ':status', p .. ':participants', p .. ':host', p .. ':superheros',
  p .. ':superheros:' .. user, p .. ':lobbies')
redis.call('ZREM', KEYS[2], g)
return 1
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

static BEGIN_FIND: LazyLock<String> = LazyLock::new(|| {
    format!(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('{UNKNOWN_USER} no user has this token')
end
if not redis.call('SET', KEYS[1] .. ':finding', '1', 'NX', 'PX', ARGV[1]) then
  return redis.error_reply('{STILL_PLAYING} another find of this user is under way')
end
return redis.call('HGET', KEYS[1], 'game') or ''
"
    )
});

const PLAYING: &str = r"
if still_playing(KEYS[1], ARGV[1]) then return 1 end
return 0
";

/// `snapshot(p)`: participants, status, turns, forfeits, host, order and the
/// members' heroes as flat (token, id, attack, health) quadruples; false for an
/// unknown game. The game's plain fields are read in one `MGET` (all in the game's
/// hash slot), `fields(p, more)` with the keys of the suffixes in `more` after them;
/// `snapshot_of` builds the snapshot from such a read, `heroes_of` the quadruples of
/// some members.
const SNAPSHOT: &str = r"
local function fields(p, more)
  local keys = {p .. ':participants', p .. ':status', p .. ':turns', p .. ':host'}
  for _, s in ipairs(more) do keys[#keys + 1] = p .. s end
  return redis.call('MGET', unpack(keys))
end
local function heroes_of(p, members)
  local heroes = {}
  for _, m in ipairs(members) do
    local h = redis.call('HMGET', p .. ':superheros:' .. m, 'id', 'attack', 'health')
    heroes[#heroes + 1] = m
    heroes[#heroes + 1] = h[1] or ''
    heroes[#heroes + 1] = h[2] or ''
    heroes[#heroes + 1] = h[3] or ''
  end
  return heroes
end
local function snapshot_of(p, v)
  return {v[1], v[2] or '', v[3] or '0', tostring(redis.call('SCARD', p .. ':forfeits')),
    v[4] or '', redis.call('LRANGE', p .. ':order', 0, -1), heroes_of(p, redis.call('SMEMBERS', p))}
end
local function snapshot(p)
  local v = fields(p, {})
  if not v[1] then return false end
  return snapshot_of(p, v)
end
";

/// `extract(host)`: the game's snapshot with its log list and batch mark appended;
/// false for an unknown game or one already cleaned (no longer counted in its join
/// index). With `host`, 0 instead when the game is counted and `host` is not its host
/// (the logs are then not read).
const EXTRACT: &str = r"
local function extract(host)
  local counted = redis.call('ZSCORE', KEYS[2], ARGV[1])
  local v = fields(KEYS[1], {':batch'})
  if host and counted and v[4] ~= host then return 0 end
  if not counted or not v[1] then return false end
  local snap = snapshot_of(KEYS[1], v)
  snap[#snap + 1] = redis.call('LRANGE', KEYS[1] .. ':logs', 0, -1)
  snap[#snap + 1] = v[5] or ''
  return snap
end
";

/// The original's cleaning, plus the keys this store adds: hero hashes, order,
/// status, participants, host, members, taken heroes and turn counter expire; the
/// game leaves its join index and, on one server, `games:players:<n>` and
/// `games:open:<n>`; its log list is deleted.
const CLEAN: &str = r"
local p, g, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local n = redis.call('GET', p .. ':participants')
for _, m in ipairs(redis.call('SMEMBERS', p)) do
  redis.call('EXPIRE', p .. ':superheros:' .. m, ttl)
end
for _, k in ipairs({p .. ':order', p .. ':status', p .. ':participants', p .. ':host', p,
    p .. ':superheros', p .. ':turns', p .. ':forfeits', p .. ':lobbies', p .. ':cleaned_by',
    p .. ':batch'}) do
  redis.call('EXPIRE', k, ttl)
end
redis.call('ZREM', KEYS[2], g)
redis.call('DEL', p .. ':logs')
if not n then return 0 end
if SINGLE then
  redis.call('LREM', 'games:players:' .. n, 0, g)
  redis.call('SREM', 'games:open:' .. n, g)
end
return tonumber(n)
";

/// The turn order is the members sorted byte by byte, as Rust sorts strings (Lua's
/// own string order follows the server's locale). The order list is written only
/// here, and only while the game is open, which it never is again: there is none to
/// replace. The snapshot returned is built from what the script read and wrote (a
/// game in its lobby has had no turn and no forfeit).
const START: &str = r"
local p, g = KEYS[1], ARGV[1]
local v = fields(p, {})
local count = joined(KEYS[2], g)
if not is_open(v[2]) or count < tonumber(v[1] or '0') then return false end
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
redis.call('RPUSH', p .. ':order', unpack(order))
redis.call('MSET', p .. ':turns', 0, p .. ':status', 'In-Progress')
publish(p, 'In-Progress|' .. count .. '|0|0|' .. order[1])
return {v[1], 'In-Progress', '0', '0', v[4] or '', order, heroes_of(p, order)}
";

const TIME_OUT: &str = r"
local p, g = KEYS[1], ARGV[1]
local n = tonumber(redis.call('GET', p .. ':participants') or '0')
local count = joined(KEYS[2], g)
if not is_open(redis.call('GET', p .. ':status')) or count >= n then return 0 end
redis.call('SET', p .. ':status', 'Timed Out')
if SINGLE then redis.call('SREM', 'games:open:' .. n, g) end
publish(p, 'Timed Out|' .. count .. '|0|0|')
return n
";

/// Whether a game is still in progress at the turn (attacks, forfeits) it was
/// planned on, ARGV[2] and ARGV[3]: the compare of every compare-and-set. Status and
/// turn count are read in one call (both keys are in the game's hash slot).
const AT_TURN: &str = r"
local p = KEYS[1]
local function at_turn()
  local now = redis.call('MGET', p .. ':status', p .. ':turns')
  return now[1] == 'In-Progress'
    and (now[2] or '0') == ARGV[2]
    and redis.call('SCARD', p .. ':forfeits') == tonumber(ARGV[3])
end
";

/// The turn order moves as the rules move it: the dead enemy leaves it and the
/// attacker, at its front, goes last.
const APPLY_ATTACK: &str = r"
if not at_turn() then return 0 end
redis.call('HSET', p .. ':superheros:' .. ARGV[4], 'health', ARGV[5])
redis.call('RPUSH', p .. ':logs', ARGV[6])
if ARGV[9] == '1' then redis.call('LREM', p .. ':order', 0, ARGV[4]) end
redis.call('LMOVE', p .. ':order', p .. ':order', 'LEFT', 'RIGHT')
redis.call('SET', p .. ':turns', tonumber(ARGV[2]) + 1)
if ARGV[7] ~= '' then redis.call('SET', p .. ':status', ARGV[7]) end
publish(p, ARGV[8])
return 1
";

/// The player leaves the turn order.
const APPLY_FORFEIT: &str = r"
if not at_turn() then return 0 end
redis.call('HSET', p .. ':superheros:' .. ARGV[4], 'health', 0)
redis.call('SADD', p .. ':forfeits', ARGV[4])
redis.call('RPUSH', p .. ':logs', ARGV[5])
redis.call('LREM', p .. ':order', 0, ARGV[4])
if ARGV[6] ~= '' then redis.call('SET', p .. ':status', ARGV[6]) end
publish(p, ARGV[7])
return 1
";

/// Completes a game still in progress at the expected turn; a game already
/// completed is left as it is.
const FINISH: &str = r"
if redis.call('GET', p .. ':status') == 'Completed' then return 1 end
if not at_turn() then return 0 end
redis.call('SET', p .. ':status', 'Completed')
publish(p, ARGV[4])
return 1
";

const ENTER_LOBBY: &str = r"
local p = KEYS[1]
local n = redis.call('GET', p .. ':participants')
if not n then return -1 end
if redis.call('SISMEMBER', p, ARGV[2]) == 0 then return -2 end
local added = redis.call('SADD', p .. ':lobbies', ARGV[2])
expire_like_status(p, p .. ':lobbies')
if added == 0 then return 0 end
return tonumber(n)
";

/// Claims member `m`'s cleaning record for claim id `by`: true when it is `by`'s, now
/// or from an earlier call.
const CLAIM_CLEANING: &str = r"
local function claim_cleaning(p, m, by)
  local key = p .. ':cleaned_by'
  if redis.call('HSETNX', key, m, by) == 1 then return true end
  return redis.call('HGET', key, m) == by
end
";

const CLOSE_LOBBY: &str = r"
local p = KEYS[1]
redis.call('SREM', p .. ':lobbies', ARGV[2])
if not is_over(redis.call('GET', p .. ':status')) then return 0 end
if redis.call('SISMEMBER', p, ARGV[2]) == 0 then return 0 end
local claimed = claim_cleaning(p, ARGV[2], ARGV[3])
expire_like_status(p, p .. ':cleaned_by')
if claimed then return 1 end
return 0
";

const CLAIM_CLEANINGS: &str = r"
local p = KEYS[1]
local v = redis.call('MGET', p .. ':status', p .. ':host')
if not is_over(v[1]) then return {} end
local host = v[2]
local members = redis.call('SMEMBERS', p)
local claimed = {}
local function claim(m)
  if claim_cleaning(p, m, ARGV[2]) then claimed[#claimed + 1] = m end
end
for _, m in ipairs(members) do
  if m == host then claim(m) end
end
for _, m in ipairs(members) do
  if m ~= host then claim(m) end
end
expire_like_status(p, p .. ':cleaned_by')
return claimed
";

const SIGNAL: &str = r"
local p = KEYS[1]
local now = redis.call('MGET', p .. ':status', p .. ':turns')
local st = now[1]
if not st then return false end
local cur = ''
if st == 'In-Progress' then cur = redis.call('LINDEX', p .. ':order', 0) or '' end
return st .. '|' .. joined(KEYS[2], ARGV[1]) .. '|' .. (now[2] or '0')
  .. '|' .. redis.call('SCARD', p .. ':forfeits') .. '|' .. cur
";
