//! Game log records that name a queue: the events the logging transport carries.
//!
//! The game code calls [`emit`]; the record goes to the `tracing` target named after
//! its queue (`lib.server.login`, `lib.server.lobby`, `lib.server.game`), with its task
//! as a JSON field, so whatever subscriber is installed prints or forwards it. The
//! [`transport`] publishes those records to a broker.

pub mod transport;

use serde::Serialize;

pub use self::transport::{
    Envelope, EnvelopeView, EventLayer, EventPipe, EventSink, TransportStats, envelope_json,
};

/// The lifecycle record workers act on, logged on `lib.server.lobby` once per
/// participant when a game is over.
pub const CLEANING_GAME_RECORDS: &str = "Cleaning Game Records";

/// The queue whose events workers act on.
pub const WORKER_QUEUE: &str = Queue::Lobby.name();

/// The consumer group workers share, as the originals named it.
pub const WORKER_GROUP: &str = "superhero_sim";

/// The queues of the original simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Login,
    Lobby,
    Game,
}

impl Queue {
    /// Every queue, in [`Queue::index`] order.
    pub const ALL: [Queue; 3] = [Queue::Login, Queue::Lobby, Queue::Game];

    /// The queue a `tracing` target names, if any.
    pub fn from_target(target: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.name() == target)
    }

    /// Its place in per-queue arrays.
    pub const fn index(self) -> usize {
        match self {
            Self::Login => 0,
            Self::Lobby => 1,
            Self::Game => 2,
        }
    }

    /// Its name, also its `tracing` target (`lib.server.lobby`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Login => "lib.server.login",
            Self::Lobby => "lib.server.lobby",
            Self::Game => "lib.server.game",
        }
    }
}

/// The task of lifecycle records such as `Cleaning Game Records`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GameUserTask<'a> {
    pub game_token: &'a str,
    pub user_token: &'a str,
}

/// The module whose records are logged by [`emit`] alone: the transport embeds their
/// tasks without parsing them again.
const EMITTER: &str = module_path!();

/// Logs a record on a queue at INFO, with `task` attached. `task` must be JSON (a
/// serialized value): the transport embeds it in the envelope as it is.
pub fn emit(queue: Queue, message: &str, task: &str) {
    debug_assert!(
        serde_json::from_str::<&serde_json::value::RawValue>(task).is_ok(),
        "an event task that is not JSON: {task}"
    );
    match queue {
        Queue::Login => tracing::info!(target: "lib.server.login", task = %task, "{message}"),
        Queue::Lobby => tracing::info!(target: "lib.server.lobby", task = %task, "{message}"),
        Queue::Game => tracing::info!(target: "lib.server.game", task = %task, "{message}"),
    }
}

/// Whether records on `queue` would be seen at all, so callers can skip building them.
pub fn enabled(queue: Queue) -> bool {
    match queue {
        Queue::Login => tracing::enabled!(target: "lib.server.login", tracing::Level::INFO),
        Queue::Lobby => tracing::enabled!(target: "lib.server.lobby", tracing::Level::INFO),
        Queue::Game => tracing::enabled!(target: "lib.server.game", tracing::Level::INFO),
    }
}

/// Serializes and emits a task when anyone listens.
pub fn emit_task<T: Serialize>(queue: Queue, message: &str, task: &T) {
    if enabled(queue) {
        emit(queue, message, &crate::game::protocol::to_frame(task));
    }
}
