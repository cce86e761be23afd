//! The Kafka connector against librdkafka's mock cluster, a real Kafka protocol peer running
//! in this process: windowed SQL over several partitions at several parallelisms, every
//! startup and bounded mode, metadata columns, idle partitions, the sink read back, malformed
//! records, bad options, unreachable brokers and injected broker faults.

mod common;

use common::rows;

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sabot::SabotConfig;

const BASE_MS: i64 = 1_704_067_200_000;

type Cluster = MockCluster<'static, DefaultProducerContext>;

fn cluster(brokers: i32) -> Cluster {
    MockCluster::new(brokers).expect("mock cluster")
}

fn config(parallelism: usize) -> SabotConfig {
    SabotConfig {
        parallelism,
        batch_size: 64,
        checkpoint_interval: None,
        ..SabotConfig::default()
    }
}

/// One record to produce: partition, key, value, timestamp.
struct Record {
    partition: i32,
    key: Option<String>,
    value: String,
    ts: i64,
}

fn produce(servers: &str, topic: &str, records: &[Record]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .expect("producer");
    for r in records {
        let mut record = BaseRecord::<String, String>::to(topic)
            .partition(r.partition)
            .payload(&r.value)
            .timestamp(r.ts);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

async fn query(ctx: &sabot::SabotContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

/// Bids on 4 partitions: 400 records, partition `i % 4`, a little out of order.
fn bids() -> Vec<Record> {
    (0..400i64)
        .map(|i| {
            let ts = BASE_MS + i * 100 - (i % 3) * 150;
            Record {
                partition: (i % 4) as i32,
                key: Some(format!("a{}", i % 7)),
                value: format!(r#"{{"auction": {}, "price": {i}, "ts_ms": {}}}"#, i % 7, ts),
                ts,
            }
        })
        .collect()
}

fn bids_table(servers: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE bids (auction BIGINT, price BIGINT, ts_ms BIGINT, \
           ts AS TO_TIMESTAMP_MILLIS(ts_ms), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
         WITH ('connector' = 'kafka', 'topic' = 'bids', 'properties.bootstrap.servers' = '{servers}', \
               'format' = 'json', 'scan.startup.mode' = 'earliest-offset', \
               'scan.bounded.mode' = 'latest-offset'{extra})"
    )
}

/// TUMBLE over 4 partitions gives the counts and sums computed here from the records, at
/// parallelism 1 and with 3 readers sharing 4 partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumble_over_partitions_matches_the_records() -> Result<()> {
    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("bids", 4, 1).unwrap();
    let records = bids();
    produce(&servers, "bids", &records);
    let mut expected: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let window = r.ts.div_euclid(10_000) * 10_000;
        let e = expected.entry((i as i64 % 7, window)).or_default();
        e.0 += 1;
        e.1 += i as i64;
    }
    let mut expected: Vec<String> = expected
        .iter()
        .map(|((a, w), (c, s))| format!("{a}|{w}|{c}|{s}"))
        .collect();
    expected.sort();
    for (parallelism, max, tasks) in [(1, "", 1), (4, ", 'max-parallelism' = '3'", 3)] {
        let ctx = sabot::session_context(config(parallelism));
        ctx.sql(&bids_table(&servers, max)).await?;
        let plan = rows(&query(&ctx, "EXPLAIN SELECT * FROM bids").await?).join("\n");
        assert!(plan.contains("connector=kafka(topic=bids"), "{plan}");
        assert!(plan.contains(&format!("partitions={tasks},")), "{plan}");
        let got = rows(
            &query(
                &ctx,
                "SELECT auction, CAST(window_start AS BIGINT), COUNT(*), SUM(price) \
                 FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
                 GROUP BY auction, window_start, window_end",
            )
            .await?,
        );
        assert_eq!(got, expected, "parallelism {parallelism}");
    }
    Ok(())
}

/// A GROUP BY without a window over an unbounded topic is an updating query: its changelog,
/// read while the job runs, comes to the counts and sums computed here from the records (each
/// auction once: every update takes its old row back), at parallelism 1 and 3; then more
/// records update it further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updating_aggregate_over_an_unbounded_topic() -> Result<()> {
    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("bids", 4, 1).unwrap();
    let records = bids();
    let (first, second) = records.split_at(300);
    produce(&servers, "bids", first);
    let expected = |records: &[Record]| {
        let mut per_auction: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (i, _) in records.iter().enumerate() {
            let e = per_auction.entry(i as i64 % 7).or_default();
            e.0 += 1;
            e.1 += i as i64;
        }
        per_auction
    };
    for parallelism in [1, 3] {
        let ctx = sabot::session_context(config(parallelism));
        // No bounded mode: the topic never ends.
        ctx.sql(&bids_table(&servers, "").replace(", 'scan.bounded.mode' = 'latest-offset'", ""))
            .await?;
        let df = ctx
            .sql("SELECT auction, COUNT(*) AS n, SUM(price) AS s FROM bids GROUP BY auction")
            .await?;
        let changes = sabot::result_stream(df).await?;
        assert!(changes.updating);
        let mut batches = changes.batches;
        let mut state: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        let read = |state: &mut BTreeMap<i64, (i64, i64)>, batch: &RecordBatch| {
            // In order: an update's -U comes before its +U.
            for i in 0..batch.num_rows() {
                let cells: Vec<String> = batch
                    .columns()
                    .iter()
                    .map(|c| datafusion::arrow::util::display::array_value_to_string(c, i).unwrap())
                    .collect();
                let line = cells.join("|");
                let auction: i64 = cells[1].parse().unwrap();
                let row = (cells[2].parse().unwrap(), cells[3].parse().unwrap());
                match cells[0].as_str() {
                    "+I" | "+U" => {
                        assert!(state.insert(auction, row).is_none(), "{line}: twice");
                    }
                    "-U" | "-D" => assert_eq!(state.remove(&auction), Some(row), "{line}"),
                    other => panic!("op {other}"),
                }
            }
        };
        // At parallelism 3 the topic already holds every record.
        let want = expected(if parallelism == 1 { first } else { &records });
        while state != want {
            let batch = tokio::time::timeout(Duration::from_secs(30), batches.next())
                .await
                .expect("the changelog stalled")
                .expect("the changelog ended")?;
            read(&mut state, &batch);
        }
        if parallelism == 1 {
            produce(&servers, "bids", second);
        }
        let want = expected(&records);
        while state != want {
            let batch = tokio::time::timeout(Duration::from_secs(30), batches.next())
                .await
                .expect("the changelog stalled")
                .expect("the changelog ended")?;
            read(&mut state, &batch);
        }
    }
    Ok(())
}

/// Applies changelog rows (`op`, key, then values, as `result_stream` gives them) to `state`,
/// checking each retraction takes back exactly the row that stands for its key.
fn apply_changes(state: &mut BTreeMap<i64, Vec<String>>, batch: &RecordBatch) {
    for i in 0..batch.num_rows() {
        let cells: Vec<String> = batch
            .columns()
            .iter()
            .map(|c| datafusion::arrow::util::display::array_value_to_string(c, i).unwrap())
            .collect();
        let line = cells.join("|");
        let key: i64 = cells[1].parse().unwrap();
        let row = cells[2..].to_vec();
        match cells[0].as_str() {
            "+I" | "+U" => assert!(state.insert(key, row).is_none(), "{line}: twice"),
            "-U" | "-D" => assert_eq!(state.remove(&key), Some(row), "{line}"),
            other => panic!("op {other}"),
        }
    }
}

/// An updating query written to Kafka as debezium-json, exactly once (in transactions committed
/// at checkpoints), and
/// read back through a debezium-json table: the changelog rebuilds the query's final answer,
/// and each record is one Debezium event keyed by the group key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_json_changelog_round_trip() -> Result<()> {
    use sabot::checkpoint::coordinator::CheckpointConfig;
    use sabot::runtime::job::{JobOptions, Started, start_job};

    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("bids", 4, 1).unwrap();
    mock.create_topic("per_auction", 3, 1).unwrap();
    let records = bids();
    produce(&servers, "bids", &records);
    let ctx = sabot::session_context(config(2));
    ctx.sql(&bids_table(&servers, "")).await?;
    // The topic is bounded: read it as a stream, so that the result is a changelog.
    ctx.sql("SET 'execution.runtime-mode' = 'streaming'")
        .await?;
    ctx.sql(&format!(
        "CREATE TABLE per_auction (auction BIGINT, n BIGINT, s BIGINT) \
         WITH ('connector' = 'kafka', 'topic' = 'per_auction', \
               'properties.bootstrap.servers' = '{servers}', 'format' = 'debezium-json', \
               'key.fields' = 'auction', 'sink.delivery-guarantee' = 'exactly-once', \
               'sink.transactional-id-prefix' = 'changes', \
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"
    ))
    .await?;
    let state = tempfile::tempdir().unwrap();
    let options = JobOptions {
        checkpoint_interval: Some(Duration::from_millis(5)),
        checkpoints: Some((
            CheckpointConfig {
                location: state.path().display().to_string(),
                retained: 3,
                timeout: Duration::from_secs(60),
                local_dir: state.path().join("rocksdb"),
            },
            "changes-job".to_string(),
        )),
    };
    let df = ctx
        .sql("INSERT INTO per_auction SELECT auction, COUNT(*), SUM(price) FROM bids GROUP BY auction")
        .await?;
    let Started::Running(mut job) = start_job(df, options).await? else {
        panic!("a fresh state directory has nothing to resume");
    };
    while let Some(batch) = job.stream.next().await {
        batch?;
    }
    let mut want: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (i, _) in records.iter().enumerate() {
        let auction = i as i64 % 7;
        let e = want
            .entry(auction)
            .or_insert_with(|| vec!["0".into(), "0".into()]);
        e[0] = (e[0].parse::<i64>().unwrap() + 1).to_string();
        e[1] = (e[1].parse::<i64>().unwrap() + i as i64).to_string();
    }

    // Each record: the group key as the record key, one event with one row.
    let written = read_back(&servers, "per_auction");
    assert!(written.len() >= want.len(), "{} records", written.len());
    for (key, value) in &written {
        let event: serde_json::Value = serde_json::from_str(value).unwrap();
        let row = match event["op"].as_str() {
            Some("c") => &event["after"],
            Some("d") => &event["before"],
            other => panic!("op {other:?} in {value}"),
        };
        assert_eq!(
            key.as_deref(),
            Some(row["auction"].to_string().as_str()),
            "{value}"
        );
    }

    // Read back as a changelog (one reader: each key's events are in one partition, in order).
    let ctx = sabot::session_context(config(1));
    ctx.sql(&format!(
        "CREATE TABLE per_auction (auction BIGINT, n BIGINT, s BIGINT) \
         WITH ('connector' = 'kafka', 'topic' = 'per_auction', \
               'properties.bootstrap.servers' = '{servers}', 'format' = 'debezium-json', \
               'properties.isolation.level' = 'read_committed', \
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"
    ))
    .await?;
    let changes = sabot::result_stream(ctx.sql("SELECT * FROM per_auction").await?).await?;
    assert!(changes.updating);
    let mut batches = changes.batches;
    let mut got = BTreeMap::new();
    while let Some(batch) = batches.next().await {
        apply_changes(&mut got, &batch?);
    }
    assert_eq!(got, want);
    // Reading no value column still reads what each event does: the count of rows the
    // changelog holds in the end is the number of auctions, not of events.
    let count = sabot::result_stream(ctx.sql("SELECT COUNT(*) FROM per_auction").await?).await?;
    let mut batches = count.batches;
    let mut last = None;
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        for i in 0..batch.num_rows() {
            let op = datafusion::arrow::util::display::array_value_to_string(batch.column(0), i)?;
            if op == "+I" || op == "+U" {
                last = Some(datafusion::arrow::util::display::array_value_to_string(
                    batch.column(1),
                    i,
                )?);
            }
        }
    }
    assert_eq!(last, Some(want.len().to_string()));
    Ok(())
}

/// 2 partitions of 10 records each; record `i` of partition `p` has key `k{p}-{i}`, value
/// `{"v": i}` and timestamp BASE + i s.
fn small_topic(mock: &Cluster, topic: &str) -> String {
    let servers = mock.bootstrap_servers();
    mock.create_topic(topic, 2, 1).unwrap();
    let records: Vec<Record> = (0..2)
        .flat_map(|p| {
            (0..10i64).map(move |i| Record {
                partition: p,
                key: Some(format!("k{p}-{i}")),
                value: format!(r#"{{"v": {i}}}"#),
                ts: BASE_MS + i * 1000,
            })
        })
        .collect();
    produce(&servers, topic, &records);
    servers
}

/// The (partition, offset) pairs a bounded scan of topic `small` with `options` reads; the
/// read stops at the offsets seen at start unless `options` sets `scan.bounded.mode`.
async fn offsets_read(ctx: &sabot::SabotContext, servers: &str, options: &str) -> Vec<String> {
    let bounded = if options.contains("scan.bounded.mode") {
        ""
    } else {
        "'scan.bounded.mode' = 'latest-offset', "
    };
    ctx.sql("DROP TABLE IF EXISTS t").await.unwrap();
    ctx.sql(&format!(
        "CREATE TABLE t (v BIGINT, p INT METADATA FROM 'partition' VIRTUAL, \
           o BIGINT METADATA FROM 'offset' VIRTUAL) \
         WITH ('connector' = 'kafka', 'topic' = 'small', 'properties.bootstrap.servers' = '{servers}', \
               'format' = 'json', {bounded}{options})"
    ))
    .await
    .unwrap();
    rows(&query(ctx, "SELECT p, o FROM t").await.unwrap())
}

fn offsets(ranges: &[(i32, std::ops::Range<i64>)]) -> Vec<String> {
    let mut v: Vec<String> = ranges
        .iter()
        .flat_map(|(p, r)| r.clone().map(move |o| format!("{p}|{o}")))
        .collect();
    v.sort();
    v
}

/// Every startup and bounded mode but `timestamp` (the mock cluster cannot look offsets up by
/// time; `tests/kafka_broker.rs` checks those against a real broker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_and_bounded_modes() {
    let mock = cluster(1);
    let servers = small_topic(&mock, "small");
    let ctx = sabot::session_context(config(2));
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "'scan.startup.mode' = 'earliest-offset'".into(),
            offsets(&[(0, 0..10), (1, 0..10)]),
        ),
        ("'scan.startup.mode' = 'latest-offset'".into(), vec![]),
        (
            "'scan.startup.mode' = 'specific-offsets', \
             'scan.startup.specific-offsets' = 'partition:0,offset:7;partition:1,offset:3'"
                .into(),
            offsets(&[(0, 7..10), (1, 3..10)]),
        ),
        (
            "'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'specific-offsets', \
             'scan.bounded.specific-offsets' = 'partition:0,offset:2;partition:1,offset:1'"
                .into(),
            offsets(&[(0, 0..2), (1, 0..1)]),
        ),
    ];
    for (options, expected) in cases {
        let got = offsets_read(&ctx, &servers, &options).await;
        assert_eq!(got, expected, "{options}");
    }

    // group-offsets: the group's committed offsets; partition 1 has none and starts at the
    // earliest offset (the default 'properties.auto.offset.reset').
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", "readers")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("small", 0, Offset::Offset(6))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    let got = offsets_read(
        &ctx,
        &servers,
        "'scan.startup.mode' = 'group-offsets', 'properties.group.id' = 'readers'",
    )
    .await;
    assert_eq!(got, offsets(&[(0, 6..10), (1, 0..10)]));
}

/// Metadata columns carry each record's partition, offset, timestamp, key and topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_columns() -> Result<()> {
    let mock = cluster(1);
    let servers = small_topic(&mock, "small");
    let ctx = sabot::session_context(config(2));
    ctx.sql(&format!(
        "CREATE TABLE t (v BIGINT, p INT METADATA FROM 'partition', o BIGINT METADATA FROM 'offset', \
           ts TIMESTAMP(3) METADATA FROM 'timestamp', k STRING METADATA FROM 'key', \
           topic STRING METADATA VIRTUAL) \
         WITH ('connector' = 'kafka', 'topic' = 'small', 'properties.bootstrap.servers' = '{servers}', \
               'format' = 'json', 'scan.startup.mode' = 'earliest-offset', \
               'scan.bounded.mode' = 'latest-offset')"
    ))
    .await?;
    let got = rows(&query(&ctx, "SELECT p, o, v, CAST(ts AS BIGINT), k, topic FROM t").await?);
    let mut expected: Vec<String> = (0..2)
        .flat_map(|p| {
            (0..10i64).map(move |i| format!("{p}|{i}|{i}|{}|k{p}-{i}|small", BASE_MS + i * 1000))
        })
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    Ok(())
}

/// With all data in partition 0, partition 1 holds the watermark back until the idle timeout
/// releases it; then windows close while the source is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partition_is_released() -> Result<()> {
    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("busy", 2, 1).unwrap();
    let records: Vec<Record> = (0..50i64)
        .map(|i| Record {
            partition: 0,
            key: None,
            value: format!(r#"{{"v": {i}, "ts_ms": {}}}"#, BASE_MS + i * 100),
            ts: BASE_MS + i * 100,
        })
        .collect();
    produce(&servers, "busy", &records);
    let ctx = sabot::session_context(config(1));
    ctx.sql(&format!(
        "CREATE TABLE busy (v BIGINT, ts_ms BIGINT, ts AS TO_TIMESTAMP_MILLIS(ts_ms), \
           WATERMARK FOR ts AS ts) \
         WITH ('connector' = 'kafka', 'topic' = 'busy', 'properties.bootstrap.servers' = '{servers}', \
               'format' = 'json', 'scan.startup.mode' = 'earliest-offset', \
               'scan.watermark.idle-timeout' = '300ms')"
    ))
    .await?;
    let mut stream = ctx
        .sql(
            "SELECT CAST(window_start AS BIGINT), COUNT(*) \
             FROM TABLE(TUMBLE(TABLE busy, DESCRIPTOR(ts), INTERVAL '1' SECOND)) \
             GROUP BY window_start, window_end",
        )
        .await?
        .execute_stream()
        .await?;
    // Records span 0..5 s: windows 0-3 close (the watermark is at 4.9 s); 4 stays open.
    let mut got = Vec::new();
    while got.len() < 4 {
        let batch = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("windows within a minute")
            .expect("the stream goes on")?;
        got.extend(rows(&[batch]));
    }
    got.sort();
    let expected: Vec<String> = (0..4)
        .map(|w| format!("{}|10", BASE_MS + w * 1000))
        .collect();
    assert_eq!(got, expected);
    Ok(())
}

/// A temporal join whose versioned topic stopped changing: once its idle timeout passes, the
/// orders' watermark alone releases the orders, each with the rate of its time (without it,
/// the rates' watermark, stuck at their last version, would hold every later order back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_join_with_an_idle_versioned_topic() -> Result<()> {
    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("rates", 1, 1).unwrap();
    mock.create_topic("orders", 1, 1).unwrap();
    let rate = |rate: i64, at: i64| Record {
        partition: 0,
        key: None,
        value: format!(
            r#"{{"currency": "EUR", "rate": {rate}, "ts_ms": {}}}"#,
            BASE_MS + at
        ),
        ts: BASE_MS + at,
    };
    produce(&servers, "rates", &[rate(2, 0), rate(4, 2000)]);
    let orders: Vec<Record> = (0..20i64)
        .map(|i| Record {
            partition: 0,
            key: None,
            value: format!(
                r#"{{"id": {i}, "currency": "EUR", "ts_ms": {}}}"#,
                BASE_MS + i * 500
            ),
            ts: BASE_MS + i * 500,
        })
        .collect();
    produce(&servers, "orders", &orders);
    let ctx = sabot::session_context(config(1));
    for (table, columns, idle) in [
        (
            "rates",
            "currency STRING, rate BIGINT",
            // Long enough for the reader to get the rates first: a topic idle from the start
            // would let the orders through before any version came (as in Flink).
            ", 'scan.watermark.idle-timeout' = '3s'",
        ),
        ("orders", "id BIGINT, currency STRING", ""),
    ] {
        ctx.sql(&format!(
            "CREATE TABLE {table} ({columns}, ts_ms BIGINT, ts AS TO_TIMESTAMP_MILLIS(ts_ms), \
               WATERMARK FOR ts AS ts) \
             WITH ('connector' = 'kafka', 'topic' = '{table}', \
                   'properties.bootstrap.servers' = '{servers}', 'format' = 'json', \
                   'scan.startup.mode' = 'earliest-offset'{idle})"
        ))
        .await?;
    }
    let mut stream = ctx
        .sql(
            "SELECT o.id, r.rate FROM orders AS o \
             JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency = r.currency",
        )
        .await?
        .execute_stream()
        .await?;
    let mut got = Vec::new();
    while got.len() < 20 {
        let batch = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("every order within a minute")
            .expect("the stream goes on")?;
        got.extend(rows(&[batch]));
    }
    got.sort_by_key(|r| r.split('|').next().and_then(|id| id.parse::<i64>().ok()));
    // Orders before 2 s meet the rate of 0 s; the others the rate of 2 s.
    let expected: Vec<String> = (0..20i64)
        .map(|i| format!("{i}|{}", if i * 500 < 2000 { 2 } else { 4 }))
        .collect();
    assert_eq!(got, expected);
    Ok(())
}

fn read_back(servers: &str, topic: &str) -> Vec<(Option<String>, String)> {
    let mut out: Vec<(Option<String>, String)> = read_records(servers, topic)
        .into_iter()
        .map(|r| (r.key, r.value.unwrap_or_default()))
        .collect();
    out.sort();
    out
}

/// One record read back.
#[derive(Debug, Clone)]
struct ReadRecord {
    partition: i32,
    key: Option<String>,
    /// `None` for a tombstone.
    value: Option<String>,
}

/// Every committed record of `topic`, in partition and offset order.
fn read_records(servers: &str, topic: &str) -> Vec<ReadRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "check")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let partitions = metadata.topics()[0].partitions().len();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut eof = 0;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while eof < partitions && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m.headers().map(|h| h.count()).unwrap_or(0);
                assert_eq!(headers, 0);
                out.push((
                    m.offset(),
                    ReadRecord {
                        partition: m.partition(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                    },
                ))
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eof += 1,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    out.sort_by_key(|(offset, r)| (r.partition, *offset));
    out.into_iter().map(|(_, r)| r).collect()
}

/// Windowed results written to Kafka, read back: every row once, keyed by `key.fields`, with
/// both delivery guarantees (exactly-once commits its transaction at the end of input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_round_trip() -> Result<()> {
    let mock = cluster(1);
    let servers = small_topic(&mock, "small");
    for (topic, guarantee) in [
        ("out_alo", "'sink.delivery-guarantee' = 'at-least-once'"),
        (
            "out_eo",
            "'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = 'sabot-test'",
        ),
    ] {
        mock.create_topic(topic, 3, 1).unwrap();
        let ctx = sabot::session_context(config(2));
        ctx.sql(&format!(
            "CREATE TABLE src (v BIGINT, p INT METADATA FROM 'partition' VIRTUAL) \
             WITH ('connector' = 'kafka', 'topic' = 'small', 'properties.bootstrap.servers' = '{servers}', \
                   'format' = 'json', 'scan.startup.mode' = 'earliest-offset', \
                   'scan.bounded.mode' = 'latest-offset')"
        ))
        .await?;
        ctx.sql(&format!(
            "CREATE TABLE dst (p INT, v BIGINT, label STRING) \
             WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{servers}', \
                   'format' = 'json', 'key.fields' = 'p', {guarantee})"
        ))
        .await?;
        let written = rows(
            &query(
                &ctx,
                "INSERT INTO dst SELECT p, v * 10, 'x' || CAST(v AS STRING) FROM src WHERE v % 2 = 0",
            )
            .await?,
        );
        assert_eq!(written, vec!["10"]);
        let mut expected: Vec<(Option<String>, String)> = (0..2)
            .flat_map(|p| {
                (0..10).filter(|v| v % 2 == 0).map(move |v| {
                    (
                        Some(p.to_string()),
                        format!(r#"{{"p":{p},"v":{},"label":"x{v}"}}"#, v * 10),
                    )
                })
            })
            .collect();
        expected.sort();
        assert_eq!(read_back(&servers, topic), expected, "{topic}");
    }
    Ok(())
}

/// A malformed record fails the query naming topic, partition and offset; with
/// `json.ignore-parse-errors` it is skipped, and metadata stays aligned with the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records() -> Result<()> {
    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("dirty", 2, 1).unwrap();
    let records: Vec<Record> = (0..6i64)
        .map(|i| Record {
            partition: 1,
            key: None,
            value: if i == 3 {
                r#"{"v": "three"#.to_string()
            } else {
                format!(r#"{{"v": {i}}}"#)
            },
            ts: BASE_MS,
        })
        .collect();
    produce(&servers, "dirty", &records);
    let table = |ignore: bool| {
        format!(
            "CREATE TABLE dirty{} (v BIGINT, o BIGINT METADATA FROM 'offset') \
             WITH ('connector' = 'kafka', 'topic' = 'dirty', 'properties.bootstrap.servers' = '{servers}', \
                   'format' = 'json', 'scan.startup.mode' = 'earliest-offset', \
                   'scan.bounded.mode' = 'latest-offset', 'json.ignore-parse-errors' = '{ignore}')",
            if ignore { "_ok" } else { "" }
        )
    };
    let ctx = sabot::session_context(config(1));
    ctx.sql(&table(false)).await?;
    let err = query(&ctx, "SELECT v, o FROM dirty")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("topic dirty partition 1 at offset 3"), "{err}");
    ctx.sql(&table(true)).await?;
    let got = rows(&query(&ctx, "SELECT v, o FROM dirty_ok").await?);
    assert_eq!(got, vec!["0|0", "1|1", "2|2", "4|4", "5|5"]);
    Ok(())
}

/// Unreachable brokers, a missing topic and bad option values are clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_a_clear_error() -> Result<()> {
    let ctx = sabot::session_context(config(1));
    ctx.sql(
        "CREATE TABLE nowhere (v BIGINT) WITH ('connector' = 'kafka', 'topic' = 't', \
           'properties.bootstrap.servers' = '127.0.0.1:9', 'format' = 'json', \
           'connect.timeout' = '2 s')",
    )
    .await?;
    let started = std::time::Instant::now();
    let err = query(&ctx, "SELECT * FROM nowhere")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("127.0.0.1:9"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "gave up in time"
    );

    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("present", 1, 1).unwrap();
    ctx.sql(&format!(
        "CREATE TABLE missing (v BIGINT) WITH ('connector' = 'kafka', 'topic' = 'absent', \
           'properties.bootstrap.servers' = '{servers}', 'format' = 'json', \
           'connect.timeout' = '5 s')"
    ))
    .await?;
    let err = query(&ctx, "SELECT * FROM missing")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("'absent'"), "{err}");

    for (option, wanted) in [
        (
            "'scan.startup.mode' = 'first'",
            "earliest-offset, latest-offset",
        ),
        (
            "'scan.bounded.mode' = 'forever'",
            "unbounded, latest-offset",
        ),
        (
            "'sink.delivery-guarantee' = 'twice'",
            "at-least-once, exactly-once",
        ),
        ("'format' = 'avro'", "json, csv, raw"),
        ("'max-parallelism' = '0'", "at least 1"),
        (
            "'scan.startup.mod' = 'x'",
            "Did you mean 'scan.startup.mode'?",
        ),
    ] {
        let options = format!(
            "'topic' = 'present', 'properties.bootstrap.servers' = '{servers}', {}",
            if option.contains("'format'") {
                option.to_string()
            } else {
                format!("'format' = 'json', {option}")
            }
        );
        let err = ctx
            .sql(&format!(
                "CREATE TABLE bad (v BIGINT) WITH ('connector' = 'kafka', {options})"
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(wanted), "{option}: {err}");
    }
    let err = ctx
        .sql(&format!(
            "CREATE TABLE bad (v BIGINT, x BIGINT METADATA FROM 'headers') WITH ('connector' = \
             'kafka', 'topic' = 'present', 'properties.bootstrap.servers' = '{servers}', \
             'format' = 'json')"
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Valid keys: topic, partition, offset, timestamp, key"),
        "{err}"
    );
    Ok(())
}

/// The leader of every partition is down when the query starts and comes back a second
/// later; fetches fail with injected errors too. Nothing is lost or read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults_lose_and_duplicate_nothing() -> Result<()> {
    let mock = cluster(3);
    let servers = mock.bootstrap_servers();
    mock.create_topic("bids", 4, 1).unwrap();
    for p in 0..4 {
        mock.partition_leader("bids", p, Some(1)).unwrap();
    }
    let records = bids();
    produce(&servers, "bids", &records);
    let ctx = sabot::session_context(config(2));
    ctx.sql(&bids_table(&servers, "")).await?;
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
        ],
    );
    mock.broker_down(1).unwrap();
    let run = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            let batches = query(&ctx, "SELECT auction, price FROM bids").await?;
            Ok::<_, datafusion::error::DataFusionError>(rows(&batches))
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    mock.broker_up(1).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the query ends")
        .expect("no panic")?;
    let mut expected: Vec<String> = (0..400).map(|i| format!("{}|{i}", i % 7)).collect();
    expected.sort();
    assert_eq!(got, expected);
    Ok(())
}

/// Transactional requests that fail with retriable errors are retried: the exactly-once sink
/// still commits every row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_request_errors_are_retried() -> Result<()> {
    let mock = cluster(1);
    let servers = small_topic(&mock, "small");
    mock.create_topic("out", 2, 1).unwrap();
    mock.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS],
    );
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        ],
    );
    let ctx = sabot::session_context(config(1));
    ctx.sql(&format!(
        "CREATE TABLE src (v BIGINT) WITH ('connector' = 'kafka', 'topic' = 'small', \
           'properties.bootstrap.servers' = '{servers}', 'format' = 'json', \
           'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"
    ))
    .await?;
    ctx.sql(&format!(
        "CREATE TABLE out (v BIGINT) WITH ('connector' = 'kafka', 'topic' = 'out', \
           'properties.bootstrap.servers' = '{servers}', 'format' = 'csv', \
           'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = 'retry')"
    ))
    .await?;
    query(&ctx, "INSERT INTO out SELECT v FROM src").await?;
    let got: Vec<String> = read_back(&servers, "out")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut expected: Vec<String> = (0..2)
        .flat_map(|_| (0..10).map(|v| v.to_string()))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    Ok(())
}

/// With checkpoints every few milliseconds, the exactly-once sink commits one transaction per
/// checkpoint, after its manifest, and the topic read back `read_committed` holds every row
/// once (no run crashes here, so no transaction is aborted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_sink_commits_at_checkpoints() -> Result<()> {
    use sabot::checkpoint::coordinator::CheckpointConfig;
    use sabot::runtime::job::{JobOptions, Started, start_job};

    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("many", 2, 1).unwrap();
    mock.create_topic("copied", 3, 1).unwrap();
    let records: Vec<Record> = (0..20_000i64)
        .map(|i| Record {
            partition: (i % 2) as i32,
            key: None,
            value: format!(r#"{{"v": {i}}}"#),
            ts: BASE_MS + i,
        })
        .collect();
    produce(&servers, "many", &records);
    let ctx = sabot::session_context(config(2));
    ctx.sql(&format!(
        "CREATE TABLE many (v BIGINT) WITH ('connector' = 'kafka', 'topic' = 'many', \
           'properties.bootstrap.servers' = '{servers}', 'format' = 'json', 'batch-size' = '100', \
           'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"
    ))
    .await?;
    ctx.sql(&format!(
        "CREATE TABLE copied (v BIGINT) WITH ('connector' = 'kafka', 'topic' = 'copied', \
           'properties.bootstrap.servers' = '{servers}', 'format' = 'csv', \
           'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = 'copy')"
    ))
    .await?;
    let state = tempfile::tempdir().unwrap();
    let options = JobOptions {
        checkpoint_interval: Some(Duration::from_millis(5)),
        checkpoints: Some((
            CheckpointConfig {
                location: state.path().display().to_string(),
                retained: 3,
                timeout: Duration::from_secs(60),
                local_dir: state.path().join("rocksdb"),
            },
            "copy-job".to_string(),
        )),
    };
    let df = ctx.sql("INSERT INTO copied SELECT v FROM many").await?;
    let Started::Running(mut job) = start_job(df, options).await? else {
        panic!("a fresh state directory has nothing to resume");
    };
    while let Some(batch) = job.stream.next().await {
        batch?;
    }
    let newest = std::fs::read_dir(state.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name.strip_prefix("chk-")?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0);
    assert!(newest > 2, "the job spanned {newest} checkpoints");
    let got: Vec<String> = read_back(&servers, "copied")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut expected: Vec<String> = (0..20_000).map(|v: i64| v.to_string()).collect();
    expected.sort();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the rows differ");
    Ok(())
}

/// Produces `(key, value)` records to partition 0 of `topic` in order; a `None` value is a
/// tombstone.
fn produce_upserts(servers: &str, topic: &str, records: &[(&str, Option<&str>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .expect("producer");
    for (key, value) in records {
        let mut record = BaseRecord::<str, str>::to(topic).partition(0).key(*key);
        if let Some(v) = value {
            record = record.payload(*v);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// The rows of a changelog read with `result_stream`, as `op|col|col...` lines in order.
async fn changelog_lines(ctx: &sabot::SabotContext, sql: &str) -> Result<Vec<String>> {
    let changes = sabot::result_stream(ctx.sql(sql).await?).await?;
    assert!(changes.updating, "{sql} is not a changelog");
    let mut batches = changes.batches;
    let mut lines = Vec::new();
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        for i in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| datafusion::arrow::util::display::array_value_to_string(c, i).unwrap())
                .collect();
            lines.push(cells.join("|"));
        }
    }
    Ok(lines)
}

/// An upsert-kafka topic read as a changelog: a key's first row inserts, a different row
/// updates (old row taken back), the same row again changes nothing, a tombstone (or a blank
/// value) deletes the key's last row and is nothing for a key never seen. An aggregate over it
/// ends in the batch answer over the last rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_kafka_source_normalizes_records() -> Result<()> {
    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("users", 1, 1).unwrap();
    let row = |id: i64, name: &str, score: i64| {
        format!(r#"{{"id": {id}, "name": "{name}", "score": {score}}}"#)
    };
    let rows = [
        row(1, "a", 10),
        row(2, "b", 20),
        row(1, "a", 15),
        row(2, "c", 5),
    ];
    produce_upserts(
        &servers,
        "users",
        &[
            (r#"{"id": 1}"#, Some(&rows[0])),
            (r#"{"id": 2}"#, Some(&rows[1])),
            (r#"{"id": 1}"#, Some(&rows[0])),
            (r#"{"id":1}"#, Some(&rows[2])),
            (r#"{"id": 2}"#, None),
            (r#"{"id": 3}"#, None),
            (r#"{"id": 2}"#, Some(&rows[3])),
            (r#"{"id": 4}"#, Some("  ")),
        ],
    );
    let ctx = sabot::session_context(config(1));
    ctx.sql(&format!(
        "CREATE TABLE users (id BIGINT, name STRING, score BIGINT, \
           PRIMARY KEY (id) NOT ENFORCED) \
         WITH ('connector' = 'upsert-kafka', 'topic' = 'users', \
               'properties.bootstrap.servers' = '{servers}', 'key.format' = 'json', \
               'value.format' = 'json', 'scan.bounded.mode' = 'latest-offset')"
    ))
    .await?;
    assert_eq!(
        changelog_lines(&ctx, "SELECT * FROM users").await?,
        vec![
            "+I|1|a|10",
            "+I|2|b|20",
            "-U|1|a|10",
            "+U|1|a|15",
            "-D|2|b|20",
            "+I|2|c|5"
        ]
    );
    // The last rows are {1: (a, 15), 2: (c, 5)}.
    let totals = changelog_lines(&ctx, "SELECT COUNT(*), SUM(score) FROM users").await?;
    let last = totals
        .iter()
        .rev()
        .find(|l| l.starts_with("+I") || l.starts_with("+U"));
    assert_eq!(last.map(|l| &l[3..]), Some("2|20"), "{totals:?}");

    // The key's own columns from the key ('EXCEPT_KEY', named without 'key.fields-prefix'),
    // the value in csv; written the same way.
    mock.create_topic("scores", 1, 1).unwrap();
    produce_upserts(
        &servers,
        "scores",
        &[
            (r#"{"id": "x"}"#, Some("7")),
            (r#"{"id": "y"}"#, Some("8")),
            (r#"{"id": "x"}"#, Some("9")),
        ],
    );
    let scores = |bounded: &str| {
        format!(
            "CREATE TABLE {bounded}scores (k_id STRING, points BIGINT, \
               PRIMARY KEY (k_id) NOT ENFORCED) \
             WITH ('connector' = 'upsert-kafka', 'topic' = 'scores', \
                   'properties.bootstrap.servers' = '{servers}', 'key.format' = 'json', \
                   'key.fields-prefix' = 'k_', 'value.format' = 'csv', \
                   'value.fields-include' = 'EXCEPT_KEY'{})",
            if bounded.is_empty() {
                ""
            } else {
                ", 'scan.bounded.mode' = 'latest-offset'"
            }
        )
    };
    ctx.sql(&scores("read_")).await?;
    assert_eq!(
        changelog_lines(&ctx, "SELECT * FROM read_scores").await?,
        vec!["+I|x|7", "+I|y|8", "-U|x|7", "+U|x|9"]
    );
    // A record without a key, or whose key lacks the key column, is an error naming it, or
    // skipped with 'key.json.ignore-parse-errors'; a value with a line break is one record.
    mock.create_topic("messy", 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::<str, str>::to("messy")
                .partition(0)
                .payload(r#"{"id": 9, "name": "n", "score": 1}"#),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    produce_upserts(
        &servers,
        "messy",
        &[
            (r#"{"other": 1}"#, Some(&rows[0])),
            (
                r#"{"id": 1}"#,
                Some("{\"id\": 1,\n \"name\": \"multi\", \"score\": 2}"),
            ),
        ],
    );
    let messy = |extra: &str| {
        format!(
            "CREATE TABLE messy{} (id BIGINT, name STRING, score BIGINT, \
               PRIMARY KEY (id) NOT ENFORCED) \
             WITH ('connector' = 'upsert-kafka', 'topic' = 'messy', \
                   'properties.bootstrap.servers' = '{servers}', 'key.format' = 'json', \
                   'value.format' = 'json', 'scan.bounded.mode' = 'latest-offset'{extra})",
            if extra.is_empty() { "" } else { "_skipping" }
        )
    };
    ctx.sql(&messy("")).await?;
    let err = changelog_lines(&ctx, "SELECT * FROM messy")
        .await
        .expect_err("a record without a key");
    assert!(
        err.to_string()
            .contains("topic messy partition 0 at offset 0 has no key"),
        "{err}"
    );
    ctx.sql(&messy(", 'key.json.ignore-parse-errors' = 'true'"))
        .await?;
    assert_eq!(
        changelog_lines(&ctx, "SELECT * FROM messy_skipping").await?,
        vec!["+I|1|multi|2"]
    );

    ctx.sql(&scores("")).await?;
    ctx.sql("INSERT INTO scores VALUES ('z', 10)")
        .await?
        .collect()
        .await?;
    let written = read_records(&servers, "scores");
    let last = written.last().unwrap();
    assert_eq!(
        (last.key.as_deref(), last.value.as_deref()),
        (Some(r#"{"id":"z"}"#), Some("10"))
    );
    Ok(())
}

/// An upsert-kafka topic as the versioned table of a temporal join: EUR's update at 2 s is a
/// new version; USD's tombstone deletes with USD's last row, whose time (1 s) it carries, so
/// from 1 s on USD has no rate (as in Flink, a deletion takes effect at its row's time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_join_with_an_upsert_kafka_versioned_table() -> Result<()> {
    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("rates_upsert", 1, 1).unwrap();
    mock.create_topic("orders_eur_usd", 1, 1).unwrap();
    let rate = |currency: &str, rate: i64, at: i64| {
        format!(
            r#"{{"currency": "{currency}", "rate": {rate}, "ts_ms": {}}}"#,
            BASE_MS + at
        )
    };
    let (eur0, usd1, eur2) = (
        rate("EUR", 2, 0),
        rate("USD", 3, 1000),
        rate("EUR", 4, 2000),
    );
    produce_upserts(
        &servers,
        "rates_upsert",
        &[
            (r#"{"currency": "EUR"}"#, Some(&eur0)),
            (r#"{"currency": "USD"}"#, Some(&usd1)),
            (r#"{"currency": "EUR"}"#, Some(&eur2)),
            (r#"{"currency": "USD"}"#, None),
        ],
    );
    let orders: Vec<Record> = (0..8i64)
        .map(|i| Record {
            partition: 0,
            key: None,
            value: format!(
                r#"{{"id": {i}, "currency": "{}", "ts_ms": {}}}"#,
                if i % 2 == 0 { "EUR" } else { "USD" },
                BASE_MS + i * 500
            ),
            ts: BASE_MS + i * 500,
        })
        .collect();
    produce(&servers, "orders_eur_usd", &orders);
    let ctx = sabot::session_context(config(2));
    ctx.sql(&format!(
        "CREATE TABLE rates (currency STRING, rate BIGINT, ts_ms BIGINT, \
           ts AS TO_TIMESTAMP_MILLIS(ts_ms), PRIMARY KEY (currency) NOT ENFORCED, \
           WATERMARK FOR ts AS ts) \
         WITH ('connector' = 'upsert-kafka', 'topic' = 'rates_upsert', \
               'properties.bootstrap.servers' = '{servers}', 'key.format' = 'json', \
               'value.format' = 'json', 'scan.bounded.mode' = 'latest-offset')"
    ))
    .await?;
    ctx.sql(&format!(
        "CREATE TABLE orders (id BIGINT, currency STRING, ts_ms BIGINT, \
           ts AS TO_TIMESTAMP_MILLIS(ts_ms), WATERMARK FOR ts AS ts) \
         WITH ('connector' = 'kafka', 'topic' = 'orders_eur_usd', \
               'properties.bootstrap.servers' = '{servers}', 'format' = 'json', \
               'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset')"
    ))
    .await?;
    let mut got = rows(
        &query(
            &ctx,
            "SELECT o.id, r.rate FROM orders AS o \
             LEFT JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.currency = r.currency",
        )
        .await?,
    );
    got.sort_by_key(|r| r.split('|').next().and_then(|id| id.parse::<i64>().ok()));
    // EUR (even ids): 2 before 2 s, 4 from 2 s; USD (odd ids): never a rate.
    let expected: Vec<String> = (0..8i64)
        .map(|i| match (i % 2, i * 500 < 2000) {
            (0, true) => format!("{i}|2"),
            (0, false) => format!("{i}|4"),
            _ => format!("{i}|"),
        })
        .collect();
    assert_eq!(got, expected);
    Ok(())
}

/// An updating query written to upsert-kafka, exactly once, keyed by its PRIMARY KEY: each
/// record is the latest row of its key (updates in place write no tombstone), the topic's last
/// record per key is the query's answer, and reading the topic back as upsert-kafka rebuilds
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_kafka_round_trip() -> Result<()> {
    use sabot::checkpoint::coordinator::CheckpointConfig;
    use sabot::runtime::job::{JobOptions, Started, start_job};

    let mock = cluster(1);
    let servers = mock.bootstrap_servers();
    mock.create_topic("bids", 4, 1).unwrap();
    mock.create_topic("per_auction", 3, 1).unwrap();
    let records = bids();
    produce(&servers, "bids", &records);
    let ctx = sabot::session_context(config(2));
    ctx.sql(&bids_table(&servers, "")).await?;
    ctx.sql("SET 'execution.runtime-mode' = 'streaming'")
        .await?;
    let per_auction = |extra: &str| {
        format!(
            "CREATE TABLE per_auction (auction BIGINT, n BIGINT, s BIGINT, \
               PRIMARY KEY (auction) NOT ENFORCED) \
             WITH ('connector' = 'upsert-kafka', 'topic' = 'per_auction', \
                   'properties.bootstrap.servers' = '{servers}', 'key.format' = 'json', \
                   'value.format' = 'json'{extra})"
        )
    };
    ctx.sql(&per_auction(
        ", 'sink.delivery-guarantee' = 'exactly-once', \
         'sink.transactional-id-prefix' = 'upserts'",
    ))
    .await?;
    let state = tempfile::tempdir().unwrap();
    let options = JobOptions {
        checkpoint_interval: Some(Duration::from_millis(5)),
        checkpoints: Some((
            CheckpointConfig {
                location: state.path().display().to_string(),
                retained: 3,
                timeout: Duration::from_secs(60),
                local_dir: state.path().join("rocksdb"),
            },
            "upserts-job".to_string(),
        )),
    };
    let df = ctx
        .sql("INSERT INTO per_auction SELECT auction, COUNT(*), SUM(price) FROM bids GROUP BY auction")
        .await?;
    let Started::Running(mut job) = start_job(df, options).await? else {
        panic!("a fresh state directory has nothing to resume");
    };
    while let Some(batch) = job.stream.next().await {
        batch?;
    }
    let mut want: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (i, _) in records.iter().enumerate() {
        let e = want
            .entry(i as i64 % 7)
            .or_insert_with(|| vec!["0".into(), "0".into()]);
        e[0] = (e[0].parse::<i64>().unwrap() + 1).to_string();
        e[1] = (e[1].parse::<i64>().unwrap() + i as i64).to_string();
    }

    // Every record holds its key's row; counts only grow, so no tombstone is written; the
    // last record of each key is the answer.
    let written = read_records(&servers, "per_auction");
    let mut last: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut partition_of: BTreeMap<i64, i32> = BTreeMap::new();
    for r in &written {
        let value = r.value.as_deref().expect("no tombstone");
        let row: serde_json::Value = serde_json::from_str(value).unwrap();
        let auction = row["auction"].as_i64().unwrap();
        assert_eq!(
            r.key.as_deref(),
            Some(format!(r#"{{"auction":{auction}}}"#).as_str())
        );
        // One key, one partition (murmur2 of the key).
        assert_eq!(
            *partition_of.entry(auction).or_insert(r.partition),
            r.partition
        );
        last.insert(auction, vec![row["n"].to_string(), row["s"].to_string()]);
    }
    assert_eq!(last, want);

    let ctx = sabot::session_context(config(2));
    ctx.sql(&per_auction(", 'scan.bounded.mode' = 'latest-offset'"))
        .await?;
    let changes = sabot::result_stream(ctx.sql("SELECT * FROM per_auction").await?).await?;
    let mut batches = changes.batches;
    let mut got = BTreeMap::new();
    while let Some(batch) = batches.next().await {
        apply_changes(&mut got, &batch?);
    }
    assert_eq!(got, want);
    Ok(())
}
