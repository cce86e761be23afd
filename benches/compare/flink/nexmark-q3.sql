-- nexmark q3: local item suggestion: category-10 auctions joined with their sellers in OR, ID
-- and CA (a regular join of two streams). ${DATA} is replaced by compare.py.
-- flink_job.py sets parallelism.default = 1, table.exec.resource.default-parallelism = 1,
-- table.local-time-zone = UTC; checkpointing stays off and mini-batch too (Flink's defaults).
-- The tables of ${DATA} (CSV files written by Sabot's nexmark-gen-tables.sql, the same files Sabot reads).
CREATE TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time_ms BIGINT, expires_ms BIGINT, seller BIGINT, category BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_LTZ(date_time_ms, 3),
  expires AS TO_TIMESTAMP_LTZ(expires_ms, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/auction', 'format' = 'csv');
CREATE TABLE person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_LTZ(date_time_ms, 3),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/person', 'format' = 'csv');
CREATE TABLE discard (name VARCHAR, city VARCHAR, state VARCHAR, id BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
