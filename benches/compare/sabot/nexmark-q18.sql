-- nexmark q18: the last bid per bidder and auction (deduplication keeping the last row: ROW_NUMBER()
-- over the event time descending, rank 1), an updating query. ${DATA} is replaced by compare.py.
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
CREATE TABLE discard (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, ts TIMESTAMP(3), extra VARCHAR) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT auction, bidder, price, channel, url, ts, extra
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY ts DESC) AS rank_number FROM bid)
WHERE rank_number <= 1;
