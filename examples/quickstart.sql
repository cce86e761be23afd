-- Sabot quickstart: bids per second from the built-in Nexmark generator.
--
-- The generator emits 10,000 events per second in real time (46 of every 50 are bids) for six
-- seconds. The watermark trails event time by 500 ms; each one-second window is printed as
-- soon as the watermark passes its end.

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '500' MILLISECOND
) WITH (
  'connector' = 'nexmark',
  'nexmark.table.type' = 'bid',
  'events.num' = '60000',
  'tps' = '10000'
);

SELECT
  window_start,
  window_end,
  COUNT(*) AS bids,
  COUNT(DISTINCT auction) AS auctions,
  MAX(price) AS top_price,
  APPROX_PERCENTILE_CONT(price, 0.5) AS median_price
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
GROUP BY window_start, window_end;
