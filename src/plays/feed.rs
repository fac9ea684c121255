//! The dashboard feed of a plays run: what the processor publishes, pushed to every
//! subscriber as it happens, with a snapshot to start from.
//!
//! A subscriber calls [`PlaysFeed::subscribe`] and gets, atomically, the state so far
//! ([`Snapshot`]: the last published count of each video, consumption times, the
//! consumption-time series) and a receiver of every [`PlaysUpdate`] after it. One that
//! falls behind by more than the channel holds is told so by the receiver (`Lagged`)
//! and subscribes again: the snapshot makes it whole. Memory stays bounded: the
//! series keeps at most [`SERIES_POINTS`] points, merging neighbours as it grows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use super::rules::Publication;

/// Points the consumption-time series keeps at most.
pub const SERIES_POINTS: usize = 600;
/// Updates a subscriber may fall behind by before it must take a fresh snapshot.
const CHANNEL: usize = 4096;

/// Consumption times so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Consumption {
    pub produced: u64,
    pub consumed: u64,
    /// Consumed − enqueued of the last message counted.
    pub latest_ms: f64,
    /// The same, averaged over every message counted.
    pub average_ms: f64,
}

/// One point of the consumption-time chart: seconds since the run started and the
/// average consumption time of the messages counted around then.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SeriesPoint {
    pub t_s: f64,
    pub ms: f64,
}

/// What a subscriber hears.
#[derive(Clone, Debug)]
pub enum PlaysUpdate {
    /// Counts the processor published.
    Published(Arc<Publication>),
    /// Consumption times, a few times a second, with the chart's new point if any.
    Consumption(Consumption, Option<SeriesPoint>),
    /// The run is over; every video's published count is its true count.
    Finished,
}

/// The state a new subscriber starts from.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Each video's last published count.
    pub counts: HashMap<String, u64>,
    pub publications: u64,
    pub consumption: Consumption,
    pub series: Vec<SeriesPoint>,
    pub finished: bool,
}

/// The feed of one run (or of several in turn).
pub struct PlaysFeed {
    tx: broadcast::Sender<PlaysUpdate>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    snapshot: Snapshot,
}

impl PlaysFeed {
    pub fn new() -> Arc<Self> {
        let (tx, _) = broadcast::channel(CHANNEL);
        Arc::new(Self {
            tx,
            state: Mutex::new(State::default()),
        })
    }

    /// The state so far and every update after it.
    pub fn subscribe(&self) -> (Snapshot, broadcast::Receiver<PlaysUpdate>) {
        let state = self.lock();
        (state.snapshot.clone(), self.tx.subscribe())
    }

    /// The state so far.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a new run: the counts and the chart start empty.
    pub(crate) fn reset(&self) {
        let mut state = self.lock();
        state.snapshot = Snapshot::default();
    }

    pub(crate) fn published(&self, publication: Publication) {
        let mut state = self.lock();
        for v in &publication.videos {
            state.snapshot.counts.insert(v.video_id.clone(), v.plays);
        }
        state.snapshot.publications += 1;
        // Sent under the lock, so no subscriber misses it or sees it twice.
        let _ = self.tx.send(PlaysUpdate::Published(Arc::new(publication)));
    }

    pub(crate) fn consumption(&self, now: Consumption, point: Option<SeriesPoint>) {
        let mut state = self.lock();
        state.snapshot.consumption = now;
        if let Some(p) = point {
            push_bounded(&mut state, p);
        }
        let _ = self.tx.send(PlaysUpdate::Consumption(now, point));
    }

    pub(crate) fn finished(&self) {
        let mut state = self.lock();
        state.snapshot.finished = true;
        let _ = self.tx.send(PlaysUpdate::Finished);
    }
}

/// Adds a point; a full series halves itself by averaging neighbours, so older
/// stretches of a long run are drawn coarser.
fn push_bounded(state: &mut State, p: SeriesPoint) {
    let series = &mut state.snapshot.series;
    series.push(p);
    if series.len() > SERIES_POINTS {
        let merged: Vec<SeriesPoint> = series
            .chunks(2)
            .map(|pair| {
                let n = pair.len() as f64;
                SeriesPoint {
                    t_s: pair.iter().map(|p| p.t_s).sum::<f64>() / n,
                    ms: pair.iter().map(|p| p.ms).sum::<f64>() / n,
                }
            })
            .collect();
        *series = merged;
    }
}

/// A dashboard's table: the counts as publications left them.
#[derive(Clone, Debug, Default)]
pub struct ClientCounts {
    pub counts: HashMap<String, u64>,
}

impl ClientCounts {
    /// A client's counts as a snapshot gives them.
    pub fn from_snapshot(s: &Snapshot) -> Self {
        Self {
            counts: s.counts.clone(),
        }
    }

    /// Takes in one publication, as a client would.
    pub fn apply(&mut self, p: &Publication) {
        for v in &p.videos {
            self.counts.insert(v.video_id.clone(), v.plays);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plays::rules::VideoCount;

    fn publication(id: &str, plays: u64) -> Publication {
        Publication {
            videos: vec![VideoCount {
                video_id: id.into(),
                plays,
            }],
        }
    }

    #[test]
    fn a_subscriber_starts_from_the_snapshot_and_hears_the_rest() {
        let feed = PlaysFeed::new();
        feed.published(publication("a", 1));
        let (snapshot, mut rx) = feed.subscribe();
        assert_eq!(snapshot.counts["a"], 1);
        feed.published(publication("a", 2));
        feed.finished();
        let mut client = ClientCounts::from_snapshot(&snapshot);
        loop {
            match rx.try_recv().unwrap() {
                PlaysUpdate::Published(p) => client.apply(&p),
                PlaysUpdate::Finished => break,
                PlaysUpdate::Consumption(..) => {}
            }
        }
        assert_eq!(client.counts, feed.snapshot().counts);
        assert_eq!(feed.snapshot().publications, 2);
    }

    #[test]
    fn the_series_stays_bounded() {
        let feed = PlaysFeed::new();
        for i in 0..10 * SERIES_POINTS {
            let point = SeriesPoint {
                t_s: i as f64,
                ms: 1.0,
            };
            feed.consumption(Consumption::default(), Some(point));
        }
        let series = feed.snapshot().series;
        assert!(series.len() <= SERIES_POINTS && series.len() >= SERIES_POINTS / 2);
        assert!(series.windows(2).all(|w| w[0].t_s < w[1].t_s));
        assert!(series.iter().all(|p| p.ms == 1.0));
    }
}
