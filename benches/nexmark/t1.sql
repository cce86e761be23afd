-- t1: temporal join. Every bid with its auction as of the bid's time (JOIN auction FOR
-- SYSTEM_TIME AS OF bid.date_time): the auctions are the versioned table (one version per
-- auction, from its creation); bids wait for the watermark of both streams, then meet it.
SET 'execution.runtime-mode' = 'streaming';
CREATE TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR,
  PRIMARY KEY (id) NOT ENFORCED,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'auction', 'events.num' = '${EVENTS}', 'tps' = '${TPS}', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '${EVENTS}', 'tps' = '${TPS}', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE discard (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), seller BIGINT, category BIGINT, reserve BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT B.auction, B.bidder, B.price, B.date_time, A.seller, A.category, A.reserve
FROM bid AS B JOIN auction FOR SYSTEM_TIME AS OF B.date_time AS A ON B.auction = A.id;
