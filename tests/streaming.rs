//! Whole-engine streaming behaviour through the embedding API: incremental results from an
//! unbounded source, barriers reaching every sink partition, idle partitions, batch sizes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{Int64Type, SchemaRef, TimestampMillisecondType};
use datafusion::common::Result;
use futures::StreamExt;
use sabot::SabotConfig;
use sabot::connectors::{SourceBatch, SourceConnector, SourceReader};
use sabot::planner::connector_table::ConnectorTable;
use sabot::planner::ddl::{parse_create_table, resolve};
use sabot::runtime::job::{JobOptions, Started, start_job};

fn config(parallelism: usize) -> SabotConfig {
    SabotConfig {
        parallelism,
        batch_size: 1000,
        checkpoint_interval: None,
        ..SabotConfig::default()
    }
}

/// Windows come out while the unbounded source is still running, each exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_stream_out_of_an_unbounded_source() -> Result<()> {
    let ctx = sabot::session_context(config(2));
    // 1000 events per second of event time: a 1 s window holds 1000 events, 920 of them bids.
    ctx.sql(
        "CREATE TABLE bid (auction BIGINT, date_time TIMESTAMP(3),
           WATERMARK FOR date_time AS date_time)
         WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'tps' = '1000',
               'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00')",
    )
    .await?;
    let mut stream = ctx
        .sql(
            "SELECT window_start, COUNT(*) AS bids
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
             GROUP BY window_start, window_end",
        )
        .await?
        .execute_stream()
        .await?;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let batch = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("a window within a minute")
            .expect("the stream does not end")?;
        let starts = batch.column(0).as_primitive::<TimestampMillisecondType>();
        let counts = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            seen.push((starts.value(i), counts.value(i)));
        }
    }
    let base = 1_704_067_200_000;
    assert_eq!(
        seen[..3],
        [(base, 920), (base + 1000, 920), (base + 2000, 920)]
    );
    Ok(())
}

/// Barriers injected at the sources pass the exchange and the windows and reach every sink
/// partition, epoch after epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barriers_reach_every_sink_partition() -> Result<()> {
    let ctx = sabot::session_context(config(2));
    ctx.sql(
        "CREATE TABLE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP(3),
           WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
         WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'tps' = '20000')",
    )
    .await?;
    ctx.sql("CREATE TABLE out (auction BIGINT, n BIGINT) WITH ('connector' = 'blackhole')")
        .await?;
    let df = ctx
        .sql(
            "INSERT INTO out SELECT auction, COUNT(*)
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '100' MILLISECOND))
             GROUP BY auction, window_start, window_end",
        )
        .await?;
    let options = JobOptions {
        checkpoint_interval: Some(Duration::from_millis(20)),
        checkpoints: None,
    };
    let Started::Running(mut job) = start_job(df, options).await? else {
        panic!("a job without a state directory always runs");
    };
    let context = Arc::clone(&job.context);
    let poll = tokio::spawn(async move { while job.stream.next().await.is_some() {} });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    // Windows of 100 ms fire about 1.1 s after they start (1 s watermark delay, real time).
    while context.completed_epoch() < 5 || context.stats.rows_out() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "barriers completed: {}, rows written: {}",
            context.completed_epoch(),
            context.stats.rows_out()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let epoch = context.completed_epoch();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(context.completed_epoch() > epoch, "barriers keep flowing");
    poll.abort();
    Ok(())
}

/// A test source: partition 0 emits one row per call at 1 s steps of event time, then waits
/// forever; partition 1 never emits anything and never ends.
#[derive(Debug)]
struct StallingSource {
    schema: SchemaRef,
    rows: i64,
}

struct StallingReader {
    schema: SchemaRef,
    projection: Vec<usize>,
    next: i64,
    rows: i64,
}

#[async_trait]
impl SourceReader for StallingReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        if self.next >= self.rows {
            futures::future::pending::<()>().await;
        }
        let i = self.next;
        self.next += 1;
        let all: Vec<datafusion::arrow::array::ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![i])),
            Arc::new(TimestampMillisecondArray::from(vec![
                1_704_067_200_000 + i * 1000,
            ])),
        ];
        let columns = self
            .projection
            .iter()
            .map(|&c| Arc::clone(&all[c]))
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        Ok(Some(SourceBatch::new(batch)))
    }
}

impl SourceConnector for StallingSource {
    fn name(&self) -> &'static str {
        "stalling"
    }
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn is_bounded(&self) -> bool {
        false
    }
    fn num_partitions(&self, _parallelism: usize) -> Result<usize> {
        Ok(2)
    }
    fn open(
        &self,
        partition: usize,
        _num_partitions: usize,
        projection: &[usize],
        _batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        Ok(Box::new(StallingReader {
            schema: Arc::new(self.schema.project(projection)?),
            projection: projection.to_vec(),
            next: 0,
            rows: if partition == 0 { self.rows } else { 0 },
        }))
    }
    fn explain(&self) -> String {
        String::new()
    }
}

async fn first_window(idle_timeout: Option<&str>, wait: Duration) -> Result<Option<(i64, i64)>> {
    let ctx = sabot::session_context(config(2));
    let with = idle_timeout
        .map(|t| format!(" WITH ('scan.watermark.idle-timeout' = '{t}')"))
        .unwrap_or_default();
    let ddl = format!("CREATE TABLE s (v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts){with}");
    let definition = resolve(parse_create_table(&ddl)?.expect("flink DDL"), &ctx)?;
    let source = Arc::new(StallingSource {
        schema: definition.source_schema(),
        rows: 5,
    });
    ctx.register_table(
        "s",
        Arc::new(ConnectorTable::new(
            Arc::new(definition),
            Some(source),
            None,
        )),
    )?;
    let mut stream = ctx
        .sql(
            "SELECT window_start, COUNT(*) FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' SECOND))
             GROUP BY window_start, window_end",
        )
        .await?
        .execute_stream()
        .await?;
    Ok(match tokio::time::timeout(wait, stream.next()).await {
        Ok(Some(batch)) => {
            let batch = batch?;
            Some((
                batch
                    .column(0)
                    .as_primitive::<TimestampMillisecondType>()
                    .value(0),
                batch.column(1).as_primitive::<Int64Type>().value(0),
            ))
        }
        _ => None,
    })
}

/// A partition without data holds the watermark back, until the idle timeout releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_stops_holding_back_the_watermark() -> Result<()> {
    // Without an idle timeout the silent partition keeps the watermark at -inf: no window.
    assert_eq!(first_window(None, Duration::from_millis(1500)).await?, None);
    // With one, partition 0's watermark (4 s) fires the windows before it: the first is [0, 1s).
    let first = first_window(Some("200 ms"), Duration::from_secs(30)).await?;
    assert_eq!(first, Some((1_704_067_200_000, 1)));
    Ok(())
}

/// Results do not depend on the batch size: sessions over out-of-order rows with late ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_does_not_change_results() -> Result<()> {
    let mut results = Vec::new();
    for batch_size in [1, 7, 8192] {
        let ctx = sabot::session_context(SabotConfig {
            parallelism: 2,
            batch_size,
            checkpoint_interval: None,
            ..SabotConfig::default()
        });
        ctx.sql("CREATE TABLE t (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)")
            .await?;
        // Rows out of order by up to 4 s, 2 s allowed: some are late, which ones depends only
        // on the order of arrival.
        let rows: Vec<String> = (0i64..200)
            .map(|i| {
                let jitter = (i * 7919) % 5;
                format!(
                    "({}, to_timestamp_millis({}))",
                    i % 3,
                    1_704_067_200_000 + (i - jitter) * 700
                )
            })
            .collect();
        ctx.sql(&format!("INSERT INTO t VALUES {}", rows.join(", ")))
            .await?
            .collect()
            .await?;
        let batches = ctx
            .sql(
                "SELECT k, window_start, window_end, COUNT(*) AS n FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '1' SECOND))
                 GROUP BY k, window_start, window_end ORDER BY k, window_start",
            )
            .await?
            .collect()
            .await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
        results.push(text);
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    assert!(results[0].lines().count() > 10, "{}", results[0]);
    Ok(())
}

/// Statements too deep to plan overflowed the stack of whatever thread ran `ctx.sql` (an
/// embedder's Tokio worker has 2 MiB): they are refused with SQLSTATE 54001, and long AND/OR
/// chains are balanced and run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_too_deep_to_plan_are_errors_and_long_or_chains_run() -> Result<()> {
    let ctx = sabot::session_context(config(2));
    let deep = [
        format!("SELECT {}", vec!["1"; 20_000].join("+")),
        format!("SELECT 'a'{}", " || 'a'".repeat(20_000)),
        format!("SELECT 1{}", "::BIGINT".repeat(20_000)),
        vec!["SELECT 1"; 5_000].join(" UNION ALL "),
        format!("SELECT {}1", "- ".repeat(20_000)),
    ];
    for sql in &deep {
        let e = ctx.sql(sql).await.expect_err("too deep");
        let coded = sabot::error::sqlstate_error(&e).map(|c| c.code);
        // Unary minus nests through the parser, which has its own limit (also 54001 over the
        // wire).
        assert!(
            coded == Some("54001") || e.to_string().contains("RecursionLimitExceeded"),
            "{}: {e}",
            &sql[..40]
        );
    }
    ctx.sql("CREATE TABLE n (a BIGINT)")
        .await?
        .collect()
        .await?;
    ctx.sql("INSERT INTO n VALUES (1), (2), (3), (20000)")
        .await?
        .collect()
        .await?;
    let ors: Vec<String> = (0..10_000).map(|i| format!("a = {i}")).collect();
    let sql = format!("SELECT COUNT(*) FROM n WHERE {}", ors.join(" OR "));
    let batches = ctx.sql(&sql).await?.collect().await?;
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 3);
    // Just under the limit, planned and run on a worker's stack.
    let sums = format!("SELECT {} FROM n", vec!["a"; 990].join(" + "));
    let batches = ctx.sql(&sums).await?.collect().await?;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
    Ok(())
}
