//! `superhero bench`: the same workloads on every broker asked for, side by side, so
//! that the numbers answer "which broker suits this pipeline".
//!
//! Each broker is opened in turn; one that cannot be reached is listed as skipped,
//! with the reason, and the run goes on. On every broker that opened run the raw
//! messaging workload ([`raw`]), then the broker's own benchmark tool with the same
//! messages ([`native`]), then the game pipeline ([`game`]). The report is a Markdown
//! table ([`Report::markdown`]), `report.json` and a self-contained `report.html` with
//! charts ([`html`]).

pub mod environment;
pub mod faults;
pub mod game;
pub mod html;
pub mod native;
pub mod process;
pub mod rates;
pub mod raw;
pub mod recommend;
pub mod restart;
pub mod settings;
pub mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::broker::{Broker, BrokerError, BrokerSpec, Tuning};
use crate::events::EventSink;
use crate::url::redact;
use settings::{Applied, Resolved, Settings};

pub use environment::Environment;
pub use faults::{FaultsResult, FaultsWorkload};
pub use game::{GameResult, GameWorkload};
pub use native::{Baseline, Tools};
pub use process::{BrokerProcess, ProcessUsage};
pub use rates::{FixedRateRun, LatencyWorkload, SustainableResult, SustainableWorkload};
pub use raw::{RawResult, RawWorkload};
pub use recommend::Recommendation;
pub use workload::{Overrides, Plan, WorkloadError, WorkloadFile};

/// How long opening one broker may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// One broker to measure: its name in the report and where it is (`None`: a name
/// that means no broker, reported as skipped).
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub spec: Option<BrokerSpec>,
}

/// The workloads of one evaluation; a workload left out is not run.
#[derive(Clone, Debug, Serialize)]
pub struct Workloads {
    /// Throughput: the messages as fast as they go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawWorkload>,
    /// The search for the highest sustainable rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sustainable: Option<SustainableWorkload>,
    /// Runs at fixed rates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyWorkload>,
    /// A consumer killed mid-run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultsWorkload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub game: Option<GameWorkload>,
    /// The messages, producers, consumers and batches of the paced workloads (the
    /// throughput workload's, paced).
    pub messages: RawWorkload,
    /// Prefetch, batches and acks, for every broker or one backend.
    pub settings: Settings,
}

/// What was measured on one broker.
#[derive(Clone, Debug, Serialize)]
pub struct BrokerReport {
    pub broker: String,
    /// Where it was reached (passwords masked).
    pub url: String,
    /// `ok`, `skipped` (could not be opened) or `failed` (opened, then a workload
    /// failed; the other may still have results).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The embedded broker, inside this process (never recommended: it serves one
    /// command's processes only).
    pub in_process: bool,
    /// The prefetch, acknowledgements and batches it ran with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<Applied>,
    /// `broadcast` (every consumer gets every message) or `work sharing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sustainable: Option<SustainableResult>,
    /// The runs at fixed rates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<FixedRateRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultsResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub game: Option<GameResult>,
    /// Sentences written from the numbers, one per workload.
    pub verdict: Vec<String>,
}

/// The whole evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The machine, the program and the brokers' servers.
    pub environment: Environment,
    pub workloads: Workloads,
    pub brokers: Vec<BrokerReport>,
    /// The brokers' own tools, beside our raw results.
    pub baselines: Vec<Baseline>,
    /// The best broker measured for each criterion, and why.
    pub recommendation: Vec<Recommendation>,
}

/// Where and how the evaluation runs.
pub struct BenchContext<'a> {
    /// How every broker is opened.
    pub tuning: Tuning,
    /// The sink the process's tracing layer feeds (the game pipeline's events).
    pub sink: &'a Arc<EventSink>,
    /// Where the game pipeline writes its tables for the time of a run.
    pub scratch: PathBuf,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Where the brokers' own benchmark tools are.
    pub tools: Tools,
}

/// Runs the workloads on every target in turn.
pub async fn run(targets: &[Target], workloads: &Workloads, ctx: &BenchContext<'_>) -> Report {
    let bars = MultiProgress::new();
    if !ctx.progress {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut environment = Environment::here();
    let mut brokers = Vec::new();
    let mut baselines = Vec::new();
    for target in targets {
        let (report, native, version) = measure(target, workloads, ctx, &bars).await;
        if report.status != "skipped" {
            environment.brokers.push(environment::BrokerVersion {
                broker: report.broker.clone(),
                version: version.unwrap_or_else(|| "version not told by the broker".into()),
            });
        }
        brokers.push(report);
        baselines.extend(native);
    }
    let mut report = Report {
        environment,
        workloads: workloads.clone(),
        brokers,
        baselines,
        recommendation: Vec::new(),
    };
    report.recommendation = recommend::recommend(&report);
    report
}

fn bar(bars: &MultiProgress, name: &str, len: Option<u64>, what: &str) -> ProgressBar {
    let bar = bars.add(ProgressBar::new(len.unwrap_or(0)));
    let template = if len.is_some() {
        "{prefix:>16} {wide_msg:.dim} [{bar:30}] {pos}/{len} {per_sec}"
    } else {
        "{prefix:>16} {wide_msg:.dim} {spinner} {elapsed}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar.set_message(what.to_string());
    if len.is_none() {
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    bar
}

/// Our workloads on one broker, its own tool beside the raw one, and its server's
/// version.
async fn measure(
    target: &Target,
    workloads: &Workloads,
    ctx: &BenchContext<'_>,
    bars: &MultiProgress,
) -> (BrokerReport, Vec<Baseline>, Option<String>) {
    let name = &target.name;
    let mut report = BrokerReport {
        broker: name.clone(),
        url: target
            .spec
            .as_ref()
            .map_or_else(String::new, |s| redact(s.url())),
        status: "skipped",
        reason: None,
        in_process: false,
        settings: None,
        delivery: None,
        raw: None,
        sustainable: None,
        latency: Vec::new(),
        faults: None,
        game: None,
        verdict: Vec::new(),
    };
    let opening = bar(bars, name, None, "connecting");
    let Some(spec) = &target.spec else {
        opening.finish_with_message("skipped: not a broker");
        report.reason = Some("not a broker (LOGGER_MODULE=default)".into());
        report
            .verdict
            .push(format!("{name}: skipped, not a broker."));
        return (report, Vec::new(), None);
    };
    // This broker's prefetch, acks and batches.
    let resolved = workloads
        .settings
        .resolve(spec.backend().name, &workloads.messages);
    let workloads = &Workloads {
        raw: workloads.raw.as_ref().map(|w| resolved.batches(w)),
        messages: resolved.batches(&workloads.messages),
        ..workloads.clone()
    };
    let tuning = Tuning {
        flow: resolved.flow,
        ..ctx.tuning.clone()
    };
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, spec.open(&tuning))
        .await
        .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))
        .and_then(|r| r.map_err(|e| e.to_string()));
    let broker: Arc<dyn Broker> = match opened {
        Ok(b) => b,
        Err(e) => {
            opening.finish_with_message("skipped: unreachable");
            report
                .verdict
                .push(format!("{name}: skipped, unreachable ({e})."));
            report.reason = Some(e);
            return (report, Vec::new(), None);
        }
    };
    opening.finish_and_clear();
    let version = tokio::time::timeout(CONNECT_TIMEOUT, broker.version())
        .await
        .ok()
        .flatten();
    let broadcast = !broker.semantics().work_sharing();
    report.delivery = Some(if broadcast {
        "broadcast"
    } else {
        "work sharing"
    });
    report.status = "ok";
    report.in_process = spec.backend().in_process;
    report.settings = Some(Applied::new(&resolved, broker.flow()));
    let on = OnBroker {
        name,
        spec,
        broker,
        broadcast,
        copies: if broadcast {
            workloads.messages.consumers as u64
        } else {
            1
        },
        ctx,
        resolved,
        bars,
    };
    let mut failures = Vec::new();
    let mut baselines = Vec::new();
    if let Some(w) = &workloads.raw {
        match on.throughput(w, &mut report).await {
            Ok(tools) => baselines = tools,
            Err(e) => failures.push(format!("raw messaging: {e}")),
        }
    }
    if let Some(w) = &workloads.sustainable
        && let Err(e) = on.sustainable(w, &workloads.messages, &mut report).await
    {
        failures.push(format!("sustainable rate: {e}"));
    }
    if let Some(w) = &workloads.latency
        && let Err(e) = on.fixed_rates(w, &workloads.messages, &mut report).await
    {
        failures.push(format!("latency at fixed rates: {e}"));
    }
    if let Some(w) = &workloads.faults
        && let Err(e) = on.faults(w, &workloads.messages, &mut report).await
    {
        failures.push(format!("faults: {e}"));
    }
    if let Some(w) = &workloads.game
        && let Err(e) = on.game(w, &mut report).await
    {
        failures.push(format!("game pipeline: {e}"));
    }
    if !failures.is_empty() {
        report.status = "failed";
        report.verdict.push(format!(
            "{name}: failed during the run ({}).",
            failures.join("; ")
        ));
        report.reason = Some(failures.join("; "));
    }
    (report, baselines, version)
}

/// One opened broker, and what each workload run on it needs.
struct OnBroker<'a> {
    name: &'a str,
    spec: &'a BrokerSpec,
    broker: Arc<dyn Broker>,
    /// Every consumer gets every message.
    broadcast: bool,
    /// Deliveries each message should get (the consumers, on a broadcast; else 1).
    copies: u64,
    ctx: &'a BenchContext<'a>,
    /// The prefetch, acks and batches it runs with.
    resolved: Resolved,
    bars: &'a MultiProgress,
}

impl OnBroker<'_> {
    /// The broker's own process, when it runs here, watched during a workload: found
    /// afresh each time, as the faults workload may have restarted it.
    fn process(&self) -> Option<BrokerProcess> {
        BrokerProcess::find(self.spec.url())
    }

    /// The throughput workload, then the broker's own tool beside it.
    async fn throughput(
        &self,
        w: &RawWorkload,
        report: &mut BrokerReport,
    ) -> Result<Vec<Baseline>, BrokerError> {
        let progress = bar(self.bars, self.name, Some(w.messages), "raw messages");
        let shown = progress.clone();
        let running = raw::run(&*self.broker, w, self.copies, move |n| shown.inc(n));
        let (result, usage) = process::watch(self.process().as_ref(), running).await;
        progress.finish();
        let ours = RawResult {
            broker_process: usage,
            ..result?
        };
        report
            .verdict
            .push(raw_verdict(self.name, &ours, self.broadcast, w.consumers));
        let running = bar(self.bars, self.name, None, "the broker's own tool");
        let beside = native::Beside {
            name: self.name,
            backend: self.spec.backend().name,
            url: self.spec.url(),
            broker: &*self.broker,
            workload: w,
            ours: &ours,
        };
        let tools = native::measure(&self.ctx.tools, &beside).await;
        running.finish_and_clear();
        report.raw = Some(ours);
        Ok(tools)
    }

    /// The search for the highest sustainable rate, from the throughput's consumed/s.
    async fn sustainable(
        &self,
        w: &SustainableWorkload,
        messages: &RawWorkload,
        report: &mut BrokerReport,
    ) -> Result<(), BrokerError> {
        let probing = bar(self.bars, self.name, None, "sustainable rate");
        let start = report.raw.as_ref().map(|r| r.consume_per_s);
        let shown = probing.clone();
        let probe = move |rate: f64| {
            shown.set_message(format!("sustainable rate: probing {rate:.0} msg/s"));
        };
        let process = self.process();
        let found = rates::sustainable(
            &*self.broker,
            messages,
            w,
            self.copies,
            start,
            process.as_ref(),
            probe,
        )
        .await;
        probing.finish_and_clear();
        let found = found?;
        report
            .verdict
            .push(rates::sustainable_verdict(self.name, w, &found));
        report.sustainable = Some(found);
        Ok(())
    }

    /// The runs at fixed rates.
    async fn fixed_rates(
        &self,
        w: &LatencyWorkload,
        messages: &RawWorkload,
        report: &mut BrokerReport,
    ) -> Result<(), BrokerError> {
        let running = bar(self.bars, self.name, None, "fixed rates");
        let shown = running.clone();
        let runs = rates::fixed_rates(
            &*self.broker,
            messages,
            w,
            self.copies,
            reference_rate(report),
            self.process().as_ref(),
            move |rate| shown.set_message(format!("latency at {rate:.0} msg/s")),
        )
        .await;
        running.finish_and_clear();
        let runs = runs?;
        report
            .verdict
            .extend(rates::latency_verdict(self.name, &runs));
        report.latency = runs;
        Ok(())
    }

    /// A consumer killed mid-run.
    async fn faults(
        &self,
        w: &FaultsWorkload,
        messages: &RawWorkload,
        report: &mut BrokerReport,
    ) -> Result<(), BrokerError> {
        let Some(reference) = reference_rate(report) else {
            return Err(BrokerError::Unavailable(
                "no measured rate to run at".into(),
            ));
        };
        let rate = reference * w.fraction;
        let running = bar(self.bars, self.name, None, "faults");
        running.set_message(format!("faults: a consumer killed at {rate:.0} msg/s"));
        let backend = self.spec.backend();
        let tuning = &self.ctx.tuning;
        // A consumer of the embedded broker, or one served by a middleware running
        // here, must live in this process; the others get processes of their own.
        let how = if backend.in_process || backend.middleware {
            faults::Consumers::Tasks
        } else {
            faults::Consumers::Processes {
                url: self.spec.url(),
                claim_after: tuning.claim_after,
                prefetch: self.resolved.flow.prefetch,
            }
        };
        // A broker that hands a dead consumer's messages on only after a while
        // (Redis Streams, NATS, NSQ, Kafka) needs that while before the run ends.
        let idle = if self.broker.semantics().redelivery() {
            tuning.claim_after + Duration::from_secs(5)
        } else {
            messages.idle
        };
        // The embedded broker is this process: it cannot be restarted alone.
        let restart = (w.restart && !backend.in_process).then(|| self.spec.url());
        let result = faults::run(&*self.broker, &how, messages, w, rate, idle, restart).await;
        running.finish_and_clear();
        let result = result?;
        report.verdict.push(faults::verdict(self.name, &result));
        report.faults = Some(result);
        Ok(())
    }

    /// The game pipeline, its tables in a scratch folder of their own.
    async fn game(
        &self,
        w: &GameWorkload,
        report: &mut BrokerReport,
    ) -> Result<(), crate::simulate::SimulateError> {
        let progress = bar(self.bars, self.name, None, "game pipeline");
        let scratch = self.ctx.scratch.join(format!(
            "{}-{}",
            sanitize(self.name),
            uuid::Uuid::new_v4().simple()
        ));
        let running = game::run(self.broker.clone(), self.ctx.sink, w, &scratch);
        let (result, usage) = process::watch(self.process().as_ref(), running).await;
        progress.finish_with_message("game pipeline done");
        let result = GameResult {
            broker_process: usage,
            ..result?
        };
        report.verdict.push(game::verdict(self.name, &result));
        report.game = Some(result);
        Ok(())
    }
}

/// The rate the paced workloads' fractions apply to: the highest sustainable one, or
/// the throughput run's consumed/s when the search found none or did not run.
fn reference_rate(report: &BrokerReport) -> Option<f64> {
    report
        .sustainable
        .as_ref()
        .and_then(|s| s.rate_per_s)
        .or_else(|| report.raw.as_ref().map(|r| r.consume_per_s))
        .filter(|r| *r > 0.0)
}

/// A name fit for a folder.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A sentence on one broker's raw result, from its numbers alone.
pub fn raw_verdict(name: &str, r: &RawResult, broadcast: bool, consumers: usize) -> String {
    let mut parts = vec![format!(
        "{name} (raw): {:.0} msg/s published, {:.0} msg/s consumed, p99 latency {:.1} ms",
        r.publish_per_s, r.consume_per_s, r.latency.p99_ms
    )];
    if r.lost > 0 {
        parts.push(format!("{} of {} messages lost", r.lost, r.published));
    } else {
        parts.push("nothing lost".into());
    }
    if r.duplicates > 0 && broadcast && consumers > 1 {
        parts.push(format!(
            "every message delivered to each of the {consumers} consumers \
             ({} duplicates: a broadcast, not a work queue)",
            r.duplicates
        ));
    } else if r.duplicates > 0 {
        parts.push(format!("{} duplicate deliveries", r.duplicates));
    } else {
        parts.push("no duplicates".into());
    }
    if r.reordered > 0 {
        parts.push(format!("{} delivered out of order per key", r.reordered));
    }
    format!("{}.", parts.join("; "))
}

impl Report {
    /// The results as Markdown: a table per workload, the raw client's rates next to
    /// ours, and the verdicts.
    pub fn markdown(&self) -> String {
        let mut md = self.environment.markdown();
        md.push_str(&self.settings_table());
        if let Some(w) = &self.workloads.raw {
            md.push_str(&self.raw_table(w));
        }
        if let Some(w) = &self.workloads.sustainable {
            md.push_str(&self.sustainable_table(w));
        }
        if let Some(w) = &self.workloads.latency {
            md.push_str(&self.latency_table(w));
        }
        if let Some(w) = &self.workloads.faults {
            md.push_str(&self.faults_table(w));
        }
        if let Some(w) = &self.workloads.game {
            md.push_str(&self.game_table(w));
        }
        md.push_str("Recommendation:\n\n");
        for r in &self.recommendation {
            md.push_str(&format!(
                "- {}: {} ({})\n",
                r.criterion,
                r.broker.as_deref().unwrap_or("none"),
                r.why
            ));
        }
        md.push_str("\nVerdicts:\n\n");
        for line in self.brokers.iter().flat_map(|b| &b.verdict) {
            md.push_str(&format!("- {line}\n"));
        }
        md
    }

    /// Each broker's prefetch, acknowledgements and batches, as it ran them.
    fn settings_table(&self) -> String {
        let mut md = String::from(
            "Settings (`--prefetch`, `--acks`, `--ack-batch`, `--publish-batch`, or the \
             workload file's [settings]):\n\n\
             | broker | prefetch | publisher acknowledgement | ack batch | confirm window (publish batch) |\n\
             |---|---|---|---:|---:|\n",
        );
        for b in &self.brokers {
            if let Some(s) = &b.settings {
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    b.broker, s.broker.prefetch, s.broker.acks, s.ack_batch, s.publish_batch
                ));
            }
        }
        md.push('\n');
        md
    }

    fn raw_table(&self, w: &RawWorkload) -> String {
        let mut md = format!(
            "Raw messaging: {} messages of {} bytes, {} producer(s) keeping up to {} \
             unconfirmed (calls of {}), {} consumer(s) acknowledging up to {} together{}\n\n",
            w.messages,
            w.size,
            w.producers,
            w.publish_batch,
            w.publish_batch.div_ceil(raw::CALLS_IN_FLIGHT),
            w.consumers,
            w.ack_batch,
            w.rate
                .map_or(String::new(), |r| format!(", target {r:.0} msg/s"))
        );
        md.push_str(
            "| broker | delivery | published/s | consumed/s | p50 ms | p95 ms | p99 ms | max ms | duplicates | lost | reordered | broker CPU, cores (peak); the machine's busy cores | broker RSS MiB | the broker's figures at the end | notes |\n",
        );
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
        for b in &self.brokers {
            let delivery = b.delivery.unwrap_or("-");
            match &b.raw {
                Some(r) => md.push_str(&format!(
                    "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | |\n",
                    b.broker,
                    delivery,
                    r.publish_per_s,
                    r.consume_per_s,
                    r.latency.p50_ms,
                    r.latency.p95_ms,
                    r.latency.p99_ms,
                    r.latency.max_ms,
                    r.duplicates,
                    r.lost,
                    r.reordered,
                    cpu_cell(r.broker_process.as_ref()),
                    rss_cell(r.broker_process.as_ref()),
                    r.broker_stats
                        .iter()
                        .map(|s| format!("{} {}", s.name, s.value))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                None => md.push_str(&format!(
                    "| {} | {} | - | - | - | - | - | - | - | - | - | - | - | - | {} |\n",
                    b.broker,
                    delivery,
                    b.note()
                )),
            }
        }
        if !self.baselines.is_empty() {
            md.push_str(&self.native_table());
        }
        md.push('\n');
        md
    }

    /// The brokers' own tools beside our raw rates.
    fn native_table(&self) -> String {
        let rate = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        let share = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0));
        let mut md = String::from("\nThe brokers' own tools, in the same run:\n\n");
        md.push_str(
            "| broker | tool | published/s | consumed/s | ours published/s | ours consumed/s | published: ours/tool | consumed: ours/tool | what ran |\n",
        );
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---|\n");
        for base in &self.baselines {
            let ours = self
                .brokers
                .iter()
                .find(|b| b.broker == base.broker)
                .and_then(|b| b.raw.as_ref());
            let what = match &base.reason {
                Some(reason) => format!("{}: {}", base.status, reason.replace('|', "/")),
                None => base.command.replace('|', "/"),
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {what} |\n",
                base.broker,
                base.tool,
                rate(base.publish_per_s),
                rate(base.consume_per_s),
                rate(ours.map(|r| r.publish_per_s)),
                rate(ours.map(|r| r.consume_per_s)),
                share(base.publish_ratio),
                share(base.consume_ratio),
            ));
        }
        md
    }

    fn sustainable_table(&self, w: &SustainableWorkload) -> String {
        let m = &self.workloads.messages;
        let mut md = format!(
            "Highest sustainable rate: messages of {} bytes, {} producer(s) paced, {} \
             consumer(s); each probe publishes for {} s and is sustained when the producers \
             keep up, the backlog does not grow and p99 stays under {} ms; the search ends \
             within {:.0}%\n\n",
            m.size,
            m.producers,
            m.consumers,
            w.probe_seconds,
            w.p99_bound_ms,
            w.precision * 100.0
        );
        md.push_str(
            "| broker | sustainable msg/s | not sustained at msg/s | p99 ms | broker CPU at the sustained rate, cores (peak); the machine's busy cores | broker RSS MiB | probes (msg/s: ✓ sustained, ✗ not) | notes |\n",
        );
        md.push_str("|---|---:|---:|---:|---:|---:|---|---|\n");
        let rate = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        for b in &self.brokers {
            match &b.sustainable {
                Some(r) => {
                    let probes = r
                        .probes
                        .iter()
                        .map(|p| format!("{:.0} {}", p.rate, if p.sustained { "✓" } else { "✗" }))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let note = if r.converged {
                        String::new()
                    } else {
                        "not converged".into()
                    };
                    let at_best = r
                        .probes
                        .iter()
                        .find(|p| p.sustained && Some(p.rate) == r.rate_per_s)
                        .and_then(|p| p.broker_process.as_ref());
                    md.push_str(&format!(
                        "| {} | {} | {} | {} | {} | {} | {probes} | {note} |\n",
                        b.broker,
                        rate(r.rate_per_s),
                        rate(r.fails_at),
                        r.p99_ms.map_or("-".into(), |v| format!("{v:.2}")),
                        cpu_cell(at_best),
                        rss_cell(at_best),
                    ));
                }
                None => md.push_str(&format!(
                    "| {} | - | - | - | - | - | - | {} |\n",
                    b.broker,
                    b.note()
                )),
            }
        }
        md.push('\n');
        md
    }

    fn latency_table(&self, w: &LatencyWorkload) -> String {
        let m = &self.workloads.messages;
        let mut md = format!(
            "Latency at fixed rates: messages of {} bytes, {} producer(s) paced, {} \
             consumer(s), {} s per run; latencies count from each message's intended send \
             time (so a stalled producer's wait is in them: no coordinated omission), the \
             run's first tenth left out\n\n",
            m.size, m.producers, m.consumers, w.seconds
        );
        md.push_str(
            "| broker | rate msg/s | of reference | published/s | consumed/s | p50 ms | p99 ms | p99.9 ms | p99.99 ms | max ms | publish p50 ms | publish p99 ms | lost | duplicates | reordered | broker CPU, cores (peak); the machine's busy cores |\n",
        );
        md.push_str(
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for b in &self.brokers {
            if b.latency.is_empty() {
                md.push_str(&format!(
                    "| {} | - | - | - | - | - | - | - | - | - | - | - | - | - | - | {} |\n",
                    b.broker,
                    b.note()
                ));
            }
            for run in &b.latency {
                let r = &run.result;
                let (l, p) = (&r.latency, &r.publish_latency);
                md.push_str(&format!(
                    "| {} | {:.0} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |\n",
                    b.broker,
                    run.rate,
                    run.fraction
                        .map_or("-".into(), |f| format!("{:.0}%", f * 100.0)),
                    r.publish_per_s,
                    r.consume_per_s,
                    l.p50_ms,
                    l.p99_ms,
                    l.p99_9_ms,
                    l.p99_99_ms,
                    l.max_ms,
                    p.p50_ms,
                    p.p99_ms,
                    r.lost,
                    r.duplicates,
                    r.reordered,
                    cpu_cell(r.broker_process.as_ref()),
                ));
            }
        }
        md.push('\n');
        md
    }

    fn faults_table(&self, w: &FaultsWorkload) -> String {
        let m = &self.workloads.messages;
        let mut md = format!(
            "Faults: one producer paced at {:.0}% of the sustainable rate for {} s, messages \
             of {} bytes, one consumer at a time acknowledging up to {} together, killed \
             {:.0}% of the way through and replaced; order audited over {} keys \
             (sequence number modulo {}), each message published with its key, so that a \
             broker that spreads a topic over partitions keeps a key in one\n\n",
            w.fraction * 100.0,
            w.seconds,
            m.size,
            m.ack_batch,
            w.kill_at * 100.0,
            raw::KEYS,
            raw::KEYS
        );
        if w.restart {
            md.truncate(md.trim_end().len());
            md.push_str(&format!(
                "; each broker's server restarted {:.0}% of the way through where it runs on \
                 this machine\n\n",
                w.restart_at * 100.0
            ));
        }
        md.push_str(
            "| broker | rate msg/s | published | publish errors | consumed | lost | duplicates | reordered | consumer killed: next delivery after s | broker restarted: down s | broker restarted: next delivery after s | notes |\n",
        );
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        let seconds = |s: Option<f64>, none: &str| s.map_or(none.into(), |s| format!("{s:.2}"));
        for b in &self.brokers {
            let Some(r) = &b.faults else {
                md.push_str(&format!(
                    "| {} | - | - | - | - | - | - | - | - | - | - | {} |\n",
                    b.broker,
                    b.note()
                ));
                continue;
            };
            let killed = r.faults.iter().find(|f| f.down_s.is_none());
            let restarted = r.faults.iter().find(|f| f.down_s.is_some());
            let mut notes = r.not_done.clone();
            if r.unconfirmed_delivered > 0 {
                notes.push(format!(
                    "{} delivered though their publishing failed",
                    r.unconfirmed_delivered
                ));
            }
            if r.tail > 0 {
                notes.push(format!(
                    "{} more published once the server was back, after the producer's time",
                    r.tail
                ));
            }
            md.push_str(&format!(
                "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                b.broker,
                r.rate,
                r.published,
                r.publish_errors,
                r.consumed,
                r.lost,
                r.duplicates,
                r.reordered,
                killed.map_or("-".into(), |f| seconds(f.resumed_after_s, "never")),
                restarted.map_or("-".into(), |f| seconds(f.down_s, "-")),
                restarted.map_or("-".into(), |f| {
                    let none = if f.back_after_publishing {
                        "after the run"
                    } else {
                        "never"
                    };
                    seconds(f.resumed_after_s, none)
                }),
                notes.join("; "),
            ));
        }
        md.push('\n');
        md
    }

    fn game_table(&self, w: &GameWorkload) -> String {
        let tables = match w.batch_policy() {
            Some(b) => format!(
                "tables in batches of {} games or {} s",
                b.games,
                b.max_age.as_secs_f64()
            ),
            None => "a pair of table files per game".into(),
        };
        let mut md = format!(
            "Game pipeline: {} bots playing {} games each, {} worker(s), {tables}{}\n\n",
            w.bots,
            w.games_per_bot,
            w.workers,
            w.rate
                .map_or(String::new(), |r| format!(", target {r:.0} games/s"))
        );
        md.push_str(
            "| broker | games simulated | games written | duplicate games | missing games | events/s | the broker alone, msg/s | events/s of that | games/s | end to Parquet p50 ms | p95 ms | p99 ms | max ms | broker CPU, cores (peak); the machine's busy cores | broker RSS MiB | notes |\n",
        );
        md.push_str(
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for b in &self.brokers {
            match &b.game {
                Some(g) => {
                    let l = &g.completion_to_parquet;
                    let note = if g.events_dropped > 0 {
                        format!("{} events dropped", g.events_dropped)
                    } else {
                        String::new()
                    };
                    let (alone, share) = match b.rate_alone() {
                        Some((rate, sustained)) if rate > 0.0 => (
                            format!(
                                "{rate:.0} ({})",
                                if sustained { "sustained" } else { "throughput" }
                            ),
                            format!("{:.1}%", 100.0 * g.events_per_s / rate),
                        ),
                        _ => ("-".into(), "-".into()),
                    };
                    md.push_str(&format!(
                        "| {} | {} | {} | {} | {} | {:.0} | {alone} | {share} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {note} |\n",
                        b.broker,
                        g.games_simulated,
                        g.games_written,
                        g.duplicate_games,
                        g.missing_games,
                        g.events_per_s,
                        g.games_per_s,
                        l.p50_ms,
                        l.p95_ms,
                        l.p99_ms,
                        l.max_ms,
                        cpu_cell(g.broker_process.as_ref()),
                        rss_cell(g.broker_process.as_ref()),
                    ))
                }
                None => md.push_str(&format!(
                    "| {} | - | - | - | - | - | - | - | - | - | - | - | - | - | - | {} |\n",
                    b.broker,
                    b.note()
                )),
            }
        }
        md.push('\n');
        md
    }

    /// Writes `report.json`, `report.md` and `report.html` into `dir`, creating it.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(dir.join("report.html"), html::render(self))
    }
}

/// A broker process's mean CPU with its peak, then the whole machine's busy cores of
/// all it has, for a table cell; `-` when not measured.
fn cpu_cell(usage: Option<&ProcessUsage>) -> String {
    usage.map_or("-".into(), |u| {
        let broker = format!("{:.2} ({:.2})", u.cpu_cores, u.cpu_cores_peak);
        match u.machine_busy_cores {
            Some(busy) => format!("{broker}; machine {busy:.2} of {}", u.machine_cores),
            None => broker,
        }
    })
}

/// A broker process's highest resident memory, for a table cell.
fn rss_cell(usage: Option<&ProcessUsage>) -> String {
    usage.map_or("-".into(), |u| format!("{:.0}", u.rss_mib_max))
}

impl BrokerReport {
    /// What the broker carried alone, in messages a second: its highest sustainable
    /// rate (true) if that search found one, else its throughput run's consumed/s.
    pub fn rate_alone(&self) -> Option<(f64, bool)> {
        let sustained = self.sustainable.as_ref().and_then(|s| s.rate_per_s);
        sustained
            .map(|r| (r, true))
            .or_else(|| self.raw.as_ref().map(|r| (r.consume_per_s, false)))
    }

    /// Why a broker has no numbers, for a table cell.
    fn note(&self) -> String {
        format!(
            "{}: {}",
            self.status,
            self.reason.as_deref().unwrap_or("").replace('|', "/")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_say_what_the_numbers_say() {
        let r = RawResult {
            published: 100,
            consumed: 100,
            duplicates: 200,
            ..RawResult::default()
        };
        let v = raw_verdict("redis", &r, true, 3);
        assert!(v.contains("each of the 3 consumers"), "{v}");
        assert!(v.contains("nothing lost"), "{v}");
        let r = RawResult {
            published: 100,
            consumed: 90,
            lost: 10,
            ..RawResult::default()
        };
        let v = raw_verdict("x", &r, false, 1);
        assert!(v.contains("10 of 100 messages lost"), "{v}");
        assert!(v.contains("no duplicates"), "{v}");
    }
}
