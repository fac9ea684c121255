//! `superhero plays`: the video plays scenario, with the original driver's options
//! (its single-dash names work too: [`expand_names`]).

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::dashboard::{self, DashboardArgs};
use super::metrics::MetricsArgs;
use super::{GlobalArgs, print_summary, seconds};
use crate::dashboard::Sources;
use crate::plays::{self, PlaysSettings, feed::PlaysFeed};

/// The original driver's options; its single-dash names (`-nt 4`) work too.
#[derive(Debug, Args)]
pub struct PlaysArgs {
    /// Consumer threads of the processor (-nt).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Play messages to produce (-nm).
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Videos, with UUID ids (-nv).
    #[arg(long, default_value_t = 100)]
    pub videos: usize,
    /// Seconds between publications of videos at 100 plays and over (-ui).
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    pub update_interval: f64,
    /// Producers per consumer thread (-pcr).
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub pc_ratio: usize,
    /// Produce and consume at the same time, instead of enqueueing everything first.
    #[arg(short = 'r', long)]
    pub real_life: bool,
    /// Seed of the video ids and of which video each message plays.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seconds to wait for messages that do not come before counting them as lost.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub idle_timeout: f64,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

impl TryFrom<&PlaysArgs> for PlaysSettings {
    type Error = anyhow::Error;

    fn try_from(args: &PlaysArgs) -> Result<Self> {
        if args.threads == 0 {
            bail!("--threads must be at least 1");
        }
        if args.videos == 0 {
            bail!("--videos must be at least 1");
        }
        if args.pc_ratio == 0 {
            bail!("--pc-ratio must be at least 1 producer per consumer thread");
        }
        let update_interval = seconds(args.update_interval, "--update-interval")?;
        if update_interval.is_zero() {
            bail!("--update-interval must be more than 0 seconds");
        }
        Ok(Self {
            threads: args.threads,
            messages: args.messages,
            videos: args.videos,
            update_interval,
            pc_ratio: args.pc_ratio,
            real_life: args.real_life,
            seed: args.seed,
            idle: seconds(args.idle_timeout, "--idle-timeout")?,
            topic: None,
        })
    }
}

/// Runs `superhero plays`; the exit code says whether it went cleanly.
pub async fn run(args: &PlaysArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let settings = PlaysSettings::try_from(args)?;
    let metrics = args.metrics.start().await?;
    let broker = g.local_broker().await?;
    metrics.broker("broker", &broker);
    let feed = PlaysFeed::new();
    let sources = Sources {
        plays: Some(feed.clone()),
        ..Sources::default()
    };
    let page = dashboard::start(&args.dashboard, sources).await?;
    let summary = plays::run(broker, &settings, feed)
        .await
        .context("running the plays scenario")?;
    print_summary(&summary, g.json)?;
    let counted = summary.messages_lost == 0 && summary.counts_published;
    if !counted {
        eprintln!(
            "error: {} of {} messages were never counted",
            summary.messages_lost, summary.messages_produced
        );
    }
    dashboard::stay_up(page).await?;
    Ok(if counted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The original plays driver's single-dash option names, and ours.
const SHORT_NAMES: [(&str, &str); 5] = [
    ("-nt", "--threads"),
    ("-nm", "--messages"),
    ("-nv", "--videos"),
    ("-ui", "--update-interval"),
    ("-pcr", "--pc-ratio"),
];

/// Rewrites the original driver's `-nt 4`, `-nm=500` and the like after `plays` into
/// their long names, which clap can parse (its short options are one letter).
pub fn expand_names(args: Vec<OsString>) -> Vec<OsString> {
    let Some(at) = args.iter().position(|a| a == "plays") else {
        return args;
    };
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            if i <= at {
                return arg;
            }
            let Some(text) = arg.to_str() else {
                return arg;
            };
            let (name, value) = match text.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (text, None),
            };
            match SHORT_NAMES.iter().find(|(short, _)| *short == name) {
                Some((_, long)) => match value {
                    Some(v) => format!("{long}={v}").into(),
                    None => (*long).into(),
                },
                None => arg,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn the_original_plays_options_parse() {
        let args = [
            "superhero",
            "--json",
            "plays",
            "-nt",
            "4",
            "-nm=500",
            "-pcr",
            "2",
            "-r",
        ]
        .map(OsString::from)
        .to_vec();
        let cli = Cli::try_parse_from(expand_names(args)).unwrap();
        let Command::Plays(p) = cli.command else {
            panic!("not plays: {:?}", cli.command);
        };
        assert_eq!((p.threads, p.messages, p.pc_ratio), (4, 500, 2));
        assert!(p.real_life);
        assert_eq!((p.videos, p.update_interval), (100, 30.0));
        // Elsewhere the names mean nothing special.
        let args = ["superhero", "simulate", "-nt"]
            .map(OsString::from)
            .to_vec();
        assert_eq!(expand_names(args.clone()), args);
    }

    #[test]
    fn impossible_plays_are_refused() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["superhero", "plays"];
            argv.extend_from_slice(extra);
            let Command::Plays(p) = Cli::try_parse_from(argv).unwrap().command else {
                unreachable!("plays parses as plays")
            };
            PlaysSettings::try_from(&p)
        };
        assert!(parse(&[]).is_ok());
        assert!(parse(&["--threads", "0"]).is_err());
        assert!(parse(&["--update-interval", "0"]).is_err());
        assert!(parse(&["--pc-ratio", "0"]).is_err());
    }
}
