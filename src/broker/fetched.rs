//! A consumer fed by a task of its own: the task talks to the broker and hands each
//! delivery over a channel, so `next` loses nothing when it is cancelled. Dropping the
//! consumer stops the task, then runs its broker's clean-up, if any.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{BrokerError, Consumer, Delivery};

pub(super) type Feed = mpsc::Sender<Result<Delivery, BrokerError>>;

type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(super) struct FetchedConsumer {
    rx: mpsc::Receiver<Result<Delivery, BrokerError>>,
    task: JoinHandle<()>,
    cleanup: Option<Cleanup>,
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
        }
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
