//! `superhero build-db`: fills the store's `superheros` hash with a roster, the
//! synthetic one, an import of a file in the Super Hero API format, or the collection
//! pulled from the API itself (`--pull`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::{GlobalArgs, print_summary, seconds};
use crate::roster::pull::{self, API_URL, PullSettings};
use crate::roster::{self, RosterHero};
use crate::store::{AnyStore, GameStore};

#[derive(Debug, Args)]
pub struct BuildDbArgs {
    #[command(flatten)]
    pub roster: RosterArgs,
    #[command(flatten)]
    pub pull: PullArgs,
}

/// `--pull`: the collection from the Super Hero API.
#[derive(Debug, Args)]
#[command(next_help_heading = "Pull")]
pub struct PullArgs {
    /// Fetch the collection from the Super Hero API with the token in API_TOKEN (the
    /// environment or .env), write it to --to, then load it; `--from FILE` reuses the
    /// file later without the network.
    #[arg(long, conflicts_with = "from")]
    pub pull: bool,
    /// Where --pull writes the collection (replaced in one step).
    #[arg(long, value_name = "FILE", default_value = "superhero.json")]
    pub to: PathBuf,
    /// The API's address, before `/<token>/<id>`.
    #[arg(long, value_name = "URL", default_value = API_URL)]
    pub api_url: String,
    /// Seconds one request may take before it is retried.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub api_timeout: f64,
    /// Write and load the collection even if some ids failed after every retry
    /// (they are listed); without it nothing is written then.
    #[arg(long)]
    pub allow_gaps: bool,
}

impl PullArgs {
    /// Pulls the collection, writes it to `--to` and reads it back as a roster; the
    /// ids that failed, when `--allow-gaps` let them.
    async fn pull(&self) -> Result<(Vec<RosterHero>, Vec<u32>)> {
        let token = std::env::var("API_TOKEN").unwrap_or_default();
        if token.trim().is_empty() {
            bail!(
                "--pull needs your Super Hero API token in API_TOKEN (the environment or a \
                 .env file): register at https://superheroapi.com to get one"
            );
        }
        let settings = PullSettings {
            base_url: self.api_url.clone(),
            timeout: seconds(self.api_timeout, "--api-timeout")?,
            ..PullSettings::new(token.trim().to_string())
        };
        if settings.timeout.is_zero() {
            bail!("--api-timeout must be more than 0 seconds");
        }
        let bar = indicatif::ProgressBar::new_spinner().with_message("pulling heroes");
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let pulled = pull::pull(&settings, |id| bar.set_message(format!("hero {id}")));
        let pulled = pulled.await;
        bar.finish_and_clear();
        let pulled = pulled?;
        let failed: Vec<u32> = pulled.failed.iter().map(|(id, _)| *id).collect();
        if let Some((_, why)) = pulled.failed.last()
            && !self.allow_gaps
        {
            bail!(
                "ids {failed:?} failed after every retry (the last: {why}); nothing written to \
                 {}: run again, or add --allow-gaps to keep the {} heroes pulled",
                self.to.display(),
                pulled.heroes.len()
            );
        }
        let text = serde_json::to_vec_pretty(&pulled.heroes)?;
        pull::write_atomically(&self.to, &text)
            .with_context(|| format!("writing {}", self.to.display()))?;
        eprintln!(
            "pulled {} heroes into {}",
            pulled.heroes.len(),
            self.to.display()
        );
        Ok((read_roster(&self.to)?, failed))
    }
}

/// A file in the Super Hero API format, as a roster.
fn read_roster(path: &Path) -> Result<Vec<RosterHero>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    roster::parse_api(&text).with_context(|| format!("importing {}", path.display()))
}

/// Where a roster comes from (`build-db`, and `server` on the embedded store).
#[derive(Debug, Args)]
#[command(next_help_heading = "Roster")]
pub struct RosterArgs {
    /// Import a file in the Super Hero API format instead of the synthetic roster.
    #[arg(long = "from", value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Heroes in the synthetic roster (at least 3).
    #[arg(long, default_value_t = 732)]
    pub heroes: u32,
    /// Seed of the synthetic roster.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl RosterArgs {
    /// Reads the file, or makes the synthetic roster.
    pub fn load(&self) -> Result<Vec<RosterHero>> {
        match &self.from {
            Some(path) => read_roster(path),
            None => {
                if self.heroes < 3 {
                    bail!(
                        "--heroes must be at least 3 so that games of 2 and 3 players can be dealt heroes"
                    );
                }
                Ok(roster::synthetic(self.heroes, self.seed))
            }
        }
    }

    fn source(&self) -> String {
        match &self.from {
            Some(p) => p.display().to_string(),
            None => format!("synthetic (seed {})", self.seed),
        }
    }
}

/// The `build-db --json` summary.
#[derive(Serialize)]
struct BuildDbSummary {
    heroes: usize,
    source: String,
    first_id: u32,
    first_name: String,
    first_health: u64,
    first_attack: u64,
    /// With `--pull --allow-gaps`: the ids missing from the collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_ids: Option<Vec<u32>>,
}

/// Runs `superhero build-db`; the exit code says whether it went cleanly.
pub async fn run(args: &BuildDbArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let store = g.open_store().await?;
    let (heroes, failed_ids, source) = if args.pull.pull {
        let (heroes, failed) = args.pull.pull().await?;
        let source = format!("{} (pulled)", args.pull.to.display());
        (heroes, Some(failed), source)
    } else {
        (args.roster.load()?, None, args.roster.source())
    };
    store
        .replace_roster(&heroes)
        .await
        .context("writing the roster")?;
    if let AnyStore::Memory(_) = store {
        eprintln!(
            "note: the embedded store lives in this process only; use --store redis to keep the roster"
        );
    }
    let first = &heroes[0];
    let summary = BuildDbSummary {
        heroes: heroes.len(),
        source,
        failed_ids,
        first_id: first.id,
        first_name: first.name.clone(),
        first_health: first.hero().health,
        first_attack: first.hero().attack,
    };
    print_summary(&summary, g.json)?;
    Ok(ExitCode::SUCCESS)
}
