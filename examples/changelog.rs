//! Embedding Sabot: the changelog of an updating query over a table that changes.
//!
//! `cargo run --example changelog`
//!
//! A memory table of orders, and the total per customer read *live*
//! ([`sabot::SabotContext::live_query`]): the rows now, then every INSERT, UPDATE and DELETE
//! made to the table. The result never ends; [`sabot::result_stream`] gives it as a changelog
//! with an `op` column first (`+I`, `-U`, `+U`, `-D`).

use std::time::Duration;

use datafusion::arrow::util::pretty::print_batches;
use datafusion::error::Result;
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<()> {
    // One task: each change comes back as one batch.
    let ctx = sabot::session_context(sabot::SabotConfig {
        parallelism: 1,
        ..sabot::SabotConfig::default()
    });
    ctx.sql("CREATE TABLE orders (customer VARCHAR, amount BIGINT) WITH ('connector' = 'memory')")
        .await?;
    ctx.sql("INSERT INTO orders VALUES ('ann', 10), ('bob', 5)")
        .await?
        .collect()
        .await?;

    let totals = ctx
        .live_query("SELECT customer, SUM(amount) AS total FROM orders GROUP BY customer")
        .await?;
    let mut changes = sabot::result_stream(totals).await?.batches;

    // Each statement changes the table; the totals follow.
    for statement in [
        "INSERT INTO orders VALUES ('ann', 7)",
        "UPDATE orders SET amount = 50 WHERE customer = 'bob'",
        "DELETE FROM orders WHERE customer = 'ann' AND amount = 10",
    ] {
        let Some(batch) = changes.next().await else {
            break;
        };
        print_batches(&[batch?])?;
        println!("{statement}");
        ctx.sql(statement).await?.collect().await?;
    }
    // The changes of the last statement.
    if let Ok(Some(batch)) = tokio::time::timeout(Duration::from_secs(5), changes.next()).await {
        print_batches(&[batch?])?;
    }
    Ok(())
}
