-- Bids per auction in 10-second tumbling windows over the built-in Nexmark generator.
CREATE TABLE bid (
  auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
) WITH (
  'connector' = 'nexmark', 'nexmark.table.type' = 'bid',
  'events.num' = '200000', 'tps' = '10000', 'throttle' = 'false',
  'base-time' = '2024-01-01 00:00:00'
);

SELECT window_start, window_end, COUNT(*) AS bids, MAX(price) AS top_price
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
