-- Updating aggregate: bids and the highest price per auction, without a window. Every bid
-- updates its auction's row (-U, +U). Read as a stream (Flink's streaming runtime mode).
SET 'execution.runtime-mode' = 'streaming';
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '${EVENTS}', 'tps' = '${TPS}', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE discard (auction BIGINT, bids BIGINT, top BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT auction, COUNT(*) AS bids, MAX(price) AS top FROM bid GROUP BY auction;
