//! What an evaluation runs: the defaults (smaller with `--quick`), a workload file
//! over them, and the command line's flags over both ([`plan`]).
//!
//! A workload file is a small TOML file that names the brokers and sets either
//! workload, so users can keep and share their own runs. Every key is optional; what
//! a file leaves out keeps its default.
//!
//! ```toml
//! brokers = ["memory", "redis-streams", "rabbitmq"]
//! workloads = ["raw", "game"]
//!
//! [raw]
//! messages = 500000
//! size = 1024
//! producers = 2
//! consumers = 2
//! rate = 50000        # messages per second, all producers together
//! ack_batch = 256      # messages a consumer acknowledges together at most
//! publish_batch = 1024 # messages a producer keeps unconfirmed (its confirm window)
//!
//! [sustainable]         # the highest rate the broker sustains
//! p99_bound_ms = 100   # ...with the p99 latency under this
//! probe_seconds = 5    # each probe publishes this long
//! max_probes = 10
//! precision = 0.1      # the search ends within 10%
//! start_rate = 20000   # first probe [default: the raw workload's consumed/s]
//!
//! [latency]             # runs at fixed rates
//! fractions = [0.1, 0.5, 0.9]  # of the sustainable rate
//! rates = [1000]       # and at these rates outright
//! seconds = 10         # each run publishes this long
//!
//! [faults]              # a consumer killed mid-run
//! seconds = 20         # the producer publishes this long
//! fraction = 0.5       # at this share of the sustainable rate
//! kill_at = 0.3        # the consumer dies this far into the run
//!
//! [settings]          # every broker (and [settings.<backend>] one: see settings.rs)
//! prefetch = 1024     # messages a consumer is sent ahead of its acks
//! acks = "all"        # all, leader or none: what a publisher waits for
//!
//! [game]
//! bots = 200
//! games_per_bot = 10
//! workers = 3
//! rate = 100          # games per second
//! batch_games = 1000  # games per table file; 0: two files per game
//! batch_seconds = 1.0 # or when a batch's first game has waited this long
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use super::Workloads;
use super::faults::FaultsWorkload;
use super::game::GameWorkload;
use super::rates::{LatencyWorkload, SustainableWorkload};
use super::raw::{HEADER, RawWorkload};
use super::settings::{BrokerSettings, Settings, SettingsSection};
use crate::broker::registry::BACKENDS;

/// The workloads `superhero bench` knows, in the order they run.
pub const WORKLOADS: [&str; 5] = ["raw", "sustainable", "latency", "faults", "game"];

/// A workload file as written.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    pub brokers: Option<Vec<String>>,
    pub workloads: Option<Vec<String>>,
    #[serde(default)]
    pub raw: RawSection,
    #[serde(default)]
    pub sustainable: SustainableSection,
    #[serde(default)]
    pub latency: LatencySection,
    #[serde(default)]
    pub faults: FaultsSection,
    #[serde(default)]
    pub game: GameSection,
    #[serde(default)]
    pub settings: SettingsSection,
}

/// The `[faults]` section of a workload file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsSection {
    pub seconds: Option<f64>,
    pub fraction: Option<f64>,
    pub kill_at: Option<f64>,
    pub restart: Option<bool>,
    pub restart_at: Option<f64>,
}

/// The `[sustainable]` section of a workload file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SustainableSection {
    pub p99_bound_ms: Option<f64>,
    pub probe_seconds: Option<f64>,
    pub max_probes: Option<usize>,
    pub precision: Option<f64>,
    pub start_rate: Option<f64>,
}

/// The `[latency]` section of a workload file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySection {
    pub fractions: Option<Vec<f64>>,
    pub rates: Option<Vec<f64>>,
    pub seconds: Option<f64>,
}

/// The `[raw]` section of a workload file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSection {
    pub messages: Option<u64>,
    pub size: Option<usize>,
    pub producers: Option<usize>,
    pub consumers: Option<usize>,
    pub rate: Option<f64>,
    pub ack_batch: Option<usize>,
    pub publish_batch: Option<usize>,
}

/// The `[game]` section of a workload file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GameSection {
    pub bots: Option<usize>,
    pub games_per_bot: Option<u32>,
    pub workers: Option<usize>,
    pub rate: Option<f64>,
    pub seed: Option<u64>,
    pub batch_games: Option<usize>,
    pub batch_seconds: Option<f64>,
}

/// A workload that cannot run, or a file that cannot be read.
#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("cannot read the workload file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the workload file {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl WorkloadFile {
    /// Reads and parses a workload file.
    pub fn load(path: &Path) -> Result<Self, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| WorkloadError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses the text of a workload file.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// `base` with what the file sets.
    pub fn raw(&self, base: RawWorkload) -> RawWorkload {
        let r = &self.raw;
        RawWorkload {
            messages: r.messages.unwrap_or(base.messages),
            size: r.size.unwrap_or(base.size),
            producers: r.producers.unwrap_or(base.producers),
            consumers: r.consumers.unwrap_or(base.consumers),
            rate: r.rate.or(base.rate),
            ack_batch: r.ack_batch.unwrap_or(base.ack_batch),
            publish_batch: r.publish_batch.unwrap_or(base.publish_batch),
            ..base
        }
    }

    /// `base` with what the file sets.
    pub fn sustainable(&self, base: SustainableWorkload) -> SustainableWorkload {
        let s = &self.sustainable;
        SustainableWorkload {
            p99_bound_ms: s.p99_bound_ms.unwrap_or(base.p99_bound_ms),
            probe_seconds: s.probe_seconds.unwrap_or(base.probe_seconds),
            max_probes: s.max_probes.unwrap_or(base.max_probes),
            precision: s.precision.unwrap_or(base.precision),
            start_rate: s.start_rate.or(base.start_rate),
        }
    }

    /// `base` with what the file sets.
    pub fn latency(&self, base: LatencyWorkload) -> LatencyWorkload {
        let l = &self.latency;
        LatencyWorkload {
            fractions: l.fractions.clone().unwrap_or(base.fractions),
            rates: l.rates.clone().unwrap_or(base.rates),
            seconds: l.seconds.unwrap_or(base.seconds),
        }
    }

    /// `base` with what the file sets.
    pub fn faults(&self, base: FaultsWorkload) -> FaultsWorkload {
        let f = &self.faults;
        FaultsWorkload {
            seconds: f.seconds.unwrap_or(base.seconds),
            fraction: f.fraction.unwrap_or(base.fraction),
            kill_at: f.kill_at.unwrap_or(base.kill_at),
            restart: f.restart.unwrap_or(base.restart),
            restart_at: f.restart_at.unwrap_or(base.restart_at),
        }
    }

    /// `base` with what the file sets.
    pub fn game(&self, base: GameWorkload) -> GameWorkload {
        let g = &self.game;
        GameWorkload {
            bots: g.bots.unwrap_or(base.bots),
            games_per_bot: g.games_per_bot.unwrap_or(base.games_per_bot),
            workers: g.workers.unwrap_or(base.workers),
            rate: g.rate.or(base.rate),
            seed: g.seed.unwrap_or(base.seed),
            batch_games: g.batch_games.unwrap_or(base.batch_games),
            batch_seconds: g.batch_seconds.unwrap_or(base.batch_seconds),
            drain_idle: base.drain_idle,
        }
    }
}

/// What the command line says of an evaluation; whatever it sets wins over the
/// workload file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `--brokers`.
    pub brokers: Option<Vec<String>>,
    /// `--workloads`.
    pub workloads: Option<Vec<String>>,
    /// Raw: `--messages`.
    pub messages: Option<u64>,
    /// Raw: `--size`.
    pub size: Option<usize>,
    /// Raw: `--producers`.
    pub producers: Option<usize>,
    /// Raw: `--consumers`.
    pub consumers: Option<usize>,
    /// Raw: `--rate`, messages per second.
    pub rate: Option<f64>,
    /// Raw: `--ack-batch`.
    pub ack_batch: Option<usize>,
    /// Raw: `--publish-batch`.
    pub publish_batch: Option<usize>,
    /// Every broker: `--prefetch`.
    pub prefetch: Option<usize>,
    /// Every broker: `--acks`.
    pub acks: Option<crate::broker::Acks>,
    /// Sustainable: `--p99-bound`, milliseconds.
    pub p99_bound_ms: Option<f64>,
    /// Sustainable: `--probe-seconds`.
    pub probe_seconds: Option<f64>,
    /// Sustainable: `--max-probes`.
    pub max_probes: Option<usize>,
    /// Latency: `--fractions`.
    pub fractions: Option<Vec<f64>>,
    /// Latency: `--rates`.
    pub rates: Option<Vec<f64>>,
    /// Latency: `--run-seconds`.
    pub run_seconds: Option<f64>,
    /// Faults: `--fault-seconds`.
    pub fault_seconds: Option<f64>,
    /// Faults: `--restart-broker`.
    pub restart_broker: bool,
    /// Game: `--bots`.
    pub bots: Option<usize>,
    /// Game: `--games`, per bot.
    pub games: Option<u32>,
    /// Game: `--workers`.
    pub workers: Option<usize>,
    /// Game: `--game-rate`, games per second.
    pub game_rate: Option<f64>,
    /// Game: `--batch-games`.
    pub batch_games: Option<usize>,
    /// Game: `--batch-seconds`.
    pub batch_seconds: Option<f64>,
    /// Small default workloads (the flags and the file still win).
    pub quick: bool,
}

/// An evaluation to run: the brokers, as named, and the workloads.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The brokers, as named (a backend's name, a LOGGER_MODULE name or a URL).
    pub brokers: Vec<String>,
    /// The workloads to run on each.
    pub workloads: Workloads,
}

/// The defaults, then the file, then the flags; every workload checked.
pub fn plan(file: &WorkloadFile, flags: &Overrides) -> Result<Plan, WorkloadError> {
    let brokers: Vec<String> = flags
        .brokers
        .clone()
        .or_else(|| file.brokers.clone())
        .unwrap_or_else(|| BACKENDS.iter().map(|b| b.name.to_string()).collect())
        .iter()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    if brokers.is_empty() {
        return Err(WorkloadError::Invalid("--brokers names no broker".into()));
    }
    let which = flags
        .workloads
        .clone()
        .or_else(|| file.workloads.clone())
        .unwrap_or_else(|| WORKLOADS.map(String::from).to_vec());
    check_workloads(&which)?;

    let raw = file.raw(if flags.quick {
        RawWorkload {
            messages: 2_000,
            idle: Duration::from_secs(2),
            ..RawWorkload::default()
        }
    } else {
        RawWorkload::default()
    });
    let raw = RawWorkload {
        messages: flags.messages.unwrap_or(raw.messages),
        size: flags.size.unwrap_or(raw.size),
        producers: flags.producers.unwrap_or(raw.producers),
        consumers: flags.consumers.unwrap_or(raw.consumers),
        rate: flags.rate.or(raw.rate),
        ack_batch: flags.ack_batch.unwrap_or(raw.ack_batch),
        publish_batch: flags.publish_batch.unwrap_or(raw.publish_batch),
        ..raw
    };
    let sustainable = file.sustainable(if flags.quick {
        SustainableWorkload::quick()
    } else {
        SustainableWorkload::full()
    });
    let sustainable = SustainableWorkload {
        p99_bound_ms: flags.p99_bound_ms.unwrap_or(sustainable.p99_bound_ms),
        probe_seconds: flags.probe_seconds.unwrap_or(sustainable.probe_seconds),
        max_probes: flags.max_probes.unwrap_or(sustainable.max_probes),
        ..sustainable
    };
    let latency = file.latency(if flags.quick {
        LatencyWorkload::quick()
    } else {
        LatencyWorkload::full()
    });
    let latency = LatencyWorkload {
        fractions: flags.fractions.clone().unwrap_or(latency.fractions),
        rates: flags.rates.clone().unwrap_or(latency.rates),
        seconds: flags.run_seconds.unwrap_or(latency.seconds),
    };
    let faults = file.faults(if flags.quick {
        FaultsWorkload::quick()
    } else {
        FaultsWorkload::full()
    });
    let faults = FaultsWorkload {
        seconds: flags.fault_seconds.unwrap_or(faults.seconds),
        restart: flags.restart_broker || faults.restart,
        ..faults
    };
    let game = file.game(if flags.quick {
        GameWorkload::quick()
    } else {
        GameWorkload::default()
    });
    let game = GameWorkload {
        bots: flags.bots.unwrap_or(game.bots),
        games_per_bot: flags.games.unwrap_or(game.games_per_bot),
        workers: flags.workers.unwrap_or(game.workers),
        rate: flags.game_rate.or(game.rate),
        batch_games: flags.batch_games.unwrap_or(game.batch_games),
        batch_seconds: flags.batch_seconds.unwrap_or(game.batch_seconds),
        ..game
    };
    let settings = Settings::plan(
        &file.settings,
        &BrokerSettings {
            prefetch: flags.prefetch,
            acks: flags.acks,
            ack_batch: flags.ack_batch,
            publish_batch: flags.publish_batch,
        },
    )?;
    let runs = |name: &str| which.iter().any(|w| w == name);
    let workloads = Workloads {
        raw: runs("raw").then(|| raw.clone()),
        sustainable: runs("sustainable").then_some(sustainable),
        latency: runs("latency").then_some(latency),
        faults: runs("faults").then_some(faults),
        game: runs("game").then_some(game),
        messages: raw,
        settings,
    };
    // The paced workloads send the raw workload's messages.
    if workloads.raw.is_some() || workloads.sustainable.is_some() || workloads.latency.is_some() {
        check_raw(&workloads.messages)?;
    }
    if let Some(s) = &workloads.sustainable {
        check_sustainable(s)?;
    }
    if let Some(l) = &workloads.latency {
        check_latency(
            l,
            workloads.sustainable.is_some() || workloads.raw.is_some(),
        )?;
    }
    if let Some(f) = &workloads.faults {
        check_faults(
            f,
            workloads.sustainable.is_some() || workloads.raw.is_some(),
        )?;
    }
    if let Some(game) = &workloads.game {
        check_game(game)?;
    }
    Ok(Plan { brokers, workloads })
}

/// Checks a raw workload before anything runs.
pub fn check_raw(w: &RawWorkload) -> Result<(), WorkloadError> {
    if w.messages == 0 {
        return Err(WorkloadError::Invalid(
            "the raw workload needs at least 1 message".into(),
        ));
    }
    if w.size < HEADER {
        return Err(WorkloadError::Invalid(format!(
            "the raw message size must be at least {HEADER} bytes (sequence number and send time)"
        )));
    }
    if w.producers == 0 || w.consumers == 0 {
        return Err(WorkloadError::Invalid(
            "the raw workload needs at least 1 producer and 1 consumer".into(),
        ));
    }
    if w.ack_batch == 0 || w.publish_batch == 0 {
        return Err(WorkloadError::Invalid(
            "ack_batch and publish_batch count messages: at least 1".into(),
        ));
    }
    check_rate(w.rate, "messages")
}

/// Checks a search before anything runs.
pub fn check_sustainable(w: &SustainableWorkload) -> Result<(), WorkloadError> {
    check_seconds(w.probe_seconds, "probe_seconds")?;
    if !(w.p99_bound_ms.is_finite() && w.p99_bound_ms > 0.0) {
        return Err(WorkloadError::Invalid(format!(
            "p99_bound_ms must be a positive number of milliseconds, not {}",
            w.p99_bound_ms
        )));
    }
    if w.max_probes == 0 {
        return Err(WorkloadError::Invalid(
            "max_probes must be at least 1".into(),
        ));
    }
    if !(w.precision.is_finite() && w.precision > 0.0) {
        return Err(WorkloadError::Invalid(format!(
            "precision is a fraction above 0 (0.1: within 10%), not {}",
            w.precision
        )));
    }
    check_rate(w.start_rate, "messages")
}

/// Checks the latency runs before anything runs; `reference`: whether a rate their
/// fractions apply to is measured before them.
pub fn check_latency(w: &LatencyWorkload, reference: bool) -> Result<(), WorkloadError> {
    check_seconds(w.seconds, "the latency runs' seconds")?;
    if let Some(f) = w.fractions.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
        return Err(WorkloadError::Invalid(format!(
            "a latency fraction must be above 0 (0.5: half the sustainable rate), not {f}"
        )));
    }
    for &rate in &w.rates {
        check_rate(Some(rate), "messages")?;
    }
    if w.rates.is_empty() && (w.fractions.is_empty() || !reference) {
        return Err(WorkloadError::Invalid(
            "the latency workload needs rates, or fractions of a rate the same run measures \
             (with the sustainable or raw workload)"
                .into(),
        ));
    }
    Ok(())
}

/// Checks the faults workload before anything runs; `reference`: whether a rate its
/// fraction applies to is measured before it.
pub fn check_faults(w: &FaultsWorkload, reference: bool) -> Result<(), WorkloadError> {
    check_seconds(w.seconds, "the faults run's seconds")?;
    if !(w.fraction.is_finite() && w.fraction > 0.0) {
        return Err(WorkloadError::Invalid(format!(
            "the faults run's fraction must be above 0, not {}",
            w.fraction
        )));
    }
    if !(w.kill_at.is_finite() && (0.0..1.0).contains(&w.kill_at)) {
        return Err(WorkloadError::Invalid(format!(
            "kill_at is a share of the run from 0 to below 1, not {}",
            w.kill_at
        )));
    }
    if w.restart && !(w.restart_at.is_finite() && (w.kill_at..1.0).contains(&w.restart_at)) {
        return Err(WorkloadError::Invalid(format!(
            "restart_at is a share of the run after kill_at ({}) and below 1, not {}",
            w.kill_at, w.restart_at
        )));
    }
    if !reference {
        return Err(WorkloadError::Invalid(
            "the faults workload runs at a fraction of a rate the same run measures: \
             add the sustainable or raw workload"
                .into(),
        ));
    }
    Ok(())
}

fn check_seconds(seconds: f64, what: &str) -> Result<(), WorkloadError> {
    if seconds.is_finite() && (0.1..=86_400.0).contains(&seconds) {
        Ok(())
    } else {
        Err(WorkloadError::Invalid(format!(
            "{what} must be between 0.1 and 86,400 seconds, not {seconds}"
        )))
    }
}

/// Checks a game workload before anything runs.
pub fn check_game(w: &GameWorkload) -> Result<(), WorkloadError> {
    if w.bots < 2 {
        return Err(WorkloadError::Invalid(
            "the game workload needs at least 2 bots: a game has two players".into(),
        ));
    }
    if w.workers == 0 {
        return Err(WorkloadError::Invalid(
            "the game workload needs at least 1 worker".into(),
        ));
    }
    if !(w.batch_seconds.is_finite() && w.batch_seconds > 0.0) {
        return Err(WorkloadError::Invalid(format!(
            "batch_seconds must be a positive number of seconds, not {}",
            w.batch_seconds
        )));
    }
    check_rate(w.rate, "games")
}

/// The lowest rate a workload takes, per second: one every 1,000 s.
const MIN_RATE: f64 = 0.001;

fn check_rate(rate: Option<f64>, what: &str) -> Result<(), WorkloadError> {
    match rate {
        Some(r) if !(r.is_finite() && r >= MIN_RATE) => Err(WorkloadError::Invalid(format!(
            "a rate must be a number of {what} per second, at least {MIN_RATE}, not {r}"
        ))),
        _ => Ok(()),
    }
}

/// Checks the names of a `workloads` list.
pub fn check_workloads(names: &[String]) -> Result<(), WorkloadError> {
    if names.is_empty() {
        return Err(WorkloadError::Invalid("no workload to run".into()));
    }
    match names.iter().find(|n| !WORKLOADS.contains(&n.as_str())) {
        Some(bad) => Err(WorkloadError::Invalid(format!(
            "unknown workload {bad:?}: the workloads are {}",
            WORKLOADS.join(", ")
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_raw() -> RawWorkload {
        RawWorkload {
            messages: 10,
            size: 100,
            ack_batch: 1,
            publish_batch: 1,
            idle: Duration::from_secs(1),
            ..RawWorkload::default()
        }
    }

    #[test]
    fn a_file_sets_what_it_names_and_keeps_the_rest() {
        let f = WorkloadFile::parse(
            "brokers = [\"memory\", \"redis\"]\n[raw]\nmessages = 500\nrate = 20.5\n[game]\nworkers = 5\n",
        )
        .unwrap();
        assert_eq!(f.brokers.as_deref().unwrap(), ["memory", "redis"]);
        let raw = f.raw(base_raw());
        assert_eq!((raw.messages, raw.size, raw.rate), (500, 100, Some(20.5)));
        let game = f.game(GameWorkload::quick());
        assert_eq!(game.workers, 5);
        assert_eq!(game.bots, GameWorkload::quick().bots);
        assert_eq!(WorkloadFile::parse("").unwrap(), WorkloadFile::default());

        let f = WorkloadFile::parse(
            "[raw]\nack_batch = 1\npublish_batch = 1000\n[game]\nbatch_games = 0\n",
        )
        .unwrap();
        let raw = f.raw(base_raw());
        assert_eq!((raw.ack_batch, raw.publish_batch), (1, 1000));
        let game = f.game(GameWorkload::default());
        assert_eq!(game.batch_policy(), None, "a pair of files per game");
        let batched = GameWorkload::default().batch_policy().unwrap();
        assert_eq!(batched.games, 1_000);
        assert_eq!(batched.max_age, Duration::from_secs(1));
    }

    #[test]
    fn batch_settings_are_checked() {
        let raw = RawWorkload {
            ack_batch: 0,
            ..base_raw()
        };
        assert!(check_raw(&raw).is_err());
        let game = GameWorkload {
            batch_seconds: 0.0,
            ..GameWorkload::default()
        };
        assert!(check_game(&game).is_err());
        assert!(check_game(&GameWorkload::default()).is_ok());
    }

    #[test]
    fn mistakes_in_a_file_are_named() {
        let e = WorkloadFile::parse("[raw]\nmesages = 5\n").unwrap_err();
        assert!(e.contains("mesages"), "{e}");
        let e = WorkloadFile::parse("[raw]\nmessages = \"many\"\n").unwrap_err();
        assert!(e.contains("messages"), "{e}");
        assert!(WorkloadFile::parse("[raw\n").is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_defaults() {
        let file = WorkloadFile::parse(
            "brokers = [\"memory\", \"redis\"]\nworkloads = [\"raw\"]\n[raw]\nmessages = 500\nsize = 64\n",
        )
        .unwrap();
        let flags = Overrides {
            messages: Some(7),
            quick: true,
            ..Overrides::default()
        };
        let p = plan(&file, &flags).unwrap();
        assert_eq!(p.brokers, ["memory", "redis"]);
        let raw = p.workloads.raw.unwrap();
        // The flag, the file, then the quick default.
        assert_eq!((raw.messages, raw.size), (7, 64));
        assert_eq!(raw.idle, Duration::from_secs(2));
        assert!(p.workloads.game.is_none(), "the file ran raw only");

        let flags = Overrides {
            brokers: Some(vec![" nats ".into(), "".into()]),
            workloads: Some(vec!["game".into()]),
            bots: Some(30),
            ..Overrides::default()
        };
        let p = plan(&file, &flags).unwrap();
        assert_eq!(p.brokers, ["nats"]);
        assert!(p.workloads.raw.is_none());
        let game = p.workloads.game.unwrap();
        assert_eq!(
            (game.bots, game.workers),
            (30, GameWorkload::default().workers)
        );
    }

    #[test]
    fn the_defaults_measure_every_backend_both_ways() {
        let p = plan(&WorkloadFile::default(), &Overrides::default()).unwrap();
        assert_eq!(p.brokers.len(), BACKENDS.len());
        assert_eq!(p.brokers[0], "memory");
        assert_eq!(p.workloads.raw.unwrap().messages, 500_000);
        assert_eq!(p.workloads.game.unwrap(), GameWorkload::default());
        let none = Overrides {
            brokers: Some(vec![" ".into()]),
            ..Overrides::default()
        };
        assert!(plan(&WorkloadFile::default(), &none).is_err());
        let bad = Overrides {
            size: Some(4),
            ..Overrides::default()
        };
        assert!(plan(&WorkloadFile::default(), &bad).is_err());
    }

    #[test]
    fn impossible_workloads_are_refused() {
        assert!(check_raw(&base_raw()).is_ok());
        let tiny = RawWorkload {
            size: 8,
            ..base_raw()
        };
        assert!(
            check_raw(&tiny)
                .unwrap_err()
                .to_string()
                .contains("16 bytes")
        );
        let no_rate = RawWorkload {
            rate: Some(0.0),
            ..base_raw()
        };
        assert!(check_raw(&no_rate).is_err());
        let one_bot = GameWorkload {
            bots: 1,
            ..GameWorkload::quick()
        };
        assert!(check_game(&one_bot).is_err());
        assert!(check_workloads(&["raw".into(), "game".into()]).is_ok());
        assert!(
            check_workloads(&["rwa".into()])
                .unwrap_err()
                .to_string()
                .contains("rwa")
        );
    }
}
