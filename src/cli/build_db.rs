//! `superhero build-db`: fills the store's `superheros` hash with a roster, the
//! synthetic one or an import of a file in the Super Hero API format.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::{GlobalArgs, print_summary};
use crate::roster::{self, RosterHero};
use crate::store::{AnyStore, GameStore};

#[derive(Debug, Args)]
pub struct BuildDbArgs {
    #[command(flatten)]
    pub roster: RosterArgs,
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
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                roster::parse_api(&text).with_context(|| format!("importing {}", path.display()))
            }
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
}

/// Runs `superhero build-db`; the exit code says whether it went cleanly.
pub async fn run(args: &BuildDbArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let store = g.open_store().await?;
    let heroes = args.roster.load()?;
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
        source: args.roster.source(),
        first_id: first.id,
        first_name: first.name.clone(),
        first_health: first.hero().health,
        first_attack: first.hero().attack,
    };
    print_summary(&summary, g.json)?;
    Ok(ExitCode::SUCCESS)
}
