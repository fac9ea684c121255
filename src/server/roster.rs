//! The roster a server's games draw their heroes from, kept in memory.
//!
//! The store is read when the roster is first needed, and again while what it gave
//! was empty, so a `build-db` run after the server started is picked up. Finds that
//! miss together share one read: a thousand bots starting at once make one `HGETALL`
//! of the roster on Redis, not a thousand.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::game::Hero;

/// The heroes as last read, and the turn to read them again.
#[derive(Default)]
pub(super) struct Roster {
    heroes: RwLock<Arc<Vec<Hero>>>,
    /// Held by the one read under way.
    reading: tokio::sync::Mutex<()>,
    /// Reads done, whatever they found.
    reads: AtomicU64,
}

impl Roster {
    /// The heroes, read with `read` unless a non-empty roster is held. A caller that
    /// finds another's read under way waits for it and takes its result. When that
    /// read failed or found none, the callers that waited for it read at once, each
    /// on its own, rather than one after another: with the store down, each fails in
    /// the time of one read.
    pub(super) async fn get<E, F>(&self, read: impl FnOnce() -> F) -> Result<Arc<Vec<Hero>>, E>
    where
        F: Future<Output = Result<Vec<Hero>, E>>,
    {
        if let Some(held) = self.held() {
            return Ok(held);
        }
        let before = self.reads.load(Ordering::Acquire);
        let reading = self.reading.lock().await;
        if let Some(held) = self.held() {
            return Ok(held);
        }
        if self.reads.load(Ordering::Acquire) != before {
            drop(reading);
        }
        self.read(read).await
    }

    async fn read<E, F>(&self, read: impl FnOnce() -> F) -> Result<Arc<Vec<Hero>>, E>
    where
        F: Future<Output = Result<Vec<Hero>, E>>,
    {
        let read = read().await;
        self.reads.fetch_add(1, Ordering::AcqRel);
        let fresh = Arc::new(read?);
        *self.heroes.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    fn held(&self) -> Option<Arc<Vec<Hero>>> {
        let heroes = self.heroes.read().unwrap_or_else(|e| e.into_inner());
        (!heroes.is_empty()).then(|| heroes.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use std::time::Duration;

    use futures_util::future::join_all;

    use super::*;

    fn heroes(n: u32) -> Vec<Hero> {
        (1..=n)
            .map(|id| Hero {
                id,
                attack: 10,
                health: 100,
            })
            .collect()
    }

    /// Opens `gate` once the first read has begun and the other callers have had
    /// their turns to ask.
    async fn open_after_the_first_read(reads: &AtomicUsize, gate: &tokio::sync::Notify) {
        while reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.notify_waiters();
    }

    #[tokio::test]
    async fn finds_that_miss_together_share_one_read() {
        let roster = Roster::default();
        let reads = AtomicUsize::new(0);
        let gate = tokio::sync::Notify::new();
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            // Held open until every caller has asked.
            gate.notified().await;
            Ok::<_, ()>(heroes(3))
        };
        let callers = join_all((0..50).map(|_| roster.get(read)));
        let opened = open_after_the_first_read(&reads, &gate);
        let (got, ()) = tokio::join!(callers, opened);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(got.len(), 50);
        assert!(got.iter().all(|g| g.as_ref().is_ok_and(|h| h.len() == 3)));
    }

    #[tokio::test]
    async fn after_a_failed_shared_read_the_waiters_read_each_on_its_own() {
        let roster = Roster::default();
        let reads = AtomicUsize::new(0);
        let gate = tokio::sync::Notify::new();
        let read = || async {
            if reads.fetch_add(1, Ordering::SeqCst) == 0 {
                gate.notified().await;
                return Err("down");
            }
            // A read that does not end before every waiter has started its own.
            while reads.load(Ordering::SeqCst) < 11 {
                tokio::task::yield_now().await;
            }
            Ok(heroes(1))
        };
        let callers = join_all((0..11).map(|_| roster.get(read)));
        let opened = open_after_the_first_read(&reads, &gate);
        let (got, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(callers, opened)
        })
        .await
        .expect("the waiters read one after another");
        assert_eq!(got.iter().filter(|g| g.is_err()).count(), 1);
        assert_eq!(got.iter().filter(|g| g.is_ok()).count(), 10);
        assert_eq!(reads.load(Ordering::SeqCst), 11);
    }

    #[tokio::test]
    async fn an_empty_or_failed_read_is_tried_again() {
        let roster = Roster::default();
        let none = roster.get(|| async { Ok::<_, ()>(Vec::new()) }).await;
        assert_eq!(none.map(|h| h.len()), Ok(0));
        let failed = roster.get(|| async { Err::<Vec<Hero>, _>("down") }).await;
        assert_eq!(failed.map(|h| h.len()), Err("down"));
        let built = roster.get(|| async { Ok::<_, ()>(heroes(2)) }).await;
        assert_eq!(built.map(|h| h.len()), Ok(2));
        let kept = roster.get(|| async { Ok::<_, ()>(heroes(7)) }).await;
        assert_eq!(kept.map(|h| h.len()), Ok(2));
    }
}
