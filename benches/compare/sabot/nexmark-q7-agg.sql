-- nexmark q7-agg: the maximum price of every 10 s window (the aggregation inside q7). ${DATA} is replaced by compare.py.
SET 'parallelism' = '1';
SET 'checkpoint.interval' = '0';
-- The bids of ${DATA} (CSV files written by nexmark-gen.sql, the same files Flink reads); the
-- event time is the epoch-milliseconds column, as a computed column.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  ts AS TO_TIMESTAMP_MILLIS(date_time_ms),
  WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}', 'format' = 'csv');
CREATE TABLE discard (window_start TIMESTAMP(3), window_end TIMESTAMP(3), maxprice BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT window_start, window_end, MAX(price) AS maxprice
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
