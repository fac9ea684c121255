//! The flow settings each broker runs with: prefetch, acknowledgement batch,
//! publisher confirm window and acks policy, for every broker at once or for one
//! backend by its name.
//!
//! ```toml
//! [settings]            # every broker
//! prefetch = 1024      # messages a consumer is sent ahead of its acks
//! acks = "all"         # all, leader or none: what a publisher waits for
//!
//! [settings.kafka]      # one backend, by its name
//! acks = "leader"
//! ack_batch = 512      # messages a consumer acknowledges together
//! publish_batch = 1024 # messages a producer keeps unconfirmed at most
//! ```
//!
//! The flags (`--prefetch`, `--acks`, `--ack-batch`, `--publish-batch`) win over
//! both; a backend's own section wins over `[settings]`, which wins over `[raw]`'s
//! batches and the brokers' defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::raw::RawWorkload;
use super::workload::WorkloadError;
use crate::broker::registry::BACKENDS;
use crate::broker::{Acks, Flow, FlowSettings};

/// The most messages a prefetch may ask for.
pub const MAX_PREFETCH: usize = 1_000_000;

/// Flow settings as a file section or the flags give them; what is left out keeps
/// what is below it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct BrokerSettings {
    /// Messages the broker sends a consumer ahead of its acknowledgements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<usize>,
    /// What a publisher waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acks: Option<Acks>,
    /// Messages a consumer acknowledges together at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_batch: Option<usize>,
    /// Messages a producer keeps published and unconfirmed at most (the publisher's
    /// confirm window), sent in calls of a quarter of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_batch: Option<usize>,
}

impl BrokerSettings {
    /// These settings, and `below`'s where these say nothing.
    pub fn over(&self, below: &BrokerSettings) -> BrokerSettings {
        BrokerSettings {
            prefetch: self.prefetch.or(below.prefetch),
            acks: self.acks.or(below.acks),
            ack_batch: self.ack_batch.or(below.ack_batch),
            publish_batch: self.publish_batch.or(below.publish_batch),
        }
    }

    fn check(&self, whose: &str) -> Result<(), WorkloadError> {
        if let Some(p) = self.prefetch
            && !(1..=MAX_PREFETCH).contains(&p)
        {
            return Err(WorkloadError::Invalid(format!(
                "{whose}prefetch counts messages, from 1 to {MAX_PREFETCH}, not {p}"
            )));
        }
        if self.ack_batch == Some(0) || self.publish_batch == Some(0) {
            return Err(WorkloadError::Invalid(format!(
                "{whose}ack_batch and publish_batch count messages: at least 1"
            )));
        }
        Ok(())
    }
}

/// The `[settings]` section of a workload file: keys for every broker, and a table
/// per backend.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SettingsSection {
    #[serde(flatten)]
    pub all: BrokerSettings,
    /// `[settings.<backend>]`.
    #[serde(flatten)]
    pub backends: BTreeMap<String, BrokerSettings>,
}

/// The settings of an evaluation, flags folded in.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Settings {
    /// For every broker.
    pub all: BrokerSettings,
    /// For one backend each, by its name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub backends: BTreeMap<String, BrokerSettings>,
}

impl Settings {
    /// The flags over the file's sections; every name and value checked.
    pub fn plan(file: &SettingsSection, flags: &BrokerSettings) -> Result<Self, WorkloadError> {
        flags.check("")?;
        file.all.check("[settings] ")?;
        let mut backends = BTreeMap::new();
        for (name, settings) in &file.backends {
            if !BACKENDS.iter().any(|b| b.name == name) {
                let names: Vec<_> = BACKENDS.iter().map(|b| b.name).collect();
                return Err(WorkloadError::Invalid(format!(
                    "[settings.{name}] names no backend nor setting: the settings are \
                     prefetch, acks, ack_batch and publish_batch, the backends {}",
                    names.join(", ")
                )));
            }
            settings.check(&format!("[settings.{name}] "))?;
            backends.insert(name.clone(), flags.over(settings));
        }
        Ok(Self {
            all: flags.over(&file.all),
            backends,
        })
    }

    /// What `backend` runs with, `raw` giving the batches nothing else sets.
    pub fn resolve(&self, backend: &str, raw: &RawWorkload) -> Resolved {
        let s = match self.backends.get(backend) {
            Some(own) => own.over(&self.all),
            None => self.all.clone(),
        };
        Resolved {
            flow: Flow {
                prefetch: s.prefetch,
                acks: s.acks.unwrap_or_default(),
            },
            ack_batch: s.ack_batch.unwrap_or(raw.ack_batch),
            publish_batch: s.publish_batch.unwrap_or(raw.publish_batch),
        }
    }
}

/// One broker's settings, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub flow: Flow,
    pub ack_batch: usize,
    pub publish_batch: usize,
}

impl Resolved {
    /// `w` with these batches.
    pub fn batches(&self, w: &RawWorkload) -> RawWorkload {
        RawWorkload {
            ack_batch: self.ack_batch,
            publish_batch: self.publish_batch,
            ..w.clone()
        }
    }
}

/// The settings a broker ran with, as the report shows them: the broker's own words
/// for its prefetch and acknowledgements, and the bench's batches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// What was asked (`--prefetch`, `[settings]`): none where the broker's default
    /// ran.
    pub prefetch_asked: Option<usize>,
    pub acks_asked: &'static str,
    /// What the broker made of it.
    #[serde(flatten)]
    pub broker: FlowSettings,
    pub ack_batch: usize,
    pub publish_batch: usize,
}

impl Applied {
    pub fn new(resolved: &Resolved, broker: FlowSettings) -> Self {
        Self {
            prefetch_asked: resolved.flow.prefetch,
            acks_asked: resolved.flow.acks.name(),
            broker,
            ack_batch: resolved.ack_batch,
            publish_batch: resolved.publish_batch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::WorkloadFile;

    #[test]
    fn a_backend_s_section_wins_over_every_broker_s_and_the_flags_over_both() {
        let f = WorkloadFile::parse(
            "[raw]\nack_batch = 8\n[settings]\nprefetch = 100\nacks = \"leader\"\n\
             [settings.kafka]\nacks = \"none\"\npublish_batch = 9\n",
        )
        .unwrap();
        let raw = f.raw(RawWorkload::default());
        let s = Settings::plan(&f.settings, &BrokerSettings::default()).unwrap();
        let kafka = s.resolve("kafka", &raw);
        assert_eq!(kafka.flow.prefetch, Some(100));
        assert_eq!(kafka.flow.acks, Acks::None);
        assert_eq!((kafka.ack_batch, kafka.publish_batch), (8, 9));
        let nats = s.resolve("nats", &raw);
        assert_eq!(nats.flow.acks, Acks::Leader);
        assert_eq!(nats.publish_batch, raw.publish_batch);

        let flags = BrokerSettings {
            acks: Some(Acks::All),
            prefetch: Some(7),
            ..BrokerSettings::default()
        };
        let s = Settings::plan(&f.settings, &flags).unwrap();
        let kafka = s.resolve("kafka", &raw);
        assert_eq!((kafka.flow.acks, kafka.flow.prefetch), (Acks::All, Some(7)));
        assert_eq!(kafka.publish_batch, 9, "no flag for it: the file's");

        let none = Settings::plan(
            &WorkloadFile::default().settings,
            &BrokerSettings::default(),
        )
        .unwrap()
        .resolve("rabbitmq", &raw);
        assert_eq!(none.flow, Flow::default());
    }

    #[test]
    fn unknown_backends_settings_and_values_are_named() {
        let f = WorkloadFile::parse("[settings.kafak]\nacks = \"all\"\n").unwrap();
        let e = Settings::plan(&f.settings, &BrokerSettings::default()).unwrap_err();
        assert!(e.to_string().contains("kafak"), "{e}");
        // A misspelt setting at the top is taken for a backend's table.
        assert!(WorkloadFile::parse("[settings]\nprefech = 5\n").is_err());
        let e = WorkloadFile::parse("[settings]\nacks = \"some\"\n").unwrap_err();
        assert!(e.contains("some") || e.contains("acks"), "{e}");
        let f = WorkloadFile::parse("[settings.nsq]\nprefetch = 0\n").unwrap();
        let e = Settings::plan(&f.settings, &BrokerSettings::default()).unwrap_err();
        assert!(e.to_string().contains("[settings.nsq] prefetch"), "{e}");
        let f = WorkloadFile::parse("[settings.nsq]\nack_batch = 0\n").unwrap();
        assert!(Settings::plan(&f.settings, &BrokerSettings::default()).is_err());
    }
}
