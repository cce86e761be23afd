//! Tests of the generator against the reference rules: the event mix, ids and references,
//! prices, timestamps, string shapes, splitting, declared schemas and seeking.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampSecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;

use super::columns::ColKind;
use super::model::{
    AUCTION_ID_LEAD, FIRST_AUCTION_ID, FIRST_PERSON_ID, PERSON_ID_LEAD, event_kind,
    last_base0_auction_id, last_base0_person_id,
};
use super::strings::{FIRST_NAMES, HOT_CHANNELS, LAST_NAMES, US_CITIES, US_STATES};
use super::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use NexmarkTable::{Auction, Bid, Person};

const BASE: i64 = 1_600_000_000_000;

/// tps = 1000 makes `date_time - BASE` the event number.
fn cfg(tps: u64) -> NexmarkConfig {
    NexmarkConfig {
        base_time_ms: BASE,
        tps,
    }
}

fn full_schema(table: NexmarkTable) -> SchemaRef {
    let fields: Vec<Field> = table
        .column_names()
        .iter()
        .zip(table.columns())
        .map(|(name, col)| {
            let dt = match col.kind() {
                ColKind::Int => DataType::Int64,
                ColKind::Str => DataType::Utf8,
                ColKind::Time => DataType::Timestamp(TimeUnit::Millisecond, None),
            };
            Field::new(*name, dt, false)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn generator(
    table: NexmarkTable,
    tps: u64,
    split: u64,
    splits: u64,
    max: Option<u64>,
) -> NexmarkGenerator {
    NexmarkGenerator::try_new(cfg(tps), table, full_schema(table), split, splits, max).unwrap()
}

fn drain(g: &mut NexmarkGenerator, max_rows: usize) -> Vec<RecordBatch> {
    let mut out = vec![];
    while let Some(b) = g.next_batch(max_rows).unwrap() {
        assert!(b.num_rows() >= 1 && b.num_rows() <= max_rows);
        out.push(b);
    }
    out
}

fn ints(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn times(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(name).unwrap();
            c.as_primitive::<TimestampMillisecondType>()
                .values()
                .to_vec()
        })
        .collect()
}

fn strings(batches: &[RecordBatch], name: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name(name).unwrap().as_string::<i32>().clone();
            (0..c.len()).map(move |i| c.value(i).to_string())
        })
        .collect()
}

/// All rows rendered as strings, in sorted order (an order-insensitive comparison key).
fn sorted_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = vec![];
    for b in batches {
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, i).unwrap())
                    .collect(),
            );
        }
    }
    rows.sort();
    rows
}

#[test]
fn event_kinds_follow_the_1_3_46_mix() {
    for block in [0u64, 50] {
        for r in 0..50 {
            let expected = match r {
                0 => Person,
                1..=3 => Auction,
                _ => Bid,
            };
            assert_eq!(event_kind(block + r), expected, "event {}", block + r);
        }
    }
    for (table, count) in [(Person, 2), (Auction, 6), (Bid, 92)] {
        let rows: usize = drain(&mut generator(table, 1000, 0, 1, Some(100)), 7)
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, count, "{table:?}");
    }
}

#[test]
fn first_ids_match_the_reference() {
    let people = drain(&mut generator(Person, 1000, 0, 1, Some(100)), 100);
    assert_eq!(ints(&people, "id"), vec![1000, 1001]);
    assert_eq!(times(&people, "date_time"), vec![BASE, BASE + 50]);
    let auctions = drain(&mut generator(Auction, 1000, 0, 1, Some(52)), 100);
    assert_eq!(ints(&auctions, "id"), vec![1000, 1001, 1002, 1003]);
    assert_eq!(
        times(&auctions, "date_time"),
        vec![BASE + 1, BASE + 2, BASE + 3, BASE + 51]
    );
    assert_eq!(last_base0_auction_id(0), -1);
    assert_eq!(last_base0_auction_id(4), 2);
    assert_eq!(last_base0_auction_id(50), 2);
    assert_eq!(last_base0_person_id(49), 0);
}

#[test]
fn references_stay_within_leads_and_favour_hot_ids() {
    let bids = drain(&mut generator(Bid, 1000, 0, 1, Some(100_000)), 4096);
    let (dts, auctions, bidders) = (
        times(&bids, "date_time"),
        ints(&bids, "auction"),
        ints(&bids, "bidder"),
    );
    let (mut hot_auctions, mut hot_bidders) = (0usize, 0usize);
    for ((dt, auction), bidder) in dts.iter().zip(&auctions).zip(&bidders) {
        let n = (dt - BASE) as u64;
        assert_eq!(event_kind(n), Bid);
        let (a, last_a) = (auction - FIRST_AUCTION_ID, last_base0_auction_id(n));
        assert!(
            a >= 0 && a <= last_a + AUCTION_ID_LEAD,
            "auction {a} at event {n}"
        );
        let (p, last_p) = (bidder - FIRST_PERSON_ID, last_base0_person_id(n));
        assert!(
            p >= 0 && p <= last_p + PERSON_ID_LEAD,
            "bidder {p} at event {n}"
        );
        hot_auctions += usize::from(a == last_a / 100 * 100);
        hot_bidders += usize::from(p == last_p / 100 * 100 + 1);
    }
    let total = auctions.len() as f64;
    let (ha, hb) = (hot_auctions as f64 / total, hot_bidders as f64 / total);
    assert!((0.47..0.55).contains(&ha), "hot auction fraction {ha}");
    assert!((0.72..0.79).contains(&hb), "hot bidder fraction {hb}");

    let auctions = drain(&mut generator(Auction, 1000, 0, 1, Some(100_000)), 4096);
    let dts = times(&auctions, "date_time");
    let expires = times(&auctions, "expires");
    for (i, seller) in ints(&auctions, "seller").into_iter().enumerate() {
        let n = (dts[i] - BASE) as u64;
        let s = seller - FIRST_PERSON_ID;
        assert!(s >= 0 && s <= last_base0_person_id(n) + PERSON_ID_LEAD);
        // horizon = 1666 events = 1666 ms at tps 1000.
        let length = expires[i] - dts[i];
        assert!((1..=2 * 1666).contains(&length), "auction length {length}");
    }
    assert!(
        ints(&auctions, "category")
            .iter()
            .all(|c| (10..15).contains(c))
    );
}

#[test]
fn prices_are_log_uniform_between_1_dollar_and_1_million() {
    let bids = drain(&mut generator(Bid, 1000, 0, 1, Some(50_000)), 8192);
    let prices = ints(&bids, "price");
    assert!(prices.iter().all(|p| (100..=100_000_000).contains(p)));
    // P(price < 1000) = P(price > 10^7) = 1/6.
    let low = prices.iter().filter(|&&p| p < 1000).count() as f64 / prices.len() as f64;
    let high = prices.iter().filter(|&&p| p > 10_000_000).count() as f64 / prices.len() as f64;
    assert!(
        (0.14..0.19).contains(&low) && (0.14..0.19).contains(&high),
        "{low} {high}"
    );
    let auctions = drain(&mut generator(Auction, 1000, 0, 1, Some(50_000)), 8192);
    for (initial, reserve) in ints(&auctions, "initial_bid")
        .iter()
        .zip(ints(&auctions, "reserve"))
    {
        assert!((100..=100_000_000).contains(initial));
        assert!(reserve >= initial + 100);
    }
}

#[test]
fn timestamps_follow_the_formula() {
    for (tps, splits) in [(7u64, 1u64), (7, 3), (1_000_003, 4), (1, 1)] {
        for split in 0..splits {
            for table in [Person, Auction, Bid] {
                let g = &mut generator(table, tps, split, splits, Some(3_000));
                let got = times(&drain(g, 333), "date_time");
                let expected: Vec<i64> = (split..3_000)
                    .step_by(splits as usize)
                    .filter(|&n| event_kind(n) == table)
                    .map(|n| BASE + (n as i128 * 1000 / tps as i128) as i64)
                    .collect();
                assert_eq!(got, expected, "{table:?} tps {tps} split {split}/{splits}");
            }
        }
    }
    let g = generator(Bid, 3, 0, 1, None);
    assert_eq!(g.event_time_ms(10), BASE + 3333);
    assert_eq!(g.event_time_ms(u64::MAX), i64::MAX); // saturates instead of overflowing
}

#[test]
fn strings_have_the_reference_shapes() {
    let people = drain(&mut generator(Person, 1000, 0, 1, Some(20_000)), 1000);
    let column = |name: &str| strings(&people, name);
    let (names, emails, cards) = (
        column("name"),
        column("email_address"),
        column("credit_card"),
    );
    let (cities, states, extras) = (column("city"), column("state"), column("extra"));
    assert_eq!(names.len(), 400);
    for i in 0..names.len() {
        let (name, email, card) = (&names[i], &emails[i], &cards[i]);
        let (city, state, extra) = (&cities[i], &states[i], &extras[i]);
        let (first, last) = name.split_once(' ').unwrap();
        assert!(FIRST_NAMES.contains(&first) && LAST_NAMES.contains(&last));
        // nextString(7) @ nextString(5) .com: at most 6 + 1 + 4 + 4 bytes.
        assert!(
            email.ends_with(".com") && email.contains('@') && email.len() <= 15,
            "{email}"
        );
        assert_eq!(card.len(), 19);
        assert!(
            card.split(' ')
                .all(|g| g.len() == 4 && g.bytes().all(|c| c.is_ascii_digit()))
        );
        assert!(US_CITIES.contains(&city.as_str()) && US_STATES.contains(&state.as_str()));
        let size =
            8 + name.len() + email.len() + card.len() + city.len() + state.len() + extra.len();
        assert!((150..250).contains(&size), "person size {size}");
        assert!(extra.bytes().all(|c| c.is_ascii_lowercase()));
    }
    let bids = drain(&mut generator(Bid, 1000, 0, 1, Some(20_000)), 1000);
    let extras = strings(&bids, "extra");
    assert!(extras.iter().all(|e| (54..82).contains(&e.len())));
    let mean = extras.iter().map(String::len).sum::<usize>() as f64 / extras.len() as f64;
    assert!((66.0..70.0).contains(&mean), "bid extra mean {mean}");
    for (channel, url) in strings(&bids, "channel").iter().zip(strings(&bids, "url")) {
        assert!(HOT_CHANNELS.contains(&channel.as_str()) || channel.starts_with("channel-"));
        assert!(url.starts_with("https://www.nexmark.com/") && url.contains("/item.htm?query=1"));
    }
    let auctions = drain(&mut generator(Auction, 1000, 0, 1, Some(20_000)), 1000);
    assert!(
        strings(&auctions, "item_name")
            .iter()
            .all(|s| s.len() <= 19 && s.trim() == s)
    );
    assert!(
        strings(&auctions, "description")
            .iter()
            .all(|s| s.len() <= 99)
    );
}

#[test]
fn same_range_gives_same_batches_and_splits_union_to_the_whole() {
    for table in [Person, Auction, Bid] {
        let a = drain(&mut generator(table, 1000, 0, 1, Some(5_000)), 500);
        let b = drain(&mut generator(table, 1000, 0, 1, Some(5_000)), 500);
        assert_eq!(a, b);
        let mut union = vec![];
        for split in 0..3 {
            union.extend(drain(
                &mut generator(table, 1000, split, 3, Some(5_000)),
                77,
            ));
        }
        assert_eq!(sorted_rows(&union), sorted_rows(&a), "{table:?}");
    }
}

#[test]
fn schema_subset_names_and_types() {
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "dateTime",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("PRICE", DataType::Int32, false),
        Field::new("url", DataType::Utf8View, true),
        Field::new("Extra", DataType::LargeUtf8, false),
    ]));
    let mut g =
        NexmarkGenerator::try_new(cfg(1000), Bid, Arc::clone(&schema), 0, 1, Some(1_000)).unwrap();
    let batch = g.next_batch(10_000).unwrap().unwrap();
    assert_eq!(batch.schema(), schema);
    let full = drain(&mut generator(Bid, 1000, 0, 1, Some(1_000)), 10_000);
    let us = batch
        .column(0)
        .as_primitive::<TimestampMicrosecondType>()
        .values()
        .to_vec();
    assert_eq!(
        us,
        times(&full, "date_time")
            .iter()
            .map(|t| t * 1000)
            .collect::<Vec<_>>()
    );
    let p32 = batch
        .column(1)
        .as_primitive::<Int32Type>()
        .values()
        .iter()
        .map(|&p| i64::from(p));
    assert_eq!(p32.collect::<Vec<_>>(), ints(&full, "price"));
    let urls = batch.column(2).as_string_view();
    assert_eq!(
        (0..urls.len())
            .map(|i| urls.value(i).to_string())
            .collect::<Vec<_>>(),
        strings(&full, "url")
    );
    let extras = batch.column(3).as_string::<i64>();
    assert_eq!(extras.value(5), strings(&full, "extra")[5]);

    let secs = Arc::new(Schema::new(vec![Field::new(
        "date_time",
        DataType::Timestamp(TimeUnit::Second, None),
        false,
    )]));
    let mut g = NexmarkGenerator::try_new(cfg(1000), Person, secs, 0, 1, Some(200)).unwrap();
    let b = g.next_batch(10).unwrap().unwrap();
    // Persons 0, 50, 100 and 150 are 0..150 ms after BASE (a whole second): all BASE / 1000.
    let secs = b
        .column(0)
        .as_primitive::<TimestampSecondType>()
        .values()
        .to_vec();
    assert_eq!(secs, vec![BASE / 1000; 4]);

    let camel = ["id", "emailAddress", "creditCard", "DATE_TIME", "dateTime"];
    let fields: Vec<Field> = camel
        .iter()
        .map(|n| match *n {
            "id" => Field::new(*n, DataType::Int64, false),
            "DATE_TIME" | "dateTime" => {
                Field::new(*n, DataType::Timestamp(TimeUnit::Nanosecond, None), false)
            }
            _ => Field::new(*n, DataType::Utf8, false),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    assert!(NexmarkGenerator::try_new(cfg(1000), Person, schema, 0, 1, None).is_ok());
    let schema = Arc::new(Schema::new(vec![
        Field::new("itemName", DataType::Utf8, false),
        Field::new("initialBid", DataType::Int64, false),
    ]));
    assert!(NexmarkGenerator::try_new(cfg(1000), Auction, schema, 0, 1, None).is_ok());

    // An empty projection still yields row counts (e.g. for count(*)).
    let empty = Arc::new(Schema::empty());
    let mut g = NexmarkGenerator::try_new(cfg(1000), Bid, empty, 0, 1, Some(100)).unwrap();
    assert_eq!(g.next_batch(1000).unwrap().unwrap().num_rows(), 92);
}

#[test]
fn bad_columns_are_plan_errors_listing_valid_names() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "nope",
        DataType::Int64,
        false,
    )]));
    let err = NexmarkGenerator::try_new(cfg(1000), Bid, schema, 0, 1, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope") && err.contains("bid"), "{err}");
    assert!(
        err.contains("auction, bidder, price, channel, url, date_time, extra"),
        "{err}"
    );
    let schema = Arc::new(Schema::new(vec![Field::new(
        "price",
        DataType::Utf8,
        false,
    )]));
    let err = NexmarkGenerator::try_new(cfg(1000), Bid, schema, 0, 1, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("price") && err.contains("bid") && err.contains("date_time"),
        "{err}"
    );
    let schema = Arc::new(Schema::new(vec![Field::new(
        "expires",
        DataType::Int64,
        false,
    )]));
    assert!(NexmarkGenerator::try_new(cfg(1000), Auction, schema, 0, 1, None).is_err());
    assert!(NexmarkGenerator::try_new(cfg(0), Bid, full_schema(Bid), 0, 1, None).is_err());
    assert!(NexmarkGenerator::try_new(cfg(1000), Bid, full_schema(Bid), 3, 3, None).is_err());
    assert!(NexmarkGenerator::try_new(cfg(1000), Bid, full_schema(Bid), 0, 0, None).is_err());
}

#[test]
fn max_events_and_seek() {
    let mut g = generator(Bid, 1000, 0, 1, Some(1_000));
    let all = drain(&mut g, 100);
    assert_eq!(
        all.iter().map(RecordBatch::num_rows).sum::<usize>(),
        20 * 46
    );
    assert!(g.position() >= 1_000);
    assert!(g.next_batch(100).unwrap().is_none());

    for (table, split, splits) in [(Bid, 0, 1), (Person, 0, 2), (Auction, 2, 3)] {
        let mut a = generator(table, 1000, split, splits, Some(20_000));
        let first = drain_n(&mut a, 3, 7);
        let position = a.position();
        let rest_a = drain(&mut a, 50);
        let mut b = generator(table, 1000, split, splits, Some(20_000));
        b.seek(position);
        assert_eq!(drain(&mut b, 50), rest_a, "{table:?}");
        // Everything, in one go, is the concatenation.
        let whole = drain(
            &mut generator(table, 1000, split, splits, Some(20_000)),
            100_000,
        );
        let mut pieces = first;
        pieces.extend(rest_a);
        assert_eq!(sorted_rows(&whole), sorted_rows(&pieces));
    }
}

fn drain_n(g: &mut NexmarkGenerator, batches: usize, rows: usize) -> Vec<RecordBatch> {
    (0..batches)
        .map_while(|_| g.next_batch(rows).unwrap())
        .collect()
}

#[test]
fn unreachable_splits_and_huge_event_numbers() {
    // Split 10 of 50 only sees events ≡ 10 (mod 50): bids, never persons.
    assert!(
        generator(Person, 1000, 10, 50, None)
            .next_batch(10)
            .unwrap()
            .is_none()
    );
    let bids = generator(Bid, 1000, 10, 50, None)
        .next_batch(10)
        .unwrap()
        .unwrap();
    assert_eq!(bids.num_rows(), 10);
    let persons = generator(Person, 1000, 0, 50, None)
        .next_batch(3)
        .unwrap()
        .unwrap();
    assert_eq!(ints(&[persons], "id"), vec![1000, 1001, 1002]);

    // Near u64::MAX nothing overflows and the unbounded stream ends at u64::MAX.
    for table in [Person, Auction, Bid] {
        let mut g = generator(table, 1000, 0, 1, None);
        g.seek(u64::MAX - 500);
        let rows: usize = drain(&mut g, 64).iter().map(RecordBatch::num_rows).sum();
        assert!(rows > 0, "{table:?}");
        assert_eq!(g.position(), u64::MAX);
    }
}

#[test]
fn parse_table_names() {
    assert_eq!(NexmarkTable::parse("Person"), Some(Person));
    assert_eq!(NexmarkTable::parse("AUCTIONS"), Some(Auction));
    assert_eq!(NexmarkTable::parse("bids"), Some(Bid));
    assert_eq!(NexmarkTable::parse("bidder"), None);
    assert_eq!(Bid.column_names().len(), 7);
    assert_eq!(Auction.column_names().len(), Auction.columns().len());
    assert_eq!(Person.column_names().len(), Person.columns().len());
}
