-- q6: average selling price per seller over their last 10 auctions. Each auction's highest bid
-- within its lifetime (q9's top-1 over a regular join, a changelog: a higher bid replaces the
-- row), then per seller the average of the last 11 such prices by bid time (an OVER aggregate
-- over that changelog: each new or replaced price updates the averages whose frames reach it).
-- Flink cannot run it (its OVER aggregates take appending input only); this is RisingWave's
-- text of the query, with q9's tie-break on the bid time.
SET 'execution.runtime-mode' = 'streaming';
CREATE TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'auction', 'events.num' = '${EVENTS}', 'tps' = '${TPS}', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR,
  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '${EVENTS}', 'tps' = '${TPS}', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE discard (seller BIGINT, avg_price DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO discard
SELECT Q.seller,
  AVG(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time ROWS BETWEEN 10 PRECEDING AND CURRENT ROW)
FROM (
  SELECT A.id, A.seller, B.price AS final, B.date_time,
    ROW_NUMBER() OVER (PARTITION BY A.id, A.seller ORDER BY B.price DESC, B.date_time ASC) AS rank
  FROM auction AS A, bid AS B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
) AS Q
WHERE Q.rank <= 1;
