//! # superhero
//!
//! A streaming-data simulator and broker test bench: bots play a superhero combat
//! game over WebSockets, and every game log record becomes an event.
//!
//! The parts, from the core outwards:
//!
//! - [`game`]: the game without I/O. Tokens and statuses, the Schema V1 wire format
//!   (requests, replies, error strings) and the combat rules (attack, turn order,
//!   elimination, turn cap). Pure functions, tested exhaustively.
//! - [`roster`]: the hero collection. Imports the Super Hero API format, cleans its
//!   stats, derives health and attack, and generates a deterministic synthetic roster.
//! - [`store`]: where games live. The [`store::GameStore`] contract, the embedded
//!   [`store::MemoryStore`] and the [`store::RedisStore`] on the original keyspace.
//!   Every change is atomic and raises a signal that drives the lobbies.
//! - [`server`]: the WebSocket endpoints (`/api/v1/login`, `/api/v1/game/find`,
//!   `/lobby`, `/hero`, `/action`), answering bad input with clear errors.
//! - [`player`]: bots that play like the original client, thousands per process.
//! - [`simulate`]: server and bots in one process, with one summary.
//! - [`events`]: the log records that name a queue, and the transport that publishes
//!   them as event envelopes to a broker.
//! - [`broker`]: the broker contract (publish; consume with ack/nack) and the
//!   embedded in-process broker.
//! - [`etl`]: a finished game to its GAME_META and GAME_PODIUM rows (pure), and the
//!   gzip Parquet tables.
//! - [`worker`]: consumes `Cleaning Game Records`, writes the tables durably, cleans.
//! - [`audit`]: reads the tables back and checks them.
//! - [`bench`]: the same workloads (raw messages, the game pipeline) on every
//!   broker, side by side, as one report in Markdown, JSON and HTML.
//! - [`latency`]: latency percentiles from an HDR histogram, for every report.
//! - [`plays`]: the video plays scenario: producers, a multi-threaded processor that
//!   counts plays, and the dashboard feed under the original's publication rules.
//! - [`dashboard`]: the live web page (served by the binary, pushed by Server-Sent
//!   Events) of a plays run.
//! - [`config`]: flags and environment variables, as typed settings.

pub mod audit;
pub mod bench;
pub mod broker;
pub mod config;
pub mod dashboard;
pub mod etl;
pub mod events;
#[doc(hidden)]
pub mod fixtures;
pub mod game;
pub mod latency;
pub mod player;
pub mod plays;
pub mod roster;
pub mod server;
pub mod simulate;
pub mod store;
pub mod worker;
