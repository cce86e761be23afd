//! Nexmark q5, q7 and q8 (window joins, a cascading window aggregation, an interval join) over
//! generated events, checked against independent batch computations of the same questions:
//! plain DataFusion SQL with window arithmetic on millisecond integers over the same events
//! read without watermarks.

mod common;

use datafusion::common::Result;
use sabot::SabotConfig;

use common::rows;

const EVENTS: &str = "200000";

fn config(parallelism: usize) -> SabotConfig {
    SabotConfig {
        parallelism,
        batch_size: 1000,
        checkpoint_interval: None,
        ..SabotConfig::default()
    }
}

/// Creates the three Nexmark streams (with watermarks) and their batch twins `*_raw`.
async fn tables(ctx: &sabot::SabotContext) -> Result<()> {
    let specs = [
        (
            "person",
            "id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, \
             state VARCHAR, date_time TIMESTAMP(3), extra VARCHAR",
        ),
        (
            "auction",
            "id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, \
             date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, \
             extra VARCHAR",
        ),
        (
            "bid",
            "auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, \
             date_time TIMESTAMP(3), extra VARCHAR",
        ),
    ];
    for (name, columns) in specs {
        let with = format!(
            "WITH ('connector' = 'nexmark', 'nexmark.table.type' = '{name}', 'events.num' = \
             '{EVENTS}', 'tps' = '2000', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00')"
        );
        ctx.sql(&format!(
            "CREATE TABLE {name} ({columns}, WATERMARK FOR date_time AS date_time - INTERVAL '4' \
             SECOND) {with}"
        ))
        .await?;
        ctx.sql(&format!("CREATE TABLE {name}_raw ({columns}) {with}"))
            .await?;
    }
    Ok(())
}

async fn query(ctx: &sabot::SabotContext, sql: &str) -> Result<Vec<String>> {
    Ok(rows(&ctx.sql(sql).await?.collect().await?))
}

/// Runs `streaming` at parallelism 1 and 3 and `batch` once; all three must agree, and not
/// trivially.
async fn check(streaming: &str, batch: &str, at_least: usize) -> Result<()> {
    let mut expected = None;
    for parallelism in [1, 3] {
        let ctx = sabot::session_context(config(parallelism));
        tables(&ctx).await?;
        let plan = query(&ctx, &format!("EXPLAIN {streaming}"))
            .await?
            .join("\n");
        assert!(plan.contains("JoinExec"), "{plan}");
        let got = query(&ctx, streaming).await?;
        let want = match &expected {
            Some(want) => want,
            None => expected.insert(query(&ctx, batch).await?),
        };
        assert!(want.len() >= at_least, "only {} expected rows", want.len());
        assert_eq!(&got, want, "parallelism {parallelism}");
    }
    Ok(())
}

/// q5, hot items: the auctions with the most bids in each 10 s window sliding by 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_q5_matches_batch() -> Result<()> {
    check(
        "SELECT AuctionBids.auction, AuctionBids.num
         FROM (
           SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
           FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
           GROUP BY auction, window_start, window_end
         ) AS AuctionBids
         JOIN (
           SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
           FROM (
             SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
             FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
             GROUP BY auction, window_start, window_end
           ) AS CountBids
           GROUP BY CountBids.starttime, CountBids.endtime
         ) AS MaxBids
         ON AuctionBids.starttime = MaxBids.starttime AND
            AuctionBids.endtime = MaxBids.endtime AND
            AuctionBids.num >= MaxBids.maxn",
        // Each bid is in the 5 windows starting at its 2 s slice and the 4 slices before.
        "WITH hb AS (
           SELECT auction, CAST(date_time AS BIGINT) / 2000 * 2000 - k * 2000 AS ws
           FROM bid_raw CROSS JOIN (VALUES (0), (1), (2), (3), (4)) AS t(k)),
         counts AS (SELECT auction, ws, count(*) AS num FROM hb GROUP BY auction, ws),
         maxes AS (SELECT ws, max(num) AS maxn FROM counts GROUP BY ws)
         SELECT c.auction, c.num FROM counts c JOIN maxes m ON c.ws = m.ws AND c.num >= m.maxn",
        50,
    )
    .await
}

/// q7, highest bid: the bids of each 10 s window with its highest price (interval join of the
/// bids with the window maxima).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_q7_matches_batch() -> Result<()> {
    check(
        "SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
         FROM bid B
         JOIN (
           SELECT MAX(price) AS maxprice, window_end AS date_time
           FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
           GROUP BY window_start, window_end
         ) B1
         ON B.price = B1.maxprice
         WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10' SECOND AND B1.date_time",
        "WITH w AS (
           SELECT CAST(date_time AS BIGINT) / 10000 * 10000 + 10000 AS wend, max(price) AS maxprice
           FROM bid_raw GROUP BY 1)
         SELECT B.auction, B.price, B.bidder, B.date_time, B.extra
         FROM bid_raw B JOIN w ON B.price = w.maxprice
         WHERE CAST(B.date_time AS BIGINT) BETWEEN w.wend - 10000 AND w.wend",
        10,
    )
    .await
}

/// q8, new users: people who registered and opened an auction in the same 10 s window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_q8_matches_batch() -> Result<()> {
    check(
        "SELECT P.id, P.name, CAST(P.starttime AS BIGINT)
         FROM (
           SELECT id, name, window_start AS starttime, window_end AS endtime
           FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
           GROUP BY id, name, window_start, window_end
         ) P
         JOIN (
           SELECT seller, window_start AS starttime, window_end AS endtime
           FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
           GROUP BY seller, window_start, window_end
         ) A
         ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
        "WITH p AS (
           SELECT DISTINCT id, name, CAST(date_time AS BIGINT) / 10000 * 10000 AS ws FROM person_raw),
         a AS (
           SELECT DISTINCT seller, CAST(date_time AS BIGINT) / 10000 * 10000 AS ws FROM auction_raw)
         SELECT p.id, p.name, p.ws FROM p JOIN a ON p.id = a.seller AND p.ws = a.ws",
        20,
    )
    .await
}
