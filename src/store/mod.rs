//! Where games live: the [`GameStore`] contract and its two implementations, the
//! embedded in-process [`MemoryStore`] and the [`RedisStore`] on the original keyspace
//! (on one server, or hash-tagged by game on a Redis Cluster); [`AnyStore`] is
//! whichever of the two a command was asked for.
//!
//! Every operation that changes a game is atomic in the store (a lock in memory, a
//! Lua script in Redis), so any number of server instances can share one store. Each
//! change also raises a [`Signal`], which is how lobbies learn that players joined,
//! whose turn it is and that a game ended, without polling.
//!
//! Stores decide nothing about combat: the rules in [`crate::game::rules`] do.

mod any;
mod memory;
mod redis;

use std::future::Future;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

use crate::etl::GameExtract;
use crate::game::rules::{Attack, Board, Forfeit, ForfeitReason, RuleError};
use crate::game::{GameStatus, GameToken, Hero, HeroId, UserToken};
use crate::roster::RosterHero;

pub use self::any::{AnyStore, StoreChoice, UnknownStore};
pub use self::memory::MemoryStore;
pub use self::redis::{RedisConfig, RedisStore};

/// What can go wrong in a store operation.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backing service did not answer or failed; nothing may have been written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A rule refused the action; nothing was written.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The game changed under a write too many times in a row.
    #[error("the game kept changing; try again")]
    Contended,
    #[error("unknown game")]
    UnknownGame,
    #[error("unknown user")]
    UnknownUser,
}

/// A snapshot of a game's life-cycle, raised on every change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    pub status: GameStatus,
    /// Players who joined so far.
    pub joined: u32,
    /// Attacks made so far.
    pub turns: u32,
    /// Players who forfeited so far.
    pub forfeits: u32,
    /// Whose turn it is, while the game is in progress.
    pub current: Option<UserToken>,
}

impl Signal {
    /// Signals of one game are ordered: later life-cycle phases, more turns, more
    /// forfeits and more players only ever grow, so a late or repeated delivery can be
    /// recognised.
    fn order_key(&self) -> (u8, u32, u32, u32) {
        (self.status.phase(), self.turns, self.forfeits, self.joined)
    }

    /// Which turn this is: a new pair means a new turn began (an attack was made or
    /// the player whose turn it was forfeited), even for the same player.
    pub fn turn(&self) -> (u32, u32) {
        (self.turns, self.forfeits)
    }

    /// Whether `player`'s lobby has anything to do on this signal after acting on
    /// `seen`: the game's phase or its players changed, or the turn may be the
    /// player's. Every other turn is another player's to announce.
    pub fn concerns(&self, seen: &Signal, player: &UserToken) -> bool {
        self.status != seen.status
            || self.joined != seen.joined
            || self.current.as_ref() == Some(player)
    }

    /// Whether `self` describes a later state than `other`.
    pub fn is_newer_than(&self, other: &Signal) -> bool {
        self.order_key() > other.order_key()
    }

    /// The compact text form carried on Redis pub/sub:
    /// `status|joined|turns|forfeits|current`.
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.status,
            self.joined,
            self.turns,
            self.forfeits,
            self.current.as_ref().map_or("", |u| u.as_str())
        )
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(5, '|');
        let status = GameStatus::parse(parts.next()?)?;
        let joined = parts.next()?.parse().ok()?;
        let turns = parts.next()?.parse().ok()?;
        let forfeits = parts.next()?.parse().ok()?;
        let current = match parts.next()? {
            "" => None,
            token => Some(UserToken::from(token)),
        };
        Some(Self {
            status,
            joined,
            turns,
            forfeits,
            current,
        })
    }

    /// The signal a game in this state raises.
    pub fn of(status: GameStatus, joined: usize, board: &Board) -> Self {
        let current = match status {
            GameStatus::InProgress => board.order.first().cloned(),
            _ => None,
        };
        Self {
            status,
            joined: u32::try_from(joined).unwrap_or(u32::MAX),
            turns: board.turns,
            forfeits: board.forfeits,
            current,
        }
    }
}

/// Hands a game's signals out in this process: every signal to the watches of the
/// whole game, and to each lobby's watch only those that concern its player. A signal
/// goes out only if it is newer than what the watch was last told.
pub(crate) struct SignalSender {
    game: watch::Sender<Signal>,
    lobbies: Vec<(UserToken, watch::Sender<Signal>)>,
}

impl SignalSender {
    pub(crate) fn new(first: Signal) -> Self {
        Self {
            game: watch::channel(first).0,
            lobbies: Vec::new(),
        }
    }

    /// Passes `signal` on to the watches that have not seen a later one.
    pub(crate) fn offer(&mut self, signal: Signal) {
        self.lobbies.retain(|(_, tx)| !tx.is_closed());
        for (player, tx) in &self.lobbies {
            tx.send_if_modified(|seen| {
                let tell = signal.is_newer_than(seen) && signal.concerns(seen, player);
                if tell {
                    *seen = signal.clone();
                }
                tell
            });
        }
        self.game.send_if_modified(|seen| {
            let tell = signal.is_newer_than(seen);
            if tell {
                *seen = signal;
            }
            tell
        });
    }

    /// A watch of every signal, from the latest one on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Signal> {
        self.game.subscribe()
    }

    /// A watch of the signals that concern `player`, from the latest one on.
    pub(crate) fn subscribe_for(&mut self, player: &UserToken) -> watch::Receiver<Signal> {
        let (tx, rx) = watch::channel(self.game.borrow().clone());
        self.lobbies.push((player.clone(), tx));
        rx
    }
}

/// Receives a game's signals. Dropping it ends the subscription.
pub struct SignalWatch {
    rx: watch::Receiver<Signal>,
    _registration: Option<Box<dyn Send + Sync>>,
}

impl SignalWatch {
    pub(crate) fn new(
        rx: watch::Receiver<Signal>,
        registration: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        Self {
            rx,
            _registration: registration,
        }
    }

    /// The latest signal, marking it seen.
    pub fn latest(&mut self) -> Signal {
        self.rx.borrow_and_update().clone()
    }

    /// Waits for a signal not yet seen. Errors only if the store went away.
    pub async fn changed(&mut self) -> Result<(), StoreError> {
        self.rx
            .changed()
            .await
            .map_err(|_| StoreError::Unavailable("the store shut down".into()))
    }

    /// Waits for a signal not yet seen for which `concerns` holds, marking the others
    /// seen on the way. Errors only if the store went away.
    pub async fn changed_until(
        &mut self,
        concerns: impl Fn(&Signal) -> bool,
    ) -> Result<(), StoreError> {
        loop {
            self.changed().await?;
            if concerns(&self.rx.borrow()) {
                return Ok(());
            }
        }
    }
}

/// One game as read in one atomic step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// How many players the game was created for.
    pub participants: u8,
    /// The player who created it.
    pub host: UserToken,
    /// Status, order, every member's hero and the turn counter.
    pub board: Board,
}

impl Snapshot {
    /// How many players joined.
    pub fn joined(&self) -> usize {
        self.board.heroes.len()
    }
}

/// What a worker holding one participant's `Cleaning Game Records` event finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extracted {
    /// An unknown game, or one already cleaned.
    Gone,
    /// The event is a guest's: the game goes with its host's event, and was not read.
    Guest,
    /// The host's: the game and its log, read in one atomic step.
    Game(Box<GameExtract>),
}

/// Who claims cleaning records: one id per claimant (a lobby, a referee's clean-up),
/// kept across its retries. A record belongs to the first id that claims it, and
/// asking again with that id claims it again, so a claim that took effect but whose
/// answer was lost (a request delivered after its caller gave up on it) is found by
/// the retry instead of leaving the record claimed by no one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimId(String);

impl ClaimId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a player asking to open their lobby of a game finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LobbyEntry {
    /// The lobby is now open; the game is for this many players.
    Entered { participants: u8 },
    /// The player's lobby of this game is open already (on any server).
    AlreadyOpen,
    /// The player did not join this game.
    NotInGame,
}

/// The result of `/api/v1/game/find`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    pub game: GameToken,
    pub hero: HeroId,
    /// Whether this join created the game (the user is its host).
    pub created: bool,
    /// Players in the game after this join.
    pub joined: u32,
}

/// The result of an accepted attack: the plan that was applied and its log record
/// (the JSON pushed on `games:<game>:logs` and sent back to the attacker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attacked {
    pub attack: Attack,
    pub record: String,
}

/// The result of an accepted forfeit and its log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forfeited {
    pub forfeit: Forfeit,
    pub record: String,
}

/// The contract both stores fulfil; `tests/store_contract.rs` runs one suite on each.
pub trait GameStore: Clone + Send + Sync + 'static {
    /// Replaces the hero collection (the `superheros` hash).
    fn replace_roster(
        &self,
        heroes: &[RosterHero],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The hero collection as games use it, ordered by id.
    fn roster(&self) -> impl Future<Output = Result<Vec<Hero>, StoreError>> + Send;
    /// One round trip to the store, touching nothing: an error when it cannot be
    /// reached now.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Logs a user in by name; the bool says whether the user was created.
    fn login(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<(UserToken, bool), StoreError>> + Send;

    /// Joins a random open game for `participants` players that `user` is not in yet,
    /// or creates one with the token `new_game`. The hero is the first of `candidates`
    /// (distinct roster heroes, at least `participants` of them) not taken in that
    /// game. Atomic: a game never gets more players than it was created for. Refused
    /// with [`StoreError::UnknownUser`] for a token `login` did not hand out, and with
    /// [`RuleError::StillPlaying`] while the user is still in play in another game (in
    /// its lobby, or alive in a game in progress).
    fn join(
        &self,
        user: &UserToken,
        participants: u8,
        new_game: &GameToken,
        candidates: &[Hero],
    ) -> impl Future<Output = Result<Joined, StoreError>> + Send;

    /// Reads a game in one atomic step; `None` for an unknown game.
    fn snapshot(
        &self,
        game: &GameToken,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// Starts a full game that is still in its lobby (status `Starting`, then
    /// `In-Progress`), its turn order the participants sorted
    /// ([`crate::game::rules::turn_order`]). The game as this call started it (its
    /// host logs `Game Started`); `None` if it was not startable, for instance because
    /// another lobby started it first. One call, without reading the game first: every
    /// lobby of a game that fills tries at once.
    fn start(
        &self,
        game: &GameToken,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// The game as it was at `turn` (attacks, forfeits) while in progress, as
    /// [`Signal::turn`] names it: what this process's last change of the game left,
    /// when that is still the game at that turn, without a read; otherwise
    /// [`Self::snapshot`], which may be later.
    fn snapshot_at(
        &self,
        game: &GameToken,
        turn: (u32, u32),
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send {
        let _ = turn;
        self.snapshot(game)
    }

    /// Times out a game whose lobby is not full (status `Timed Out`). False if the
    /// game filled or changed state meanwhile.
    fn time_out(&self, game: &GameToken) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One player's hero in one game, if both exist.
    fn hero(
        &self,
        game: &str,
        user: &str,
    ) -> impl Future<Output = Result<Option<Hero>, StoreError>> + Send;

    /// Plans an attack by the rules and applies it atomically, with its log record
    /// stamped `timestamp`. `turn_cap` as in [`crate::game::rules::plan_attack`].
    fn attack(
        &self,
        game: &str,
        attacker: &str,
        enemy: &str,
        turn_cap: u32,
        timestamp: &str,
    ) -> impl Future<Output = Result<Attacked, StoreError>> + Send;

    /// Completes a game in which `user` has no living opponent left.
    fn finish_without_enemy(
        &self,
        game: &str,
        user: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Eliminates a player who is out of time or gone, as planned by
    /// [`crate::game::rules::plan_forfeit`], with its log record stamped `timestamp`.
    fn forfeit(
        &self,
        game: &GameToken,
        user: &UserToken,
        reason: ForfeitReason,
        turn: Option<(u32, u32)>,
        timestamp: &str,
    ) -> impl Future<Output = Result<Forfeited, StoreError>> + Send;

    /// Marks a player's lobby as open, if they joined the game and their lobby is not
    /// open already: checked and marked in one step, without reading the game.
    fn enter_lobby(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> impl Future<Output = Result<LobbyEntry, StoreError>> + Send;

    /// Marks a player's lobby as closed.
    fn leave_lobby(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks a player's lobby as closed and, if the game is over, claims the right to
    /// log the player's `Cleaning Game Records` for `claim`: true when the record is
    /// `claim`'s, whether this call or an earlier one with the same id claimed it; each
    /// participant's record has one claimant (see also [`Self::claim_cleanings`]).
    fn close_lobby(
        &self,
        game: &GameToken,
        user: &UserToken,
        claim: &ClaimId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Claims for `claim` the right to log `Cleaning Game Records` for every
    /// participant of a game that is over, in one step: the participants whose record
    /// no one else claimed (those `claim` claimed before included), the host first.
    /// Empty for a game not over, or unknown.
    fn claim_cleanings(
        &self,
        game: &GameToken,
        claim: &ClaimId,
    ) -> impl Future<Output = Result<Vec<UserToken>, StoreError>> + Send;

    /// Reads a game and its log in one atomic step, for its ETL. `None` for an unknown
    /// game or one already cleaned.
    fn extract(
        &self,
        game: &GameToken,
    ) -> impl Future<Output = Result<Option<GameExtract>, StoreError>> + Send;

    /// [`Self::extract`] for the worker holding `user`'s event: a guest's event gets
    /// [`Extracted::Guest`], told by the game's host without reading the game.
    fn extract_for(
        &self,
        game: &GameToken,
        user: &UserToken,
    ) -> impl Future<Output = Result<Extracted, StoreError>> + Send;

    /// Notes that `games` go into the batch `batch` (a file stem), before the batch is
    /// written: a worker that takes one of them over later knows where to look.
    fn mark_batch(
        &self,
        games: &[GameToken],
        batch: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Cleans a game after its ETL: its log goes at once, it leaves the game
    /// indexes, and its other records are kept for `keep` (REDIS_EXPIRY), then go.
    fn clean(
        &self,
        game: &GameToken,
        keep: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// How many games are neither completed nor timed out, where the store can tell
    /// at no cost: the embedded store can; Redis would have to scan every game.
    fn unfinished_games(&self) -> impl Future<Output = Option<u64>> + Send {
        async { None }
    }

    /// Reads a game's state again and hands it to this process's watches of it, if
    /// it is newer than what they saw: for a signal that may have been lost (a
    /// failover drops those in flight). The embedded store loses none.
    fn reread(&self, game: &GameToken) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = game;
        async { Ok(()) }
    }

    /// Subscribes to a game's signals; the first one is its current state.
    fn watch(
        &self,
        game: &GameToken,
    ) -> impl Future<Output = Result<SignalWatch, StoreError>> + Send;

    /// Subscribes to the signals of a game that may concern `player` (see
    /// [`Signal::concerns`]), so that a turn of a three-player game wakes one lobby,
    /// not three. Both stores filter; one that does not may deliver every signal (the
    /// default), and the watcher checks anyway.
    fn watch_for(
        &self,
        game: &GameToken,
        player: &UserToken,
    ) -> impl Future<Output = Result<SignalWatch, StoreError>> + Send {
        let _ = player;
        self.watch(game)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_text_round_trip() {
        let s = Signal {
            status: GameStatus::InProgress,
            joined: 3,
            turns: 12,
            forfeits: 1,
            current: Some(UserToken::from("abc")),
        };
        assert_eq!(Signal::decode(&s.encode()), Some(s.clone()));
        let w = Signal {
            status: GameStatus::WaitingLobby,
            joined: 1,
            turns: 0,
            forfeits: 0,
            current: None,
        };
        assert_eq!(Signal::decode(&w.encode()), Some(w.clone()));
        assert!(s.is_newer_than(&w));
        assert!(!w.is_newer_than(&s));
        assert_eq!(Signal::decode("nonsense"), None);
    }
}
