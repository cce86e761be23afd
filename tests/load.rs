//! A load test of `sabot serve` (the binary, as users run it): 200 concurrent sessions
//! (tokio-postgres) mix DDL, streaming SELECTs that are cancelled, batch SELECTs on
//! materialized views and small INSERTs, while 4 jobs run, for `SABOT_LOAD_SECONDS` (default
//! 10). A probe session times `SELECT 1` throughout.
//!
//! Asserts: no error other than the cancels; every job still running at the end; the
//! server's peak RSS under 2 GiB. Prints the peak RSS, the p50/p99 of `SELECT 1` and how many
//! statements ran (the figures are measured, not asserted).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const SESSIONS: usize = 200;

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sabot serve` on a free port; its process and port.
fn start_server() -> (ServerProcess, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sabot"))
        .args(["serve", "--listen", "127.0.0.1:0", "--parallelism", "2"])
        .args(["--checkpoint-interval", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sabot serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("the server said where it listens")
            .expect("line");
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break digits.parse().expect("port");
        }
    };
    // Keep draining standard error so the server never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (ServerProcess(child), port)
}

/// Peak resident memory of `pid` (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

async fn connect(port: u16) -> Client {
    let (client, connection) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=sabot dbname=sabot"),
        NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    client
}

const SETUP: &str = "
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
  WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'tps' = '2000',
        'base-time' = '2024-01-01 00:00:00');
CREATE TABLE drain (auction BIGINT, bids BIGINT) WITH ('connector' = 'blackhole');
CREATE TABLE notes (session BIGINT, n BIGINT);
CREATE MATERIALIZED VIEW per_second AS SELECT window_start, COUNT(*) AS bids, MAX(price) AS top
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
  GROUP BY window_start, window_end;
CREATE MATERIALIZED VIEW per_auction AS SELECT auction, window_end, COUNT(*) AS bids
  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND, INTERVAL '5' SECOND))
  GROUP BY auction, window_start, window_end;
INSERT INTO drain SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time),
  INTERVAL '2' SECOND)) GROUP BY auction, window_start, window_end;
INSERT INTO drain SELECT bidder, price FROM bid WHERE price > 1000;
";

/// One session's mix, until `deadline`; counts statements, and returns the first unexpected
/// error.
async fn session(
    port: u16,
    id: usize,
    deadline: Instant,
    done: Arc<AtomicUsize>,
) -> Result<(), String> {
    let client = connect(port).await;
    let mut step = id;
    while Instant::now() < deadline {
        step += 1;
        let result = match step % 5 {
            0 => client
                .simple_query("SELECT COUNT(*), MAX(bids) FROM per_second")
                .await
                .map(drop),
            1 => client
                .simple_query(
                    "SELECT auction, SUM(bids) FROM per_auction GROUP BY auction \
                     ORDER BY 2 DESC LIMIT 3",
                )
                .await
                .map(drop),
            2 => {
                let name = format!("t_{id}_{step}");
                client
                    .batch_execute(&format!(
                        "CREATE TABLE {name} (a BIGINT); INSERT INTO {name} VALUES (1); \
                         DROP TABLE {name}"
                    ))
                    .await
            }
            3 => {
                // A streaming SELECT over the endless stream, cancelled after a moment (again
                // and again: a cancel that arrives before the query runs cancels nothing).
                let cancel = client.cancel_token();
                let (stopped, mut stopping) = tokio::sync::oneshot::channel::<()>();
                let stop = tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = &mut stopping => break,
                            () = tokio::time::sleep(Duration::from_millis(150)) => {
                                let _ = cancel.cancel_query(NoTls).await;
                            }
                        }
                    }
                });
                let result = client
                    .simple_query(
                        "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, \
                         DESCRIPTOR(date_time), INTERVAL '1' SECOND)) \
                         GROUP BY window_start, window_end",
                    )
                    .await;
                let _ = stopped.send(());
                let _ = stop.await;
                match result {
                    Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => Ok(()),
                    other => other.map(drop),
                }
            }
            _ => client
                .simple_query(&format!("INSERT INTO notes VALUES ({id}, {step})"))
                .await
                .map(drop),
        };
        // A cancel still in flight when the streaming SELECT ended lands on the session's next
        // statement (as in PostgreSQL, a cancel request names no statement): still a cancel.
        let result = match result {
            Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => Ok(()),
            other => other,
        };
        if let Err(e) = result {
            let message = e
                .as_db_error()
                .map(|d| format!("{} {}", d.code().code(), d.message()))
                .unwrap_or_else(|| e.to_string());
            return Err(format!("session {id}, step {step}: {message}"));
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_with_running_jobs() {
    let seconds: u64 = std::env::var("SABOT_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let (server, port) = start_server();
    let admin = connect(port).await;
    admin.batch_execute(SETUP).await.expect("setup");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let done = Arc::new(AtomicUsize::new(0));
    let sessions: Vec<_> = (0..SESSIONS)
        .map(|id| tokio::spawn(session(port, id, deadline, Arc::clone(&done))))
        .collect();
    // The probe: SELECT 1 every 20 ms.
    let probe = connect(port).await;
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let start = Instant::now();
        let rows = probe.simple_query("SELECT 1").await.expect("SELECT 1");
        latencies.push(start.elapsed());
        assert!(
            rows.iter()
                .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("1")))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut failures = Vec::new();
    for s in sessions {
        if let Err(e) = s.await.expect("session task") {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} sessions failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let jobs = admin.simple_query("SHOW JOBS").await.expect("SHOW JOBS");
    let states: Vec<String> = jobs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(2).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(states, vec!["running"; 4], "every job still runs");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let peak = peak_rss_mib(server.0.id());
    eprintln!(
        "load: {SESSIONS} sessions for {seconds} s, {} statements, 4 jobs running; SELECT 1 \
         p50 {:.1} ms, p99 {:.1} ms over {} probes; server peak RSS {peak} MiB",
        done.load(Ordering::Relaxed),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies.len()
    );
    assert!(peak < 2048, "the server's peak RSS is {peak} MiB");
}
