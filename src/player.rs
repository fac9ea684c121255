//! Bot players that behave like the original client: log in as `USER%03d`, ask for
//! a game of 2 or 3 players at random, wait in the lobby, and on each turn look up the
//! other heroes and attack a random living one; leave on COMPLETE or TIMED OUT.
//!
//! Unlike the original, a bot keeps one connection per endpoint open for all its
//! games instead of reconnecting for every request, and every wait has a timeout.
//! Thousands of bots run as tasks in one process.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::game::protocol::{
    ACTION_PATH, FIND_PATH, GAME_COMPLETE, GAME_START, GAME_TIMED_OUT, GAME_TURN, HERO_PATH,
    LOBBY_PATH, LOGIN_PATH, ProtocolError, ServerFrame, attack_request, find_request,
    game_user_request, login_request,
};
use crate::game::rules::RuleError;
use crate::game::{GameToken, UserToken};
use crate::net::{ClientSocket, Dial, DialError};
use crate::server::{IDLE_CLOSE_REASON, READ_BUFFER_BYTES};
use crate::timer::LazyTimer;

/// The default of [`PlayerSettings::concurrent_bots`]. A few hundred bots in games
/// keep a server's cores busy; many more only lengthen every turn's wait, past the
/// turn timeout when tens of thousands start at once.
pub const CONCURRENT_BOTS: usize = 1000;

/// Bots logging in and opening their connections at the same time, at most: every
/// handshake in progress holds buffers on both sides, so tens of thousands at once
/// cost gigabytes for a moment and gain nothing.
const CONNECTING_BOTS: usize = 256;

/// With this many bots or fewer still playing in the process, bots ask for 2 players.
const ENDGAME_BOTS: usize = 5;
/// With this many bots or fewer not waiting in a lobby, a bot helps fill the lobbies
/// others wait in rather than choosing a game size at random.
const FEW_FREE_BOTS: usize = 10;
/// How often, and how far apart, a bot asks again for a game while the server says it
/// still plays the one it just left (its lobby not yet closed there).
const FIND_RETRIES: usize = 50;
const FIND_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How the bots play.
#[derive(Clone, Debug)]
pub struct PlayerSettings {
    /// The server instances: `ws://host:port` base URLs, or a server in this process.
    pub servers: Vec<Dial>,
    pub bots: usize,
    /// Games per bot; negative: no limit.
    pub games: i64,
    pub seed: u64,
    /// The first bot is `USER{first_user:03}`.
    pub first_user: usize,
    /// Longest wait for any one server message. A lobby waits through other players'
    /// turns, so this is generous.
    pub idle_timeout: Duration,
    /// Every player of the run is one of these bots (as in `simulate`). Then a lobby
    /// that can no longer fill, because too few bots still play, is left at once
    /// instead of waiting out the lobby timeout, and a bot with no one left to play
    /// with stops.
    pub closed_world: bool,
    /// About this many games per second in all (None: as fast as possible). Bots
    /// pace their requests to join a game accordingly.
    pub rate: Option<f64>,
    /// Bots in a game at once, at most (0: all of them); the others wait, first come
    /// first served, before they look for one.
    pub concurrent_bots: usize,
    /// Completed games, counted live (for progress bars).
    pub completed: Arc<AtomicU64>,
    /// While this says true, no bot starts looking for a game (a run's tables fall
    /// behind: see `simulate`'s backlog limit).
    pub hold: Option<watch::Receiver<bool>>,
    /// Once this says true, no bot starts another game: each finishes the one it
    /// plays and stops, the games it did not play counted as skipped.
    pub stop: Option<watch::Receiver<bool>>,
}

impl Default for PlayerSettings {
    fn default() -> Self {
        Self {
            servers: vec![Dial::Url("ws://localhost:5678".into())],
            bots: 1,
            games: 10,
            seed: 0,
            first_user: 0,
            idle_timeout: Duration::from_secs(60),
            closed_world: false,
            rate: None,
            concurrent_bots: CONCURRENT_BOTS,
            completed: Arc::default(),
            hold: None,
            stop: None,
        }
    }
}

/// The bots' closing summary (the `player --json` fields).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlayerSummary {
    pub bots: usize,
    pub games_completed: u64,
    pub games_timed_out: u64,
    /// Bots that stopped early on an error (connection lost, unexpected reply, ...).
    pub bot_errors: u64,
    /// Closed world only: lobbies left because no bot was left to fill them, and
    /// games not played because no other bot was left.
    pub lobbies_abandoned: u64,
    /// Games not played: no other bot was left (closed world), the run was asked to
    /// stop, or the server was shutting down.
    pub games_skipped: u64,
    /// Connections the server had closed for idleness (between games, or while a
    /// bot waited in a lobby) and that a bot opened again: before its next request,
    /// or to send again a request that crossed the server's close.
    pub connections_reopened: u64,
    pub elapsed_s: f64,
    pub games_per_s: f64,
    /// Completed games per second from the first game's end to the last's: the
    /// pace itself, without the start and the end of the run (what `--rate` sets).
    pub completion_rate: f64,
    /// The tokens of the completed games (not part of the printed summary).
    #[serde(skip)]
    pub completed_games: Vec<GameToken>,
    /// When each of `completed_games` ended, in the same order.
    #[serde(skip)]
    pub completed_at: Vec<Instant>,
}

#[derive(Debug, Error)]
/// Why a bot stopped.
pub enum BotError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: DialError },
    #[error("connection lost: {0}")]
    Lost(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("no message from the server for {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
}

/// What all bots of a run count together.
struct Tally {
    completed: Arc<AtomicU64>,
    completed_games: Mutex<Vec<(GameToken, Instant)>>,
    pacer: Option<Pacer>,
    errors: AtomicU64,
    reopened: AtomicU64,
    /// Places in a game, one per bot playing (None: no cap).
    places: Option<Semaphore>,
    /// How many places there are (`usize::MAX`: no cap).
    place_count: usize,
    /// Bots still logging in and opening their connections: no bot plays before
    /// all are done, so that games are not slowed down by a crowd still connecting.
    connecting: AtomicUsize,
    /// Turns true when no bot is connecting any more.
    all_connected: watch::Sender<bool>,
    /// Places for bots logging in and connecting at the same time.
    handshakes: Semaphore,
    /// Bots still playing in this process.
    active: watch::Sender<usize>,
    abandoned: AtomicU64,
    skipped: AtomicU64,
    /// A server said it is shutting down (warned once).
    server_stopping: AtomicBool,
    /// Bots of this process waiting in a lobby for a game of 2 and of 3 players.
    waiting: [AtomicUsize; 2],
    /// Timed-out games, by token: every waiting player of such a game hears of it.
    timed_out: Mutex<HashSet<GameToken>>,
}

impl Tally {
    fn new(settings: &PlayerSettings) -> Self {
        let pacer = settings
            .rate
            .filter(|r| r.is_finite() && *r > 0.0)
            .and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok())
            .map(Pacer::new);
        // At least 5: the server keeps one open game of 2 and one of 3 players, which
        // can hold 3 waiting bots; 2 more fill them.
        let place_count = match settings.concurrent_bots {
            0 => usize::MAX,
            n => n.clamp(5, Semaphore::MAX_PERMITS),
        };
        Tally {
            completed: settings.completed.clone(),
            completed_games: Mutex::default(),
            pacer,
            errors: AtomicU64::default(),
            reopened: AtomicU64::default(),
            places: (settings.concurrent_bots > 0).then(|| Semaphore::new(place_count)),
            place_count,
            connecting: AtomicUsize::new(settings.bots),
            all_connected: watch::Sender::new(settings.bots == 0),
            handshakes: Semaphore::new(CONNECTING_BOTS),
            active: watch::Sender::new(settings.bots),
            abandoned: AtomicU64::default(),
            skipped: AtomicU64::default(),
            server_stopping: AtomicBool::default(),
            waiting: Default::default(),
            timed_out: Mutex::default(),
        }
    }
}

/// Runs the bots to the end and sums up.
pub async fn run(settings: PlayerSettings) -> PlayerSummary {
    let tally = Arc::new(Tally::new(&settings));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..settings.bots {
        let settings = settings.clone();
        let tally = tally.clone();
        tasks.spawn(async move {
            let result = bot(i, &settings, &tally).await;
            tally.active.send_modify(|a| *a -= 1);
            if let Err(e) = result {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::telemetry::names::BOT_ERRORS).increment(1);
                tracing::warn!("bot USER{:03} stopped: {e}", settings.first_user + i);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed_s = started.elapsed().as_secs_f64();
    let games_completed = tally.completed.load(Ordering::Relaxed);
    let games_timed_out = tally.timed_out.lock().map_or(0, |s| s.len() as u64);
    let completed = tally
        .completed_games
        .lock()
        .map(|mut g| std::mem::take(&mut *g))
        .unwrap_or_default();
    PlayerSummary {
        bots: settings.bots,
        games_completed,
        games_timed_out,
        bot_errors: tally.errors.load(Ordering::Relaxed),
        lobbies_abandoned: tally.abandoned.load(Ordering::Relaxed),
        games_skipped: tally.skipped.load(Ordering::Relaxed),
        connections_reopened: tally.reopened.load(Ordering::Relaxed),
        elapsed_s,
        games_per_s: if elapsed_s > 0.0 {
            games_completed as f64 / elapsed_s
        } else {
            0.0
        },
        completion_rate: completion_rate(completed.iter().map(|(_, at)| *at)),
        completed_games: completed.iter().map(|(g, _)| g.clone()).collect(),
        completed_at: completed.iter().map(|(_, at)| *at).collect(),
    }
}

/// Games per second between the first and the last of these ends (0 for fewer
/// than two).
pub(crate) fn completion_rate(ends: impl IntoIterator<Item = Instant>) -> f64 {
    let mut n = 0u64;
    let mut span: Option<(Instant, Instant)> = None;
    for at in ends {
        n += 1;
        span = Some(span.map_or((at, at), |(first, last)| (first.min(at), last.max(at))));
    }
    match span {
        Some((first, last)) if n > 1 && last > first => {
            (n - 1) as f64 / (last - first).as_secs_f64()
        }
        _ => 0.0,
    }
}

/// Paces the bots' joins so that games start at a set rate: a join into a game of
/// `n` players is `1/n` of a game, so the games started follow the rate exactly
/// whatever mix of game sizes the bots choose. A join takes its turn before the bot
/// chooses the size, at the average share (5/12 of a game: half the joins go to games
/// of 2, half to games of 3), and the difference is settled once it has chosen. A
/// pacer that fell behind (every bot busy) catches up by at most [`Pacer::CATCH_UP`].
struct Pacer {
    per_game: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    /// The most a pacer that fell behind makes up for, in a burst.
    const CATCH_UP: Duration = Duration::from_secs(1);

    fn new(per_game: Duration) -> Self {
        Self {
            per_game,
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    fn average_join(&self) -> Duration {
        self.per_game * 5 / 12
    }

    /// Waits for the next join's turn.
    async fn wait(&self) {
        let slot = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let now = tokio::time::Instant::now();
            let earliest = now.checked_sub(Self::CATCH_UP).unwrap_or(now);
            let slot = (*next).max(earliest);
            *next = slot + self.average_join();
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Settles a join into a game of `players`, which took its turn at the average.
    fn joined(&self, players: u8) {
        let share = self.per_game / u32::from(players.max(1));
        let average = self.average_join();
        if let Ok(mut next) = self.next.lock() {
            if share >= average {
                *next += share - average;
            } else {
                *next = next.checked_sub(average - share).unwrap_or(*next);
            }
        }
    }
}

/// One WebSocket connection to one endpoint.
struct Conn {
    ws: ClientSocket,
    timeout: Duration,
    /// The timer of every wait for a reply, kept across waits.
    timer: LazyTimer,
    server: Dial,
    path: &'static str,
    /// The requests last posted, until the first reply to them: sent again, once, on
    /// a new connection when the server's idle close crossed them, since the server
    /// reads nothing after that close.
    unanswered: Vec<Utf8Bytes>,
}

impl Conn {
    async fn open(server: &Dial, path: &'static str, timeout: Duration) -> Result<Self, BotError> {
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
        let ws = tokio::time::timeout(timeout, server.open(path, config))
            .await
            .map_err(|_| BotError::Timeout(timeout))?
            .map_err(|source| BotError::Connect {
                url: format!("{server}{path}"),
                source,
            })?;
        Ok(Self {
            ws,
            timeout,
            timer: LazyTimer::default(),
            server: server.clone(),
            path,
            unanswered: Vec::new(),
        })
    }

    /// Opens the connection again if the server closed it since it was last used, as
    /// a server does with a connection left idle (its close frame, or the end of the
    /// stream, is then already waiting here); says whether it did. A request sent
    /// after this check reaches the server, unless it closes the connection in the
    /// very moment between.
    async fn revive(&mut self) -> Result<bool, BotError> {
        loop {
            match self.ws.next().now_or_never() {
                None => return Ok(false),
                Some(Some(Ok(Message::Text(text)))) => {
                    return Err(BotError::Unexpected(text.to_string()));
                }
                Some(Some(Ok(Message::Close(_)) | Err(_)) | None) => break,
                Some(Some(Ok(_))) => {}
            }
        }
        self.reopen().await?;
        Ok(true)
    }

    /// Replaces the connection with a new one to the same endpoint, keeping the
    /// requests still unanswered.
    async fn reopen(&mut self) -> Result<(), BotError> {
        let unanswered = std::mem::take(&mut self.unanswered);
        *self = Self::open(&self.server.clone(), self.path, self.timeout).await?;
        self.unanswered = unanswered;
        Ok(())
    }

    async fn send(&mut self, frame: String) -> Result<(), BotError> {
        Ok(self.ws.send(Message::text(frame)).await?)
    }

    /// Sends requests whose answers come later, written together, on a connection
    /// opened again first if the server had closed it.
    async fn post(
        &mut self,
        frames: impl IntoIterator<Item = Utf8Bytes>,
        tally: &Tally,
    ) -> Result<(), BotError> {
        if self.revive().await? {
            tally.reopened.fetch_add(1, Ordering::Relaxed);
        }
        self.unanswered.clear();
        self.unanswered.extend(frames);
        self.write_unanswered().await
    }

    async fn write_unanswered(&mut self) -> Result<(), BotError> {
        for frame in &self.unanswered {
            self.ws.feed(Message::Text(frame.clone())).await?;
        }
        Ok(self.ws.flush().await?)
    }

    /// Sends requests (pipelined, in one write) and reads their replies, on a
    /// connection opened again first if the server had closed it.
    async fn ask_all(
        &mut self,
        frames: &[Utf8Bytes],
        tally: &Tally,
    ) -> Result<Vec<Reply>, BotError> {
        let n = frames.len();
        self.post(frames.iter().cloned(), tally).await?;
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(self.recv(tally).await?);
        }
        Ok(replies)
    }

    /// Sends a request and reads its reply (see [`Self::ask_all`]).
    async fn ask(&mut self, frame: Utf8Bytes, tally: &Tally) -> Result<Reply, BotError> {
        self.post([frame], tally).await?;
        self.recv(tally).await
    }

    /// Reads the next reply. When the server's idle close crossed the requests last
    /// posted, they are sent again on a new connection first.
    async fn recv(&mut self, tally: &Tally) -> Result<Reply, BotError> {
        let mut resent = false;
        loop {
            // A wait too long for the clock is no wait.
            let until = tokio::time::Instant::now().checked_add(self.timeout);
            let msg = tokio::select! {
                msg = self.ws.next() => msg.ok_or(BotError::Closed)??,
                () = self.timer.until_some(until) => return Err(BotError::Timeout(self.timeout)),
            };
            match msg {
                Message::Text(text) => {
                    self.unanswered.clear();
                    return Ok(Reply(text));
                }
                Message::Close(Some(close))
                    if close.reason == IDLE_CLOSE_REASON
                        && !self.unanswered.is_empty()
                        && !resent =>
                {
                    self.reopen().await?;
                    tally.reopened.fetch_add(1, Ordering::Relaxed);
                    self.write_unanswered().await?;
                    resent = true;
                }
                Message::Close(_) => return Err(BotError::Closed),
                _ => {}
            }
        }
    }
}

/// A text frame the server sent; [`Reply::frame`] reads it, borrowing from it.
struct Reply(Utf8Bytes);

impl Reply {
    fn frame(&self) -> Result<ServerFrame<'_>, BotError> {
        ServerFrame::parse(&self.0).ok_or_else(|| BotError::Unexpected(self.0.to_string()))
    }
}

/// A bot's open connections, spread over the server instances.
struct Links {
    find: Conn,
    lobby: Conn,
    hero: Conn,
    action: Conn,
}

async fn bot(index: usize, settings: &PlayerSettings, tally: &Tally) -> Result<(), BotError> {
    // Seeded by the bot's number, so that bots of different processes (or of a
    // simulation's shards) with the same seed choose differently.
    let number = settings.first_user + index;
    let mut rng = SmallRng::seed_from_u64(
        settings.seed ^ (number as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let home = &settings.servers[index % settings.servers.len()];
    let away = &settings.servers[(index + 1) % settings.servers.len()];
    let t = settings.idle_timeout;
    let name = format!("USER{number:03}");
    let connecting = Connecting(tally);
    let handshake = tally.handshakes.acquire().await.ok();
    // Boxed, like a game below: what connecting takes is freed once connected.
    let (me, mut links) = Box::pin(async {
        let me = login(&mut Conn::open(home, LOGIN_PATH, t).await?, &name, tally).await?;
        let links = Links {
            find: Conn::open(home, FIND_PATH, t).await?,
            lobby: Conn::open(home, LOBBY_PATH, t).await?,
            hero: Conn::open(away, HERO_PATH, t).await?,
            action: Conn::open(away, ACTION_PATH, t).await?,
        };
        Ok::<_, BotError>((me, links))
    })
    .await?;
    drop((handshake, connecting));
    let _ = tally.all_connected.subscribe().wait_for(|all| *all).await;
    let mut played = 0i64;
    let skip_the_rest = |played: i64| {
        let left = if settings.games < 0 {
            0
        } else {
            settings.games - played
        };
        tally
            .skipped
            .fetch_add(left.unsigned_abs(), Ordering::Relaxed);
    };
    while settings.games < 0 || played < settings.games {
        if (settings.closed_world && *tally.active.borrow() < 2) || stopping(settings) {
            skip_the_rest(played);
            break;
        }
        // Held until this bot's part in the game is over.
        let place = match &tally.places {
            Some(places) => places.acquire().await.ok(),
            None => None,
        };
        // Boxed: a bot waiting for its place holds a small future, not a game's.
        let game = Box::pin(play_game(&mut links, &me, &mut rng, tally, settings)).await;
        drop(place);
        match game? {
            Lobby::Over => {}
            Lobby::Abandoned => {
                // The server still holds the left lobby on that connection: use a
                // new one.
                links.lobby = Box::pin(Conn::open(home, LOBBY_PATH, t)).await?;
            }
            Lobby::NotStarted => {
                skip_the_rest(played);
                break;
            }
        }
        played += 1;
    }
    Ok(())
}

/// Whether the run was asked to stop.
fn stopping(settings: &PlayerSettings) -> bool {
    settings.stop.as_ref().is_some_and(|stop| *stop.borrow())
}

async fn login(conn: &mut Conn, name: &str, tally: &Tally) -> Result<UserToken, BotError> {
    conn.send(login_request(name)).await?;
    // A new user first gets USER CREATED, then the token.
    loop {
        let reply = conn.recv(tally).await?;
        let frame = reply.frame()?;
        if let Some(token) = frame.payload.user_token {
            return Ok(UserToken::from(token.as_str()));
        }
        if frame.message() != Some("USER CREATED") {
            return Err(BotError::Unexpected(format!(
                "login: {:?}",
                frame.message()
            )));
        }
    }
}

/// Counts a bot as connecting until dropped, whether it connected or failed to.
struct Connecting<'a>(&'a Tally);

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        // Only the last one wakes the waiting bots, once.
        if self.0.connecting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_connected.send_replace(true);
        }
    }
}

/// How a bot's part in a game ended.
enum Lobby {
    Over,
    Abandoned,
    /// No game was started: the run was asked to stop while the bot waited for
    /// its turn to look for one, or the server is shutting down.
    NotStarted,
}

async fn play_game(
    links: &mut Links,
    me: &UserToken,
    rng: &mut SmallRng,
    tally: &Tally,
    settings: &PlayerSettings,
) -> Result<Lobby, BotError> {
    if let Some(hold) = &settings.hold {
        // A closed hold channel (its run ending) holds no one.
        let _ = hold.clone().wait_for(|held| !*held).await;
    }
    if let Some(pacer) = &tally.pacer {
        pacer.wait().await;
    }
    if stopping(settings) {
        return Ok(Lobby::NotStarted);
    }
    let participants = choose_participants(tally, rng);
    if let Some(pacer) = &tally.pacer {
        pacer.joined(participants);
    }
    let find = Utf8Bytes::from(find_request(me, participants));
    let mut joined = links.find.ask(find.clone(), tally).await?;
    // A lobby this bot just left may not be closed on the server yet (its game not
    // yet timed out): the server then says the bot still plays there. Ask again.
    let still_playing = RuleError::StillPlaying.to_string();
    let mut retries = 0;
    let game = loop {
        let frame = joined.frame()?;
        if let Some(token) = &frame.payload.game_token {
            break GameToken::from(token.as_str());
        }
        // Told only when no game came, so a found game costs no comparison.
        let message = frame.message();
        if message == Some(still_playing.as_str()) && retries < FIND_RETRIES {
            retries += 1;
            tokio::time::sleep(FIND_RETRY_PAUSE).await;
            joined = links.find.ask(find.clone(), tally).await?;
            continue;
        }
        if message == Some(ProtocolError::ShuttingDown.to_string().as_str()) {
            if !tally.server_stopping.swap(true, Ordering::Relaxed) {
                tracing::warn!("the server is shutting down: bots stop looking for games");
            }
            return Ok(Lobby::NotStarted);
        }
        return Err(BotError::Unexpected(format!("find: {message:?}")));
    };

    // A lobby connection is idle until its first game: the server may have closed it.
    let join = game_user_request(&game, me);
    links.lobby.post([join.into()], tally).await?;
    let waiting = Waiting::new(&tally.waiting[usize::from(participants - 2)]);
    let game = GameRun {
        token: game,
        participants,
        closed_world: settings.closed_world,
    };
    lobby(links, &game, me, rng, tally, waiting).await
}

/// The game a bot is in.
struct GameRun {
    token: GameToken,
    participants: u8,
    closed_world: bool,
}

/// Counts a bot as waiting in a lobby until the game starts or the lobby ends.
struct Waiting<'a>(Option<&'a AtomicUsize>);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(Some(counter))
    }

    fn done(&mut self) {
        if let Some(counter) = self.0.take() {
            counter.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

/// Like the original, 2 or 3 players at random (half the joins go to games of each
/// size), except when few bots of this process are free to come (running, with a
/// place in a game, and not waiting in a lobby): then a bot first
/// helps fill a lobby another bot waits in, and the last few bots pair up. Otherwise
/// those lobbies would sit out the lobby timeout, waiting for players who chose the
/// other size or have already left. With more bots free, a lobby fills soon whatever
/// one bot chooses; helping then would feed on itself (a lobby of 3 always waiting
/// draws every bot to games of 3) and a run would settle on one size.
fn choose_participants(tally: &Tally, rng: &mut SmallRng) -> u8 {
    let waiting_for = |n: u8| tally.waiting[usize::from(n - 2)].load(Ordering::Relaxed);
    let (two, three) = (waiting_for(2), waiting_for(3));
    let active = *tally.active.borrow();
    if active.min(tally.place_count).saturating_sub(two + three) > FEW_FREE_BOTS {
        return rng.random_range(2..=3);
    }
    match (two, three) {
        (0, 0) if active <= ENDGAME_BOTS => 2,
        (0, 0) => rng.random_range(2..=3),
        (0, _) => 3,
        (_, 0) => 2,
        _ => rng.random_range(2..=3),
    }
}

/// Follows one game's lobby until it is over.
async fn lobby(
    links: &mut Links,
    game: &GameRun,
    me: &UserToken,
    rng: &mut SmallRng,
    tally: &Tally,
    mut waiting: Waiting<'_>,
) -> Result<Lobby, BotError> {
    let mut opponents = Opponents::default();
    let mut active = tally.active.subscribe();
    let mut started = false;
    loop {
        let can_give_up = game.closed_world && !started;
        let reply = tokio::select! {
            reply = links.lobby.recv(tally) => reply?,
            // No bot left could fill this lobby: waiting out the timeout is pointless.
            _ = active.wait_for(|a| *a < usize::from(game.participants)), if can_give_up => {
                tally.abandoned.fetch_add(1, Ordering::Relaxed);
                return Ok(Lobby::Abandoned);
            }
        };
        let frame = reply.frame()?;
        match frame.game() {
            Some(GAME_START) => {
                started = true;
                waiting.done();
                let all = frame.payload.participants.unwrap_or_default();
                let tokens = all
                    .into_iter()
                    .filter(|p| p.as_str() != me.as_str())
                    .map(|p| UserToken::from(p.as_str()))
                    .collect();
                opponents = Opponents::new(&game.token, me, tokens);
            }
            Some(GAME_TURN) => take_turn(links, &game.token, me, &opponents, rng, tally).await?,
            Some(GAME_COMPLETE) => {
                // Each game is counted once, by the bot with the lowest token, wherever
                // that bot runs.
                let tokens = &opponents.tokens;
                if !tokens.is_empty() && tokens.iter().all(|p| p > me) {
                    if let Ok(mut games) = tally.completed_games.lock() {
                        games.push((game.token.clone(), Instant::now()));
                    }
                    tally.completed.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::telemetry::names::BOT_GAMES).increment(1);
                }
                return Ok(Lobby::Over);
            }
            Some(GAME_TIMED_OUT) => {
                if let Ok(mut set) = tally.timed_out.lock() {
                    set.insert(game.token.clone());
                }
                return Ok(Lobby::Over);
            }
            _ => {
                return Err(BotError::Unexpected(format!(
                    "lobby: {:?}",
                    frame.message()
                )));
            }
        }
    }
}

/// A game's opponents, with the requests a turn sends about each, written once a
/// game: every turn looks each opponent up and attacks one of them.
#[derive(Default)]
struct Opponents {
    tokens: Vec<UserToken>,
    lookups: Vec<Utf8Bytes>,
    attacks: Vec<Utf8Bytes>,
}

impl Opponents {
    fn new(game: &GameToken, me: &UserToken, tokens: Vec<UserToken>) -> Self {
        let lookups = tokens
            .iter()
            .map(|p| game_user_request(game, p).into())
            .collect();
        let attacks = tokens
            .iter()
            .map(|p| attack_request(game, me, Some(p)).into())
            .collect();
        Self {
            tokens,
            lookups,
            attacks,
        }
    }
}

/// Looks up every opponent's hero (requests pipelined on one connection), then
/// attacks a random living one, or sends a null enemy when none is left.
async fn take_turn(
    links: &mut Links,
    game: &GameToken,
    me: &UserToken,
    opponents: &Opponents,
    rng: &mut SmallRng,
    tally: &Tally,
) -> Result<(), BotError> {
    let mut alive = Vec::with_capacity(opponents.tokens.len());
    let replies = links.hero.ask_all(&opponents.lookups, tally).await?;
    for (i, (reply, asked)) in replies.iter().zip(&opponents.tokens).enumerate() {
        let frame = reply.frame()?;
        let Some(hero) = frame.payload.hero else {
            return Err(BotError::Unexpected(format!("hero: {:?}", frame.message())));
        };
        // Replies come in the order of the requests, on one connection.
        if hero.token.as_str() != asked.as_str() {
            return Err(BotError::Unexpected(format!(
                "hero: asked for {asked}, told of {}",
                hero.token.as_str()
            )));
        }
        if hero.id.is_some() && hero.health > 0 {
            alive.push(i);
        }
    }
    let attack = match alive.len() {
        0 => attack_request(game, me, None).into(),
        n => opponents.attacks[alive[rng.random_range(0..n)]].clone(),
    };
    let reply = links.action.ask(attack, tally).await?;
    match reply.frame()?.message() {
        None => Ok(()),
        Some(error) => Err(BotError::Unexpected(format!("action: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::protocol::GameUser;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    /// A peer that plays the server's side of a request crossing its close: on each
    /// connection it reads one request, then closes with the reason its script gives
    /// for that connection, or, past the script's end, answers the request.
    async fn scripted_server(closes: &'static [&'static str]) -> (Dial, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    let Some(Ok(Message::Text(request))) = ws.next().await else {
                        return;
                    };
                    let reply = match closes.get(n) {
                        Some(reason) => Message::Close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: (*reason).into(),
                        })),
                        None => Message::text(format!("answer to {request}")),
                    };
                    let _ = ws.send(reply).await;
                    while let Some(Ok(_)) = ws.next().await {}
                });
            }
        });
        (Dial::Url(url), accepted)
    }

    async fn ask_once(closes: &'static [&'static str]) -> (Result<String, String>, u64, usize) {
        let (server, accepted) = scripted_server(closes).await;
        let tally = Tally::new(&PlayerSettings::default());
        let mut conn = Conn::open(&server, "/", Duration::from_secs(10))
            .await
            .unwrap();
        let reply = conn.ask("request".into(), &tally).await;
        let reply = reply.map(|r| r.0.to_string()).map_err(|e| e.to_string());
        let reopened = tally.reopened.load(Ordering::Relaxed);
        (reply, reopened, accepted.load(Ordering::Relaxed))
    }

    /// A peer answering each request with what `answer` makes of it; the attacks it
    /// was sent are kept in the returned list.
    async fn answering_server(answer: fn(&str) -> String) -> (Dial, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let attacks = Arc::new(Mutex::new(Vec::new()));
        let seen = attacks.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    while let Some(Ok(Message::Text(request))) = ws.next().await {
                        if request.contains("ENEMY_TOKEN") {
                            seen.lock().unwrap().push(request.to_string());
                        }
                        let _ = ws.send(Message::text(answer(&request))).await;
                    }
                });
            }
        });
        (Dial::Url(url), attacks)
    }

    /// One turn of `me` against players `b` and `c` on a server whose hero replies
    /// `answer` writes: the turn's outcome and the attacks it sent.
    async fn one_turn(answer: fn(&str) -> String) -> (Result<(), String>, Vec<String>) {
        let (server, attacks) = answering_server(answer).await;
        let timeout = Duration::from_secs(10);
        let open = |path| Conn::open(&server, path, timeout);
        let mut links = Links {
            find: open("/find").await.unwrap(),
            lobby: open("/lobby").await.unwrap(),
            hero: open("/hero").await.unwrap(),
            action: open("/action").await.unwrap(),
        };
        let game = GameToken::from("g");
        let me = UserToken::from("a");
        let tokens = vec![UserToken::from("b"), UserToken::from("c")];
        let opponents = Opponents::new(&game, &me, tokens);
        let tally = Tally::new(&PlayerSettings::default());
        let mut rng = SmallRng::seed_from_u64(7);
        let turn = take_turn(&mut links, &game, &me, &opponents, &mut rng, &tally).await;
        let sent = attacks.lock().unwrap().clone();
        (turn.map_err(|e| e.to_string()), sent)
    }

    /// A hero reply as the server writes it, for the player the request asked about
    /// (`c` dead), or for `b` whoever was asked about.
    fn hero_reply(request: &str, always_b: bool) -> String {
        if request.contains("ENEMY_TOKEN") {
            return r#"{"PAYLOAD":{},"STATUS":{"ACTION":"ATTACK"}}"#.to_string();
        }
        let asked = GameUser::parse(request).unwrap().user_token;
        let user = if always_b { "b" } else { asked.as_str() };
        let health = if user == "c" { 0 } else { 5 };
        format!(
            r#"{{"PAYLOAD":{{"GAME_TOKEN":"g","USER_TOKEN":"{user}","HERO":{{"token":"{user}","id":1,"attack":2,"health":{health}}}}},"STATUS":{{"GAME":"HERO SPEC"}}}}"#
        )
    }

    /// A turn attacks a living opponent among those looked up, and a hero reply that
    /// names another player than the one asked about is refused, not acted on.
    #[tokio::test]
    async fn a_turn_attacks_the_living_and_refuses_a_hero_of_another_player() {
        let (turn, attacks) = one_turn(|r| hero_reply(r, false)).await;
        assert_eq!(turn, Ok(()));
        let b = UserToken::from("b");
        let expected = attack_request(&GameToken::from("g"), &UserToken::from("a"), Some(&b));
        assert_eq!(attacks, vec![expected]);
        let (turn, attacks) = one_turn(|r| hero_reply(r, true)).await;
        let error = turn.unwrap_err();
        assert!(error.contains("asked for c, told of b"), "{error}");
        assert!(attacks.is_empty(), "{attacks:?}");
    }

    /// The game sizes bots choose with `active` bots running, `waiting` of them in a
    /// lobby of 2 and of 3 players: how many of 1,000 choices were games of 2.
    fn choices_of_two(active: usize, waiting: [usize; 2]) -> usize {
        choices_of_two_in(active, waiting, 0)
    }

    /// The same with at most `places` bots in games at once (0: no cap).
    fn choices_of_two_in(active: usize, waiting: [usize; 2], places: usize) -> usize {
        let tally = Tally::new(&PlayerSettings {
            concurrent_bots: places,
            ..PlayerSettings::default()
        });
        tally.active.send_replace(active);
        for (counter, n) in tally.waiting.iter().zip(waiting) {
            counter.store(n, Ordering::Relaxed);
        }
        let mut rng = SmallRng::seed_from_u64(7);
        (0..1000)
            .filter(|_| choose_participants(&tally, &mut rng) == 2)
            .count()
    }

    #[test]
    fn bots_choose_a_game_size_at_random_unless_few_are_free() {
        // Many bots free: half and half, whatever lobby waits.
        for waiting in [[0, 0], [0, 2], [1, 0], [1, 2]] {
            let two = choices_of_two(200, waiting);
            assert!((400..=600).contains(&two), "{waiting:?}: {two} of 1000");
        }
        // Few free: they fill the lobby that waits, and the last ones pair up.
        assert_eq!(choices_of_two(10, [0, 2]), 0);
        assert_eq!(choices_of_two(10, [1, 0]), 1000);
        assert_eq!(choices_of_two(ENDGAME_BOTS, [0, 0]), 1000);
        let two = choices_of_two(10, [0, 0]);
        assert!((400..=600).contains(&two), "{two} of 1000");
        // Many bots running, but few places in games: few are free to come.
        assert_eq!(choices_of_two_in(200, [0, 2], 8), 0);
        let two = choices_of_two_in(200, [0, 2], 100);
        assert!((400..=600).contains(&two), "{two} of 1000");
    }

    /// The server's idle close crossing a request: sent again, once, on a new
    /// connection. Any other close, or a second idle close, ends the bot.
    #[tokio::test]
    async fn a_request_crossing_the_idle_close_is_sent_again_once() {
        let answered = Ok("answer to request".to_string());
        assert_eq!(ask_once(&[IDLE_CLOSE_REASON]).await, (answered, 1, 2));
        let closed = Err(BotError::Closed.to_string());
        assert_eq!(
            ask_once(&["no answer to ping"]).await,
            (closed.clone(), 0, 1)
        );
        let twice = &[IDLE_CLOSE_REASON, IDLE_CLOSE_REASON];
        assert_eq!(ask_once(twice).await, (closed, 1, 2));
    }
}
