//! `superhero player`: bots playing on one or more servers.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::{GlobalArgs, StopRequests, print_summary};
use crate::net::Dial;
use crate::player::{self, PlayerSettings};
use crate::url::redact;

#[derive(Debug, Args)]
pub struct PlayerArgs {
    /// Server to play on; give it several times to spread each bot's connections over
    /// several server instances (lobby on one, actions on the next).
    #[arg(long, env = "SUPERHERO_URL", value_delimiter = ',')]
    pub url: Vec<String>,
    #[arg(long, env = "WEBSOCKET_HOST", default_value = "localhost")]
    pub host: String,
    #[arg(long, env = "WEBSOCKET_PORT", default_value_t = 5678)]
    pub port: u16,
    /// Bots to run in this process.
    #[arg(long, default_value_t = 1)]
    pub bots: usize,
    /// Games each bot plays (-1: no limit).
    #[arg(
        long,
        env = "CLIENT_GAMES",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub games: i64,
    /// Bots in a game at once, at most; the others wait their turn, first come first
    /// served (0: all at once).
    #[arg(long, value_name = "N", default_value_t = player::CONCURRENT_BOTS)]
    pub concurrent_bots: usize,
    /// Seed of the bots' choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of the first bot's user name (`USER%03d`).
    #[arg(long, default_value_t = 0)]
    pub first_user: usize,
    /// These bots are the only players on the servers: leave a lobby at once when too
    /// few of them still play to fill it, instead of waiting out the lobby timeout.
    #[arg(long)]
    pub closed_world: bool,
    /// Seconds a bot waits for any one message from a server before it counts the
    /// connection as lost and stops (a lobby waits through the other players' turns:
    /// keep it above the servers' turn timeout times the players in a game).
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    pub idle_timeout: f64,
}

impl TryFrom<&PlayerArgs> for PlayerSettings {
    type Error = anyhow::Error;

    fn try_from(args: &PlayerArgs) -> Result<Self> {
        if args.bots == 0 {
            bail!("--bots must be at least 1");
        }
        let urls = if args.url.is_empty() {
            vec![format!("ws://{}:{}", args.host, args.port)]
        } else {
            args.url.clone()
        };
        if let Some(bad) = urls.iter().find(|u| !u.starts_with("ws://")) {
            bail!(
                "--url must start with ws:// (TLS is not built in: put a TLS proxy in \
                 front of the server), not {}",
                redact(bad)
            );
        }
        let idle_timeout = super::seconds(args.idle_timeout, "--idle-timeout")?;
        if idle_timeout.is_zero() {
            bail!("--idle-timeout must be more than 0 seconds");
        }
        Ok(Self {
            idle_timeout,
            servers: urls.into_iter().map(Dial::Url).collect(),
            bots: args.bots,
            games: args.games,
            seed: args.seed,
            first_user: args.first_user,
            closed_world: args.closed_world,
            concurrent_bots: args.concurrent_bots,
            ..Self::default()
        })
    }
}

/// Runs `superhero player`; the exit code says whether it went cleanly.
pub async fn run(args: &PlayerArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let settings = PlayerSettings::try_from(args)?;
    super::check_bots_fit(settings.bots, false)?;
    let stop = StopRequests::follow("the bots finish their games, then stop");
    let servers: Vec<String> = settings
        .servers
        .iter()
        .map(|s| redact(&s.to_string()))
        .collect();
    eprintln!(
        "superhero player: {} bots playing on {}",
        settings.bots,
        servers.join(", ")
    );
    let summary = player::run(PlayerSettings {
        stop: Some(stop.watch()),
        ..settings
    })
    .await;
    drop(stop);
    print_summary(&summary, g.json)?;
    Ok(if summary.bot_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
