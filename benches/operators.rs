//! Per-operator throughput, so that a regression shows up in the operator that caused it:
//!
//! - `generator`: the Nexmark generator (bids, every column) and the `datagen` source;
//! - `decode`: JSON and CSV lines (Nexmark bids, ~200 bytes each) into Arrow batches, as the
//!   Kafka and filesystem sources decode them;
//! - `watermark`: the same pass-through query over a table with and without a WATERMARK (the
//!   difference is the cost of computing and propagating watermarks), and the tracker that
//!   combines the watermarks of several inputs;
//! - `exchange`: the hash exchange routing 1M rows from 2 input partitions to 2 outputs.
//!
//! Window aggregation has its own bench (`window_aggregation`). Each figure is elements (rows or
//! events) per second on one task; `cargo bench --bench operators [-- FILTER]`.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::col;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use sabot::SabotConfig;
use sabot::connectors::format::CsvOptions;
use sabot::connectors::format::LineChunk;
use sabot::connectors::format::LineDecoder;
use sabot::connectors::format::csv::CsvDecoder;
use sabot::connectors::format::json::JsonDecoder;
use sabot::connectors::nexmark::generator::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use sabot::context::SabotContext;
use sabot::physical::exchange::{ExchangeMode, StreamExchangeExec};
use sabot::physical::watermark_tracker::WatermarkTracker;
use tokio::runtime::Runtime;

const EVENTS: u64 = 1_000_000;
const LINES: usize = 100_000;

fn bid_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("date_time", ts, false),
        Field::new("extra", DataType::Utf8, false),
    ]))
}

fn bids(events: u64) -> NexmarkGenerator {
    NexmarkGenerator::try_new(
        NexmarkConfig {
            base_time_ms: 1_704_067_200_000,
            tps: 100_000,
        },
        NexmarkTable::Bid,
        bid_schema(),
        0,
        1,
        Some(events),
    )
    .expect("generator")
}

fn generator(c: &mut Criterion) {
    let mut group = c.benchmark_group("generator");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("nexmark_bids", |b| {
        b.iter(|| {
            let mut g = bids(EVENTS);
            let mut rows = 0;
            while let Some(batch) = g.next_batch(8192).expect("batch") {
                rows += batch.num_rows();
            }
            rows
        })
    });
    let rt = Runtime::new().expect("runtime");
    let ctx = sabot::session_context(config());
    rt.block_on(async {
        ctx.sql(&format!(
            "CREATE TABLE gen (id BIGINT, k BIGINT, v DOUBLE, s VARCHAR) WITH ('connector' = \
             'datagen', 'rows-per-second' = '0', 'number-of-rows' = '{EVENTS}', \
             'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '{EVENTS}', \
             'fields.k.min' = '1', 'fields.k.max' = '1000', 'fields.s.length' = '16')"
        ))
        .await
        .expect("datagen table");
    });
    group.bench_function("datagen_4_columns", |b| {
        b.iter(|| run(&rt, &ctx, "SELECT id, k, v, s FROM gen"))
    });
    group.finish();
}

/// `n` Nexmark bids as JSON and as CSV lines.
fn bid_lines(n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut g = bids(n as u64 * 50 / 46 + 50);
    let mut json = Vec::with_capacity(n);
    let mut csv = Vec::with_capacity(n);
    while json.len() < n {
        let Some(batch) = g.next_batch(8192).expect("batch") else {
            break;
        };
        for row in 0..batch.num_rows() {
            if json.len() == n {
                break;
            }
            let cell = |i: usize| array_value_to_string(batch.column(i), row).expect("cell");
            let ts = cell(5).replace('T', " ");
            json.push(
                format!(
                    r#"{{"auction":{},"bidder":{},"price":{},"channel":"{}","url":"{}","date_time":"{}","extra":"{}"}}"#,
                    cell(0),
                    cell(1),
                    cell(2),
                    cell(3),
                    cell(4),
                    ts,
                    cell(6)
                )
                .into_bytes(),
            );
            csv.push(
                format!(
                    "{},{},{},{},{},{},{}",
                    cell(0),
                    cell(1),
                    cell(2),
                    cell(3),
                    cell(4),
                    ts,
                    cell(6)
                )
                .into_bytes(),
            );
        }
    }
    (json, csv)
}

fn decode(c: &mut Criterion) {
    let (json, csv) = bid_lines(LINES);
    let mut group = c.benchmark_group("decode");
    group.sample_size(10);
    group.throughput(Throughput::Elements(LINES as u64));
    let mut decoder = JsonDecoder::new(bid_schema(), false);
    group.bench_function("json_bids", |b| b.iter(|| decode_all(&mut decoder, &json)));
    let mut decoder = CsvDecoder::try_new(
        bid_schema(),
        (0..7).collect(),
        &CsvOptions::default(),
        false,
    )
    .expect("csv decoder");
    group.bench_function("csv_bids", |b| b.iter(|| decode_all(&mut decoder, &csv)));
    group.finish();
}

/// Decodes `lines` in chunks of 8192, as a source does; the rows decoded.
fn decode_all(decoder: &mut dyn LineDecoder, lines: &[Vec<u8>]) -> usize {
    let mut rows = 0;
    for (i, chunk) in lines.chunks(8192).enumerate() {
        let batch: Option<RecordBatch> = decoder
            .decode(LineChunk::of_file("bench", i * 8192 + 1, chunk))
            .expect("decode");
        rows += batch.map_or(0, |b| b.num_rows());
    }
    assert_eq!(rows, lines.len(), "every line decodes");
    rows
}

fn watermark(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let ctx = sabot::session_context(config());
    rt.block_on(async {
        for (name, watermark) in [
            (
                "with_watermark",
                ", WATERMARK FOR ts AS ts - INTERVAL '1' SECOND",
            ),
            ("without_watermark", ""),
        ] {
            ctx.sql(&format!(
                "CREATE TABLE {name} (k BIGINT, v BIGINT, ts TIMESTAMP(3){watermark})"
            ))
            .await
            .expect("create");
            ctx.sql(&format!(
                "INSERT INTO {name} SELECT value % 1000, value, \
                 to_timestamp_millis(1704067200000 + value) FROM generate_series(0, {})",
                EVENTS - 1
            ))
            .await
            .expect("insert")
            .collect()
            .await
            .expect("insert rows");
        }
    });
    let mut group = c.benchmark_group("watermark");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    for name in ["with_watermark", "without_watermark"] {
        let sql = format!("SELECT k, v, ts FROM {name} WHERE v >= 0");
        group.bench_function(format!("pass_through_{name}"), |b| {
            b.iter(|| run(&rt, &ctx, &sql))
        });
    }
    group.bench_function("tracker_min_of_8_inputs", |b| {
        b.iter(|| {
            let mut tracker = WatermarkTracker::new(8);
            let mut advanced = 0u64;
            for i in 0..EVENTS as i64 {
                if tracker.update((i % 8) as usize, i).is_some() {
                    advanced += 1;
                }
            }
            advanced
        })
    });
    group.finish();
}

fn exchange(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let ctx = sabot::session_context(config());
    let batches: Vec<RecordBatch> = rt.block_on(async {
        ctx.sql(&format!(
            "SELECT value % 1000 AS k, value AS v FROM generate_series(0, {})",
            EVENTS - 1
        ))
        .await
        .expect("input")
        .collect()
        .await
        .expect("input rows")
    });
    let schema = batches[0].schema();
    let half = batches.len() / 2;
    let partitions = vec![batches[..half].to_vec(), batches[half..].to_vec()];
    let mut group = c.benchmark_group("exchange");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("hash_2_to_2", |b| {
        b.iter(|| {
            let input = MemorySourceConfig::try_new_exec(&partitions, Arc::clone(&schema), None)
                .expect("memory input");
            let key = col("k", &schema).expect("key");
            let exchange: Arc<dyn ExecutionPlan> = Arc::new(
                StreamExchangeExec::try_new(input, ExchangeMode::Hash(vec![key]), 2)
                    .expect("exchange"),
            );
            rt.block_on(async {
                let task = Arc::new(TaskContext::default());
                let outputs = (0..2).map(|p| {
                    let mut stream = exchange.execute(p, Arc::clone(&task)).expect("execute");
                    async move {
                        let mut rows = 0;
                        while let Some(batch) = stream.next().await {
                            rows += batch.expect("batch").num_rows();
                        }
                        rows
                    }
                });
                let rows: usize = futures::future::join_all(outputs).await.into_iter().sum();
                assert_eq!(rows as u64, EVENTS, "every row routed once");
                rows
            })
        })
    });
    group.finish();
}

fn config() -> SabotConfig {
    SabotConfig {
        parallelism: 1,
        batch_size: 8192,
        checkpoint_interval: None,
        ..SabotConfig::default()
    }
}

fn run(rt: &Runtime, ctx: &SabotContext, sql: &str) -> usize {
    rt.block_on(async {
        let mut stream = ctx
            .sql(sql)
            .await
            .expect("plan")
            .execute_stream()
            .await
            .expect("execute");
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            rows += batch.expect("batch").num_rows();
        }
        rows
    })
}

criterion_group!(benches, generator, decode, watermark, exchange);
criterion_main!(benches);
