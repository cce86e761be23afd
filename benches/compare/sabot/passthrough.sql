-- passthrough: every column of every row into a blackhole sink. ${EVENTS} is replaced by compare.py.
SET 'parallelism' = '1';
SET 'checkpoint.interval' = '0';
-- Source shared by every query: N rows, unthrottled; id = 1..N, k uniform in [1, 1000],
-- v uniform in [0, 1000000]; event time = id milliseconds after the epoch (1 row per ms).
CREATE TABLE src (
  id BIGINT, k BIGINT, v BIGINT,
  ts AS TO_TIMESTAMP_MILLIS(id),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen', 'rows-per-second' = '0', 'number-of-rows' = '${EVENTS}',
  'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '${EVENTS}',
  'fields.k.min' = '1', 'fields.k.max' = '1000',
  'fields.v.min' = '0', 'fields.v.max' = '1000000'
);
CREATE TABLE sink (id BIGINT, k BIGINT, v BIGINT, ts TIMESTAMP(3)) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT id, k, v, ts FROM src;
