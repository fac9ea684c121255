//! The WebSocket game server: one path per endpoint, each connection a task that
//! answers requests in order.
//!
//! `handlers` answers the request/reply endpoints (login, find, hero, action);
//! `lobby` runs the long-lived lobby session that announces the start, each turn
//! and the end of a game. Nothing a client sends can stop the server: every request is
//! parsed before it reaches the store, and every failure becomes an error reply.

mod handlers;
mod lobby;
mod referee;
mod roster;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{CloseFrame, close_code};
use axum::extract::ws::{Message, WebSocket};
use axum::response::Response;
use axum::routing::get;
use futures_util::{FutureExt, SinkExt};
use tokio::time::Instant;

use crate::game::protocol::{
    ACTION_PATH, FIND_PATH, HERO_PATH, LOBBY_PATH, LOGIN_PATH, MAX_REQUEST_BYTES, ProtocolError,
};
use crate::game::rules::Finish;
use crate::game::{GameToken, UserToken};
use crate::net::{ConnectionLimits, ConnectionStats, Listeners};
use crate::store::GameStore;
use crate::telemetry::names;
use crate::timer::LazyTimer;

/// Requests and replies are a few hundred bytes. The WebSocket library fills its read
/// buffer with zeros before each read, so a small buffer saves most of the CPU a
/// connection costs (the default, 128 KiB, made memset the server's top cost); and it
/// allocates the buffer up front, on each side of each connection, so its size is most
/// of what an idle bot costs in memory. A larger frame takes more than one read.
pub const READ_BUFFER_BYTES: usize = 1024;

/// The reason of the close frame that ends a connection idle between requests. The
/// server reads nothing after it, so a client whose request crossed it knows that the
/// request went unanswered and may send it again on a new connection.
pub const IDLE_CLOSE_REASON: &str = "idle";

/// How the server runs games.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// How long a lobby waits for its players.
    pub lobby_timeout: Duration,
    /// Pause before each turn is announced.
    pub server_sleep: Duration,
    /// Attacks after which a game ends (0: no cap).
    pub turn_cap: u32,
    /// How long a player has to act once its turn is announced (zero: no limit).
    pub turn_timeout: Duration,
    /// Open connections and header read time.
    pub limits: ConnectionLimits,
    /// How long a connection outside a lobby may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// How often a lobby connection is pinged; one that answers nothing between two
    /// pings is closed (zero: no pings).
    pub ping_interval: Duration,
    /// Largest WebSocket message read; larger ones close the connection with code
    /// 1009. Messages between [`MAX_REQUEST_BYTES`] and this get `FRAME TOO LARGE`.
    pub max_message_bytes: usize,
    /// Once asked to stop, how long the server goes on serving the games it has
    /// (refusing new ones) before it stops anyway.
    pub stop_timeout: Duration,
}

/// The default of [`ServerSettings::max_message_bytes`]: four times the request limit.
pub const MAX_MESSAGE_BYTES: usize = 4 * MAX_REQUEST_BYTES;

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            lobby_timeout: Duration::from_secs(5),
            server_sleep: Duration::ZERO,
            turn_cap: 1000,
            turn_timeout: Duration::from_secs(5),
            limits: ConnectionLimits::default(),
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            max_message_bytes: MAX_MESSAGE_BYTES,
            stop_timeout: Duration::from_secs(30),
        }
    }
}

/// What every connection of one server shares.
struct App<S> {
    store: S,
    settings: ServerSettings,
    /// The roster as games draw from it, read from the store when first needed.
    roster: roster::Roster,
    /// The games this server's referees watch.
    refereed: Mutex<HashSet<GameToken>>,
    /// Asked to stop: no new game is found (see [`ServerSettings::stop_timeout`]).
    draining: AtomicBool,
    /// Lobby sessions running on this server: players in a game it serves.
    in_play: AtomicUsize,
    /// Players this server found a game for who have not opened its lobby yet.
    expected: Expected,
}

impl<S> App<S> {
    fn new(store: S, settings: ServerSettings) -> Arc<Self> {
        Arc::new(Self {
            store,
            settings,
            roster: roster::Roster::default(),
            refereed: Mutex::new(HashSet::new()),
            draining: AtomicBool::new(false),
            in_play: AtomicUsize::new(0),
            expected: Expected::default(),
        })
    }

    /// Whether a stopping server may stop now: no lobby session runs, and every
    /// player it found a game for opened its lobby or had the lobby timeout to.
    fn drained(&self) -> bool {
        self.in_play.load(Ordering::Acquire) == 0 && self.expected.none(self.settings.lobby_timeout)
    }
}

/// Players a server found a game for, each with when, until they open its lobby.
/// A player that never does is forgotten once the lobby timeout has passed: the
/// map holds at most what the find requests of one lobby timeout add.
#[derive(Default)]
struct Expected {
    found: Mutex<Found>,
}

#[derive(Default)]
struct Found {
    players: HashMap<(GameToken, UserToken), Instant>,
    /// The size at which those past the lobby timeout are forgotten next: twice
    /// what was left the last time, so that forgetting costs little per find.
    prune_at: usize,
}

/// The least [`Found::prune_at`].
const EXPECTED_PRUNE: usize = 1024;

impl Found {
    fn prune(&mut self, lobby_timeout: Duration) {
        self.players.retain(|_, at| at.elapsed() < lobby_timeout);
        self.prune_at = (2 * self.players.len()).max(EXPECTED_PRUNE);
    }
}

impl Expected {
    fn found(&self, game: &GameToken, user: &UserToken, lobby_timeout: Duration) {
        let Ok(mut found) = self.found.lock() else {
            return;
        };
        if found.players.len() >= found.prune_at {
            found.prune(lobby_timeout);
        }
        found
            .players
            .insert((game.clone(), user.clone()), Instant::now());
    }

    fn joined(&self, game: &GameToken, user: &UserToken) {
        if let Ok(mut found) = self.found.lock()
            && !found.players.is_empty()
        {
            found.players.remove(&(game.clone(), user.clone()));
        }
    }

    /// Whether no player is still expected within the lobby timeout.
    fn none(&self, lobby_timeout: Duration) -> bool {
        self.found.lock().map_or(true, |mut found| {
            found.prune(lobby_timeout);
            found.players.is_empty()
        })
    }
}

/// Counts a lobby session in [`App::in_play`] (and [`names::PLAYERS_IN_PLAY`])
/// while it lives.
struct InPlay<'a>(&'a AtomicUsize);

impl<'a> InPlay<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!(names::PLAYERS_IN_PLAY).increment(1.0);
        Self(count)
    }
}

impl Drop for InPlay<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(names::PLAYERS_IN_PLAY).decrement(1.0);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Login,
    Find,
    Lobby,
    Hero,
    Action,
}

impl Endpoint {
    /// Its name in metrics.
    fn label(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Find => "find",
            Self::Lobby => "lobby",
            Self::Hero => "hero",
            Self::Action => "action",
        }
    }
}

/// Counts one request by its endpoint and outcome.
fn count_request(endpoint: Endpoint, outcome: Result<(), &ProtocolError>) {
    let status = outcome.map_or_else(ProtocolError::code, |()| "ok");
    metrics::counter!(names::REQUESTS, "endpoint" => endpoint.label(), "status" => status)
        .increment(1);
}

/// The requests of one endpoint, counted as [`count_request`] does, but with the
/// handle of the successes taken once: looking a labelled counter up builds and
/// hashes its key, which per request cost the generator more than a percent of its CPU.
struct Requests {
    endpoint: Endpoint,
    ok: metrics::Counter,
}

impl Requests {
    /// Takes the handle from the recorder installed now (none: counts nothing).
    fn of(endpoint: Endpoint) -> Self {
        let ok =
            metrics::counter!(names::REQUESTS, "endpoint" => endpoint.label(), "status" => "ok");
        Self { endpoint, ok }
    }

    fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    fn count(&self, outcome: Result<(), &ProtocolError>) {
        match outcome {
            Ok(()) => self.ok.increment(1),
            Err(_) => count_request(self.endpoint, outcome),
        }
    }
}

/// Counts a game this server ended by an attack or a forfeit.
fn count_finish(finish: &Finish) {
    let outcome = match finish {
        Finish::LastStanding(_) => "last_standing",
        Finish::TurnCap(_) => "turn_cap",
    };
    metrics::counter!(names::GAMES_ENDED, "outcome" => outcome).increment(1);
}

/// Counts a game whose lobby this server timed out, if it did.
fn count_timed_out(timed_out: bool) {
    if timed_out {
        metrics::counter!(names::GAMES_ENDED, "outcome" => "timed_out").increment(1);
    }
}

/// Counts a WebSocket connection of an endpoint, and holds it open in
/// [`names::CONNECTIONS_OPEN`] while it lives.
struct OpenConnection(metrics::Gauge);

impl OpenConnection {
    fn count(endpoint: Endpoint) -> Self {
        metrics::counter!(names::CONNECTIONS, "endpoint" => endpoint.label()).increment(1);
        let open = metrics::gauge!(names::CONNECTIONS_OPEN, "endpoint" => endpoint.label());
        open.increment(1.0);
        Self(open)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The router with the five endpoints; any other path answers 404 before upgrading.
pub fn router<S: GameStore>(store: S, settings: ServerSettings) -> Router {
    routes(App::new(store, settings))
}

fn routes<S: GameStore>(app: Arc<App<S>>) -> Router {
    let route = |endpoint: Endpoint| {
        let app = app.clone();
        get(move |ws: WebSocketUpgrade| upgrade(ws, app, endpoint))
    };
    Router::new()
        .route(LOGIN_PATH, route(Endpoint::Login))
        .route(FIND_PATH, route(Endpoint::Find))
        .route(LOBBY_PATH, route(Endpoint::Lobby))
        .route(HERO_PATH, route(Endpoint::Hero))
        .route(ACTION_PATH, route(Endpoint::Action))
}

/// Answers request frames as a connection of the server does, without a socket: what
/// the fuzz targets drive (`fuzz/`). A lobby request is checked as a lobby connection
/// checks it, but no session is run.
pub struct Answerer<S> {
    app: Arc<App<S>>,
}

impl<S: GameStore> Answerer<S> {
    pub fn new(store: S, settings: ServerSettings) -> Self {
        Self {
            app: App::new(store, settings),
        }
    }

    /// The frames that answer `frame` sent on `path`; `None` for a path the server
    /// does not serve (HTTP 404).
    pub async fn answer(&self, path: &str, frame: &str) -> Option<Vec<String>> {
        let endpoint = match path {
            LOGIN_PATH => Endpoint::Login,
            FIND_PATH => Endpoint::Find,
            LOBBY_PATH => Endpoint::Lobby,
            HERO_PATH => Endpoint::Hero,
            ACTION_PATH => Endpoint::Action,
            _ => return None,
        };
        if frame.len() > MAX_REQUEST_BYTES {
            return Some(vec![ProtocolError::FrameTooLarge.to_frame()]);
        }
        Some(match endpoint {
            Endpoint::Lobby => lobby::check(&self.app, frame).await.into_iter().collect(),
            _ => handlers::answer(&self.app, &Requests::of(endpoint), frame)
                .await
                .into_vec(),
        })
    }
}

/// Serves games on `listeners` (a TCP listener, in-process clients, or both) until
/// `shutdown` completes.
pub async fn serve<S: GameStore>(
    listeners: impl Into<Listeners>,
    store: S,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = settings.limits;
    let stats = Arc::new(ConnectionStats::default());
    let app = App::new(store, settings);
    metrics::gauge!(names::DRAINING).set(0.0);
    let asked = {
        let app = app.clone();
        async move {
            shutdown.await;
            app.draining.store(true, Ordering::Release);
            metrics::gauge!(names::DRAINING).set(1.0);
        }
    };
    crate::net::serve(listeners, routes(app.clone()), limits, stats.clone(), asked).await?;
    drain(&app).await;
    let refused = stats.refused.load(std::sync::atomic::Ordering::Relaxed);
    let failed = stats
        .accept_errors
        .load(std::sync::atomic::Ordering::Relaxed);
    if refused + failed > 0 {
        tracing::warn!(
            "{refused} connections refused at the cap ({} open at most), {failed} accepts failed",
            limits.max_connections
        );
    }
    Ok(())
}

/// Lets the games this server serves end, for at most the stop timeout; says how
/// many lobby sessions it left running.
async fn drain<S>(app: &App<S>) {
    let began = Instant::now();
    let deadline = began.checked_add(app.settings.stop_timeout);
    let mut said = false;
    while !app.drained() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::warn!(
                "stopping with {} players still in a game after {:.0?}: their games end \
                 by the turn timeouts of the servers left",
                app.in_play.load(Ordering::Acquire),
                app.settings.stop_timeout
            );
            return;
        }
        if !std::mem::replace(&mut said, true) {
            tracing::info!(
                "stopping: {} players in a game, new games refused",
                app.in_play.load(Ordering::Acquire)
            );
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    if said {
        tracing::info!("the games in play ended in {:.1?}", began.elapsed());
    }
}

/// How often a stopping server looks whether its games ended.
const DRAIN_POLL: Duration = Duration::from_millis(50);

async fn upgrade<S: GameStore>(
    ws: WebSocketUpgrade,
    app: Arc<App<S>>,
    endpoint: Endpoint,
) -> Response {
    let max = app.settings.max_message_bytes;
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection(socket, app, endpoint))
}

/// Why a connection's loop ends.
enum Flow {
    Continue,
    Close,
}

async fn send(socket: &mut WebSocket, frame: String) -> Flow {
    match socket.send(Message::Text(frame.into())).await {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Close,
    }
}

/// Reads the next request: the text of a frame, or the error reply it deserves.
/// `None` when the client closed or the connection failed; a message over the size
/// limit is answered with close code 1009 first. `heard` is when the client last sent
/// anything, pongs included.
async fn next_request(
    socket: &mut WebSocket,
    heard: &mut Instant,
) -> Option<Result<axum::extract::ws::Utf8Bytes, ProtocolError>> {
    loop {
        let message = socket.recv().await?;
        *heard = Instant::now();
        match message {
            Ok(Message::Text(text)) if text.len() > MAX_REQUEST_BYTES => {
                return Some(Err(ProtocolError::FrameTooLarge));
            }
            Ok(Message::Text(text)) => return Some(Ok(text)),
            Ok(Message::Binary(_)) => return Some(Err(ProtocolError::BinaryFrame)),
            Ok(Message::Close(_)) => return None,
            Err(e) => {
                if is_too_big(e) {
                    close(socket, close_code::SIZE, "message too big").await;
                }
                return None;
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
        }
    }
}

/// Whether a read failed on the message size limit.
fn is_too_big(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    matches!(
        e.into_inner().downcast_ref::<Error>(),
        Some(Error::Capacity(_))
    )
}

/// Ends a connection with a close frame saying why.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// The timers a connection keeps for all its waits, so that waiting arms none anew:
/// between requests (`idle`), and in a lobby session for its pings (`idle` again) and
/// its lobby deadline.
pub(super) struct ConnectionTimers {
    pub(super) idle: LazyTimer,
    pub(super) deadline: LazyTimer,
}

async fn connection<S: GameStore>(mut socket: WebSocket, app: Arc<App<S>>, endpoint: Endpoint) {
    let _open = OpenConnection::count(endpoint);
    let requests = Requests::of(endpoint);
    let mut heard = Instant::now();
    let mut timers = ConnectionTimers {
        idle: LazyTimer::default(),
        deadline: LazyTimer::default(),
    };
    // Replies are written when no further request is waiting already, so that the
    // replies to pipelined requests go out together.
    let mut unflushed = false;
    loop {
        let waiting = if unflushed {
            next_request(&mut socket, &mut heard).now_or_never()
        } else {
            None
        };
        let request = match waiting {
            Some(request) => request,
            None => {
                if unflushed {
                    if socket.flush().await.is_err() {
                        break;
                    }
                    unflushed = false;
                }
                // A lobby session watches its client itself (pings); between
                // requests, silence ends the connection.
                let idle = app.settings.idle_timeout;
                let next = next_request(&mut socket, &mut heard);
                if idle.is_zero() {
                    next.await
                } else {
                    // A wait too long for the clock is no wait.
                    let until = Instant::now().checked_add(idle);
                    tokio::select! {
                        request = next => request,
                        () = timers.idle.until_some(until) => {
                            close(&mut socket, close_code::NORMAL, IDLE_CLOSE_REASON).await;
                            break;
                        }
                    }
                }
            }
        };
        let Some(request) = request else {
            if unflushed {
                // The client closed after its requests; their replies still go.
                let _ = socket.flush().await;
            }
            break;
        };
        // Answering is boxed: a connection waiting for its next request, as most do
        // most of the time, then holds a small future instead of the largest one.
        let flow = match request {
            Err(e) => {
                requests.count(Err(&e));
                send(&mut socket, e.to_frame()).await
            }
            Ok(text) if endpoint == Endpoint::Lobby => {
                let session = lobby::session(&mut socket, &app, &text, &mut heard, &mut timers);
                Box::pin(session).await
            }
            Ok(text) => {
                let mut flow = Flow::Continue;
                for frame in Box::pin(handlers::answer(&app, &requests, &text)).await {
                    if socket.feed(Message::Text(frame.into())).await.is_err() {
                        flow = Flow::Close;
                        break;
                    }
                    unflushed = true;
                }
                flow
            }
        };
        if matches!(flow, Flow::Close) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(i: usize) -> (GameToken, UserToken) {
        (
            GameToken::from(format!("g{i}")),
            UserToken::from(format!("u{i}")),
        )
    }

    /// A player found a game is expected until it opens the lobby, or until the lobby
    /// timeout passed.
    #[test]
    fn a_found_player_is_expected_until_it_joins() {
        let expected = Expected::default();
        let long = Duration::from_secs(3600);
        assert!(expected.none(long));
        let (g, u) = player(1);
        expected.found(&g, &u, long);
        assert!(!expected.none(long));
        assert!(expected.none(Duration::ZERO), "past the lobby timeout");
        expected.found(&g, &u, long);
        expected.joined(&g, &u);
        assert!(expected.none(long));
    }

    /// Players who never join are forgotten as more are found: the map stays bounded.
    #[test]
    fn players_who_never_join_are_forgotten() {
        let expected = Expected::default();
        for i in 0..10 * EXPECTED_PRUNE {
            let (g, u) = player(i);
            expected.found(&g, &u, Duration::ZERO);
        }
        let held = expected.found.lock().unwrap().players.len();
        assert!(held <= EXPECTED_PRUNE, "{held}");
    }
}
