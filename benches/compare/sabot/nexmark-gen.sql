-- Writes the Nexmark bids of ${EVENTS} events (all kinds; 46 of 50 are bids) into CSV files in
-- ${DATA}, for the nexmark-files suite: both engines then read the same files. The event time is
-- written as epoch milliseconds (CAST of a TIMESTAMP(3) to BIGINT) so that both parse it
-- trivially. Run by compare.py, once per event count (cached).
SET 'parallelism' = '1';
SET 'checkpoint.interval' = '0';
CREATE TABLE gen (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '${EVENTS}', 'tps' = '100000', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE files (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR)
WITH ('connector' = 'filesystem', 'path' = '${DATA}', 'format' = 'csv');
INSERT INTO files SELECT auction, bidder, price, channel, url, CAST(date_time AS BIGINT), extra FROM gen;
