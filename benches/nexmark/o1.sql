-- o1: OVER aggregate: every bid with its auction's bid count and highest price over the 10 s before it (RANGE frame, emitted by the watermark).
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '${EVENTS}', 'tps' = '${TPS}', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE discard (auction BIGINT, price BIGINT, bids BIGINT, max_price BIGINT) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT auction, price,
  COUNT(*) OVER (PARTITION BY auction ORDER BY date_time RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW),
  MAX(price) OVER (PARTITION BY auction ORDER BY date_time RANGE BETWEEN INTERVAL '10' SECOND PRECEDING AND CURRENT ROW)
FROM bid;
