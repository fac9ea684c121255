//! The processor's source of truth and the publication rules, without I/O.
//!
//! The rules, as the original demonstration published to its dashboard:
//! - a video under [`PUBLISH_BELOW`] plays is published as soon as its count changes
//!   ([`Counter::due_now`], called after every batch of messages counted);
//! - at [`PUBLISH_BELOW`] plays and over, only at the update interval
//!   ([`Counter::due_at_tick`]);
//! - one publication carries at most [`MAX_PER_PUBLICATION`] videos;
//! - a video is published only if its count changed since it was last published.
//!
//! The end of a run is a last tick, so every video's last published count is its
//! true count.

use std::collections::HashMap;

use serde::Serialize;

/// Videos under this many plays are published as they change.
pub const PUBLISH_BELOW: u64 = 100;
/// Videos one publication carries at most.
pub const MAX_PER_PUBLICATION: usize = 20;

/// One message to the dashboard: videos and their counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Publication {
    pub videos: Vec<VideoCount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VideoCount {
    pub video_id: String,
    pub plays: u64,
}

struct Video {
    id: String,
    plays: u64,
    /// The count last published (0: never, which is also the count before any play).
    published: u64,
    /// Waiting in `urgent` or in `later`.
    queued: bool,
}

/// Play counts by video, and which changes are due for publication.
#[derive(Default)]
pub struct Counter {
    index: HashMap<String, usize>,
    videos: Vec<Video>,
    /// Videos that changed since they were last published, in the order they did.
    changed: Vec<usize>,
    /// Sequence numbers of the messages counted, so a redelivered one counts once.
    seen: Bitset,
    duplicates: u64,
    counted: u64,
}

impl Counter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one play of `video`, carried by the message numbered `seq`; false
    /// (and nothing counted) if that message was counted before.
    pub fn record(&mut self, video: &str, seq: u64) -> bool {
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return false;
        }
        let i = match self.index.get(video) {
            Some(&i) => i,
            None => {
                self.videos.push(Video {
                    id: video.to_string(),
                    plays: 0,
                    published: 0,
                    queued: false,
                });
                self.index.insert(video.to_string(), self.videos.len() - 1);
                self.videos.len() - 1
            }
        };
        let v = &mut self.videos[i];
        v.plays += 1;
        if !v.queued {
            v.queued = true;
            self.changed.push(i);
        }
        self.counted += 1;
        true
    }

    /// The publications due now: changed videos still under [`PUBLISH_BELOW`].
    pub fn due_now(&mut self) -> Vec<Publication> {
        self.take(|plays| plays < PUBLISH_BELOW)
    }

    /// The publications due at an update-interval tick: every changed video.
    pub fn due_at_tick(&mut self) -> Vec<Publication> {
        self.take(|_| true)
    }

    fn take(&mut self, due: impl Fn(u64) -> bool) -> Vec<Publication> {
        if self.changed.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<VideoCount> = Vec::new();
        let videos = &mut self.videos;
        self.changed.retain(|&i| {
            let v = &mut videos[i];
            if !due(v.plays) {
                return true;
            }
            v.queued = false;
            if v.plays != v.published {
                v.published = v.plays;
                out.push(VideoCount {
                    video_id: v.id.clone(),
                    plays: v.plays,
                });
            }
            false
        });
        let mut publications = Vec::with_capacity(out.len().div_ceil(MAX_PER_PUBLICATION));
        let mut rest = out.into_iter().peekable();
        while rest.peek().is_some() {
            publications.push(Publication {
                videos: rest.by_ref().take(MAX_PER_PUBLICATION).collect(),
            });
        }
        publications
    }

    /// Every video's true count.
    pub fn counts(&self) -> HashMap<String, u64> {
        self.videos
            .iter()
            .map(|v| (v.id.clone(), v.plays))
            .collect()
    }

    /// Every video's last published count.
    pub fn published(&self) -> HashMap<String, u64> {
        self.videos
            .iter()
            .filter(|v| v.published > 0)
            .map(|v| (v.id.clone(), v.published))
            .collect()
    }

    /// Messages counted (each once).
    pub fn counted(&self) -> u64 {
        self.counted
    }

    /// Messages delivered again after they were counted.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn videos(&self) -> usize {
        self.videos.len()
    }
}

/// A growable set of small integers, one bit each.
#[derive(Default)]
struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// Adds `n`; false if it was there.
    fn insert(&mut self, n: u64) -> bool {
        let word = (n / 64) as usize;
        if word >= self.words.len() {
            self.words.resize((word + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (n % 64);
        let was = self.words[word] & bit != 0;
        self.words[word] |= bit;
        !was
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(p: &Publication) -> Vec<(&str, u64)> {
        p.videos
            .iter()
            .map(|v| (v.video_id.as_str(), v.plays))
            .collect()
    }

    #[test]
    fn a_video_under_100_is_published_as_it_changes() {
        let mut c = Counter::new();
        c.record("a", 0);
        c.record("a", 1);
        c.record("b", 2);
        let due = c.due_now();
        assert_eq!(due.len(), 1);
        assert_eq!(ids(&due[0]), [("a", 2), ("b", 1)]);
        assert!(c.due_now().is_empty(), "nothing changed since");
        assert!(c.due_at_tick().is_empty(), "nothing changed since");
    }

    #[test]
    fn at_100_plays_a_video_waits_for_the_tick() {
        let mut c = Counter::new();
        for seq in 0..99 {
            c.record("a", seq);
        }
        assert_eq!(ids(&c.due_now()[0]), [("a", 99)]);
        c.record("a", 99);
        c.record("a", 100);
        assert!(c.due_now().is_empty(), "101 plays: not before the tick");
        assert_eq!(ids(&c.due_at_tick()[0]), [("a", 101)]);
        assert!(c.due_at_tick().is_empty());
    }

    #[test]
    fn a_publication_carries_at_most_20_videos() {
        let mut c = Counter::new();
        for seq in 0..45 {
            c.record(&format!("v{seq}"), seq);
        }
        let due = c.due_now();
        let sizes: Vec<_> = due.iter().map(|p| p.videos.len()).collect();
        assert_eq!(sizes, [20, 20, 5]);
    }

    #[test]
    fn a_redelivered_message_counts_once() {
        let mut c = Counter::new();
        assert!(c.record("a", 7));
        assert!(!c.record("a", 7));
        assert!(c.record("a", 100_000));
        assert_eq!(c.counts()["a"], 2);
        assert_eq!((c.counted(), c.duplicates()), (2, 1));
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Plays of these videos, then the publications due now.
        Batch(Vec<u8>),
        /// An update-interval tick.
        Tick,
    }

    fn ops(videos: u8) -> impl Strategy<Value = Vec<Op>> {
        let batch = prop::collection::vec(0..videos, 1..60).prop_map(Op::Batch);
        // Ticks are rarer than batches, as with a real interval.
        let op = prop_oneof![6 => batch, 1 => Just(Op::Tick)];
        prop::collection::vec(op, 1..120)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn the_publication_rules_hold_over_any_stream(
            (videos, ops) in (1u8..40).prop_flat_map(|v| (Just(v), ops(v)))
        ) {
            let mut c = Counter::new();
            let mut truth: HashMap<String, u64> = HashMap::new();
            // What a dashboard shows: the last published count of each video.
            let mut shown: HashMap<String, u64> = HashMap::new();
            let mut seq = 0u64;
            let check = |pubs: Vec<Publication>, tick: bool,
                             truth: &HashMap<String, u64>,
                             shown: &mut HashMap<String, u64>| -> Result<(), TestCaseError> {
                for p in pubs {
                    prop_assert!(!p.videos.is_empty() && p.videos.len() <= MAX_PER_PUBLICATION);
                    let mut in_this = std::collections::HashSet::new();
                    for v in &p.videos {
                        prop_assert!(in_this.insert(v.video_id.clone()), "twice in one publication");
                        // Only changed counts, and the true count at that moment.
                        prop_assert_ne!(shown.get(&v.video_id).copied().unwrap_or(0), v.plays);
                        prop_assert_eq!(truth[&v.video_id], v.plays);
                        // 100 and over only on interval ticks.
                        prop_assert!(tick || v.plays < PUBLISH_BELOW, "{} plays published early", v.plays);
                        shown.insert(v.video_id.clone(), v.plays);
                    }
                }
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Batch(plays) => {
                        for v in plays {
                            let id = format!("video-{}", v % videos);
                            c.record(&id, seq);
                            seq += 1;
                            *truth.entry(id).or_default() += 1;
                        }
                        check(c.due_now(), false, &truth, &mut shown)?;
                        // Under 100: shown as soon as it changed.
                        for (id, &n) in &truth {
                            if n < PUBLISH_BELOW {
                                prop_assert_eq!(shown.get(id).copied(), Some(n));
                            }
                        }
                    }
                    Op::Tick => {
                        check(c.due_at_tick(), true, &truth, &mut shown)?;
                        prop_assert_eq!(&shown, &truth);
                    }
                }
            }
            // The end of the run is a last tick: every count exact.
            check(c.due_at_tick(), true, &truth, &mut shown)?;
            prop_assert_eq!(&shown, &truth);
            prop_assert_eq!(c.counts(), truth.clone());
            prop_assert_eq!(c.published(), truth);
        }
    }
}
