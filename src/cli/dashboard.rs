//! The live dashboard from the command line: the `--dashboard` flags of `simulate`
//! and `plays`, and `superhero dashboard`, which watches the game pipeline of other
//! processes on a network broker.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::task::JoinHandle;

use super::metrics::MetricsArgs;
use super::{GlobalArgs, StopSignals, seconds};
use crate::dashboard::pipeline::PipelineFeed;
use crate::dashboard::{Dashboard, Sources};
use crate::net::ConnectionLimits;

/// The live dashboard of a run.
#[derive(Debug, Args)]
#[command(next_help_heading = "Dashboard")]
pub struct DashboardArgs {
    /// Serve the live dashboard during the run (and after it, until Ctrl-C or
    /// SIGTERM); its address is printed on stderr.
    #[arg(long)]
    pub dashboard: bool,
    /// Address the dashboard binds to (read-only; 0.0.0.0 exposes it).
    #[arg(long, value_name = "H", default_value = "127.0.0.1")]
    pub dashboard_host: String,
    /// Port of the dashboard (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 8765)]
    pub dashboard_port: u16,
    /// Open connections the dashboard holds at most; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub dashboard_max_connections: usize,
    /// Seconds a dashboard client has to send a request's headers.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub dashboard_header_timeout: f64,
}

/// Open connections a dashboard holds by default: pages, their event streams and
/// API readers of a few people.
const DEFAULT_MAX_CONNECTIONS: usize = 1_000;

/// The bounds of a dashboard's connections.
fn limits(max_connections: usize, header_timeout: f64) -> Result<ConnectionLimits> {
    let header_timeout = seconds(header_timeout, "the dashboard's header timeout")?;
    if max_connections == 0 || header_timeout.is_zero() {
        bail!("a dashboard needs at least one connection and a header timeout above 0");
    }
    Ok(ConnectionLimits {
        max_connections,
        max_per_peer: 0,
        header_timeout,
    })
}

/// `superhero dashboard`: watches the broker's queues as a group of its own.
#[derive(Debug, Args)]
pub struct DashboardServeArgs {
    /// Address to bind to (read-only; 0.0.0.0 exposes it).
    #[arg(long, value_name = "H", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, value_name = "P", default_value_t = 8765)]
    pub port: u16,
    /// Open connections held at most; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub header_timeout: f64,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// A dashboard being served, until Ctrl-C or SIGTERM.
pub type Serving = JoinHandle<std::io::Result<()>>;

/// Starts the dashboard when asked for and prints its address on stderr.
pub async fn start(args: &DashboardArgs, sources: Sources) -> Result<Option<Serving>> {
    if !args.dashboard {
        return Ok(None);
    }
    let limits = limits(
        args.dashboard_max_connections,
        args.dashboard_header_timeout,
    )?;
    serve(&args.dashboard_host, args.dashboard_port, limits, sources)
        .await
        .map(Some)
}

async fn serve(
    host: &str,
    port: u16,
    limits: ConnectionLimits,
    sources: Sources,
) -> Result<Serving> {
    let page = Dashboard::bind(host, port, sources)
        .await
        .with_context(|| format!("the dashboard cannot listen on {host}:{port}"))?;
    let mut signals = StopSignals::catch();
    eprintln!("dashboard: {}", page.url()?);
    Ok(tokio::spawn(page.serve(limits, async move {
        signals.next().await;
    })))
}

/// Keeps serving a dashboard that was started until Ctrl-C or SIGTERM.
pub async fn stay_up(page: Option<Serving>) -> Result<()> {
    if let Some(page) = page {
        eprintln!("the dashboard stays up until Ctrl-C or SIGTERM");
        page.await.context("serving the dashboard")??;
    }
    Ok(())
}

/// Runs `superhero dashboard`; the exit code says whether it went cleanly.
pub async fn run(args: &DashboardServeArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let metrics = args.metrics.start().await?;
    let Some(broker) = g.network_broker("dashboard").await? else {
        bail!(
            "`dashboard` watches a broker: give one with --broker URL (or LOGGER_MODULE); \
             `simulate --dashboard` and `plays --dashboard` show their own runs"
        );
    };
    metrics.broker("broker", &broker);
    let feed = PipelineFeed::start(broker)
        .await
        .context("the dashboard cannot observe the broker")?;
    let sources = Sources {
        pipeline: Some(feed),
        ..Sources::default()
    };
    let limits = limits(args.max_connections, args.header_timeout)?;
    let page = serve(&args.host, args.port, limits, sources).await?;
    stay_up(Some(page)).await?;
    Ok(ExitCode::SUCCESS)
}
