//! A pull consumer's messages, asked for on one inbox with an exact count of what the
//! pulls still owe.
//!
//! A JetStream pull is a request to `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`
//! for up to a batch of messages, answered on the inbox it names: the messages, then,
//! if the pull ends before its batch is full, a status saying how many it still owed
//! (408 when it expired, 409 when the server ended it). While a pull waits with
//! nothing to deliver, the server sends idle heartbeats (status 100) on the same inbox.
//!
//! A new pull goes out whenever what the pulls owe falls to half a batch, and is
//! counted before it is sent, so no message can arrive ahead of its pull's count (the
//! race that made async-nats's own stream stop asking now and then under load). When
//! the client connects again, or should the inbox stay silent for two heartbeats, the
//! pulls are taken as lost (a server restart, a lost connection) and asked for afresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use async_nats::{StatusCode, Subscriber};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::{NAME, unavailable};
use crate::broker::BrokerError;

/// The JetStream API's subject prefix (no domain, no account import).
const API: &str = "$JS.API";

/// What the pulls sent and not yet ended still owe, in messages.
#[derive(Debug)]
struct Owed {
    messages: usize,
    batch: usize,
}

impl Owed {
    fn new(batch: usize) -> Self {
        Self {
            messages: 0,
            batch: batch.max(1),
        }
    }

    /// Whether to ask for another batch: the pulls owe half a batch or less.
    fn wants_pull(&self) -> bool {
        self.messages <= self.batch / 2
    }

    /// A pull of one batch is about to go out.
    fn pulled(&mut self) {
        self.messages += self.batch;
    }

    /// One message came.
    fn delivered(&mut self) {
        self.messages = self.messages.saturating_sub(1);
    }

    /// A pull ended owing `pending` messages (a whole batch when the server did not
    /// say: a refused pull delivered nothing).
    fn ended(&mut self, pending: Option<usize>) {
        self.messages = self.messages.saturating_sub(pending.unwrap_or(self.batch));
    }

    /// The pulls are lost: nothing more will come of them.
    fn forget(&mut self) {
        self.messages = 0;
    }
}

/// How one consumer pulls.
#[derive(Clone, Copy, Debug)]
pub(super) struct PullSettings {
    /// Messages one pull asks for.
    pub batch: usize,
    /// How long the server holds one pull open.
    pub expires: Duration,
    /// How often the server says a waiting pull is alive.
    pub heartbeat: Duration,
}

/// How a consumer learns that its pulls are lost, and where it counts it.
pub(super) struct PullsLost {
    /// Changes whenever the client connects again.
    pub reconnected: watch::Receiver<u64>,
    /// Pulls renewed after a silence.
    pub renewed: Arc<AtomicU64>,
}

/// The messages of one pull consumer.
pub(super) struct Pulls {
    context: jetstream::Context,
    subject: String,
    inbox: String,
    inbox_messages: Subscriber,
    request: Vec<u8>,
    owed: Owed,
    silence: Duration,
    lost: PullsLost,
}

impl Pulls {
    /// Starts pulling from `consumer`.
    pub(super) async fn open(
        context: &jetstream::Context,
        consumer: &PullConsumer,
        settings: PullSettings,
        mut lost: PullsLost,
    ) -> Result<Self, BrokerError> {
        // Connections made before this consumer existed lost none of its pulls.
        lost.reconnected.borrow_and_update();
        let info = consumer.cached_info();
        let client = context.client();
        let inbox = client.new_inbox();
        let inbox_messages = client.subscribe(inbox.clone()).await.map_err(unavailable)?;
        let request = serde_json::json!({
            "batch": settings.batch.max(1),
            "expires": settings.expires.as_nanos() as u64,
            "idle_heartbeat": settings.heartbeat.as_nanos() as u64,
        });
        Ok(Self {
            context: context.clone(),
            subject: format!("{API}.CONSUMER.MSG.NEXT.{}.{}", info.stream_name, info.name),
            inbox,
            inbox_messages,
            request: request.to_string().into_bytes(),
            owed: Owed::new(settings.batch),
            silence: settings.heartbeat * 2,
            lost,
        })
    }

    /// The next message, an error the consumer should hear of (the caller pauses
    /// before asking again), or None once the connection is closed for good.
    pub(super) async fn next(&mut self) -> Option<Result<jetstream::Message, BrokerError>> {
        loop {
            while self.owed.wants_pull() {
                self.owed.pulled();
                let sent = self
                    .context
                    .client()
                    .publish_with_reply(
                        self.subject.clone(),
                        self.inbox.clone(),
                        self.request.clone().into(),
                    )
                    .await;
                if let Err(e) = sent {
                    self.owed.forget();
                    return Some(Err(unavailable(e)));
                }
            }
            let heard = tokio::select! {
                heard = tokio::time::timeout(self.silence, self.inbox_messages.next()) => heard,
                Ok(()) = self.lost.reconnected.changed() => {
                    // A new connection: the server dropped the pulls of the old one.
                    self.owed.forget();
                    continue;
                }
            };
            let message = match heard {
                Ok(Some(message)) => message,
                Ok(None) => return None,
                Err(_) => {
                    // Not a message nor a heartbeat for two heartbeats: no pull of
                    // ours is waiting at the server any more.
                    self.owed.forget();
                    self.lost.renewed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("{NAME}: the pulls went silent; pulling afresh");
                    continue;
                }
            };
            match message.status {
                None | Some(StatusCode::OK) => {
                    self.owed.delivered();
                    return Some(Ok(jetstream::Message {
                        message,
                        context: self.context.clone(),
                    }));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED) => {
                    self.owed.ended(still_owed(&message));
                    if let Some(why @ ("Consumer Deleted" | "Consumer is push based")) =
                        message.description.as_deref()
                    {
                        return Some(Err(unavailable(why)));
                    }
                }
                Some(status) => {
                    // 404 or 503: the consumer or JetStream is not there; the pull
                    // delivered nothing.
                    self.owed.ended(still_owed(&message));
                    let why = message.description.as_deref().unwrap_or("");
                    return Some(Err(unavailable(format!("pull answered {status} {why}"))));
                }
            }
        }
    }
}

/// What an ended pull says it still owed.
fn still_owed(status: &async_nats::Message) -> Option<usize> {
    status
        .headers
        .as_ref()?
        .get("Nats-Pending-Messages")?
        .as_str()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_is_counted_before_its_messages_and_ended_pulls_give_back_what_they_owed() {
        let mut owed = Owed::new(16);
        assert!(owed.wants_pull());
        owed.pulled();
        assert!(!owed.wants_pull(), "a full batch is owed");
        for _ in 0..7 {
            owed.delivered();
        }
        assert!(!owed.wants_pull(), "9 owed: more than half a batch");
        owed.delivered();
        assert!(owed.wants_pull(), "8 owed: half a batch");
        owed.pulled();
        assert_eq!(owed.messages, 24);
        // The first pull expires owing 8; the second still owes its 16.
        owed.ended(Some(8));
        assert_eq!(owed.messages, 16);
        assert!(!owed.wants_pull());
        // A pull the server refused without saying gives back its whole batch.
        owed.ended(None);
        assert_eq!(owed.messages, 0);
        owed.delivered();
        assert_eq!(owed.messages, 0, "a message beyond the count owes nothing");
        owed.pulled();
        owed.forget();
        assert!(owed.wants_pull());
    }

    #[test]
    fn a_batch_of_one_asks_again_after_each_message() {
        let mut owed = Owed::new(1);
        owed.pulled();
        assert!(!owed.wants_pull());
        owed.delivered();
        assert!(owed.wants_pull());
        assert_eq!(Owed::new(0).batch, 1, "a batch is at least one message");
    }
}
