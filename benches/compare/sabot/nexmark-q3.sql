-- nexmark q3: local item suggestion: category-10 auctions joined with their sellers in OR, ID
-- and CA (a regular join of two streams). ${DATA} is replaced by compare.py.
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
CREATE TABLE person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR, date_time_ms BIGINT, extra VARCHAR,
  date_time AS TO_TIMESTAMP_MILLIS(date_time_ms),
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/person', 'format' = 'csv');
CREATE TABLE discard (name VARCHAR, city VARCHAR, state VARCHAR, id BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
