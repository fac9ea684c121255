//! Redis as a broker, three ways, each with its own scheme: [`pubsub`] (`redis://`,
//! the original's broadcast), [`fanout`] (`redis-fanout://`, pub/sub handed to one
//! live worker per message) and [`streams`] (`redis-streams://`, consumer groups with
//! acknowledgements). They reach Redis alike, through one client and connection each (`Link`).

pub mod fanout;
pub mod pubsub;
mod resp;
pub mod streams;
mod subscription;

use redis::aio::ConnectionManager;

use super::BrokerError;
use crate::redis_client::connection_manager;
use crate::url::{redact, scheme, with_scheme};

/// A Redis client and one reconnecting connection to it.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) client: redis::Client,
    pub(crate) conn: ConnectionManager,
}

impl Link {
    /// Connects to the Redis a broker URL names, whatever the broker's own scheme
    /// (`redis-streams://h:6379/0` is `redis://h:6379/0` to Redis).
    pub(crate) async fn open(url: &str) -> Result<Self, BrokerError> {
        let redis_url = match scheme(url) {
            "redis" | "rediss" => url.to_string(),
            _ => with_scheme(url, "redis"),
        };
        let client = crate::redis_client::client(&redis_url).map_err(BrokerError::Config)?;
        let conn = connection_manager(&client)
            .await
            .map_err(|e| BrokerError::Unavailable(format!("cannot reach {}: {e}", redact(url))))?;
        Ok(Self { client, conn })
    }

    /// A connection of its own, for a task that blocks on Redis (XREADGROUP BLOCK).
    pub(crate) async fn own_connection(
        &self,
        broker: &'static str,
    ) -> Result<ConnectionManager, BrokerError> {
        connection_manager(&self.client)
            .await
            .map_err(super::unavailable(broker))
    }
}

/// One PING answered.
pub(crate) async fn ping(
    conn: &mut ConnectionManager,
    broker: &'static str,
) -> Result<(), BrokerError> {
    redis::cmd("PING")
        .query_async::<()>(conn)
        .await
        .map_err(super::unavailable(broker))
}

/// The Redis server's version, from `INFO server`.
pub(crate) async fn server_version(conn: &mut ConnectionManager) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| format!("Redis {}", v.trim()))
}
