//! What a command says about every broker it may open ([`Tuning`]); each backend
//! takes from it what applies to it, into its own options type.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// How far consumers and publishers run ahead of the broker's word.
    pub flow: Flow,
}

/// How far consumers and publishers run ahead of the broker's word: the settings a
/// broker benchmark turns, each backend applying what it has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Messages the broker sends a consumer ahead of its acknowledgements (RabbitMQ's
    /// `basic.qos` prefetch, nsqd's RDY, a JetStream pull's batch, an XREADGROUP's
    /// COUNT, librdkafka's `queued.min.messages`); none: the backend's default.
    pub prefetch: Option<usize>,
    /// What a publisher waits for before a message counts as published.
    pub acks: Acks,
}

/// What a publisher waits for before a message counts as published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acks {
    /// The broker's word that it stored the message as durably as it is set up to:
    /// Kafka's `acks=all`, RabbitMQ's publisher confirms, JetStream's publish
    /// acknowledgement.
    #[default]
    All,
    /// The partition leader's word, not its followers' (Kafka's `acks=1`); the same
    /// as `all` elsewhere.
    Leader,
    /// Nothing: the message counts as published once sent (Kafka's `acks=0`,
    /// RabbitMQ without confirms, JetStream without awaiting the publish
    /// acknowledgement). The audit then shows what that risks as lost messages.
    None,
}

impl Acks {
    /// Every policy, by its name.
    pub const ALL: [Acks; 3] = [Acks::All, Acks::Leader, Acks::None];

    /// Its name in flags and files.
    pub fn name(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "leader",
            Acks::None => "none",
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("acks is one of all, leader, none; not {s:?}"))
    }
}

/// The flow settings a broker runs with, in its own terms, for reports: each says
/// what applies on this broker and how, or why nothing does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowSettings {
    pub prefetch: String,
    pub acks: String,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            claim_after: Duration::from_secs(30),
            in_process: false,
            partitions: DEFAULT_PARTITIONS,
            topic_named_group: None,
            flow: Flow::default(),
        }
    }
}
