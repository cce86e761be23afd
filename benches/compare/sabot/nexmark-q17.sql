-- nexmark q17: auction statistics per day, an updating GROUP BY on the formatted day, as the Nexmark suite writes it. ${DATA} is replaced by compare.py.
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
CREATE TABLE discard (auction BIGINT, day VARCHAR, total_bids BIGINT, rank1_bids BIGINT, rank2_bids BIGINT, rank3_bids BIGINT,
  min_price BIGINT, max_price BIGINT, avg_price BIGINT, sum_price BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT
  auction,
  to_char(ts, '%Y-%m-%d') AS day,
  COUNT(*) AS total_bids,
  COUNT(*) FILTER (WHERE price < 10000) AS rank1_bids,
  COUNT(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
  COUNT(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
  MIN(price) AS min_price,
  MAX(price) AS max_price,
  CAST(AVG(price) AS BIGINT) AS avg_price,
  SUM(price) AS sum_price
FROM bid
GROUP BY auction, to_char(ts, '%Y-%m-%d');
