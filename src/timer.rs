//! A deadline that moves with every message but rarely passes: a connection's idle
//! timeout, a bot's wait for a reply, a game's turn deadline. Arming a fresh tokio
//! timer for each wait costs a registration and a removal in the runtime's timer
//! wheel per message, which at tens of thousands of messages a second is a tenth of
//! the generator's CPU. [`LazyTimer`] keeps one timer and moves it only when it
//! fires early. A leaf.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

/// One timer reused for many waits. A wait for a later deadline than the timer's
/// leaves the timer where it is: when it fires, the wait finds its own deadline not
/// reached yet and only then moves the timer. A connection that answers thousands of
/// requests within its timeout so moves its timer about once per timeout, not once
/// per request.
pub struct LazyTimer {
    sleep: Pin<Box<Sleep>>,
}

impl LazyTimer {
    /// A timer first set for `at` (not armed until a wait polls it).
    pub fn new(at: Instant) -> Self {
        Self {
            sleep: Box::pin(sleep_until(at)),
        }
    }

    /// Completes at `at`, or at once if it has passed. Cancel-safe: dropping the
    /// wait leaves the timer reusable.
    pub async fn until(&mut self, at: Instant) {
        loop {
            if self.sleep.deadline() > at {
                self.sleep.as_mut().reset(at);
            }
            self.sleep.as_mut().await;
            if self.sleep.deadline() >= at {
                return;
            }
            // Fired for an earlier wait's deadline: on to this one's.
            self.sleep.as_mut().reset(at);
        }
    }

    /// Completes at `at`, or never when there is no deadline.
    pub async fn until_some(&mut self, at: Option<Instant>) {
        match at {
            Some(at) => self.until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// A timer made for no deadline yet: the first wait sets it, once.
impl Default for LazyTimer {
    fn default() -> Self {
        // About thirty years; a clock that cannot go that far gets now, which costs the
        // first wait one early wake-up.
        let far = Instant::now().checked_add(Duration::from_secs(30 * 365 * 86_400));
        Self::new(far.unwrap_or_else(Instant::now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_own_deadline_whatever_the_timer_held() {
        let start = Instant::now();
        let mut timer = LazyTimer::new(start + Duration::from_secs(1));
        // Later than the timer: it fires at 1 s, then moves to 3 s.
        timer.until(start + Duration::from_secs(3)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        // Earlier than the timer: it moves back at once.
        let t = Instant::now();
        timer.until(t + Duration::from_millis(500)).await;
        assert_eq!(Instant::now() - t, Duration::from_millis(500));
        // Passed: no wait.
        let t = Instant::now();
        timer.until(t - Duration::from_millis(1)).await;
        assert_eq!(Instant::now(), t);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_wait_leaves_the_timer_usable() {
        let start = Instant::now();
        let mut timer = LazyTimer::default();
        let cut = tokio::time::timeout(
            Duration::from_secs(1),
            timer.until(start + Duration::from_secs(10)),
        )
        .await;
        assert!(cut.is_err());
        timer.until(start + Duration::from_secs(2)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        let never = tokio::time::timeout(Duration::from_secs(60), timer.until_some(None)).await;
        assert!(never.is_err());
    }
}
