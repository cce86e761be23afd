-- Updating aggregate: distinct auctions per bidder (COUNT(DISTINCT), which DataFusion plans as
-- an aggregate over the distinct (bidder, auction) pairs).
SET 'execution.runtime-mode' = 'streaming';
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '${EVENTS}', 'tps' = '${TPS}', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE discard (bidder BIGINT, auctions BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT bidder, COUNT(DISTINCT auction) AS auctions FROM bid GROUP BY bidder;
