-- nexmark u1: bids and the highest price per auction, without a window (an updating aggregate). ${DATA} is replaced by compare.py.
SET 'parallelism' = '1';
SET 'checkpoint.interval' = '0';
-- The files are bounded: read them as a stream (Flink's streaming mode), so that the result is
-- a changelog, as in Flink.
SET 'execution.runtime-mode' = 'streaming';
-- The bids of ${DATA} (CSV files written by nexmark-gen.sql, the same files Flink reads).
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  ts AS TO_TIMESTAMP_MILLIS(date_time_ms),
  WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}', 'format' = 'csv');
CREATE TABLE discard (auction BIGINT, bids BIGINT, top_price BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT auction, COUNT(*) AS bids, MAX(price) AS top_price FROM bid GROUP BY auction;
