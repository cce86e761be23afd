-- nexmark q19: the ten highest bids per auction with their rank (a top-N), an updating query.
-- ${DATA} is replaced by compare.py.
-- flink_job.py sets parallelism.default = 1, table.exec.resource.default-parallelism = 1,
-- table.local-time-zone = UTC; checkpointing stays off and mini-batch too (Flink's defaults):
-- every bid updates its group's row.
-- The bids of ${DATA} (CSV files written by Sabot's nexmark-gen.sql, the same files Sabot reads).
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  ts AS TO_TIMESTAMP_LTZ(date_time_ms, 3),
  WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}', 'format' = 'csv');
CREATE TABLE discard (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, ts TIMESTAMP_LTZ(3), extra VARCHAR, rank_number BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT auction, bidder, price, channel, url, ts, extra, rank_number
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number FROM bid)
WHERE rank_number <= 10;
