-- nexmark q2: selection of a few auctions. ${DATA} is replaced by compare.py.
-- flink_job.py sets parallelism.default = 1, table.exec.resource.default-parallelism = 1,
-- table.local-time-zone = UTC; checkpointing stays off (Flink's default).
-- The bids of ${DATA} (CSV files written by Sabot's nexmark-gen.sql, the same files Sabot reads);
-- the event time is the epoch-milliseconds column, as a computed column.
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  ts AS TO_TIMESTAMP_LTZ(date_time_ms, 3),
  WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}', 'format' = 'csv');
CREATE TABLE discard (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;
