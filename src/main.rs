//! The `sabot` command: `sabot run FILE.sql` (see `sabot --help`).

use std::io::Read;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use sabot::cli::output::OutputFormat;
use sabot::cli::run::{CurrentJob, report_progress, run_script, summary};
use sabot::config::{SabotConfig, Setting};

#[derive(Parser)]
#[command(name = "sabot", version, about = "Streaming SQL on Apache DataFusion")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a SQL script: statements in order, queries print their rows as windows close.
    Run {
        /// The script, or `-` to read it from standard input.
        file: String,
        /// How to print rows: table, csv or json (one object per line).
        #[arg(long, default_value = "table")]
        format: OutputFormat,
        /// Parallel tasks per source and keyed operator (default: CPU cores).
        #[arg(long)]
        parallelism: Option<usize>,
        /// Barrier interval such as `10s` or `500ms`; `0` disables barriers.
        #[arg(long)]
        checkpoint_interval: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run {
                file,
                format,
                parallelism,
                checkpoint_interval,
            } => run(file, format, parallelism, checkpoint_interval).await,
        }
    })
}

async fn run(
    file: String,
    format: OutputFormat,
    parallelism: Option<usize>,
    checkpoint_interval: Option<String>,
) -> ExitCode {
    let script = if file == "-" {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("error: cannot read the script from standard input: {e}");
            return ExitCode::FAILURE;
        }
        text
    } else {
        match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: cannot read {file}: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let mut config = SabotConfig::default();
    if let Some(p) = parallelism
        && let Err(e) = Setting::Parallelism.apply(&mut config, &p.to_string())
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(interval) = checkpoint_interval
        && let Err(e) = Setting::CheckpointInterval.apply(&mut config, &interval)
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let ctx = sabot::session_context(config);
    let current: CurrentJob = Arc::new(Mutex::new(None));
    let progress = tokio::spawn(report_progress(Arc::clone(&current)));
    let outcome = tokio::select! {
        result = run_script(&ctx, &script, format, &current) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => {
            // Dropping the script future cancels the running job; sinks discard unfinished files.
            if let Some((job, started)) = current.lock().ok().and_then(|c| c.clone()) {
                eprintln!("\nstopped by Ctrl-C; {}", summary(&job, started.elapsed()));
            } else {
                eprintln!("\nstopped by Ctrl-C");
            }
            ExitCode::from(130)
        }
    };
    progress.abort();
    outcome
}
