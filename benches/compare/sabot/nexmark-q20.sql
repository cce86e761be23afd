-- nexmark q20: expand bid with auction: bids of category-10 auctions with the auction's columns
-- (a regular join). ${DATA} is replaced by compare.py.
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
CREATE TABLE discard (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, bid_date_time TIMESTAMP(3), bid_extra VARCHAR,
  item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, auction_date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, auction_extra VARCHAR)
WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT auction, bidder, price, channel, url, B.date_time, B.extra,
       item_name, description, initial_bid, reserve, A.date_time, A.expires, seller, category, A.extra
FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id
WHERE A.category = 10;
