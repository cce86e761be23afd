-- q13: bounded side input join. Every bid joined with a 10 000-row dimension table on
-- auction % 10000 (Flink's version reads the side input from a file through a lookup join;
-- here it is a bounded view, broadcast to every task).
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '${EVENTS}', 'tps' = '${TPS}', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE VIEW side_input AS SELECT value AS key, CONCAT('side-', CAST(value AS VARCHAR)) AS value FROM generate_series(0, 9999);
CREATE TABLE discard (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), value VARCHAR) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT B.auction, B.bidder, B.price, B.date_time, S.value
FROM bid B JOIN side_input S ON B.auction % 10000 = S.key;
