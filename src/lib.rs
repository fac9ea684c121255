//! # superhero
//!
//! A streaming-data simulator and broker test bench: bots play a superhero combat
//! game over WebSockets, and every game log record becomes an event.
//!
//! The parts, from the core outwards: each module uses only modules listed before
//! it, and the leaves at the end.
//!
//! - [`game`]: the game without I/O. Tokens and statuses, the Schema V1 wire format
//!   (requests, replies, error strings) and the combat rules (attack, turn order,
//!   elimination, turn cap). Pure functions, tested exhaustively.
//! - [`roster`]: the hero collection. Imports the Super Hero API format, cleans its
//!   stats, derives health and attack, and generates a deterministic synthetic roster;
//!   [`roster::pull`] fetches the collection from the API itself.
//! - [`etl`]: a finished game to its GAME_META and GAME_PODIUM rows (pure), and the
//!   gzip Parquet tables, written durably.
//! - [`store`]: where games live. The [`store::GameStore`] contract, the embedded
//!   [`store::MemoryStore`], the [`store::RedisStore`] on the original keyspace (or
//!   on a Redis Cluster, hash-tagged by game), and
//!   [`store::AnyStore`], whichever a command asked for. Every change is atomic and
//!   raises a signal that drives the lobbies.
//! - [`broker`]: the broker contract (publish; consume with ack/nack; the delivery
//!   models), one folder per backend (the embedded broker, Redis pub/sub, fan-out and
//!   Streams, RabbitMQ, NATS JetStream, Kafka, NSQ) and the registry that picks one
//!   from a URL or LOGGER_MODULE. Knows nothing of the game.
//! - [`events`]: the log records that name a queue, the pipeline's names (queues,
//!   the workers' group, `Cleaning Game Records`) and the transport that publishes
//!   the records as event envelopes to a broker.
//! - [`server`]: the WebSocket endpoints (`/api/v1/login`, `/api/v1/game/find`,
//!   `/lobby`, `/hero`, `/action`), answering bad input with clear errors, and a
//!   referee per game that makes every game end (turn deadlines, forfeits).
//! - [`player`]: bots that play like the original client, thousands per process.
//! - [`worker`]: consumes `Cleaning Game Records`, writes the tables durably, cleans;
//!   a [`worker::Pool`] runs the workers of one process.
//! - [`audit`]: reads the tables back and checks them.
//! - [`simulate`]: server, bots and workers in one process, with one summary; split
//!   into shards, one pipeline a thread, on the embedded store and broker.
//! - [`mod@bench`]: the same workloads (raw messages, the game pipeline) on every
//!   broker, side by side, as one report in Markdown, JSON and HTML.
//! - [`plays`]: the video plays scenario: producers, a multi-threaded processor that
//!   counts plays, and the dashboard feed under the original's publication rules.
//! - [`dashboard`]: the live web page (served by the binary, pushed by Server-Sent
//!   Events) of a game pipeline and of a plays run.
//! - [`cli`]: the command line, one file per command: flags and environment
//!   variables into the settings above, and each command's run and summary. The
//!   binary (`src/main.rs`) only parses and dispatches.
//! - Leaves: [`latency`] (percentiles from an HDR histogram, for every report),
//!   [`backoff`] (pauses that double between attempts), [`timer`] (one timer for a
//!   deadline that moves with every message), [`url`] (passwords masked,
//!   schemes rewritten), [`redis_client`] (Redis and Redis Cluster connections as the
//!   store and the Redis brokers open them), [`net`] (serving HTTP within connection caps and
//!   header timeouts, for the game server, the dashboard and the metrics) and
//!   [`telemetry`] (the metric names, and `/metrics` and `/healthz` for Prometheus).

pub mod audit;
pub mod backoff;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod dashboard;
pub mod etl;
pub mod events;
#[doc(hidden)]
pub mod fixtures;
pub mod game;
pub mod latency;
pub mod net;
pub mod player;
pub mod plays;
pub mod redis_client;
pub mod roster;
pub mod server;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod timer;
pub mod url;
pub mod worker;
