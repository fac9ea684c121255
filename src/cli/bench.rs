//! `superhero bench`: the evaluation, from flags over a workload file over the
//! defaults ([`crate::bench::workload::plan`]); the report goes to `--out` and stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::{GlobalArgs, events_sink};
use crate::bench::{self, BenchContext, Overrides, Target, WorkloadFile};
use crate::broker::BrokerSpec;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Brokers to measure, comma-separated: memory, redis, redis-fanout,
    /// redis-streams, rabbitmq, kafka, nats, nsq (at the addresses the broker
    /// variables give), or broker URLs [default: all eight names].
    #[arg(long, value_delimiter = ',')]
    pub brokers: Option<Vec<String>>,
    /// Workloads to run, comma-separated: raw (throughput: messages as fast as they
    /// go), sustainable (the highest rate the broker sustains), latency (at fixed
    /// rates), faults (a consumer killed mid-run), game (the pipeline) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub workloads: Option<Vec<String>>,
    /// A TOML workload file (brokers, workloads, and raw and game sections); flags
    /// win over it.
    #[arg(long, value_name = "FILE")]
    pub workload: Option<PathBuf>,
    /// Small workloads: the whole report in well under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Folder for report.md, report.json and report.html.
    #[arg(long, default_value = "bench")]
    pub out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Where the brokers' own benchmark tools are (scripts/bench-tools installs them):
    /// DIR/bin/nats, DIR/bin/nsq_bench_writer and nsq_bench_reader, DIR/perf-test/libs,
    /// DIR/kafka/libs; redis-benchmark and java from the PATH
    /// [default: ~/.cache/superhero-tools].
    #[arg(long, value_name = "DIR", env = "SUPERHERO_TOOLS")]
    pub tools: Option<PathBuf>,
    /// Raw: messages in all [default: 500,000; 2,000 with --quick].
    #[arg(long, help_heading = "Raw messaging")]
    pub messages: Option<u64>,
    /// Raw: bytes per message, at least 16 (sequence number and send time) [default: 200].
    #[arg(long, help_heading = "Raw messaging")]
    pub size: Option<usize>,
    /// Raw: producers [default: 1].
    #[arg(long, help_heading = "Raw messaging")]
    pub producers: Option<usize>,
    /// Raw: consumers, in one group [default: 1].
    #[arg(long, help_heading = "Raw messaging")]
    pub consumers: Option<usize>,
    /// Raw: messages per second all producers aim at together [default: as fast as
    /// they can].
    #[arg(long, value_name = "MSG_PER_S", help_heading = "Raw messaging")]
    pub rate: Option<f64>,
    /// Raw: messages a consumer takes and acknowledges together at most, in one
    /// exchange where the broker allows (one XACK, `basic.ack` with `multiple`,
    /// pipelined JetStream acks) [default: 256].
    #[arg(long, value_name = "MESSAGES", help_heading = "Raw messaging")]
    pub ack_batch: Option<usize>,
    /// Raw: messages a producer keeps published and unconfirmed at most (its confirm
    /// window), sent in calls of a quarter of it [default: 1,024].
    #[arg(long, value_name = "MESSAGES", help_heading = "Raw messaging")]
    pub publish_batch: Option<usize>,
    /// Every broker: messages it sends a consumer ahead of the consumer's
    /// acknowledgements: RabbitMQ's basic.qos, nsqd's RDY, a JetStream pull's batch,
    /// an XREADGROUP's COUNT, librdkafka's queued.min.messages [default: each
    /// broker's, printed in the report: 1024, 1024, 16, 256, 100,000].
    #[arg(long, value_name = "MESSAGES", help_heading = "Broker settings")]
    pub prefetch: Option<usize>,
    /// Every broker: what a publisher waits for: all (the broker's word that it
    /// stored the message), leader (Kafka's acks=1; elsewhere as all), none (nothing;
    /// the audit shows what that loses) [default: all].
    #[arg(long, value_name = "POLICY", help_heading = "Broker settings")]
    pub acks: Option<crate::broker::Acks>,
    /// Sustainable: the p99 latency a sustained rate stays under, in milliseconds
    /// [default: 100].
    #[arg(long, value_name = "MS", help_heading = "Sustainable rate")]
    pub p99_bound: Option<f64>,
    /// Sustainable: how long each probe publishes [default: 5; 1 with --quick].
    #[arg(long, value_name = "SECONDS", help_heading = "Sustainable rate")]
    pub probe_seconds: Option<f64>,
    /// Sustainable: probes at most [default: 10; 8 with --quick].
    #[arg(long, value_name = "N", help_heading = "Sustainable rate")]
    pub max_probes: Option<usize>,
    /// Latency: fractions of the sustainable rate to run at, comma-separated
    /// [default: 0.1,0.5,0.9].
    #[arg(long, value_delimiter = ',', help_heading = "Latency at fixed rates")]
    pub fractions: Option<Vec<f64>>,
    /// Latency: rates to run at outright, messages per second, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "MSG_PER_S",
        help_heading = "Latency at fixed rates"
    )]
    pub rates: Option<Vec<f64>>,
    /// Latency: how long each run publishes [default: 10; 2 with --quick].
    #[arg(long, value_name = "SECONDS", help_heading = "Latency at fixed rates")]
    pub run_seconds: Option<f64>,
    /// Faults: how long the producer publishes while a consumer is killed and
    /// replaced [default: 20; 3 with --quick].
    #[arg(long, value_name = "SECONDS", help_heading = "Faults")]
    pub fault_seconds: Option<f64>,
    /// Faults: also restart each broker's server mid-run (SIGTERM, then started again
    /// as it ran), where it runs on this machine; everything else using it waits
    /// meanwhile [default: off].
    #[arg(long, help_heading = "Faults")]
    pub restart_broker: bool,
    /// Game: ETL workers [default: 3].
    #[arg(long, help_heading = "Game pipeline")]
    pub workers: Option<usize>,
    /// Game: bots [default: 100; 20 with --quick].
    #[arg(long, help_heading = "Game pipeline")]
    pub bots: Option<usize>,
    /// Game: games each bot plays [default: 10; 5 with --quick].
    #[arg(long, help_heading = "Game pipeline")]
    pub games: Option<u32>,
    /// Game: about this many games per second [default: as fast as the pipeline goes].
    #[arg(long, value_name = "GAMES_PER_S", help_heading = "Game pipeline")]
    pub game_rate: Option<f64>,
    /// Game: games per table file, so the disk is not the limit; 0 writes a pair of
    /// durable files per game [default: 1,000].
    #[arg(long, value_name = "GAMES", help_heading = "Game pipeline")]
    pub batch_games: Option<usize>,
    /// Game: the longest a batch's first game waits for its file [default: 1].
    #[arg(long, value_name = "SECONDS", help_heading = "Game pipeline")]
    pub batch_seconds: Option<f64>,
}

impl From<&BenchArgs> for Overrides {
    fn from(args: &BenchArgs) -> Self {
        Self {
            brokers: args.brokers.clone(),
            workloads: args.workloads.clone(),
            messages: args.messages,
            size: args.size,
            producers: args.producers,
            consumers: args.consumers,
            rate: args.rate,
            ack_batch: args.ack_batch,
            publish_batch: args.publish_batch,
            prefetch: args.prefetch,
            acks: args.acks,
            p99_bound_ms: args.p99_bound,
            probe_seconds: args.probe_seconds,
            max_probes: args.max_probes,
            fractions: args.fractions.clone(),
            rates: args.rates.clone(),
            run_seconds: args.run_seconds,
            fault_seconds: args.fault_seconds,
            restart_broker: args.restart_broker,
            bots: args.bots,
            games: args.games,
            workers: args.workers,
            game_rate: args.game_rate,
            batch_games: args.batch_games,
            batch_seconds: args.batch_seconds,
            quick: args.quick,
        }
    }
}

/// Runs `superhero bench`; the exit code says whether it went cleanly.
pub async fn run(args: &BenchArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let file = match &args.workload {
        Some(path) => WorkloadFile::load(path)?,
        None => WorkloadFile::default(),
    };
    let plan = bench::workload::plan(&file, &Overrides::from(args))?;
    let variables = g.variables();
    let mut targets = Vec::new();
    for name in plan.brokers {
        let spec = BrokerSpec::from_name(&name, &variables)?;
        // A broker given as a URL is named by it in the report, its password masked.
        let name = crate::url::redact(&name);
        targets.push(Target { name, spec });
    }
    let ctx = BenchContext {
        tuning: g.tuning(true)?,
        sink: events_sink(),
        scratch: args.out.join("tables.tmp"),
        progress: !args.no_progress && !g.json,
        tools: bench::Tools::new(
            args.tools
                .clone()
                .unwrap_or_else(bench::native::default_dir),
        ),
    };
    let report = bench::run(&targets, &plan.workloads, &ctx).await;
    if let Err(e) = std::fs::remove_dir(&ctx.scratch)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::debug!("leaving {}: {e}", ctx.scratch.display());
    }
    report
        .write(&args.out)
        .with_context(|| format!("writing the report to {}", args.out.display()))?;
    if g.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.markdown());
        println!(
            "\nreport: {} (also report.json, report.md)",
            args.out.join("report.html").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The consumer process of the faults workload (`superhero bench-consumer`), started
/// by `superhero bench`; the broker's URL comes in the environment.
#[derive(Debug, Args)]
pub struct ConsumerArgs {
    pub topic: String,
    pub group: String,
    #[arg(long, default_value_t = crate::bench::raw::ACK_BATCH)]
    pub ack_batch: usize,
    /// Messages the broker sends ahead of acknowledgements [default: the broker's].
    #[arg(long)]
    pub prefetch: Option<usize>,
}

/// Runs a faults workload's consumer until it is killed or its broker closes.
pub async fn consume(args: &ConsumerArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let url = std::env::var(crate::bench::faults::BROKER_VAR)
        .with_context(|| format!("{} names no broker", crate::bench::faults::BROKER_VAR))?;
    let spec = BrokerSpec::from_url(&url)?.context("the bench consumer needs a broker")?;
    // The bench's process runs any middleware; this one only consumes.
    let mut tuning = g.tuning(false)?;
    tuning.flow.prefetch = args.prefetch;
    let broker = spec.open(&tuning).await?;
    let consumer = broker.consumer(&args.topic, &args.group).await?;
    crate::bench::faults::serve_consumer(consumer, args.ack_batch, tokio::io::stdout()).await?;
    Ok(ExitCode::SUCCESS)
}
