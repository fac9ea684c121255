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
//! - [`events`]: the log records that name a queue, the events the transport carries.
//! - [`config`]: flags and environment variables, as typed settings.

pub mod config;
pub mod events;
pub mod game;
pub mod player;
pub mod roster;
pub mod server;
pub mod simulate;
pub mod store;
