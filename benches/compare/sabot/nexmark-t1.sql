-- temporal join t1: every bid with its auction as of the bid's time (FOR SYSTEM_TIME AS OF;
-- the auctions a versioned table, one version each). ${DATA} is replaced by compare.py.
SET 'parallelism' = '1';
SET 'checkpoint.interval' = '0';
-- The files are bounded: read them as a stream (Flink's streaming mode), so that the result is
-- a changelog where it changes, as in Flink.
SET 'execution.runtime-mode' = 'streaming';
-- The tables of ${DATA} (CSV files written by nexmark-gen-tables.sql, the same files Flink reads).
CREATE TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time_ms BIGINT, expires_ms BIGINT, seller BIGINT, category BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_MILLIS(date_time_ms),
  expires AS TO_TIMESTAMP_MILLIS(expires_ms),
  PRIMARY KEY (id) NOT ENFORCED,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/auction', 'format' = 'csv');
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_MILLIS(date_time_ms),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bid', 'format' = 'csv');
CREATE TABLE discard (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), seller BIGINT, category BIGINT, reserve BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT B.auction, B.bidder, B.price, B.date_time, A.seller, A.category, A.reserve
FROM bid AS B JOIN auction FOR SYSTEM_TIME AS OF B.date_time AS A ON B.auction = A.id;
