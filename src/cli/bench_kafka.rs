//! `sabot bench kafka`: the Kafka connector's produce and consume paths, measured.
//!
//! A librdkafka mock cluster runs in a child process (`sabot bench kafka-broker`, hidden), so
//! the CPU time measured here (`getrusage` of this process) is the engine's and the client's,
//! not the broker's. Two runs:
//! 1. produce: Nexmark bids (about 250 bytes of JSON each) written by the Kafka sink
//!    (`INSERT INTO kafka_table SELECT ... FROM nexmark`), at-least-once;
//! 2. consume: the topic read back by the Kafka source, decoded into Arrow, into a blackhole.
//!
//! The mock cluster keeps at most 5 MB per partition, so records are spread over enough
//! partitions (`--partitions`) to fit.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use datafusion::common::{DataFusionError, Result, exec_err, plan_err};
use futures::StreamExt;

use super::bench::{BenchResult, usage};
use crate::SabotConfig;
use crate::runtime::job::{JobOptions, Started, start_job};

/// Bytes the mock cluster keeps per partition.
const MOCK_PARTITION_BYTES: u64 = 5 * 1024 * 1024;

/// Approximate size of one bid record (JSON plus record overhead).
const BID_BYTES: u64 = 300;

/// Runs the mock cluster of the benchmark: prints its bootstrap servers, then serves until
/// standard input closes.
pub fn serve_mock_broker(topic: &str, partitions: i32) -> Result<()> {
    let cluster = rdkafka::mocking::MockCluster::new(1)
        .map_err(|e| DataFusionError::Execution(format!("cannot start a mock cluster: {e}")))?;
    cluster
        .create_topic(topic, partitions, 1)
        .map_err(|e| DataFusionError::Execution(format!("cannot create topic {topic}: {e}")))?;
    println!("{}", cluster.bootstrap_servers());
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    Ok(())
}

/// The broker child process, stopped on drop.
struct BrokerProcess {
    child: std::process::Child,
    servers: String,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn start_broker(partitions: i32) -> Result<BrokerProcess> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "bench",
            "kafka-broker",
            "--partitions",
            &partitions.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let Some(stdout) = child.stdout.take() else {
        return exec_err!("the mock broker has no standard output");
    };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let servers = line.trim().to_string();
    if servers.is_empty() {
        let _ = child.kill();
        return exec_err!("the mock broker did not start");
    }
    Ok(BrokerProcess { child, servers })
}

/// Runs the last statement of `script` as a measured job.
async fn measured(
    name: &str,
    script: &str,
    parallelism: usize,
    records: u64,
) -> Result<BenchResult> {
    let ctx = crate::session_context(SabotConfig {
        parallelism,
        batch_size: 8192,
        checkpoint_interval: None,
        ..SabotConfig::default()
    });
    let statements = crate::planner::script::split_statements(script)?;
    let Some((last, setup)) = statements.split_last() else {
        return plan_err!("empty benchmark script");
    };
    for s in setup {
        ctx.sql(&s.sql).await?.collect().await?;
    }
    let df = ctx.sql(&last.sql).await?;
    let (cpu_before, _) = usage();
    let started = Instant::now();
    let Started::Running(mut job) = start_job(df, JobOptions::default()).await? else {
        return datafusion::common::internal_err!("a benchmark job has no state directory");
    };
    while let Some(batch) = job.stream.next().await {
        batch?;
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu_after, rss_kib) = usage();
    let cpu = (cpu_after - cpu_before).max(1e-9);
    let stats = &job.context.stats;
    let counted = if records == 0 {
        stats.rows_out()
    } else {
        records
    };
    Ok(BenchResult {
        query: name.to_string(),
        events: counted,
        rows_read: stats.events_in(),
        rows_out: stats.rows_out(),
        parallelism,
        wall_seconds: wall,
        cpu_seconds: cpu,
        events_per_second: counted as f64 / wall.max(1e-9),
        events_per_core_second: counted as f64 / cpu,
        peak_rss_mib: rss_kib / 1024.0,
        late_rows: stats.late_rows(),
    })
}

/// Produces about `records` bids into a fresh mock cluster, then consumes them; returns the
/// produce and consume measurements (records per second are Kafka records).
pub async fn bench(records: u64, partitions: i32, parallelism: usize) -> Result<Vec<BenchResult>> {
    let capacity = partitions.max(1) as u64 * MOCK_PARTITION_BYTES / BID_BYTES;
    if records > capacity {
        return plan_err!(
            "{records} records do not fit {partitions} partitions of the mock cluster (5 MB \
             each, about {capacity} records); pass --partitions {}",
            records * BID_BYTES / MOCK_PARTITION_BYTES + 1
        );
    }
    let broker = start_broker(partitions)?;
    let servers = &broker.servers;
    // Bids are 46 of every 50 Nexmark events.
    let events = records * 50 / 46;
    let produce = format!(
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, \
           url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR) \
         WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '{events}', \
               'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');\n\
         CREATE TABLE kbid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, \
           url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR) \
         WITH ('connector' = 'kafka', 'topic' = 'bids', 'properties.bootstrap.servers' = '{servers}', \
               'format' = 'json', 'properties.linger.ms' = '20', \
               'properties.batch.num.messages' = '10000');\n\
         INSERT INTO kbid SELECT * FROM bid;"
    );
    let produced = measured("kafka-produce", &produce, parallelism, 0).await?;
    let written = produced.rows_out;
    let consume = format!(
        "CREATE TABLE kbid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, \
           url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR, \
           WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND) \
         WITH ('connector' = 'kafka', 'topic' = 'bids', 'properties.bootstrap.servers' = '{servers}', \
               'format' = 'json', 'scan.startup.mode' = 'earliest-offset', \
               'scan.bounded.mode' = 'latest-offset');\n\
         CREATE TABLE discard (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, \
           url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR) WITH ('connector' = 'blackhole');\n\
         INSERT INTO discard SELECT * FROM kbid;"
    );
    let consumed = measured("kafka-consume", &consume, parallelism, 0).await?;
    if consumed.rows_out != written {
        return exec_err!(
            "the consumer read {} records but {written} were written",
            consumed.rows_out
        );
    }
    drop(broker);
    Ok(vec![produced, consumed])
}
