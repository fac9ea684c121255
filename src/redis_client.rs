//! Connections to Redis as the store and the Redis brokers open them: a client from a
//! URL (errors name the address with its password masked), and a multiplexed
//! connection that reconnects by itself, answering every request within five seconds
//! or failing it. A leaf, beside [`crate::url`].

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long any one Redis command may take before it counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for `url` (`redis://…`); the error says what is wrong without the password.
pub fn client(url: &str) -> Result<redis::Client, String> {
    redis::Client::open(url).map_err(|e| {
        format!(
            "bad Redis address {}: {:?}",
            crate::url::redact(url),
            e.kind()
        )
    })
}

/// A reconnecting connection: three reconnect attempts per failed request.
pub async fn connection_manager(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(3);
    ConnectionManager::new_with_config(client.clone(), config).await
}

/// A Redis Cluster client's settings for `nodes` (`redis://host:port` URLs): the
/// same five-second bounds per attempt, and up to ten retries a command after
/// 0.1 s, 0.1–0.2 s, 0.1–0.4 s, … up to 1 s each (about 4 s in all, as long as a
/// replica takes to replace a failed master at a cluster node timeout of a second or
/// two); past that the command fails.
pub fn cluster_builder(nodes: &[String]) -> redis::cluster::ClusterClientBuilder {
    redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(RESPONSE_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(10)
        .retry_wait_formula(100, 2)
        .min_retry_wait(100)
        .max_retry_wait(1_000)
}
