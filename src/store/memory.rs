//! The embedded store: the same data model as the Redis keyspace, held in process.
//!
//! Users and the open-game index sit behind one lock each; every game has its own
//! lock, so attacks in different games never wait on each other. A game's signal
//! channel lives next to its state and is raised under the same lock, so watchers
//! see changes in the order they happened.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use super::{
    Attacked, ClaimId, Extracted, Forfeited, GameStore, Joined, LobbyEntry, Signal, SignalSender,
    SignalWatch, Snapshot, StoreError,
};
use crate::etl::GameExtract;
use crate::game::protocol::{ActionRecord, to_frame};
use crate::game::rules::{self, Board, ForfeitReason, RuleError};
use crate::game::{GameStatus, GameToken, Hero, HeroId, UserToken};
use crate::roster::RosterHero;

/// The embedded in-process store. Clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The `superheros` hash, kept as stored JSON by id.
    roster: RwLock<BTreeMap<HeroId, (Hero, String)>>,
    users: Mutex<Users>,
    /// Open games by participant count (the index `games:open:<n>` in Redis).
    open: Mutex<HashMap<u8, Vec<GameToken>>>,
    games: RwLock<HashMap<GameToken, Arc<Mutex<GameRecord>>>>,
    /// Cleaned games and when they go, oldest first; purged on each `clean`.
    expiring: Mutex<VecDeque<(Instant, GameToken)>>,
}

#[derive(Default)]
struct Users {
    by_name: HashMap<String, UserToken>,
    tokens: HashSet<UserToken>,
    /// The game each user joined last: the only one that may still hold them.
    last_game: HashMap<UserToken, GameToken>,
}

struct GameRecord {
    participants: u8,
    host: UserToken,
    board: Board,
    /// The record list `games:<game>:logs`.
    logs: Vec<String>,
    /// Set by `clean`: the game is no longer extracted and goes after its expiry.
    cleaned: bool,
    /// Players whose lobby is open.
    lobbies: HashSet<UserToken>,
    /// Players whose `Cleaning Game Records` was claimed, and by whom.
    cleaning_claimed: HashMap<UserToken, ClaimId>,
    /// The batch a worker put the game in.
    batch: Option<String>,
    signal: SignalSender,
}

impl GameRecord {
    /// Claims `user`'s cleaning record for `claim`: true when it is `claim`'s, now or
    /// from an earlier call.
    fn claim_cleaning(&mut self, user: &UserToken, claim: &ClaimId) -> bool {
        self.cleaning_claimed
            .entry(user.clone())
            .or_insert_with(|| claim.clone())
            == claim
    }

    /// The game and its log, for its ETL.
    fn extract(&self, game: &GameToken) -> GameExtract {
        GameExtract {
            game: game.clone(),
            status: self.board.status,
            participants: self.participants,
            host: self.host.clone(),
            heroes: self.board.heroes.clone(),
            logs: self.logs.clone(),
            batch: self.batch.clone(),
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            participants: self.participants,
            host: self.host.clone(),
            board: self.board.clone(),
        }
    }

    fn joined(&self) -> usize {
        self.board.heroes.len()
    }

    fn is_joinable_by(&self, user: &UserToken) -> bool {
        self.board.status.is_open()
            && self.joined() < usize::from(self.participants)
            && !self.board.heroes.contains_key(user)
    }

    /// Whether `user` still plays here: in the lobby, or alive in a running game.
    fn holds(&self, user: &UserToken) -> bool {
        !self.board.status.is_over() && self.board.heroes.get(user).is_some_and(Hero::is_alive)
    }

    fn raise(&mut self) {
        let next = Signal::of(self.board.status, self.joined(), &self.board);
        self.signal.offer(next);
    }
}

/// A poisoned lock only means another task panicked mid-update of plain data; the
/// data is still the last consistent write, so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn game(&self, game: &str) -> Option<Arc<Mutex<GameRecord>>> {
        let games = self.inner.games.read().unwrap_or_else(|e| e.into_inner());
        games.get(game).cloned()
    }

    /// The records pushed on a game's log list, oldest first.
    pub fn logs(&self, game: &GameToken) -> Vec<String> {
        self.game(game)
            .map(|g| lock(&g).logs.clone())
            .unwrap_or_default()
    }

    fn create(
        &self,
        game: &GameToken,
        participants: u8,
        host: &UserToken,
    ) -> Arc<Mutex<GameRecord>> {
        let board = Board {
            status: GameStatus::WaitingLobby,
            order: Vec::new(),
            heroes: BTreeMap::new(),
            turns: 0,
            forfeits: 0,
        };
        let signal = SignalSender::new(Signal::of(GameStatus::WaitingLobby, 0, &board));
        let record = Arc::new(Mutex::new(GameRecord {
            participants,
            host: host.clone(),
            board,
            logs: Vec::new(),
            cleaned: false,
            lobbies: HashSet::new(),
            cleaning_claimed: HashMap::new(),
            batch: None,
            signal,
        }));
        let mut games = self.inner.games.write().unwrap_or_else(|e| e.into_inner());
        games.insert(game.clone(), record.clone());
        record
    }
}

impl GameStore for MemoryStore {
    async fn replace_roster(&self, heroes: &[RosterHero]) -> Result<(), StoreError> {
        let map = heroes
            .iter()
            .map(|h| (h.id, (h.hero(), h.stored_json())))
            .collect();
        *self.inner.roster.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // In this process: reachable while the process runs.
        Ok(())
    }

    async fn roster(&self) -> Result<Vec<Hero>, StoreError> {
        let roster = self.inner.roster.read().unwrap_or_else(|e| e.into_inner());
        Ok(roster.values().map(|(h, _)| *h).collect())
    }

    async fn login(&self, name: &str) -> Result<(UserToken, bool), StoreError> {
        let mut users = lock(&self.inner.users);
        if let Some(token) = users.by_name.get(name) {
            return Ok((token.clone(), false));
        }
        let token = UserToken::new_random();
        users.by_name.insert(name.to_string(), token.clone());
        users.tokens.insert(token.clone());
        Ok((token, true))
    }

    async fn join(
        &self,
        user: &UserToken,
        participants: u8,
        new_game: &GameToken,
        candidates: &[Hero],
    ) -> Result<Joined, StoreError> {
        let mut open = lock(&self.inner.open);
        // Under the index lock, so one user's concurrent finds cannot both join.
        let mut users = lock(&self.inner.users);
        if !users.tokens.contains(user) {
            return Err(StoreError::UnknownUser);
        }
        let holding = users
            .last_game
            .get(user)
            .and_then(|g| self.game(g))
            .is_some_and(|r| lock(&r).holds(user));
        if holding {
            return Err(RuleError::StillPlaying.into());
        }
        let list = open.entry(participants).or_default();
        // Drop games that filled or left their lobby; pick a random joinable one.
        list.retain(|g| {
            self.game(g).is_some_and(|r| {
                let r = lock(&r);
                r.board.status.is_open() && r.joined() < usize::from(r.participants)
            })
        });
        let start = if list.is_empty() {
            0
        } else {
            rand::random_range(0..list.len())
        };
        let found = (0..list.len())
            .map(|i| &list[(start + i) % list.len()])
            .find_map(|g| {
                let record = self.game(g)?;
                let joinable = lock(&record).is_joinable_by(user);
                joinable.then(|| (g.clone(), record))
            });
        let (game, record, created) = match found {
            Some((g, r)) => (g, r, false),
            None => {
                let record = self.create(new_game, participants, user);
                list.push(new_game.clone());
                (new_game.clone(), record, true)
            }
        };

        let mut r = lock(&record);
        let taken: HashSet<HeroId> = r.board.heroes.values().map(|h| h.id).collect();
        let hero = *candidates
            .iter()
            .find(|h| !taken.contains(&h.id))
            .ok_or_else(|| StoreError::Unavailable("no free hero among the candidates".into()))?;
        r.board.heroes.insert(user.clone(), hero);
        users.last_game.insert(user.clone(), game.clone());
        let joined = r.joined();
        if joined >= usize::from(r.participants) {
            list.retain(|g| *g != game);
        }
        r.raise();
        Ok(Joined {
            game,
            hero: hero.id,
            created,
            joined: u32::try_from(joined).unwrap_or(u32::MAX),
        })
    }

    async fn snapshot(&self, game: &GameToken) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.game(game).map(|r| lock(&r).snapshot()))
    }

    async fn start(&self, game: &GameToken) -> Result<Option<Snapshot>, StoreError> {
        let record = self.game(game).ok_or(StoreError::UnknownGame)?;
        let mut r = lock(&record);
        if !r.board.status.is_open() || r.joined() < usize::from(r.participants) {
            return Ok(None);
        }
        r.board.status = GameStatus::Starting;
        r.board.order = rules::turn_order(r.board.heroes.keys());
        r.board.turns = 0;
        r.board.status = GameStatus::InProgress;
        r.raise();
        Ok(Some(r.snapshot()))
    }

    async fn time_out(&self, game: &GameToken) -> Result<bool, StoreError> {
        let record = self.game(game).ok_or(StoreError::UnknownGame)?;
        let mut r = lock(&record);
        if !r.board.status.is_open() || r.joined() >= usize::from(r.participants) {
            return Ok(false);
        }
        r.board.status = GameStatus::TimedOut;
        r.raise();
        Ok(true)
    }

    async fn hero(&self, game: &str, user: &str) -> Result<Option<Hero>, StoreError> {
        Ok(self
            .game(game)
            .and_then(|r| lock(&r).board.heroes.get(user).copied()))
    }

    async fn attack(
        &self,
        game: &str,
        attacker: &str,
        enemy: &str,
        turn_cap: u32,
        timestamp: &str,
    ) -> Result<Attacked, StoreError> {
        let record = self.game(game).ok_or(StoreError::UnknownGame)?;
        let mut r = lock(&record);
        let attack = rules::plan_attack(&r.board, attacker, enemy, turn_cap)?;
        let log = to_frame(&ActionRecord::attack(game, &attack, timestamp));
        rules::apply(&mut r.board, &attack);
        r.logs.push(log.clone());
        r.raise();
        Ok(Attacked {
            attack,
            record: log,
        })
    }

    async fn finish_without_enemy(&self, game: &str, user: &str) -> Result<(), StoreError> {
        let record = self.game(game).ok_or(StoreError::UnknownGame)?;
        let mut r = lock(&record);
        rules::plan_no_enemy(&r.board, user)?;
        r.board.status = GameStatus::Completed;
        r.raise();
        Ok(())
    }

    async fn forfeit(
        &self,
        game: &GameToken,
        user: &UserToken,
        reason: ForfeitReason,
        turn: Option<(u32, u32)>,
        timestamp: &str,
    ) -> Result<Forfeited, StoreError> {
        let record = self.game(game).ok_or(StoreError::UnknownGame)?;
        let mut r = lock(&record);
        let forfeit = rules::plan_forfeit(&r.board, user, reason, turn)?;
        let log = to_frame(&ActionRecord::forfeit(game, &forfeit, timestamp));
        rules::apply_forfeit(&mut r.board, &forfeit);
        r.logs.push(log.clone());
        r.raise();
        Ok(Forfeited {
            forfeit,
            record: log,
        })
    }

    async fn enter_lobby(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<LobbyEntry, StoreError> {
        let record = self.game(game).ok_or(StoreError::UnknownGame)?;
        let mut r = lock(&record);
        Ok(if !r.board.heroes.contains_key(user) {
            LobbyEntry::NotInGame
        } else if r.lobbies.insert(user.clone()) {
            LobbyEntry::Entered {
                participants: r.participants,
            }
        } else {
            LobbyEntry::AlreadyOpen
        })
    }

    async fn leave_lobby(&self, game: &GameToken, user: &UserToken) -> Result<(), StoreError> {
        if let Some(record) = self.game(game) {
            lock(&record).lobbies.remove(user);
        }
        Ok(())
    }

    async fn close_lobby(
        &self,
        game: &GameToken,
        user: &UserToken,
        claim: &ClaimId,
    ) -> Result<bool, StoreError> {
        let Some(record) = self.game(game) else {
            return Ok(false);
        };
        let mut r = lock(&record);
        r.lobbies.remove(user);
        let due = r.board.status.is_over() && r.board.heroes.contains_key(user);
        Ok(due && r.claim_cleaning(user, claim))
    }

    async fn claim_cleanings(
        &self,
        game: &GameToken,
        claim: &ClaimId,
    ) -> Result<Vec<UserToken>, StoreError> {
        let Some(record) = self.game(game) else {
            return Ok(Vec::new());
        };
        let mut r = lock(&record);
        if !r.board.status.is_over() {
            return Ok(Vec::new());
        }
        let host = r.host.clone();
        let members: Vec<UserToken> = std::iter::once(host.clone())
            .filter(|h| r.board.heroes.contains_key(h))
            .chain(r.board.heroes.keys().filter(|u| **u != host).cloned())
            .collect();
        Ok(members
            .into_iter()
            .filter(|u| r.claim_cleaning(u, claim))
            .collect())
    }

    async fn extract(&self, game: &GameToken) -> Result<Option<GameExtract>, StoreError> {
        Ok(self.game(game).and_then(|r| {
            let r = lock(&r);
            (!r.cleaned).then(|| r.extract(game))
        }))
    }

    async fn extract_for(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> Result<Extracted, StoreError> {
        let Some(record) = self.game(game) else {
            return Ok(Extracted::Gone);
        };
        let r = lock(&record);
        Ok(if r.cleaned {
            Extracted::Gone
        } else if r.host != *user {
            Extracted::Guest
        } else {
            Extracted::Game(Box::new(r.extract(game)))
        })
    }

    async fn mark_batch(&self, games: &[GameToken], batch: &str) -> Result<(), StoreError> {
        for game in games {
            if let Some(record) = self.game(game) {
                lock(&record).batch = Some(batch.to_string());
            }
        }
        Ok(())
    }

    async fn clean(&self, game: &GameToken, keep: Duration) -> Result<(), StoreError> {
        let Some(record) = self.game(game) else {
            return Ok(());
        };
        let participants = {
            let mut r = lock(&record);
            if r.cleaned {
                return Ok(());
            }
            r.cleaned = true;
            r.logs = Vec::new();
            r.participants
        };
        if let Some(list) = lock(&self.inner.open).get_mut(&participants) {
            list.retain(|g| g != game);
        }
        let now = Instant::now();
        let mut expiring = lock(&self.inner.expiring);
        // A stay too long for the clock is for good.
        if let Some(at) = now.checked_add(keep) {
            expiring.push_back((at, game.clone()));
        }
        if expiring.front().is_some_and(|(at, _)| *at <= now) {
            let mut games = self.inner.games.write().unwrap_or_else(|e| e.into_inner());
            while let Some((at, _)) = expiring.front() {
                if *at > now {
                    break;
                }
                if let Some((_, gone)) = expiring.pop_front() {
                    games.remove(&gone);
                }
            }
        }
        Ok(())
    }

    async fn unfinished_games(&self) -> Option<u64> {
        let games = self.inner.games.read().unwrap_or_else(|e| e.into_inner());
        Some(
            games
                .values()
                .filter(|g| !lock(g).board.status.is_over())
                .count() as u64,
        )
    }

    async fn watch(&self, game: &GameToken) -> Result<SignalWatch, StoreError> {
        let record = self.game(game).ok_or(StoreError::UnknownGame)?;
        let rx = lock(&record).signal.subscribe();
        Ok(SignalWatch::new(rx, None))
    }

    async fn watch_for(
        &self,
        game: &GameToken,
        player: &UserToken,
    ) -> Result<SignalWatch, StoreError> {
        let record = self.game(game).ok_or(StoreError::UnknownGame)?;
        let rx = lock(&record).signal.subscribe_for(player);
        Ok(SignalWatch::new(rx, None))
    }
}
