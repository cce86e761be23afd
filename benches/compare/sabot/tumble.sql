-- tumble: per key, 10 s TUMBLE windows of event time: COUNT(*), SUM(v), MAX(v). ${EVENTS} is replaced by compare.py.
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
CREATE TABLE sink (k BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), cnt BIGINT, sum_v BIGINT, max_v BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO sink
SELECT k, window_start, window_end, COUNT(*), SUM(v), MAX(v)
FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY k, window_start, window_end;
