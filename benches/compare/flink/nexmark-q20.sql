-- nexmark q20: expand bid with auction: bids of category-10 auctions with the auction's columns
-- (a regular join). ${DATA} is replaced by compare.py.
-- flink_job.py sets parallelism.default = 1, table.exec.resource.default-parallelism = 1,
-- table.local-time-zone = UTC; checkpointing stays off and mini-batch too (Flink's defaults).
-- The tables of ${DATA} (CSV files written by Sabot's nexmark-gen-tables.sql, the same files Sabot reads).
CREATE TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time_ms BIGINT, expires_ms BIGINT, seller BIGINT, category BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_LTZ(date_time_ms, 3),
  expires AS TO_TIMESTAMP_LTZ(expires_ms, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/auction', 'format' = 'csv');
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_LTZ(date_time_ms, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bid', 'format' = 'csv');
CREATE TABLE discard (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, bid_date_time TIMESTAMP_LTZ(3), bid_extra VARCHAR,
  item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, auction_date_time TIMESTAMP_LTZ(3), expires TIMESTAMP_LTZ(3), seller BIGINT, category BIGINT, auction_extra VARCHAR)
WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT auction, bidder, price, channel, url, B.date_time, B.extra,
       item_name, description, initial_bid, reserve, A.date_time, A.expires, seller, category, A.extra
FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id
WHERE A.category = 10;
