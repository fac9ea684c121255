//! What a command says about every broker it may open ([`Tuning`]); each backend
//! takes from it what applies to it, into its own options type.

use std::time::Duration;

/// Partitions of a Kafka topic when KAFKA_PARTITIONS does not say.
pub const DEFAULT_PARTITIONS: i32 = 2;

/// What a command says about every broker it may open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// How long a message held by a consumer that died waits before another consumer
    /// takes it, on brokers that cannot tell at once (Redis Streams, NATS, NSQ).
    pub claim_after: Duration,
    /// The whole pipeline runs in this process (`simulate`, `bench`): a broker that
    /// needs a middleware (Redis fan-out) runs it here.
    pub in_process: bool,
    /// Partitions of the topics superhero creates (Kafka's KAFKA_PARTITIONS).
    pub partitions: i32,
    /// The group whose queue is named after its topic on RabbitMQ (the workers', so
    /// that the original's publisher reaches it); other groups get `<topic>.<group>`.
    pub topic_named_group: Option<String>,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            claim_after: Duration::from_secs(30),
            in_process: false,
            partitions: DEFAULT_PARTITIONS,
            topic_named_group: None,
        }
    }
}
