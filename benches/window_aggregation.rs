//! Window aggregation throughput: TUMBLE and HOP over 1,000 and 100,000 keys, one task.
//!
//! Input: 1,000,000 rows in an in-memory table with a watermark, one row per millisecond of event
//! time (1,000 s: a hundred 10 s windows), key = row % keys. Each iteration runs the windowed
//! query to the end; the throughput criterion reports is rows per second on one core
//! (parallelism 1).
//!
//! `cargo bench --bench window_aggregation`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sabot::SabotConfig;
use sabot::context::SabotContext;
use tokio::runtime::Runtime;

const ROWS: u64 = 1_000_000;

fn setup(rt: &Runtime, keys: u64) -> SabotContext {
    rt.block_on(async {
        let ctx = sabot::session_context(SabotConfig {
            parallelism: 1,
            batch_size: 8192,
            checkpoint_interval: None,
            ..SabotConfig::default()
        });
        ctx.sql("CREATE TABLE t (k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)")
            .await
            .expect("create");
        ctx.sql(&format!(
            "INSERT INTO t SELECT value % {keys}, value, to_timestamp_millis(1704067200000 + value) \
             FROM generate_series(0, {})",
            ROWS - 1
        ))
        .await
        .expect("insert")
        .collect()
        .await
        .expect("insert rows");
        ctx
    })
}

fn run(rt: &Runtime, ctx: &SabotContext, sql: &str) -> usize {
    rt.block_on(async {
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        batches.iter().map(|b| b.num_rows()).sum()
    })
}

fn window_aggregation(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("window_aggregation");
    group.throughput(Throughput::Elements(ROWS));
    group.sample_size(10);
    for keys in [1_000u64, 100_000] {
        let ctx = setup(&rt, keys);
        let tumble = "SELECT k, window_start, COUNT(*), SUM(v), MAX(v) \
             FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
             GROUP BY k, window_start, window_end";
        let hop = "SELECT k, window_start, COUNT(*), SUM(v), MAX(v) \
             FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' SECOND)) \
             GROUP BY k, window_start, window_end";
        group.bench_function(format!("tumble_{keys}_keys"), |b| {
            b.iter(|| run(&rt, &ctx, tumble))
        });
        group.bench_function(format!("hop_{keys}_keys"), |b| {
            b.iter(|| run(&rt, &ctx, hop))
        });
    }
    group.finish();
}

criterion_group!(benches, window_aggregation);
criterion_main!(benches);
