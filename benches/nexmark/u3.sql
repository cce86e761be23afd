-- An aggregate over an aggregate: how many auctions have each number of bids. The inner
-- aggregate's updates are retractions in the middle of the plan, taken back by the outer COUNT.
SET 'execution.runtime-mode' = 'streaming';
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '${EVENTS}', 'tps' = '${TPS}', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE discard (bids BIGINT, auctions BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT bids, COUNT(*) AS auctions FROM (SELECT auction, COUNT(*) AS bids FROM bid GROUP BY auction) GROUP BY bids;
