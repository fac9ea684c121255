//! A consumer fed by a task of its own: the task talks to the broker and hands each
//! delivery over a channel, so `next` loses nothing when it is cancelled. Dropping the
//! consumer stops the task, then runs its broker's clean-up, if any.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{BrokerError, Consumer, Delivery};

pub(super) type Feed = mpsc::Sender<Result<Delivery, BrokerError>>;

/// Deliveries a consumer's task may hand over ahead of `next`, so that
/// [`Consumer::next_batch`] finds a batch waiting and its acks can go together. They
/// are held by the consumer already, as a broker's prefetch holds them.
pub(super) const FEED: usize = 256;

type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(super) struct FetchedConsumer {
    rx: mpsc::Receiver<Result<Delivery, BrokerError>>,
    task: JoinHandle<()>,
    cleanup: Option<Cleanup>,
    /// Messages the task could not hand over because the buffer was full and its
    /// broker cannot wait (see [`FetchedConsumer::spawn_lossy`]).
    overflowed: Arc<AtomicU64>,
}

/// Hands deliveries over without waiting: what does not fit is counted, not kept.
pub(super) struct LossyFeed {
    tx: Feed,
    overflowed: Arc<AtomicU64>,
}

impl LossyFeed {
    /// Hands `delivery` over, or counts it when the buffer is full. False once the
    /// consumer is gone.
    pub(super) fn offer(&self, delivery: Delivery) -> bool {
        match self.tx.try_send(Ok(delivery)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.overflowed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        "a consumer fell behind its broker: messages are dropped and counted"
                    );
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl FetchedConsumer {
    /// Starts `fetch`, which feeds deliveries (at most `buffer` waiting) until the
    /// consumer is dropped.
    pub(super) fn spawn<F, Fut>(buffer: usize, fetch: F) -> Self
    where
        F: FnOnce(Feed) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        Self {
            rx,
            task: tokio::spawn(fetch(tx)),
            cleanup: None,
            overflowed: Arc::default(),
        }
    }

    /// Like [`FetchedConsumer::spawn`], for a broker that pushes and cannot be made
    /// to wait (Redis pub/sub: its client would buffer without bound instead): at most
    /// `buffer` deliveries wait, and the ones that do not fit are counted in
    /// [`Consumer::overflowed`].
    pub(super) fn spawn_lossy<F, Fut>(buffer: usize, fetch: F) -> Self
    where
        F: FnOnce(LossyFeed) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let overflowed = Arc::new(AtomicU64::new(0));
        let mut consumer = Self::spawn(buffer, |tx| {
            fetch(LossyFeed {
                tx,
                overflowed: overflowed.clone(),
            })
        });
        consumer.overflowed = overflowed;
        consumer
    }

    /// Runs `cleanup` on the runtime once the consumer is dropped.
    pub(super) fn on_drop(mut self, cleanup: impl Future<Output = ()> + Send + 'static) -> Self {
        self.cleanup = Some(Box::pin(cleanup));
        self
    }
}

#[async_trait]
impl Consumer for FetchedConsumer {
    async fn next(&mut self) -> Result<Delivery, BrokerError> {
        self.rx.recv().await.unwrap_or(Err(BrokerError::Closed))
    }

    fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

impl Drop for FetchedConsumer {
    fn drop(&mut self) {
        self.task.abort();
        if let (Some(cleanup), Ok(runtime)) =
            (self.cleanup.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(cleanup);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Once the task that feeds it ends, a consumer says the broker is closed, and
    /// keeps saying so.
    #[tokio::test]
    async fn a_consumer_whose_feed_ended_is_closed() {
        let mut consumer = FetchedConsumer::spawn(4, |tx| async move {
            let delivery = Delivery::new(b"last".to_vec(), false, Box::new(Nothing));
            let _ = tx.send(Ok(delivery)).await;
        });
        let last = consumer.next().await.unwrap();
        assert_eq!(last.payload, b"last");
        for _ in 0..2 {
            assert!(matches!(consumer.next().await, Err(BrokerError::Closed)));
        }
    }

    /// A delivery with nothing to settle.
    struct Nothing;

    #[async_trait]
    impl super::super::Settle for Nothing {
        async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
            Ok(())
        }

        async fn nack(self: Box<Self>) -> Result<(), BrokerError> {
            Ok(())
        }
    }
}
