//! The `sabot` command: `sabot run FILE.sql` (see `sabot --help`).

use std::io::Read;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use sabot::cli::bench;
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
        /// Checkpoint into this directory and, when it holds checkpoints of an interrupted
        /// run, resume from the newest one (exactly-once output into filesystem sinks).
        #[arg(long)]
        state_dir: Option<String>,
        /// Memory all queries and jobs may hold, such as `4GB`, `512MiB` or `60%` of the
        /// machine's; a query or job that would exceed it fails (SQLSTATE 53200). Default:
        /// half of the machine's memory.
        #[arg(long)]
        memory_limit: Option<String>,
    },
    /// Serve SQL over the Postgres wire protocol (psql, JDBC, psycopg, tokio-postgres).
    Serve {
        /// Address to listen on (port 0: any free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:5433")]
        listen: String,
        /// Serve operator and job metrics in the Prometheus text format at
        /// `http://ADDR/metrics`, such as `127.0.0.1:9187` (port 0: any free port; printed).
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Parallel tasks per source and keyed operator for new sessions (default: CPU cores).
        #[arg(long)]
        parallelism: Option<usize>,
        /// Barrier interval of jobs, such as `10s`; `0` disables barriers.
        #[arg(long)]
        checkpoint_interval: Option<String>,
        /// Checkpoint jobs into this directory, and remember tables, views and jobs there
        /// across restarts.
        #[arg(long)]
        state_dir: Option<String>,
        /// Memory all queries and jobs may hold, such as `4GB`, `512MiB` or `60%` of the
        /// machine's; a query or job that would exceed it fails (SQLSTATE 53200). Default:
        /// half of the machine's memory.
        #[arg(long)]
        memory_limit: Option<String>,
        /// User clients log in as when a password is set.
        #[arg(long, default_value = "sabot")]
        user: String,
        /// File holding the password (SCRAM-SHA-256) clients must give; the SABOT_PASSWORD
        /// environment variable works too. Without either, any client is trusted.
        #[arg(long)]
        password_file: Option<String>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        suite: BenchSuite,
    },
}

#[derive(Subcommand)]
enum BenchSuite {
    /// Nexmark queries over the built-in generator, into a blackhole sink.
    Nexmark {
        /// Queries to run, comma-separated: q0, q1, q2, q5, q5-agg, q7, q7-agg, q8, q11, q13, q14,
        /// q15, q16, q17, q21, q22, and the updating queries u1, u2, u3 (default: all;
        /// benches/nexmark/README.md lists them).
        #[arg(long)]
        query: Option<String>,
        /// Nexmark events per run (all kinds; 46 of 50 are bids).
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Events per second of event time (sets how many windows the run spans).
        #[arg(long, default_value_t = 100_000)]
        tps: u64,
        /// Parallel tasks (1 measures one core).
        #[arg(long, default_value_t = 1)]
        parallelism: usize,
        /// Checkpoint at this interval (e.g. `10s`) into a temporary directory.
        #[arg(long)]
        checkpoint_interval: Option<String>,
        /// `state.backend`: `memory` or `rocksdb` (window state on local disk).
        #[arg(long, default_value = "memory")]
        backend: String,
        /// Where the events come from: `generator` (built in), or `kafka` (loaded into topics
        /// of a mock Kafka cluster first, as JSON; the run measures consume, decode, query).
        #[arg(long, default_value = "generator")]
        source: String,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<String>,
    },
    /// The Kafka connector: produce Nexmark bids as JSON into an out-of-process mock
    /// cluster, then consume and decode them.
    Kafka {
        /// Kafka records (bids) to produce and consume.
        #[arg(long, default_value_t = 500_000)]
        records: u64,
        /// Partitions of the topic (the mock cluster keeps 5 MB per partition).
        #[arg(long, default_value_t = 32)]
        partitions: i32,
        /// Parallel tasks (1 measures one core).
        #[arg(long, default_value_t = 1)]
        parallelism: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<String>,
    },
    /// The broadcast join: a datagen stream joined with an in-memory dimension table.
    Join {
        /// Stream rows.
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        /// Rows of the dimension table.
        #[arg(long, default_value_t = 10_000)]
        table_rows: u64,
        /// Parallel tasks (1 measures one core).
        #[arg(long, default_value_t = 1)]
        parallelism: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<String>,
    },
    /// Checkpoints of large keyed window state: duration and size.
    Checkpoint {
        /// Keys in the window state.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Checkpoint interval, e.g. `2s`.
        #[arg(long, default_value = "2s")]
        interval: String,
        /// Checkpoints to measure once the state is full.
        #[arg(long, default_value_t = 3)]
        checkpoints: usize,
        /// `state.backend`: `memory` or `rocksdb`.
        #[arg(long, default_value = "memory")]
        backend: String,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<String>,
    },
    /// The mock cluster of `sabot bench kafka`, run in its own process.
    #[command(hide = true)]
    KafkaBroker {
        #[arg(long, default_value_t = 32)]
        partitions: i32,
        /// Topics to create, comma-separated.
        #[arg(long, default_value = "bids")]
        topics: String,
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
                state_dir,
                memory_limit,
            } => {
                let settings = Settings {
                    parallelism,
                    checkpoint_interval,
                    state_dir,
                    memory_limit,
                };
                run(file, format, settings).await
            }
            Command::Serve {
                listen,
                metrics_listen,
                parallelism,
                checkpoint_interval,
                state_dir,
                memory_limit,
                user,
                password_file,
            } => {
                let password = match password_file {
                    Some(path) => match std::fs::read_to_string(&path) {
                        Ok(text) => Some(text.trim_end_matches(['\n', '\r']).to_string()),
                        Err(e) => {
                            eprintln!("error: cannot read the password file {path}: {e}");
                            return ExitCode::FAILURE;
                        }
                    },
                    None => std::env::var("SABOT_PASSWORD")
                        .ok()
                        .filter(|p| !p.is_empty()),
                };
                let login = password.map(|p| (user, p));
                let settings = Settings {
                    parallelism,
                    checkpoint_interval,
                    state_dir,
                    memory_limit,
                };
                serve(listen, metrics_listen, settings, login).await
            }
            Command::Bench {
                suite:
                    BenchSuite::Nexmark {
                        query,
                        events,
                        tps,
                        parallelism,
                        checkpoint_interval,
                        backend,
                        source,
                        json,
                    },
            } => {
                let mut config = sabot::SabotConfig::default();
                if let Err(e) = sabot::config::Setting::StateBackend.apply(&mut config, &backend) {
                    eprintln!("error: --backend: {e}");
                    return ExitCode::FAILURE;
                }
                let source = match source.as_str() {
                    "generator" => bench::Source::Generator,
                    "kafka" => bench::Source::Kafka,
                    other => {
                        eprintln!("error: --source must be 'generator' or 'kafka', got '{other}'");
                        return ExitCode::FAILURE;
                    }
                };
                let interval = match checkpoint_interval.as_deref() {
                    None => None,
                    Some(text) => match sabot::config::parse_duration(text) {
                        Some(d) if !d.is_zero() => Some(d),
                        _ => {
                            eprintln!(
                                "error: --checkpoint-interval must be a duration such as \
                                 '10s', got '{text}'"
                            );
                            return ExitCode::FAILURE;
                        }
                    },
                };
                let run = bench::RunConfig {
                    parallelism,
                    checkpoint_interval: interval,
                    backend: config.state_backend,
                };
                bench_nexmark(query, events, tps, run, source, json).await
            }
            Command::Bench {
                suite:
                    BenchSuite::Kafka {
                        records,
                        partitions,
                        parallelism,
                        json,
                    },
            } => bench_kafka(records, partitions, parallelism, json).await,
            Command::Bench {
                suite:
                    BenchSuite::Join {
                        rows,
                        table_rows,
                        parallelism,
                        json,
                    },
            } => {
                eprintln!("join: {rows} rows, {table_rows} table rows, parallelism {parallelism}");
                match sabot::cli::bench_join::bench(rows, table_rows, parallelism).await {
                    Ok(results) => print_results(&results, json),
                    Err(e) => {
                        eprintln!("error: join: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Bench {
                suite:
                    BenchSuite::Checkpoint {
                        keys,
                        interval,
                        checkpoints,
                        backend,
                        json,
                    },
            } => bench_checkpoint(keys, &interval, checkpoints, &backend, json).await,
            Command::Bench {
                suite: BenchSuite::KafkaBroker { partitions, topics },
            } => match sabot::cli::bench_kafka::serve_mock_broker(
                &topics.split(',').map(str::trim).collect::<Vec<_>>(),
                partitions,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

/// Settings `sabot run` and `sabot serve` share.
struct Settings {
    parallelism: Option<usize>,
    checkpoint_interval: Option<String>,
    state_dir: Option<String>,
    memory_limit: Option<String>,
}

/// Settings from the command line.
fn config_from(settings: Settings) -> Result<SabotConfig, String> {
    let mut config = SabotConfig::default();
    if let Some(p) = settings.parallelism {
        Setting::Parallelism
            .apply(&mut config, &p.to_string())
            .map_err(|e| e.to_string())?;
    }
    if let Some(interval) = settings.checkpoint_interval {
        Setting::CheckpointInterval
            .apply(&mut config, &interval)
            .map_err(|e| e.to_string())?;
    }
    if let Some(dir) = settings.state_dir {
        config.state_dir = Some(dir);
    }
    config.memory_limit = match settings.memory_limit {
        Some(text) => Some(sabot::config::parse_memory_size(&text).ok_or_else(|| {
            format!("--memory-limit must be a size such as '4GB', '512MiB' or '60%', got '{text}'")
        })?),
        None => sabot::config::machine_memory()
            .map(|m| (m as f64 * sabot::config::DEFAULT_MEMORY_SHARE) as usize),
    };
    Ok(config)
}

async fn serve(
    listen: String,
    metrics_listen: Option<String>,
    settings: Settings,
    login: Option<(String, String)>,
) -> ExitCode {
    if let Some(dir) = &settings.state_dir
        && dir.contains("://")
        && !dir.starts_with("file://")
    {
        // The server keeps its catalog next to the checkpoints, in a local file.
        eprintln!(
            "error: sabot serve --state-dir must be a local directory, got '{dir}' (s3:// \
             locations work for `sabot run` and for SET 'state.dir' in a session)"
        );
        return ExitCode::FAILURE;
    }
    let config = match config_from(settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listen = match listen.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("error: --listen must be an address such as 127.0.0.1:5433, got '{listen}'");
            return ExitCode::FAILURE;
        }
    };
    let metrics_listen = match metrics_listen.map(|m| (m.parse(), m)) {
        None => None,
        Some((Ok(address), _)) => Some(address),
        Some((Err(_), text)) => {
            eprintln!(
                "error: --metrics-listen must be an address such as 127.0.0.1:9187, got '{text}'"
            );
            return ExitCode::FAILURE;
        }
    };
    match sabot::server::serve(sabot::server::ServeOptions {
        listen,
        config,
        login,
        metrics_listen,
    })
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(file: String, format: OutputFormat, settings: Settings) -> ExitCode {
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
    let config = match config_from(settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
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

async fn bench_nexmark(
    query: Option<String>,
    events: u64,
    tps: u64,
    run: bench::RunConfig,
    source: bench::Source,
    json: Option<String>,
) -> ExitCode {
    let parallelism = run.parallelism;
    let queries: Vec<String> = match query {
        Some(q) => q.split(',').map(|s| s.trim().to_string()).collect(),
        None => bench::QUERIES.iter().map(|(n, _)| n.to_string()).collect(),
    };
    let mut results = Vec::new();
    for q in &queries {
        eprintln!("{q}: {events} events, parallelism {parallelism}");
        // Several queries run one process each, so that each peak RSS is its own.
        let result = if queries.len() > 1 {
            bench_in_child(q, events, tps, run, source)
        } else {
            bench_one(q, events, tps, run, source)
                .await
                .map_err(|e| e.to_string())
        };
        match result {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("error: {q}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    print_results(&results, json)
}

/// One query of `sabot bench nexmark`, over the generator or over Kafka.
async fn bench_one(
    query: &str,
    events: u64,
    tps: u64,
    run: bench::RunConfig,
    source: bench::Source,
) -> datafusion::common::Result<bench::BenchResult> {
    match source {
        bench::Source::Generator => bench::bench(query, events, tps, run).await,
        bench::Source::Kafka => {
            let script = bench::query_script(query, events, tps)?;
            sabot::cli::bench_kafka::nexmark_over_kafka(query, &script, events, tps, run).await
        }
    }
}

/// Runs one query of `sabot bench nexmark` in a child process of this binary and reads its
/// result back.
fn bench_in_child(
    query: &str,
    events: u64,
    tps: u64,
    run: bench::RunConfig,
    source: bench::Source,
) -> Result<bench::BenchResult, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let json =
        std::env::temp_dir().join(format!("sabot-bench-{}-{query}.json", std::process::id()));
    let mut command = std::process::Command::new(exe);
    command.args(["bench", "nexmark", "--query", query]);
    command.args(["--events", &events.to_string(), "--tps", &tps.to_string()]);
    command.args(["--parallelism", &run.parallelism.to_string()]);
    if run.backend == sabot::config::StateBackend::RocksDb {
        command.args(["--backend", "rocksdb"]);
    }
    if let Some(interval) = run.checkpoint_interval {
        command.args([
            "--checkpoint-interval",
            &format!("{}ms", interval.as_millis()),
        ]);
    }
    let source = match source {
        bench::Source::Generator => "generator",
        bench::Source::Kafka => "kafka",
    };
    command.args(["--source", source, "--json"]).arg(&json);
    // The child's table goes nowhere; its progress and errors to this process's stderr.
    command.stdout(std::process::Stdio::null());
    let status = command
        .status()
        .map_err(|e| format!("cannot run the benchmark: {e}"))?;
    if !status.success() {
        return Err(format!("the benchmark process failed ({status})"));
    }
    let text = std::fs::read_to_string(&json).map_err(|e| format!("no result: {e}"));
    let _ = std::fs::remove_file(&json);
    let text = text?;
    let mut results: Vec<bench::BenchResult> =
        serde_json::from_str(&text).map_err(|e| format!("unreadable result: {e}"))?;
    results.pop().ok_or_else(|| "no result".to_string())
}

async fn bench_kafka(
    records: u64,
    partitions: i32,
    parallelism: usize,
    json: Option<String>,
) -> ExitCode {
    eprintln!("kafka: {records} records, {partitions} partitions, parallelism {parallelism}");
    match sabot::cli::bench_kafka::bench(records, partitions, parallelism).await {
        Ok(results) => print_results(&results, json),
        Err(e) => {
            eprintln!("error: kafka: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench_checkpoint(
    keys: u64,
    interval: &str,
    checkpoints: usize,
    backend: &str,
    json: Option<String>,
) -> ExitCode {
    let Some(interval) = sabot::config::parse_duration(interval) else {
        eprintln!("error: --interval must be a duration such as '2s', got '{interval}'");
        return ExitCode::FAILURE;
    };
    let mut config = sabot::SabotConfig::default();
    if let Err(e) = sabot::config::Setting::StateBackend.apply(&mut config, backend) {
        eprintln!("error: --backend: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "checkpoint: {keys} keys, every {} ms, state.backend {backend}",
        interval.as_millis()
    );
    let (results, recovery) = match sabot::cli::bench_checkpoint::bench(
        keys,
        interval,
        checkpoints,
        config.state_backend,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: checkpoint: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", sabot::cli::bench_checkpoint::format_table(&results));
    println!(
        "recovery: checkpoint {} restored, job running again after {:.1} ms",
        recovery.epoch, recovery.recovery_ms
    );
    if let Some(path) = json {
        let both = serde_json::json!({ "checkpoints": results, "recovery": recovery });
        let written = serde_json::to_string_pretty(&both)
            .map_err(|e| e.to_string())
            .and_then(|t| std::fs::write(&path, t).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("error: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Each result of a JSON array with where it comes from: the command, the date (UTC), the
/// machine (CPU model and cores) and the Sabot version, for tables generated from it.
fn with_provenance(mut results: serde_json::Value) -> serde_json::Value {
    let command = std::env::args()
        .skip(1)
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>();
    let command = format!("sabot {}", command.join(" "));
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let machine = format!("{cpu}, {cores} cores");
    if let Some(items) = results.as_array_mut() {
        for item in items {
            if let Some(object) = item.as_object_mut() {
                object.insert("command".into(), command.clone().into());
                object.insert("date".into(), date.clone().into());
                object.insert("machine".into(), machine.clone().into());
                object.insert("version".into(), env!("CARGO_PKG_VERSION").into());
            }
        }
    }
    results
}

fn print_results(results: &[bench::BenchResult], json: Option<String>) -> ExitCode {
    print!("{}", bench::format_table(results));
    if let Some(path) = json {
        let text = match serde_json::to_value(results)
            .map(with_provenance)
            .and_then(|v| serde_json::to_string_pretty(&v))
        {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot encode results: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
