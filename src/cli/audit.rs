//! `superhero audit [DIR]`: reads the tables back; exits non-zero unless they are clean.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use super::{GlobalArgs, print_summary};
use crate::audit;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The OUTPUT_DIR to audit (default: the global --output-dir).
    pub dir: Option<PathBuf>,
}

/// Runs `superhero audit`; the exit code says whether it went cleanly.
pub async fn run(args: &AuditArgs, g: &GlobalArgs) -> Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| g.output_dir.clone());
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let audit = tokio::task::spawn_blocking(move || audit::audit(&dir)).await??;
    let report = audit.report;
    print_summary(&report, g.json)?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
