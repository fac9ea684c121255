//! The game itself, free of I/O: tokens and statuses ([`types`]), the Schema V1 wire
//! format ([`protocol`]) and the combat rules ([`rules`]).
//!
//! Nothing in here touches a socket, a store or the clock; the server and the stores
//! call into it so that the same rules run on Redis and on the embedded store.

pub mod protocol;
pub mod rules;
pub mod types;

pub use types::{GameStatus, GameToken, Hero, HeroId, UserToken};
