-- passthrough: every column of every row into a blackhole sink. ${EVENTS} is replaced by flink_job.py.
-- flink_job.py sets parallelism.default = 1, table.exec.resource.default-parallelism = 1,
-- table.local-time-zone = UTC; checkpointing stays off (Flink's default).
-- Source shared by every query: N rows, unthrottled; id = 1..N, k uniform in [1, 1000],
-- v uniform in [0, 1000000]; event time = id milliseconds after the epoch (1 row per ms).
CREATE TABLE src (
  id BIGINT, k BIGINT, v BIGINT,
  ts AS TO_TIMESTAMP_LTZ(id, 3),
  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND
) WITH (
  'connector' = 'datagen', 'rows-per-second' = '1000000000', 'number-of-rows' = '${EVENTS}',
  'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '${EVENTS}',
  'fields.k.min' = '1', 'fields.k.max' = '1000',
  'fields.v.min' = '0', 'fields.v.max' = '1000000'
);
CREATE TABLE sink (id BIGINT, k BIGINT, v BIGINT, ts TIMESTAMP_LTZ(3)) WITH ('connector' = 'blackhole');
INSERT INTO sink SELECT id, k, v, ts FROM src;
