-- Writes the Nexmark bids, auctions and people of ${EVENTS} events into CSV files under ${DATA}
-- (bid/, auction/, person/), for the nexmark-joins suite: both engines then read the same files.
-- Times are written as epoch milliseconds (CAST of a TIMESTAMP(3) to BIGINT). Run by compare.py,
-- once per event count (cached).
SET 'parallelism' = '1';
SET 'checkpoint.interval' = '0';
CREATE TABLE gen_bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time TIMESTAMP(3), extra VARCHAR)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '${EVENTS}', 'tps' = '100000', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE gen_auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra VARCHAR)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'auction', 'events.num' = '${EVENTS}', 'tps' = '100000', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE gen_person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR, date_time TIMESTAMP(3), extra VARCHAR)
WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'person', 'events.num' = '${EVENTS}', 'tps' = '100000', 'throttle' = 'false', 'base-time' = '2024-01-01 00:00:00');
CREATE TABLE bid_files (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time_ms BIGINT, extra VARCHAR)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/bid', 'format' = 'csv');
CREATE TABLE auction_files (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT, date_time_ms BIGINT, expires_ms BIGINT, seller BIGINT, category BIGINT, extra VARCHAR)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/auction', 'format' = 'csv');
CREATE TABLE person_files (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR, state VARCHAR, date_time_ms BIGINT, extra VARCHAR)
WITH ('connector' = 'filesystem', 'path' = '${DATA}/person', 'format' = 'csv');
INSERT INTO bid_files SELECT auction, bidder, price, channel, url, CAST(date_time AS BIGINT), extra FROM gen_bid;
INSERT INTO auction_files SELECT id, item_name, description, initial_bid, reserve, CAST(date_time AS BIGINT), CAST(expires AS BIGINT), seller, category, extra FROM gen_auction;
INSERT INTO person_files SELECT id, name, email_address, credit_card, city, state, CAST(date_time AS BIGINT), extra FROM gen_person;
