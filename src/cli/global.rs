//! The options every command shares, in three groups of `--help`: where games are
//! stored, which broker carries the events (with the original's variables for each
//! broker), and what is written and printed.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::seconds;
use crate::broker::{Broker, BrokerSpec, Flow, MemoryBroker, Tuning, Variables};
use crate::events;
use crate::store::{AnyStore, RedisConfig, StoreChoice};

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Game store: `memory` (embedded, in process), `redis` (REDIS_HOST/PORT/DB), a
    /// `redis://host:port/db` URL, or `redis-cluster://host:port[,host:port…]` for a
    /// Redis Cluster (keys hash-tagged by game).
    #[arg(
        long,
        global = true,
        env = "SUPERHERO_STORE",
        default_value = "memory",
        help_heading = "Store"
    )]
    pub store: String,
    #[arg(
        long,
        global = true,
        env = "REDIS_HOST",
        default_value = "localhost",
        help_heading = "Store"
    )]
    pub redis_host: String,
    #[arg(
        long,
        global = true,
        env = "REDIS_PORT",
        default_value_t = 6379,
        help_heading = "Store"
    )]
    pub redis_port: u16,
    #[arg(
        long,
        global = true,
        env = "REDIS_DB",
        default_value_t = 0,
        help_heading = "Store"
    )]
    pub redis_db: u32,
    /// Broker the game events are published to: memory://, redis://, redis-fanout://,
    /// redis-streams://, amqp://, kafka://, nsq://, nats:// (overrides LOGGER_MODULE).
    #[arg(long, global = true, env = "SUPERHERO_BROKER", help_heading = "Broker")]
    pub broker: Option<String>,
    /// The original's broker selector, also the first part of event names:
    /// default (print only), memory, redis, rabbit, kafka, nsq, nats.
    #[arg(
        long,
        global = true,
        env = "LOGGER_MODULE",
        default_value = "default",
        help_heading = "Broker"
    )]
    pub logger_module: String,
    #[arg(
        long,
        global = true,
        env = "AMQP_HOST",
        default_value = "localhost",
        help_heading = "Broker"
    )]
    pub amqp_host: String,
    #[arg(
        long,
        global = true,
        env = "AMQP_PORT",
        default_value_t = 5672,
        help_heading = "Broker"
    )]
    pub amqp_port: u16,
    #[arg(
        long,
        global = true,
        env = "RABBIT_USER",
        default_value = "guest",
        help_heading = "Broker"
    )]
    pub rabbit_user: String,
    #[arg(
        long,
        global = true,
        env = "RABBIT_PASS",
        default_value = "guest",
        hide_env_values = true,
        help_heading = "Broker"
    )]
    pub rabbit_pass: String,
    /// NATS server for `LOGGER_MODULE=nats`.
    #[arg(
        long,
        global = true,
        env = "NATS_URL",
        default_value = "nats://localhost:4222",
        help_heading = "Broker"
    )]
    pub nats_url: String,
    /// nsqd's TCP address for `LOGGER_MODULE=nsq`.
    #[arg(
        long,
        global = true,
        env = "NSQD_ADDRESS",
        default_value = "localhost:4150",
        help_heading = "Broker"
    )]
    pub nsqd_address: String,
    /// Kafka broker for `LOGGER_MODULE=kafka`.
    #[arg(
        long,
        global = true,
        env = "KAFKA_HOST",
        default_value = "localhost",
        help_heading = "Broker"
    )]
    pub kafka_host: String,
    #[arg(
        long,
        global = true,
        env = "KAFKA_PORT",
        default_value_t = 9092,
        help_heading = "Broker"
    )]
    pub kafka_port: u16,
    /// Partitions of the Kafka topics superhero creates: at most this many workers of
    /// a group are busy at once.
    #[arg(
        long,
        global = true,
        env = "KAFKA_PARTITIONS",
        default_value_t = 2,
        help_heading = "Broker"
    )]
    pub kafka_partitions: i32,
    /// Seconds a message held by a worker that died waits before another worker takes
    /// it (Redis Streams, NATS JetStream, NSQ). Keep it above --batch-seconds.
    #[arg(
        long,
        global = true,
        env = "SUPERHERO_CLAIM_AFTER",
        default_value_t = 30.0,
        help_heading = "Broker"
    )]
    pub claim_after: f64,
    /// Root of the Parquet output.
    #[arg(
        long,
        global = true,
        env = "OUTPUT_DIR",
        default_value = "./data",
        help_heading = "Output"
    )]
    pub output_dir: PathBuf,
    /// Log filter for what is printed: DEBUG, INFO, WARNING, ERROR (or a tracing
    /// filter directive). Default INFO; WARNING for `simulate`, whose events go to the
    /// broker whatever is printed.
    #[arg(long, global = true, env = "LOG_LEVEL", help_heading = "Output")]
    pub log_level: Option<String>,
    /// Print the closing summary as one JSON object.
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,
    /// Worker threads of the async runtime. Default: one per core, or one fewer when
    /// the store is a single Redis on this machine, so that its one thread has a core.
    #[arg(long, global = true, env = "SUPERHERO_RUNTIME_THREADS")]
    pub runtime_threads: Option<NonZeroUsize>,
}

impl GlobalArgs {
    /// The Redis of REDIS_HOST, REDIS_PORT and REDIS_DB.
    pub fn redis(&self) -> RedisConfig {
        RedisConfig::from_parts(&self.redis_host, self.redis_port, self.redis_db)
    }

    /// The async runtime's worker threads on a machine of `cores`: `--runtime-threads`,
    /// or see its help. A Redis on this machine runs every command on one thread; with
    /// a runtime thread on each core as well, they take turns on the cores (the README's
    /// Speed section has what that cost).
    pub fn worker_threads(&self, cores: usize) -> usize {
        if let Some(threads) = self.runtime_threads {
            return threads.get();
        }
        match self.store_choice() {
            Ok(StoreChoice::Redis(config)) if config.is_one_server_here() => {
                cores.saturating_sub(1).max(1)
            }
            _ => cores.max(1),
        }
    }

    /// The async runtime, with [`Self::worker_threads`] threads. One thread is the
    /// caller's own (a current-thread runtime), where a woken task waits its turn
    /// behind the tasks ready before it rather than running next: a Redis
    /// connection's driver then sends the commands of many tasks in one write (the
    /// README's Speed section has what that saved).
    pub fn runtime(&self, cores: usize) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.worker_threads(cores) {
            1 => tokio::runtime::Builder::new_current_thread(),
            threads => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(threads);
                builder
            }
        };
        builder.enable_all().build()
    }

    /// The store `--store` names.
    pub fn store_choice(&self) -> Result<StoreChoice> {
        Ok(StoreChoice::parse(&self.store, self.redis())?)
    }

    /// Opens the store `--store` names.
    pub async fn open_store(&self) -> Result<AnyStore> {
        let choice = self.store_choice()?;
        let opened = choice.open().await;
        match &choice {
            StoreChoice::Memory => Ok(opened?),
            StoreChoice::Redis(config) => {
                opened.with_context(|| format!("opening the Redis store at {config}"))
            }
        }
    }

    /// The original's broker variables, as given.
    pub fn variables(&self) -> Variables {
        Variables {
            redis_host: self.redis_host.clone(),
            redis_port: self.redis_port,
            redis_db: self.redis_db,
            amqp_host: self.amqp_host.clone(),
            amqp_port: self.amqp_port,
            rabbit_user: self.rabbit_user.clone(),
            rabbit_pass: self.rabbit_pass.clone(),
            nats_url: self.nats_url.clone(),
            nsqd_address: self.nsqd_address.clone(),
            kafka_host: self.kafka_host.clone(),
            kafka_port: self.kafka_port,
        }
    }

    /// How brokers are opened; `in_process`: this process runs the whole pipeline.
    pub fn tuning(&self, in_process: bool) -> Result<Tuning> {
        let claim_after = seconds(self.claim_after, "--claim-after")?;
        if claim_after < Duration::from_millis(100) {
            bail!("--claim-after must be at least 0.1 seconds");
        }
        if self.kafka_partitions < 1 {
            bail!("KAFKA_PARTITIONS must be at least 1");
        }
        Ok(Tuning {
            claim_after,
            in_process,
            partitions: self.kafka_partitions,
            topic_named_group: Some(events::WORKER_GROUP.to_string()),
            flow: Flow::default(),
        })
    }

    /// The broker `--broker` or LOGGER_MODULE names; LOGGER_MODULE=default means
    /// `default_module` (`simulate` publishes to the embedded broker then).
    pub fn broker_spec(&self, default_module: &str) -> Result<Option<BrokerSpec>> {
        let module = match self.logger_module.as_str() {
            "default" => default_module,
            other => other,
        };
        Ok(BrokerSpec::choose(
            self.broker.as_deref(),
            module,
            &self.variables(),
        )?)
    }

    /// A broker that other processes can reach, for `command` (`server`, `worker`,
    /// `dashboard`); `None` when records are only printed.
    pub async fn network_broker(&self, command: &str) -> Result<Option<Arc<dyn Broker>>> {
        let Some(spec) = self.broker_spec("default")? else {
            return Ok(None);
        };
        let spec = spec.shared_by(command)?;
        let broker = spec
            .open(&self.tuning(false)?)
            .await
            .with_context(|| format!("opening the broker for `{command}`"))?;
        Ok(Some(broker))
    }

    /// The broker of a run that is all in this process (`simulate`, `plays`): the
    /// embedded one unless another is configured.
    pub async fn local_broker(&self) -> Result<Arc<dyn Broker>> {
        match self.broker_spec("memory")? {
            Some(spec) => Ok(spec.open(&self.tuning(true)?).await?),
            None => Ok(Arc::new(MemoryBroker::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn global(args: &[&str]) -> GlobalArgs {
        let mut argv = vec!["superhero"];
        argv.extend_from_slice(args);
        argv.push("audit");
        Cli::try_parse_from(argv).unwrap().global
    }

    #[test]
    fn store_choices() {
        let g = global(&[
            "--store",
            "redis",
            "--redis-host",
            "db.local",
            "--redis-port",
            "6380",
            "--redis-db",
            "3",
        ]);
        assert_eq!(
            g.store_choice().unwrap(),
            StoreChoice::Redis(RedisConfig {
                url: "redis://db.local:6380/3".into()
            })
        );
        assert_eq!(
            global(&["--store", "memory"]).store_choice().unwrap(),
            StoreChoice::Memory
        );
    }

    #[test]
    fn passwords_never_show() {
        let err = global(&["--store", "postgres://u:pw@h/db"])
            .store_choice()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("pw"), "{err}");
    }

    #[test]
    fn the_original_variables_find_logger_module_s_broker() {
        let g = global(&[
            "--logger-module",
            "rabbit",
            "--amqp-host",
            "mq",
            "--rabbit-pass",
            "s3cret",
        ]);
        let spec = g.broker_spec("default").unwrap().unwrap();
        assert_eq!(spec.url(), "amqp://guest:s3cret@mq:5672/%2f");
        assert_eq!(global(&[]).broker_spec("default").unwrap(), None);
        let memory = global(&[]).broker_spec("memory").unwrap().unwrap();
        assert_eq!(memory.backend().name, "memory");
    }

    #[test]
    fn a_redis_here_leaves_a_core_to_itself() {
        let threads = |args: &[&str], cores| global(args).worker_threads(cores);
        assert_eq!(threads(&[], 2), 2);
        assert_eq!(threads(&["--store", "redis"], 2), 1);
        assert_eq!(threads(&["--store", "redis://127.0.0.1:6380/2"], 8), 7);
        assert_eq!(threads(&["--store", "redis"], 1), 1);
        assert_eq!(threads(&["--store", "redis://db.example:6379/0"], 2), 2);
        assert_eq!(
            threads(&["--store", "redis-cluster://127.0.0.1:7000"], 4),
            4
        );
        assert_eq!(
            threads(&["--store", "redis", "--runtime-threads", "3"], 2),
            3
        );
        assert!(Cli::try_parse_from(["superhero", "--runtime-threads", "0", "audit"]).is_err());
    }

    #[test]
    fn one_runtime_thread_is_the_callers_own() {
        use tokio::runtime::RuntimeFlavor;
        let one = global(&["--store", "redis"]).runtime(2).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        assert_eq!(one.block_on(async { 1 + 1 }), 2);
        let two = global(&[]).runtime(2).unwrap();
        assert_eq!(two.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(two.metrics().num_workers(), 2);
    }

    #[test]
    fn bad_tuning_is_refused() {
        assert!(global(&["--claim-after", "0.01"]).tuning(false).is_err());
        assert!(global(&["--kafka-partitions", "0"]).tuning(false).is_err());
        let t = global(&["--claim-after", "2"]).tuning(true).unwrap();
        assert_eq!(t.claim_after, Duration::from_secs(2));
        assert!(t.in_process);
        assert_eq!(t.topic_named_group.as_deref(), Some(events::WORKER_GROUP));
    }
}
