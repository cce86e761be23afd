-- nexmark q9: winning bids: each auction's highest bid in its lifetime, a top-1 per auction over
-- a regular join. ${DATA} is replaced by compare.py.
SET 'parallelism' = '1';
SET 'checkpoint.interval' = '0';
-- The files are bounded: read them as a stream (Flink's streaming mode), so that the result is
-- a changelog where it changes, as in Flink.
SET 'execution.runtime-mode' = 'streaming';
-- The tables of ${DATA} (CSV files written by nexmark-gen-tables.sql, the same files Flink reads).
CREATE TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time_ms BIGINT, expires_ms BIGINT, seller BIGINT, category BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_MILLIS(date_time_ms),
  expires AS TO_TIMESTAMP_MILLIS(expires_ms),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/auction', 'format' = 'csv');
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_MILLIS(date_time_ms),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bid', 'format' = 'csv');
CREATE TABLE discard (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR,
  auction BIGINT, bidder BIGINT, price BIGINT, bid_date_time TIMESTAMP(3), bid_extra VARCHAR) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, extra,
       auction, bidder, price, bid_date_time, bid_extra
FROM (
  SELECT A.id, A.item_name, A.description, A.initial_bid, A.reserve, A.date_time, A.expires, A.seller, A.category, A.extra,
    B.auction, B.bidder, B.price, B.date_time AS bid_date_time, B.extra AS bid_extra,
    ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC) AS rownum
  FROM auction A, bid B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
)
WHERE rownum <= 1;
