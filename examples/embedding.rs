//! Embedding Sabot in a Rust program: declare a stream, ask a windowed question, read the
//! windows as they close from an ordinary DataFusion record batch stream.
//!
//! Run with `cargo run --example embedding`.

use datafusion::arrow::util::pretty::print_batches;
use datafusion::error::Result;
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<()> {
    let ctx = sabot::session_context(sabot::SabotConfig::default());

    // An unbounded stream of Nexmark bids, generated in real time at 2,000 events per second.
    ctx.sql(
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
           WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
         ) WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'tps' = '2000')",
    )
    .await?;

    // The hottest auctions of every 2-second window.
    let mut windows = ctx
        .sql(
            "SELECT window_end, auction, COUNT(*) AS bids, MAX(price) AS top_price
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND))
             GROUP BY auction, window_start, window_end
             HAVING COUNT(*) >= 50",
        )
        .await?
        .execute_stream()
        .await?;

    // Each batch is the result of windows that just closed; stop after five of them.
    let mut shown = 0;
    while let Some(batch) = windows.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        print_batches(&[batch])?;
        shown += 1;
        if shown == 5 {
            break;
        }
    }
    Ok(())
}
