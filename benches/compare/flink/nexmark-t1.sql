-- temporal join t1: every bid with its auction as of the bid's time (FOR SYSTEM_TIME AS OF;
-- the auctions a versioned table, one version each). ${DATA} is replaced by compare.py.
-- flink_job.py sets parallelism.default = 1, table.exec.resource.default-parallelism = 1,
-- table.local-time-zone = UTC; checkpointing stays off and mini-batch too (Flink's defaults).
-- The tables of ${DATA} (CSV files written by Sabot's nexmark-gen-tables.sql, the same files Sabot reads).
CREATE TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time_ms BIGINT, expires_ms BIGINT, seller BIGINT, category BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_LTZ(date_time_ms, 3),
  expires AS TO_TIMESTAMP_LTZ(expires_ms, 3),
  PRIMARY KEY (id) NOT ENFORCED,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/auction', 'format' = 'csv');
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_LTZ(date_time_ms, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bid', 'format' = 'csv');
CREATE TABLE discard (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP_LTZ(3), seller BIGINT, category BIGINT, reserve BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT B.auction, B.bidder, B.price, B.date_time, A.seller, A.category, A.reserve
FROM bid AS B JOIN auction FOR SYSTEM_TIME AS OF B.date_time AS A ON B.auction = A.id;
