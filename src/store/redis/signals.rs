//! How a Redis store's lobbies hear of their games: every change of a game publishes
//! its [`Signal`] on the game's channel, and one listener per store hands what it
//! hears to the watches of this process ([`Registry`]).
//!
//! On one server the listener subscribes once to the pattern of every game's
//! channel. A cluster has no pattern subscription for sharded channels, and a plain
//! `PUBLISH` there is copied to every node; so each game's signals go out with
//! `SPUBLISH` on its own node only, and a store subscribes to a game's channel
//! (`SSUBSCRIBE`) while this process watches it, one subscription per game.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::keys::Keyspace;
use super::scripts::Scripts;
use super::{Conn, unavailable};
use crate::backoff::Backoff;
use crate::game::{GameStatus, GameToken, UserToken};
use crate::store::{Signal, SignalSender, StoreError};

/// The pattern every game's signal channel matches on one server.
const SIGNAL_PATTERN: &str = "games:*:signal";
/// Subscription changes queued for a cluster's listener at most; a watch waits for
/// room.
const QUEUED_CHANGES: usize = 1024;

/// Reads a game's current signal; `None` for an unknown game.
pub async fn read_signal(
    conn: &mut Conn,
    keyspace: Keyspace,
    game: &GameToken,
) -> Result<Option<Signal>, StoreError> {
    let Some(prefix) = keyspace.game(game) else {
        return Ok(None);
    };
    let text: Option<String> = Scripts::of(keyspace)
        .signal
        .key(&prefix)
        .key(keyspace.joined(&prefix))
        .arg(game.as_str())
        .invoke_async(conn)
        .await
        .map_err(unavailable)?;
    Ok(text.as_deref().and_then(Signal::decode))
}

/// The game a signal channel belongs to: `games:<g>:signal` or `games:{<g>}:signal`.
fn game_of_channel(channel: &str) -> Option<GameToken> {
    let inner = channel.strip_prefix("games:")?.strip_suffix(":signal")?;
    let token = inner
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(inner);
    Some(GameToken::from(token))
}

/// Ends a listener when the last clone of the store goes.
pub struct ListenerTask(pub tokio::task::AbortHandle);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A change of a cluster listener's subscriptions.
enum Change {
    /// To one game's channel.
    Channel(String, ChannelChange),
    /// A node connection was lost: subscribe again to every watched game.
    Renew,
}

enum ChannelChange {
    /// Subscribe, and say when it holds.
    Subscribe(oneshot::Sender<redis::RedisResult<()>>),
    Unsubscribe,
}

/// The games this process watches, each with the channel its lobbies listen on.
pub struct Registry {
    games: Mutex<HashMap<GameToken, Watched>>,
    keyspace: Keyspace,
    /// A cluster's listener, which subscribes game by game.
    changes: Option<mpsc::Sender<Change>>,
    /// Whether a [`Change::Renew`] is queued.
    renewing: AtomicBool,
}

/// One watched game.
struct Watched {
    signal: SignalSender,
    /// How many watches hold it.
    watchers: usize,
    /// Whether its channel holds the game's state read since it was registered: from
    /// then on, every change reaches it through the listener (which re-reads watched
    /// games after a lost connection), so a later watch need not read again.
    current: bool,
}

/// A new watch of a game.
pub struct Watch {
    pub rx: watch::Receiver<Signal>,
    pub registration: Registration,
    /// Whether the game's channel holds its state already.
    pub current: bool,
    /// Whether no other watch of this process held the game: a cluster's listener
    /// must then subscribe to it.
    pub first: bool,
}

impl Registry {
    fn new(keyspace: Keyspace, changes: Option<mpsc::Sender<Change>>) -> Self {
        Self {
            games: Mutex::default(),
            keyspace,
            changes,
            renewing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<GameToken, Watched>> {
        self.games.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a watch of `game`: of the signals that concern `player` if one is named.
    pub fn register(self: &Arc<Self>, game: &GameToken, player: Option<&UserToken>) -> Watch {
        let mut games = self.lock();
        let first = !games.contains_key(game);
        let entry = games.entry(game.clone()).or_insert_with(|| {
            let unknown = Signal {
                status: GameStatus::Initializing,
                joined: 0,
                turns: 0,
                forfeits: 0,
                current: None,
            };
            Watched {
                signal: SignalSender::new(unknown),
                watchers: 0,
                current: false,
            }
        });
        entry.watchers += 1;
        let rx = match player {
            Some(player) => entry.signal.subscribe_for(player),
            None => entry.signal.subscribe(),
        };
        Watch {
            rx,
            registration: Registration {
                registry: self.clone(),
                game: game.clone(),
            },
            current: entry.current,
            first,
        }
    }

    /// Subscribes a cluster's listener to a game's channel, returning once the
    /// subscription holds; nothing to do on one server.
    pub async fn subscribe(&self, game: &GameToken) -> Result<(), StoreError> {
        let (Some(changes), Some(channel)) = (&self.changes, self.channel(game)) else {
            return Ok(());
        };
        let (done, subscribed) = oneshot::channel();
        let gone = || StoreError::Unavailable("the signal listener stopped".into());
        changes
            .send(Change::Channel(channel, ChannelChange::Subscribe(done)))
            .await
            .map_err(|_| gone())?;
        subscribed.await.map_err(|_| gone())?.map_err(unavailable)
    }

    fn channel(&self, game: &GameToken) -> Option<String> {
        Some(format!("{}:signal", self.keyspace.game(game)?))
    }

    /// Passes a signal on to the game's watchers unless they have seen a later one.
    /// A signal is the game's whole state when it was published, and the listener
    /// hands them over in the order they were published: once one reaches a watched
    /// game, every later change does too, and the game's channel is current.
    fn deliver(&self, game: &GameToken, signal: Signal) {
        if let Some(watched) = self.lock().get_mut(game) {
            watched.signal.offer(signal);
            watched.current = true;
        }
    }

    /// Delivers a signal read from the store after the game was registered.
    pub fn deliver_read(&self, game: &GameToken, signal: Signal) {
        if let Some(watched) = self.lock().get_mut(game) {
            watched.signal.offer(signal);
            watched.current = true;
        }
    }

    fn is_current(&self, game: &GameToken) -> bool {
        self.lock().get(game).is_some_and(|w| w.current)
    }

    fn watched(&self) -> Vec<GameToken> {
        self.lock().keys().cloned().collect()
    }
}

/// Holds a game watched; the last one of a game to go ends its subscription.
pub struct Registration {
    registry: Arc<Registry>,
    game: GameToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut games = self.registry.lock();
        let Some(watched) = games.get_mut(&self.game) else {
            return;
        };
        watched.watchers -= 1;
        if watched.watchers > 0 {
            return;
        }
        games.remove(&self.game);
        drop(games);
        if let (Some(changes), Some(channel)) =
            (&self.registry.changes, self.registry.channel(&self.game))
        {
            // A full queue leaves the subscription in place: its messages then find no
            // watcher and are ignored.
            let _ = changes.try_send(Change::Channel(channel, ChannelChange::Unsubscribe));
        }
    }
}

/// Starts the listener of a single server; the registry it feeds.
pub fn listen_single(client: redis::Client, conn: Conn) -> (Arc<Registry>, ListenerTask) {
    let registry = Arc::new(Registry::new(Keyspace::Single, None));
    let task = tokio::spawn(listen_pattern(client, conn, Arc::downgrade(&registry)));
    (registry, ListenerTask(task.abort_handle()))
}

/// Listens on every game's signal channel and hands signals to local watchers. After
/// a lost connection it re-reads the state of every watched game, so a signal
/// published while it was away is not missed.
async fn listen_pattern(client: redis::Client, mut conn: Conn, registry: Weak<Registry>) {
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
                        if let Ok(Some(signal)) =
                            read_signal(&mut conn, Keyspace::Single, &game).await
                        {
                            reg.deliver_read(&game, signal);
                        }
                    }
                    drop(reg);
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Some(reg) = registry.upgrade() else {
                            return;
                        };
                        let Some(game) = game_of_channel(msg.get_channel_name()) else {
                            continue;
                        };
                        let payload: String = msg.get_payload().unwrap_or_default();
                        if let Some(signal) = Signal::decode(&payload) {
                            reg.deliver(&game, signal);
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

/// Starts the listener of a cluster: a RESP3 connection whose pushes (sharded
/// messages, confirmations of subscriptions, lost connections) feed the registry.
/// A lost node connection (a master failing, say) renews the subscription of every
/// watched game ([`renew`]), and a renewed subscription of a game already current has
/// its state read again, as a signal may have gone out while it was away.
pub async fn listen_cluster(
    builder: redis::cluster::ClusterClientBuilder,
    conn: Conn,
) -> Result<(Arc<Registry>, ListenerTask), StoreError> {
    let (changes, queued) = mpsc::channel(QUEUED_CHANGES);
    let registry = Arc::new(Registry::new(Keyspace::Cluster, Some(changes)));
    let weak = Arc::downgrade(&registry);
    let runtime = tokio::runtime::Handle::current();
    let on_push = move |push: PushInfo| -> Result<(), redis::aio::SendError> {
        let Some(reg) = weak.upgrade() else {
            return Err(redis::aio::SendError);
        };
        if push.kind == PushKind::Disconnection {
            if !reg.renewing.swap(true, Ordering::AcqRel)
                && let Some(changes) = &reg.changes
                && changes.try_send(Change::Renew).is_err()
            {
                // A full queue: the next lost connection asks again.
                reg.renewing.store(false, Ordering::Release);
            }
            return Ok(());
        }
        let channel = match push.data.first() {
            Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            _ => return Ok(()),
        };
        let Some(game) = game_of_channel(&channel) else {
            return Ok(());
        };
        match push.kind {
            PushKind::SMessage => {
                if let Some(Value::BulkString(payload)) = push.data.get(1)
                    && let Some(signal) = Signal::decode(&String::from_utf8_lossy(payload))
                {
                    reg.deliver(&game, signal);
                }
            }
            PushKind::SSubscribe if reg.is_current(&game) => {
                let mut conn = conn.clone();
                runtime.spawn(async move {
                    if let Ok(Some(signal)) = read_signal(&mut conn, Keyspace::Cluster, &game).await
                    {
                        reg.deliver_read(&game, signal);
                    }
                });
            }
            _ => {}
        }
        Ok(())
    };
    let client = builder
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(on_push)
        .build()
        .map_err(unavailable)?;
    let pubsub = client.get_async_connection().await.map_err(unavailable)?;
    let task = tokio::spawn(apply_changes(pubsub, queued, Arc::downgrade(&registry)));
    Ok((registry, ListenerTask(task.abort_handle())))
}

/// Applies subscription changes as they come, all those queued at once together,
/// while the changes of one channel keep the order they were asked in (so that a
/// game watched again just after its last watch went stays subscribed).
async fn apply_changes(
    pubsub: ClusterConnection,
    mut queued: mpsc::Receiver<Change>,
    registry: Weak<Registry>,
) {
    let mut batch = Vec::new();
    while queued.recv_many(&mut batch, QUEUED_CHANGES).await > 0 {
        let mut per_channel: HashMap<String, VecDeque<ChannelChange>> = HashMap::new();
        for change in batch.drain(..) {
            match change {
                Change::Renew => {
                    if let Some(reg) = registry.upgrade() {
                        reg.renewing.store(false, Ordering::Release);
                    }
                    tokio::spawn(renew(pubsub.clone(), registry.clone()));
                }
                Change::Channel(channel, change) => {
                    per_channel.entry(channel).or_default().push_back(change);
                }
            }
        }
        // Each round applies the next change of every channel, all in flight at once.
        while !per_channel.is_empty() {
            let round: Vec<_> = per_channel
                .iter_mut()
                .filter_map(|(channel, changes)| Some((channel.clone(), changes.pop_front()?)))
                .map(|(channel, change)| apply(pubsub.clone(), channel, change))
                .collect();
            futures_util::future::join_all(round).await;
            per_channel.retain(|_, changes| !changes.is_empty());
        }
    }
}

async fn apply(mut pubsub: ClusterConnection, channel: String, change: ChannelChange) {
    match change {
        ChannelChange::Subscribe(done) => {
            let _ = done.send(pubsub.ssubscribe(&channel).await);
        }
        ChannelChange::Unsubscribe => {
            if let Err(e) = pubsub.sunsubscribe(&channel).await {
                tracing::debug!("cannot unsubscribe from {channel}: {e}");
            }
        }
    }
}

/// Subscribes again to every watched game's channel, all at once, retrying those
/// that fail (their node may be failing over) with a growing pause, for about half
/// a minute. A subscription renewed for a game no longer watched is dropped again.
/// A command routed to a failed node makes the client learn the cluster's new
/// layout, and it then moves every subscription it tracks to the node now serving
/// its slot; renewing each one here makes sure that happens, and at once.
async fn renew(pubsub: ClusterConnection, registry: Weak<Registry>) {
    const ATTEMPTS: u32 = 20;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let Some(reg) = registry.upgrade() else {
        return;
    };
    let mut pending: Vec<(GameToken, String)> = reg
        .watched()
        .into_iter()
        .filter_map(|g| Some((g.clone(), reg.channel(&g)?)))
        .collect();
    drop(reg);
    for _ in 0..ATTEMPTS {
        let attempts = pending.into_iter().map(|(game, channel)| {
            let mut pubsub = pubsub.clone();
            async move {
                let result = pubsub.ssubscribe(&channel).await;
                (game, channel, result)
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        let Some(reg) = registry.upgrade() else {
            return;
        };
        pending = Vec::new();
        for (game, channel, result) in results {
            let watched = reg.lock().contains_key(&game);
            match (result, watched) {
                (Ok(()), true) => {}
                (Ok(()), false) => {
                    if let Some(changes) = &reg.changes {
                        let _ =
                            changes.try_send(Change::Channel(channel, ChannelChange::Unsubscribe));
                    }
                }
                (Err(e), true) => {
                    tracing::debug!("cannot renew the subscription to {channel}: {e}");
                    pending.push((game, channel));
                }
                (Err(_), false) => {}
            }
        }
        if pending.is_empty() {
            return;
        }
        drop(reg);
        backoff.wait().await;
    }
    tracing::warn!(
        "{} game signal subscriptions could not be renewed; their referees read those games at their deadlines",
        pending.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_their_game_in_both_layouts() {
        assert_eq!(
            game_of_channel("games:ab:signal"),
            Some(GameToken::from("ab"))
        );
        assert_eq!(
            game_of_channel("games:{ab}:signal"),
            Some(GameToken::from("ab"))
        );
        assert_eq!(game_of_channel("other"), None);
    }
}
