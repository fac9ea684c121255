//! The `superhero` command: reads the command line and hands it to its command in
//! [`superhero::cli`]; everything else lives in the library.

use std::process::ExitCode;

use superhero::cli::{self, Cli, Command};

// Many small allocations per message: mimalloc serves them faster than the system's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A .env file fills in variables that are not already set, as in the original.
    let _ = dotenvy::dotenv();
    let cli = Cli::from_args();
    let level = cli
        .global
        .log_level
        .as_deref()
        .unwrap_or(cli.command.default_log_level());
    // With --json, stdout is the summary alone, for a program to read.
    let to_stderr = cli.command.logs_to_stderr() || cli.global.json;
    cli::init_logging(level, to_stderr);
    // Sockets count against the open-file limit: take all the system allows.
    if let Err(e) = superhero::net::raise_file_limit() {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = match cli.global.runtime(cores) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command the command line names.
async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match &cli.command {
        Command::BuildDb(args) => cli::build_db::run(args, g).await,
        Command::Server(args) => cli::server::run(args, g).await,
        Command::Player(args) => cli::player::run(args, g).await,
        Command::Worker(args) => cli::worker::run(args, g).await,
        Command::Simulate(args) => cli::simulate::run(args, g).await,
        Command::Audit(args) => cli::audit::run(args, g).await,
        Command::Fanout(args) => cli::fanout::run(args, g).await,
        Command::Bench(args) => cli::bench::run(args, g).await,
        Command::BenchConsumer(args) => cli::bench::consume(args, g).await,
        Command::Plays(args) => cli::plays::run(args, g).await,
        Command::Dashboard(args) => cli::dashboard::run(args, g).await,
    }
}
