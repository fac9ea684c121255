//! A bridge: every message one consumer receives, published to a topic of another
//! broker (`superhero fanout --to URL` brings the original's Redis pub/sub channel
//! into a broker with consumer groups). It is meant for an input that keeps nothing
//! (Redis pub/sub): a message the target refuses cannot be had again, so it is lost,
//! logged and counted, never silently.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{BrokerError, Consumer, Publisher};

/// What a bridge did, counted live.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Messages the target accepted.
    pub forwarded: AtomicU64,
    /// Messages the target refused.
    pub lost: AtomicU64,
}

impl BridgeStats {
    /// Messages forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Messages lost so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Forwards what `input` receives to `topic` through `target`, one message at a time
/// in the order received, until `stop` completes (then `Ok`) or the input fails.
/// A forwarded message is acknowledged to the input.
pub async fn forward(
    input: &mut dyn Consumer,
    target: &dyn Publisher,
    topic: &str,
    stats: &BridgeStats,
    stop: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    tokio::pin!(stop);
    loop {
        let delivery = tokio::select! {
            next = input.next() => next?,
            () = &mut stop => return Ok(()),
        };
        match target
            .publish(topic, std::slice::from_ref(&delivery.payload))
            .await
        {
            Ok(()) => {
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = delivery.ack().await {
                    tracing::debug!("bridge: acknowledging a forwarded message: {e}");
                }
            }
            Err(e) => {
                stats.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!("bridge: a message could not be forwarded to {topic}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::broker::{Broker, MemoryBroker};

    /// A target that refuses every message.
    struct Refusing;

    #[async_trait]
    impl Publisher for Refusing {
        async fn publish(&self, _: &str, _: &[Vec<u8>]) -> Result<(), BrokerError> {
            Err(BrokerError::Unavailable("down".into()))
        }
    }

    async fn until(stats: &BridgeStats, n: u64) {
        while stats.forwarded() + stats.lost() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn forwards_in_order_and_counts() {
        let source = MemoryBroker::new();
        let target = MemoryBroker::new();
        let mut input = source.consumer("in", "bridge").await.unwrap();
        let mut output = target.consumer("out", "workers").await.unwrap();
        let sent: Vec<Vec<u8>> = (0..5).map(|i| format!("m{i}").into_bytes()).collect();
        source.publish("in", &sent).await.unwrap();
        let stats = BridgeStats::default();
        let publisher = target.publisher().await.unwrap();
        let stop = until(&stats, 5);
        forward(&mut *input, &*publisher, "out", &stats, stop)
            .await
            .unwrap();
        assert_eq!((stats.forwarded(), stats.lost()), (5, 0));
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(output.next().await.unwrap().payload);
        }
        assert_eq!(got, sent);
        // Forwarded messages were acknowledged to the input.
        assert_eq!(source.depth("in", "bridge").unacked, 0);
    }

    #[tokio::test]
    async fn what_the_target_refuses_is_counted_lost() {
        let source = MemoryBroker::new();
        let mut input = source.consumer("in", "bridge").await.unwrap();
        source
            .publish("in", &[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
            .await
            .unwrap();
        let stats = BridgeStats::default();
        let stop = until(&stats, 3);
        forward(&mut *input, &Refusing, "out", &stats, stop)
            .await
            .unwrap();
        assert_eq!((stats.forwarded(), stats.lost()), (0, 3));
    }
}
