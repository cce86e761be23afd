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

/// Records the topic holds: the sum over partitions of high minus low watermark.
fn records_kept(servers: &str, partitions: i32) -> Result<u64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "sabot-bench")
        .create()
        .map_err(|e| DataFusionError::Execution(format!("cannot create a consumer: {e}")))?;
    let mut kept = 0;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks("bids", p, std::time::Duration::from_secs(10))
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
               'properties.batch.num.messages' = '10000', \
               'properties.sticky.partitioning.linger.ms' = '0');\n\
         INSERT INTO kbid SELECT * FROM bid;"
    );
    let produced = measure_script("kafka-produce", &produce, parallelism, |_| Ok(())).await?;
    let written = produced.rows_out;
    let kept = records_kept(servers, partitions)?;
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
