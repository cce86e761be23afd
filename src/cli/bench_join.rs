//! `sabot bench join`: the broadcast join's probe rate.
//!
//! A `datagen` stream of `(k, v)` rows with `k` uniform over the table's ids is joined with an
//! in-memory dimension table of `--table-rows` rows (`id`, `name`), into a blackhole. The same
//! stream without the join runs first, so the join's own cost per probe row is the difference.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Result;

use super::bench::{BenchResult, measure_script};

fn stream_script(rows: u64, table_rows: u64, select: &str) -> String {
    format!(
        "CREATE TABLE probe (k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) \
         WITH ('connector' = 'datagen', \
           'rows-per-second' = '0', 'number-of-rows' = '{rows}', \
           'fields.k.kind' = 'random', 'fields.k.min' = '0', 'fields.k.max' = '{}');\n\
         CREATE TABLE discard (k BIGINT, v BIGINT, name VARCHAR) WITH ('connector' = 'blackhole');\n\
         INSERT INTO discard {select};",
        table_rows.saturating_sub(1)
    )
}

/// The dimension table: ids `0..rows` with a short name each.
fn dimension(rows: u64) -> Result<Vec<RecordBatch>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let mut batches = Vec::new();
    let mut start = 0;
    while start < rows {
        let end = (start + 65_536).min(rows);
        let ids: Vec<i64> = (start as i64..end as i64).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("name-{i}")).collect();
        batches.push(RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )?);
        start = end;
    }
    Ok(batches)
}

/// The baseline (no join) and the join, over `rows` stream rows.
pub async fn bench(rows: u64, table_rows: u64, parallelism: usize) -> Result<Vec<BenchResult>> {
    let table_rows = table_rows.max(1);
    let baseline = stream_script(rows, table_rows, "SELECT k, v, 'x' FROM probe");
    let base = measure_script("scan-only", &baseline, parallelism, |_| Ok(())).await?;
    let joined = stream_script(
        rows,
        table_rows,
        "SELECT p.k, p.v, d.name FROM probe p JOIN dim d ON p.k = d.id",
    );
    let batches = dimension(table_rows)?;
    let join = measure_script(
        &format!("join-{table_rows}"),
        &joined,
        parallelism,
        move |ctx| ctx.register_dimension_table("dim", batches),
    )
    .await?;
    Ok(vec![base, join])
}
