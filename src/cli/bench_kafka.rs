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

use datafusion::common::{DataFusionError, Result, exec_err, plan_err};

use super::bench::{BenchResult, measure_script};

/// Bytes the mock cluster keeps per partition.
const MOCK_PARTITION_BYTES: u64 = 5 * 1024 * 1024;

/// Approximate size of one bid record (JSON plus record overhead).
const BID_BYTES: u64 = 300;

/// Runs the mock cluster of the benchmark: prints its bootstrap servers, then serves until
/// standard input closes.
pub fn serve_mock_broker(topics: &[&str], partitions: i32) -> Result<()> {
    let cluster = rdkafka::mocking::MockCluster::new(1)
        .map_err(|e| DataFusionError::Execution(format!("cannot start a mock cluster: {e}")))?;
    for topic in topics {
        cluster
            .create_topic(topic, partitions, 1)
            .map_err(|e| DataFusionError::Execution(format!("cannot create topic {topic}: {e}")))?;
    }
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

fn start_broker(topics: &[&str], partitions: i32) -> Result<BrokerProcess> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "bench",
            "kafka-broker",
            "--partitions",
            &partitions.to_string(),
            "--topics",
            &topics.join(","),
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

/// Records the topic holds: the sum over partitions of high minus low watermark.
fn records_kept(servers: &str, topic: &str, partitions: i32) -> Result<u64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "sabot-bench")
        .create()
        .map_err(|e| DataFusionError::Execution(format!("cannot create a consumer: {e}")))?;
    let mut kept = 0;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, std::time::Duration::from_secs(10))
            .map_err(|e| DataFusionError::Execution(format!("cannot read offsets: {e}")))?;
        kept += (high - low).max(0) as u64;
    }
    Ok(kept)
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
    let broker = start_broker(&["bids"], partitions)?;
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
               'properties.batch.num.messages' = '10000', \
               'properties.sticky.partitioning.linger.ms' = '0');\n\
         INSERT INTO kbid SELECT * FROM bid;"
    );
    let produced = measure_script("kafka-produce", &produce, parallelism, |_| Ok(())).await?;
    let written = produced.rows_out;
    let kept = records_kept(servers, "bids", partitions)?;
    if kept != written {
        return exec_err!(
            "the mock cluster holds {kept} of the {written} records written (it drops the oldest \
             beyond 5 MB per partition); pass more --partitions or fewer --records"
        );
    }
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
    let consumed = measure_script("kafka-consume", &consume, parallelism, |_| Ok(())).await?;
    if consumed.rows_out != written {
        return exec_err!(
            "the consumer read {} records but {written} were written",
            consumed.rows_out
        );
    }
    drop(broker);
    Ok(vec![produced, consumed])
}

/// A `CREATE TABLE` of the Nexmark connector in a benchmark script: its name, its columns
/// (with the WATERMARK clause, if any) and the event kind.
struct NexmarkTableDdl {
    name: String,
    columns: String,
    kind: String,
}

fn nexmark_tables(script: &str) -> Result<Vec<(usize, NexmarkTableDdl)>> {
    let create =
        regex::Regex::new(r"(?is)^\s*CREATE\s+TABLE\s+(\w+)\s*\((.*)\)\s*WITH\s*\((.*)\)\s*$")
            .map_err(|e| DataFusionError::Internal(e.to_string()))?;
    let kind = regex::Regex::new(r"'nexmark\.table\.type'\s*=\s*'(\w+)'")
        .map_err(|e| DataFusionError::Internal(e.to_string()))?;
    let mut tables = Vec::new();
    for (i, statement) in crate::planner::script::split_statements(script)?
        .iter()
        .enumerate()
    {
        let Some(c) = create.captures(&statement.sql) else {
            continue;
        };
        if !c[3].contains("'nexmark'") {
            continue;
        }
        let Some(k) = kind.captures(&c[3]) else {
            return plan_err!("table {} names no 'nexmark.table.type'", &c[1]);
        };
        tables.push((
            i,
            NexmarkTableDdl {
                name: c[1].to_string(),
                columns: c[2].to_string(),
                kind: k[1].to_string(),
            },
        ));
    }
    Ok(tables)
}

/// `sabot bench nexmark --source kafka`: the events of every Nexmark table of `script` are
/// first written (as JSON, by the Kafka sink) into a topic of their own on a mock cluster in a
/// child process; then the query runs with those tables read from Kafka, and is measured
/// (consume, decode, query; the broker's CPU is its own process's).
pub async fn nexmark_over_kafka(
    query: &str,
    script: &str,
    events: u64,
    tps: u64,
    run: super::bench::RunConfig,
) -> Result<BenchResult> {
    let tables = nexmark_tables(script)?;
    if tables.is_empty() {
        return plan_err!("query {query} reads no Nexmark table");
    }
    // Every table's share fits: at most all events, of at most 500 bytes (auctions).
    let partitions = (events * 500 / MOCK_PARTITION_BYTES + 1).clamp(1, 4096) as i32;
    let topics: Vec<&str> = tables.iter().map(|(_, t)| t.name.as_str()).collect();
    let broker = start_broker(&topics, partitions)?;
    let servers = broker.servers.clone();
    for (_, table) in &tables {
        let without_watermark = match table.columns.to_ascii_uppercase().find("WATERMARK") {
            Some(at) => table.columns[..at]
                .trim_end()
                .trim_end_matches(',')
                .to_string(),
            None => table.columns.clone(),
        };
        let load = format!(
            "CREATE TABLE generated ({without_watermark}) WITH ('connector' = 'nexmark', \
               'nexmark.table.type' = '{kind}', 'events.num' = '{events}', 'tps' = '{tps}', \
               'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');\n\
             CREATE TABLE topic ({without_watermark}) WITH ('connector' = 'kafka', \
               'topic' = '{name}', 'properties.bootstrap.servers' = '{servers}', \
               'format' = 'json', 'properties.linger.ms' = '20', \
               'properties.batch.num.messages' = '10000', \
               'properties.sticky.partitioning.linger.ms' = '0');\n\
             INSERT INTO topic SELECT * FROM generated;",
            kind = table.kind,
            name = table.name,
        );
        eprintln!("  loading {} into Kafka", table.name);
        let loaded = measure_script("load", &load, 2, |_| Ok(())).await?;
        let kept = records_kept(&servers, &table.name, partitions)?;
        if kept != loaded.rows_out {
            return exec_err!(
                "the mock cluster holds {kept} of the {} records of {} (it drops the oldest \
                 beyond 5 MB per partition)",
                loaded.rows_out,
                table.name
            );
        }
    }
    let statements = crate::planner::script::split_statements(script)?;
    let mut rewritten = Vec::with_capacity(statements.len());
    for (i, statement) in statements.iter().enumerate() {
        match tables.iter().find(|(at, _)| *at == i) {
            Some((_, table)) => rewritten.push(format!(
                "CREATE TABLE {name} ({columns}) WITH ('connector' = 'kafka', 'topic' = '{name}', \
                   'properties.bootstrap.servers' = '{servers}', 'format' = 'json', \
                   'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')",
                name = table.name,
                columns = table.columns,
            )),
            None => rewritten.push(statement.sql.clone()),
        }
    }
    let mut result =
        super::bench::run_script(query, &rewritten.join(";\n"), events, tps, run, true).await?;
    result.query = format!("{query} (kafka)");
    drop(broker);
    Ok(result)
}
