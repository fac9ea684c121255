//! Waiting between attempts: a pause that doubles after each failure up to a bound,
//! and a loop that retries an operation until it succeeds. Every reconnecting client
//! of the crate (broker consumers, the event publisher, the workers) uses it. A leaf.

use std::future::Future;
use std::time::Duration;

/// A pause that doubles after each failure, from `first` up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// The first pause is `first`; none is longer than `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The pause the next failure waits.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The pause for this failure; the next one waits twice as long (up to the bound).
    pub fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    /// Sleeps for this failure's pause.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.step()).await;
    }

    /// After a success: the next failure waits the first pause again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Calls `attempt` until it succeeds, pausing with `backoff` between failures; each
/// failure is logged at DEBUG under `what`.
pub async fn until_ok<T, E, F, Fut>(what: &str, mut backoff: Backoff, mut attempt: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) => {
                tracing::debug!("{what}: {e}; trying again in {:?}", backoff.peek());
                backoff.wait().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_bound_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let steps: Vec<u128> = (0..4).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.step(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn until_ok_retries_until_success() {
        let mut calls = 0;
        let value = until_ok(
            "test",
            Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            || {
                calls += 1;
                let n = calls;
                async move { if n < 3 { Err("not yet") } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(value, 3);
    }
}
