//! `superhero fanout`: the Redis fan-out middleware of one pub/sub channel, or, with
//! `--to URL`, a bridge of that channel into another broker. Runs until Ctrl-C or
//! SIGTERM, then prints what it forwarded and lost; exits non-zero if anything was
//! lost.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::metrics::MetricsArgs;
use super::{GlobalArgs, StopSignals, print_summary};
use crate::broker::bridge::{self, BridgeStats};
use crate::broker::{Broker, BrokerSpec, Fanout, RedisPubSubBroker};
use crate::events;
use crate::url::{redact, scheme, with_scheme};

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// The Redis pub/sub channel to fan out.
    #[arg(long, env = "WORKER_CHANNEL", default_value = "redis.lib.server.lobby")]
    pub channel: String,
    /// Bridge the channel into this broker (amqp://, nats://, redis-streams://, ...)
    /// instead of fanning out to Redis workers.
    #[arg(long, value_name = "BROKER_URL")]
    pub to: Option<String>,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// The `fanout --json` summary.
#[derive(Serialize)]
struct FanoutSummary {
    channel: String,
    to: String,
    forwarded: u64,
    lost: u64,
    elapsed_s: f64,
}

/// The Redis the fan-out reads: `--broker redis://` or `redis-fanout://`, else REDIS_*.
fn source(g: &GlobalArgs) -> Result<String> {
    match g.broker.as_deref() {
        None => Ok(g.redis().url),
        Some(url) => match scheme(url) {
            "redis" => Ok(url.to_string()),
            "redis-fanout" => Ok(with_scheme(url, "redis")),
            _ => bail!(
                "`fanout` reads Redis pub/sub: --broker must be redis:// or redis-fanout://, not {}",
                redact(url)
            ),
        },
    }
}

/// Waits for a stop request (Ctrl-C, SIGTERM) caught by `signals`.
async fn stop_requested(mut signals: StopSignals) {
    let signal = signals.next().await;
    eprintln!("{signal}: stopping");
}

/// Runs `superhero fanout`; the exit code says whether it went cleanly.
pub async fn run(args: &FanoutArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let source = source(g)?;
    let metrics = args.metrics.start().await?;
    let signals = StopSignals::catch();
    let started = std::time::Instant::now();
    let (forwarded, lost, to) = match &args.to {
        None => {
            if metrics.enabled() {
                let reader: Arc<dyn Broker> = Arc::new(RedisPubSubBroker::connect(&source).await?);
                metrics.broker("source", &reader);
            }
            let client = crate::redis_client::client(&source).map_err(anyhow::Error::msg)?;
            let fanout = Fanout::start(&client, &args.channel).await?;
            let stats = fanout.stats.clone();
            let counted = stats.clone();
            metrics.fanout(move || {
                (
                    counted.forwarded.load(Ordering::Relaxed),
                    counted.lost.load(Ordering::Relaxed),
                )
            });
            println!(
                "superhero fanout: {} to one live worker each, on {}",
                args.channel,
                redact(&source)
            );
            tokio::select! {
                r = fanout.run() => r?,
                () = stop_requested(signals) => {}
            }
            (
                stats.forwarded.load(Ordering::Relaxed),
                stats.lost.load(Ordering::Relaxed),
                "workers".to_string(),
            )
        }
        Some(url) => {
            let Some(spec) = BrokerSpec::from_url(url)? else {
                bail!("--to needs a broker URL");
            };
            let target = spec
                .open(&g.tuning(false)?)
                .await
                .with_context(|| format!("opening {}", redact(url)))?;
            metrics.broker("target", &target);
            let topic = target.topic_for(events::WORKER_QUEUE);
            // As a server does: the workers' share is kept from now on, whenever
            // they join.
            target
                .declare(&topic, &[events::WORKER_GROUP])
                .await
                .with_context(|| format!("declaring {topic} on {}", redact(url)))?;
            // The one connection to the source serves the bridge and its health check.
            let reader: Arc<dyn Broker> = Arc::new(RedisPubSubBroker::connect(&source).await?);
            metrics.broker("source", &reader);
            let mut input = reader.consumer(&args.channel, "fanout").await?;
            let publisher = target.publisher().await?;
            println!(
                "superhero fanout: {} bridged to {} ({})",
                args.channel,
                topic,
                redact(url)
            );
            let stats = Arc::new(BridgeStats::default());
            let counted = stats.clone();
            metrics.fanout(move || (counted.forwarded(), counted.lost()));
            bridge::forward(
                &mut *input,
                &*publisher,
                &topic,
                &stats,
                stop_requested(signals),
            )
            .await?;
            (stats.forwarded(), stats.lost(), redact(url))
        }
    };
    print_summary(
        &FanoutSummary {
            channel: args.channel.clone(),
            to,
            forwarded,
            lost,
            elapsed_s: started.elapsed().as_secs_f64(),
        },
        g.json,
    )?;
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
