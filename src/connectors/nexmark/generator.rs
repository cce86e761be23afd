//! Columnar, deterministic, splittable Nexmark event generator.
//!
//! Nexmark models an online auction site with three event streams: `person` (new users),
//! `auction` (items put up for sale) and `bid`. This module follows the reference generator
//! (Apache Beam's `org.apache.beam.sdk.nexmark.sources.generator`, the Flink port
//! `com.github.nexmark.flink.generator`, and RisingWave's Rust crate `nexmark`) and produces
//! Arrow [`RecordBatch`]es column by column instead of event objects.
//!
//! # Reference rules reproduced
//!
//! * **Event mix.** Event number `n` is a person, an auction or a bid according to `n % 50`:
//!   `0` is a person, `1..=3` are auctions, `4..=49` are bids (proportions 1:3:46).
//! * **Ids.** `lastBase0PersonId(n)` / `lastBase0AuctionId(n)` give the id (base 0) of the most
//!   recent person / auction at event `n` (the event's own id if it is one). Person and auction
//!   ids start at 1000 (event 0 is person 1000, events 1, 2, 3 are auctions 1000..=1002, event 51
//!   is auction 1003); categories are `10 + uniform(5)`.
//! * **References.** `nextBase0PersonId` picks uniformly among the last 1000 ("active") people
//!   plus `PERSON_ID_LEAD = 10` not-yet-created ones; `nextBase0AuctionId` picks among the last
//!   100 ("in flight") auctions plus `AUCTION_ID_LEAD = 10`. Bids go to a *hot* auction (the first
//!   of the last batch of 100 auctions) with probability 1/2 (`hotAuctionRatio = 2`), and come from
//!   a hot bidder (the second of the last batch of 100 people) with probability 3/4
//!   (`hotBiddersRatio = 4`); auctions have a hot seller (the first of the last batch of 100
//!   people) with probability 3/4 (`hotSellersRatio = 4`).
//! * **Prices.** `round(10^(6u) * 100)` cents with `u` uniform in `[0, 1)`, i.e. log-uniform in
//!   `[100, 100_000_000]`; `reserve = initialBid + nextPrice`.
//! * **Auction expiry.** `expires = date_time + 1 + uniform(max(2 * horizon, 1))` where `horizon`
//!   is the event-time distance to the event `numInFlightAuctions * 50 / 3 = 1666` events ahead,
//!   so on average 100 auctions are open (`nextAuctionLengthMs`).
//! * **Strings.** `nextString(max)` is `3..max-1` random lowercase characters where each one is a
//!   space with probability 1/13, then trimmed: item names use `max = 20`, descriptions 100, email
//!   addresses are `nextString(7)@nextString(5).com`. Credit cards are four `%04d` groups. Names,
//!   cities and states come from the reference lists (Java capitalisation, so Nexmark q3's
//!   `state IN ('OR', 'ID', 'CA')` matches). `extra` pads each event towards the reference average
//!   sizes (person 200 bytes, auction 500, bid 100) exactly as `nextExtra` does: with
//!   `d = avg - currentSize` (0 if negative), `delta = round(d / 5)`, the length is uniform in
//!   `[d - delta, d + delta)`; `currentSize` counts 8 bytes per number and the lengths of the
//!   event's other strings.
//! * **Channels** (Flink/RisingWave extension of `Bid`): with probability 1/2 one of the hot
//!   channels "Google", "Facebook", "Baidu", "Apple" with their fixed URL, otherwise `channel-N`
//!   for `N` uniform in `0..10_000`, whose cached URL is
//!   `https://www.nexmark.com/<s>/<s>/<s>/item.htm?query=1` (each `<s>` is `nextString(5, '_')`)
//!   followed, for 9 channels in 10, by `&channel_id=<abs(Integer.reverse(N))>`.
//! * **Event time.** Event `n` happens at `base_time_ms + n * 1000 / tps` (integer math, exact):
//!   the reference's single-rate timeline with a uniform inter-event delay.
//!
//! # Determinism and randomness
//!
//! Java's generator threads one `java.util.Random` through all fields of all events, so an event
//! depends on every event before it. Here every value of event `n` is a pure function of `n`:
//! each field draws from `SplitMix64(salt_field)` at position `n` (a counter-based hash), so any
//! event can be produced in isolation, in any order, on any thread, and columns are generated
//! independently (a column that is not requested costs nothing). Values are therefore not
//! bit-identical to the Java generator, but follow the same distributions. Strings are not built
//! character by character: they are slices, at hash-chosen offsets, of two 64 KiB pseudo-random
//! text pools (letters only for `extra`, letters with 1/13 spaces for `nextString`) built once
//! per process, and the 99 names and 10_004 channel/URL pairs are precomputed likewise.
//!
//! # Splitting
//!
//! All splits share one timeline. Split `s` of `k` reads the event numbers `s, s + k, s + 2k, ...`
//! (below `max_events`) and keeps those of its table's kind, so the union of the `k` splits is
//! exactly the single-split stream, and each split's output is in increasing event time. (The
//! reference instead hands each generator a contiguous id range on its own timeline.) A split
//! whose event numbers never hit its table's kind (e.g. `k = 50`, `s = 7`, `person`) is empty.
//! [`NexmarkGenerator::position`] is the next event number the split will look at; it is the
//! whole state, so checkpointing it and calling [`NexmarkGenerator::seek`] resumes exactly.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, StringBuilder, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{exec_datafusion_err, internal_err, plan_err};
use datafusion::error::Result;

// ---- Reference constants (GeneratorConfig / NexmarkConfiguration defaults, *Generator classes).
const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const TOTAL_PROPORTION: u64 = 50; // person + auction + bid (46)
const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: u64 = 5;
const NUM_ACTIVE_PEOPLE: i64 = 1000;
const PERSON_ID_LEAD: i64 = 10;
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
const AUCTION_ID_LEAD: i64 = 10;
/// Probability of a hot auction / bidder / seller is `1 - 1/ratio`.
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDERS_RATIO: u64 = 4;
const HOT_SELLERS_RATIO: u64 = 4;
/// Hot ids are the first (second for bidders) id of the last batch of this many ids
/// (`HOT_AUCTION_RATIO`, `HOT_BIDDER_RATIO`, `HOT_SELLER_RATIO` = 100 in the Java classes).
const HOT_ID_BATCH: i64 = 100;
const HOT_CHANNELS_RATIO: u64 = 2;
const CHANNELS_NUMBER: u64 = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const AVG_PERSON_BYTE_SIZE: u64 = 200;
const AVG_AUCTION_BYTE_SIZE: u64 = 500;
const AVG_BID_BYTE_SIZE: u64 = 100;
const MIN_STRING_LENGTH: u64 = 3;
const CREDIT_CARD_LEN: usize = 19;
/// Events until `numInFlightAuctions` more auctions exist: 100 * 50 / 3 = 1666.
const NUM_EVENTS_FOR_AUCTIONS: u64 =
    (NUM_IN_FLIGHT_AUCTIONS as u64 * TOTAL_PROPORTION) / AUCTION_PROPORTION;

const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

/// Size of each pseudo-random text pool; every generated string is a slice of one.
const POOL_LEN: usize = 64 * 1024;
/// Batches are capped so that a `Utf8` (i32 offsets) column can never overflow
/// (the longest values, auction `extra`, are < 600 bytes).
const MAX_BATCH_ROWS: usize = 1 << 20;

// ---- Counter-based randomness: SplitMix64 stream `salt` at position `n`.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n`-th output of the SplitMix64 stream seeded with `salt`.
#[inline(always)]
fn rnd(n: u64, salt: u64) -> u64 {
    mix64(salt.wrapping_add(n.wrapping_mul(GOLDEN)))
}

/// A further, independent-looking draw derived from `h` (the next SplitMix64 step).
#[inline(always)]
fn step(h: u64) -> u64 {
    mix64(h.wrapping_add(GOLDEN))
}

/// Uniform integer in `0..bound` (Lemire's multiply-high; the bias is < bound / 2^64).
#[inline(always)]
fn below(h: u64, bound: u64) -> u64 {
    ((u128::from(h) * u128::from(bound)) >> 64) as u64
}

// One salt per drawn field so that fields are independent of each other.
const S_POOL: u64 = mix64(1);
const S_NAME: u64 = mix64(2);
const S_EMAIL_USER: u64 = mix64(3);
const S_EMAIL_DOMAIN: u64 = mix64(4);
const S_CREDIT_CARD: u64 = mix64(5);
const S_CITY: u64 = mix64(6);
const S_STATE: u64 = mix64(7);
const S_PERSON_EXTRA: u64 = mix64(8);
const S_ITEM_NAME: u64 = mix64(9);
const S_DESCRIPTION: u64 = mix64(10);
const S_INITIAL_BID: u64 = mix64(11);
const S_RESERVE: u64 = mix64(12);
const S_EXPIRES: u64 = mix64(13);
const S_SELLER_HOT: u64 = mix64(14);
const S_SELLER: u64 = mix64(15);
const S_CATEGORY: u64 = mix64(16);
const S_AUCTION_EXTRA: u64 = mix64(17);
const S_BID_AUCTION_HOT: u64 = mix64(18);
const S_BID_AUCTION: u64 = mix64(19);
const S_BIDDER_HOT: u64 = mix64(20);
const S_BIDDER: u64 = mix64(21);
const S_PRICE: u64 = mix64(22);
const S_CHANNEL: u64 = mix64(23);
const S_BID_EXTRA: u64 = mix64(24);
const S_HOT_URL: u64 = mix64(25);
const S_CHANNEL_URL: u64 = mix64(26);
const S_CHANNEL_ID: u64 = mix64(27);

/// Which Nexmark stream a table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkTable {
    Person,
    Auction,
    Bid,
}

impl NexmarkTable {
    /// Parses 'person' | 'auction' | 'bid' (case-insensitive; also accepts 'persons', 'auctions', 'bids').
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [
            ("person", Self::Person),
            ("persons", Self::Person),
            ("auction", Self::Auction),
            ("auctions", Self::Auction),
            ("bid", Self::Bid),
            ("bids", Self::Bid),
        ]
        .into_iter()
        .find(|(name, _)| s.eq_ignore_ascii_case(name))
        .map(|(_, table)| table)
    }

    /// Canonical column names of this table, in reference order, snake_case:
    /// person: id, name, email_address, credit_card, city, state, date_time, extra
    /// auction: id, item_name, description, initial_bid, reserve, date_time, expires, seller, category, extra
    /// bid: auction, bidder, price, channel, url, date_time, extra
    pub fn column_names(&self) -> &'static [&'static str] {
        match self {
            Self::Person => &[
                "id",
                "name",
                "email_address",
                "credit_card",
                "city",
                "state",
                "date_time",
                "extra",
            ],
            Self::Auction => &[
                "id",
                "item_name",
                "description",
                "initial_bid",
                "reserve",
                "date_time",
                "expires",
                "seller",
                "category",
                "extra",
            ],
            Self::Bid => &[
                "auction",
                "bidder",
                "price",
                "channel",
                "url",
                "date_time",
                "extra",
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Auction => "auction",
            Self::Bid => "bid",
        }
    }

    /// Internal column ids, parallel to [`Self::column_names`].
    fn columns(self) -> &'static [Col] {
        use Col::*;
        match self {
            Self::Person => &[
                PersonId,
                Name,
                EmailAddress,
                CreditCard,
                City,
                State,
                DateTime,
                PersonExtra,
            ],
            Self::Auction => &[
                AuctionId,
                ItemName,
                Description,
                InitialBid,
                Reserve,
                DateTime,
                Expires,
                Seller,
                Category,
                AuctionExtra,
            ],
            Self::Bid => &[BidAuction, Bidder, Price, Channel, Url, DateTime, BidExtra],
        }
    }

    /// The residues `n % 50` of this kind's event numbers.
    fn residues(self) -> std::ops::Range<u64> {
        match self {
            Self::Person => 0..PERSON_PROPORTION,
            Self::Auction => PERSON_PROPORTION..PERSON_PROPORTION + AUCTION_PROPORTION,
            Self::Bid => PERSON_PROPORTION + AUCTION_PROPORTION..TOTAL_PROPORTION,
        }
    }
}

/// The kind of event number `n` (the reference's `rem < personProportion ...` test).
fn event_kind(n: u64) -> NexmarkTable {
    let r = n % TOTAL_PROPORTION;
    if r < PERSON_PROPORTION {
        NexmarkTable::Person
    } else if r < PERSON_PROPORTION + AUCTION_PROPORTION {
        NexmarkTable::Auction
    } else {
        NexmarkTable::Bid
    }
}

/// Event-time configuration shared by all splits of a Nexmark source.
#[derive(Debug, Clone)]
pub struct NexmarkConfig {
    /// Event time of event number 0, in ms since the epoch.
    pub base_time_ms: i64,
    /// Events per second of event time (all three kinds together), >= 1.
    pub tps: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    PersonId,
    Name,
    EmailAddress,
    CreditCard,
    City,
    State,
    PersonExtra,
    AuctionId,
    ItemName,
    Description,
    InitialBid,
    Reserve,
    Expires,
    Seller,
    Category,
    AuctionExtra,
    BidAuction,
    Bidder,
    Price,
    Channel,
    Url,
    BidExtra,
    DateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColKind {
    Int,
    Str,
    Time,
}

impl Col {
    fn kind(self) -> ColKind {
        use Col::*;
        match self {
            PersonId | AuctionId | InitialBid | Reserve | Seller | Category | BidAuction
            | Bidder | Price => ColKind::Int,
            DateTime | Expires => ColKind::Time,
            Name | EmailAddress | CreditCard | City | State | PersonExtra | ItemName
            | Description | AuctionExtra | Channel | Url | BidExtra => ColKind::Str,
        }
    }

    /// Typical byte length of a value, to reserve string buffers up front.
    fn avg_len(self) -> usize {
        use Col::*;
        match self {
            Name => 12,
            EmailAddress => 14,
            CreditCard => CREDIT_CARD_LEN,
            City => 8,
            State => 2,
            PersonExtra => 140,
            ItemName => 11,
            Description => 51,
            AuctionExtra => 400,
            Channel => 10,
            Url => 64,
            BidExtra => 68,
            _ => 8,
        }
    }
}

/// One requested output column: what to generate and as which Arrow type.
#[derive(Debug)]
struct OutputColumn {
    col: Col,
    name: String,
    data_type: DataType,
}

/// Generates the events of one table for one parallel split: event numbers
/// `split, split + num_splits, split + 2*num_splits, ...` below `max_events` (None = unbounded),
/// keeping only the events of `table`'s kind.
#[derive(Debug)]
pub struct NexmarkGenerator {
    config: NexmarkConfig,
    table: NexmarkTable,
    schema: SchemaRef,
    columns: Vec<OutputColumn>,
    split: u64,
    num_splits: u64,
    /// Exclusive bound on event numbers (`u64::MAX` when unbounded).
    limit: u64,
    /// Next event number to look at (always `≡ split (mod num_splits)` or `>= limit`).
    next: u64,
    /// False when the split's event numbers never hit this table's kind.
    reachable: bool,
    /// Scratch buffer with the event numbers of the batch being built.
    events: Vec<u64>,
}

impl NexmarkGenerator {
    /// `schema` lists the columns the user declared. Each field name is matched case-insensitively
    /// against the table's columns, accepting snake_case or the reference camelCase
    /// (dateTime, emailAddress, creditCard, itemName, initialBid). Types: id/number columns must be
    /// Int64 (also accept Int32, cast), string columns Utf8 (also accept LargeUtf8/Utf8View; produce that type),
    /// date_time/expires Timestamp of any unit and timezone (produce exactly the declared type, converting ms).
    /// An unknown column name or an unsupported type is `plan_err!` naming the column, the table kind
    /// and listing the valid column names.
    pub fn try_new(
        config: NexmarkConfig,
        table: NexmarkTable,
        schema: SchemaRef,
        split: u64,
        num_splits: u64,
        max_events: Option<u64>,
    ) -> Result<Self> {
        if config.tps == 0 {
            return plan_err!("nexmark: tps (events per second) must be at least 1");
        }
        if num_splits == 0 || split >= num_splits {
            return plan_err!("nexmark: split {split} is out of range for {num_splits} splits");
        }
        let columns = resolve_columns(table, &schema)?;
        // Split `s` of `k` visits exactly the residues r (mod 50) with r ≡ s (mod gcd(k, 50)).
        let g = gcd(num_splits, TOTAL_PROPORTION);
        let reachable = (0..TOTAL_PROPORTION).any(|r| r % g == split % g && event_kind(r) == table);
        Ok(Self {
            config,
            table,
            schema,
            columns,
            split,
            num_splits,
            limit: max_events.unwrap_or(u64::MAX),
            next: split,
            reachable,
            events: Vec::new(),
        })
    }

    /// Next batch of at most `max_rows` rows (>= 1), or None once all events of this split are done.
    /// Every returned batch has >= 1 row.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>> {
        if !self.reachable {
            return Ok(None);
        }
        let target = max_rows.clamp(1, MAX_BATCH_ROWS);
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        events.reserve(target);
        let residues = self.table.residues();
        let mut n = self.next;
        while n < self.limit && events.len() < target {
            let r = n % TOTAL_PROPORTION;
            if residues.contains(&r) {
                events.push(n);
                n = n.saturating_add(self.num_splits);
            } else if self.num_splits == 1 {
                // Jump straight to the next event of this kind (persons are 1 in 50).
                let block = n - r;
                n = if r < residues.start {
                    block.saturating_add(residues.start)
                } else {
                    block.saturating_add(TOTAL_PROPORTION + residues.start)
                };
            } else {
                n = n.saturating_add(self.num_splits);
            }
        }
        self.next = n;
        if events.is_empty() {
            self.events = events;
            return Ok(None);
        }
        let arrays = self
            .columns
            .iter()
            .map(|c| self.build_column(c, &events))
            .collect::<Result<Vec<_>>>()?;
        // An explicit row count also supports an empty projection (e.g. `count(*)`).
        let options = RecordBatchOptions::new().with_row_count(Some(events.len()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)?;
        self.events = events;
        Ok(Some(batch))
    }

    /// Next event number this split will look at (its position, for checkpoints).
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Resume at a position previously returned by `position()`.
    ///
    /// A position that is not one of this split's event numbers is rounded up to the next one.
    pub fn seek(&mut self, position: u64) {
        self.next = if position <= self.split {
            self.split
        } else {
            let rem = (position - self.split) % self.num_splits;
            if rem == 0 {
                position
            } else {
                position.saturating_add(self.num_splits - rem)
            }
        };
    }

    /// Timestamp (ms) of the event number.
    pub fn event_time_ms(&self, event_number: u64) -> i64 {
        let offset = i128::from(event_number) * 1000 / i128::from(self.config.tps);
        clamp_i64(i128::from(self.config.base_time_ms) + offset)
    }

    fn build_column(&self, out: &OutputColumn, events: &[u64]) -> Result<ArrayRef> {
        match out.col.kind() {
            ColKind::Int => int_array(int_values(out.col, events)?, out),
            ColKind::Time => {
                let ms = if out.col == Col::Expires {
                    self.expires_ms(events)
                } else {
                    self.timestamps_ms(events)
                };
                timestamp_array(ms, out)
            }
            ColKind::Str => {
                let array = string_column(out.col, events)?;
                if out.data_type == DataType::Utf8 {
                    Ok(array)
                } else {
                    Ok(cast(&array, &out.data_type)?)
                }
            }
        }
    }

    /// `event_time_ms` of strictly increasing event numbers, computed incrementally: with
    /// `n * 1000 = q * tps + r`, stepping `n` by `d` adds `d * 1000 / tps` to `q` and the remainder
    /// to `r` (carrying into `q`), which avoids a 128-bit division per row. Steps repeat (the split
    /// stride, or block gaps), so their quotient is cached.
    fn timestamps_ms(&self, events: &[u64]) -> Vec<i64> {
        let tps = u128::from(self.config.tps);
        let base = i128::from(self.config.base_time_ms);
        let mut out = Vec::with_capacity(events.len());
        let (mut q, mut r) = (0u128, 0u128);
        let (mut step_n, mut step_q, mut step_r) = (0u64, 0u128, 0u128);
        let mut prev: Option<u64> = None;
        for &n in events {
            match prev {
                Some(p) if n > p => {
                    let d = n - p;
                    if d != step_n {
                        step_n = d;
                        step_q = u128::from(d) * 1000 / tps;
                        step_r = u128::from(d) * 1000 % tps;
                    }
                    q += step_q;
                    r += step_r;
                    if r >= tps {
                        r -= tps;
                        q += 1;
                    }
                }
                _ => {
                    q = u128::from(n) * 1000 / tps;
                    r = u128::from(n) * 1000 % tps;
                }
            }
            prev = Some(n);
            // q < 2^74, so the cast is lossless.
            out.push(clamp_i64(base + q as i128));
        }
        out
    }

    /// `nextAuctionLengthMs`: `1 + uniform(max(2 * horizon, 1))` after the auction's own time, where
    /// `horizon` is how far in event time the auction 100 auctions later lies.
    fn expires_ms(&self, events: &[u64]) -> Vec<i64> {
        events
            .iter()
            .map(|&n| {
                let ts = self.event_time_ms(n);
                let future = self.event_time_ms(n.saturating_add(NUM_EVENTS_FOR_AUCTIONS));
                let bound = future.saturating_sub(ts).saturating_mul(2).max(1) as u64;
                // below(..) < bound <= i64::MAX, so neither the cast nor the `+ 1` overflows.
                ts.saturating_add(1 + below(rnd(n, S_EXPIRES), bound) as i64)
            })
            .collect()
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Matches the declared fields against the table's columns and checks their types.
fn resolve_columns(table: NexmarkTable, schema: &SchemaRef) -> Result<Vec<OutputColumn>> {
    let names = table.column_names();
    let valid = names.join(", ");
    let mut out = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let declared = field.name();
        let lower = declared.to_ascii_lowercase();
        // snake_case, or camelCase (which lower-cases to the snake name without underscores).
        let position = names
            .iter()
            .position(|c| lower == *c || lower == c.replace('_', ""));
        let Some(col) = position.and_then(|i| table.columns().get(i).copied()) else {
            return plan_err!(
                "nexmark {} table has no column '{}'; valid columns are: {}",
                table.name(),
                declared,
                valid
            );
        };
        let (ok, expected) = match col.kind() {
            ColKind::Int => (
                matches!(field.data_type(), DataType::Int64 | DataType::Int32),
                "Int64 (or Int32)",
            ),
            ColKind::Str => (
                matches!(
                    field.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ),
                "Utf8, LargeUtf8 or Utf8View",
            ),
            ColKind::Time => (
                matches!(field.data_type(), DataType::Timestamp(_, _)),
                "a Timestamp",
            ),
        };
        if !ok {
            return plan_err!(
                "nexmark {} column '{}' must be {}, not {}; valid columns are: {}",
                table.name(),
                declared,
                expected,
                field.data_type(),
                valid
            );
        }
        out.push(OutputColumn {
            col,
            name: declared.clone(),
            data_type: field.data_type().clone(),
        });
    }
    Ok(out)
}

fn int_array(values: Vec<i64>, out: &OutputColumn) -> Result<ArrayRef> {
    match out.data_type {
        DataType::Int64 => Ok(Arc::new(Int64Array::from(values))),
        DataType::Int32 => {
            let narrowed = values
                .iter()
                .map(|&v| {
                    i32::try_from(v).map_err(|_| {
                        exec_datafusion_err!(
                            "nexmark column '{}' value {} does not fit its declared Int32 type",
                            out.name,
                            v
                        )
                    })
                })
                .collect::<Result<Vec<i32>>>()?;
            Ok(Arc::new(Int32Array::from(narrowed)))
        }
        ref other => internal_err!("nexmark column '{}' cannot be {other}", out.name),
    }
}

fn timestamp_array(ms: Vec<i64>, out: &OutputColumn) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, tz) = &out.data_type else {
        return internal_err!("nexmark column '{}' is not a timestamp", out.name);
    };
    let tz = tz.clone();
    let array: ArrayRef = match unit {
        TimeUnit::Second => Arc::new(
            TimestampSecondArray::from(scale(ms, |v| v.div_euclid(1000))).with_timezone_opt(tz),
        ),
        TimeUnit::Millisecond => {
            Arc::new(TimestampMillisecondArray::from(ms).with_timezone_opt(tz))
        }
        TimeUnit::Microsecond => Arc::new(
            TimestampMicrosecondArray::from(scale(ms, |v| v.saturating_mul(1_000)))
                .with_timezone_opt(tz),
        ),
        TimeUnit::Nanosecond => Arc::new(
            TimestampNanosecondArray::from(scale(ms, |v| v.saturating_mul(1_000_000)))
                .with_timezone_opt(tz),
        ),
    };
    Ok(array)
}

/// Converts milliseconds to another unit; `collect` of a mapped `into_iter` reuses the allocation.
fn scale(ms: Vec<i64>, f: impl Fn(i64) -> i64) -> Vec<i64> {
    ms.into_iter().map(f).collect()
}

/// Maps event numbers to values; generic so that `f` is inlined into the loop.
#[inline(always)]
fn collect_i64(events: &[u64], f: impl Fn(u64) -> i64) -> Vec<i64> {
    events.iter().map(|&n| f(n)).collect()
}

fn int_values(col: Col, events: &[u64]) -> Result<Vec<i64>> {
    Ok(match col {
        Col::PersonId => collect_i64(events, |n| last_base0_person_id(n) + FIRST_PERSON_ID),
        Col::AuctionId => collect_i64(events, |n| last_base0_auction_id(n) + FIRST_AUCTION_ID),
        Col::InitialBid => collect_i64(events, auction_initial_bid),
        Col::Reserve => collect_i64(events, |n| {
            auction_initial_bid(n) + price(rnd(n, S_RESERVE))
        }),
        Col::Seller => collect_i64(events, auction_seller),
        Col::Category => collect_i64(events, |n| {
            FIRST_CATEGORY_ID + below(rnd(n, S_CATEGORY), NUM_CATEGORIES) as i64
        }),
        Col::BidAuction => collect_i64(events, bid_auction),
        Col::Bidder => collect_i64(events, bid_bidder),
        Col::Price => collect_i64(events, |n| price(rnd(n, S_PRICE))),
        other => return internal_err!("nexmark column {other:?} is not an integer column"),
    })
}

fn string_column(col: Col, events: &[u64]) -> Result<ArrayRef> {
    let p: &'static Pools = &POOLS;
    let mut b =
        StringBuilder::with_capacity(events.len(), events.len().saturating_mul(col.avg_len()));
    // Values made of several parts are assembled here, then copied once into the builder.
    let mut scratch = String::with_capacity(64);
    match col {
        Col::Name => events
            .iter()
            .for_each(|&n| b.append_value(person_name(p, n))),
        Col::EmailAddress => {
            for &n in events {
                let (user, domain) = person_email(p, n);
                scratch.clear();
                scratch.push_str(user);
                scratch.push('@');
                scratch.push_str(domain);
                scratch.push_str(".com");
                b.append_value(&scratch);
            }
        }
        Col::CreditCard => {
            for &n in events {
                scratch.clear();
                push_credit_card(&mut scratch, n);
                b.append_value(&scratch);
            }
        }
        Col::City => events.iter().for_each(|&n| b.append_value(person_city(n))),
        Col::State => events.iter().for_each(|&n| b.append_value(person_state(n))),
        Col::PersonExtra => events
            .iter()
            .for_each(|&n| b.append_value(person_extra(p, n))),
        Col::ItemName => events
            .iter()
            .for_each(|&n| b.append_value(auction_item_name(p, n))),
        Col::Description => events
            .iter()
            .for_each(|&n| b.append_value(auction_description(p, n))),
        Col::AuctionExtra => events
            .iter()
            .for_each(|&n| b.append_value(auction_extra(p, n))),
        Col::Channel => events
            .iter()
            .for_each(|&n| b.append_value(p.channel(bid_channel_index(n)))),
        Col::Url => events
            .iter()
            .for_each(|&n| b.append_value(p.url(bid_channel_index(n)))),
        Col::BidExtra => events
            .iter()
            .for_each(|&n| b.append_value(next_extra(p, n, S_BID_EXTRA, 8 * 4, AVG_BID_BYTE_SIZE))),
        other => return internal_err!("nexmark column {other:?} is not a string column"),
    }
    Ok(Arc::new(b.finish()))
}

// ---- Reference id arithmetic (PersonGenerator / AuctionGenerator), in i64 like Java's longs:
// lastBase0AuctionId is -1 before the first auction. Event numbers are u64, but n / 50 < 2^59
// so none of this can overflow.

fn epoch_and_offset(n: u64) -> (i64, i64) {
    ((n / TOTAL_PROPORTION) as i64, (n % TOTAL_PROPORTION) as i64)
}

/// Id (base 0) of the last person created at event `n` (this event's own id if it is a person).
fn last_base0_person_id(n: u64) -> i64 {
    let (epoch, mut offset) = epoch_and_offset(n);
    if offset >= PERSON_PROPORTION as i64 {
        offset = PERSON_PROPORTION as i64 - 1;
    }
    epoch * PERSON_PROPORTION as i64 + offset
}

/// Id (base 0) of the last auction created at event `n` (this event's own id if it is an auction).
fn last_base0_auction_id(n: u64) -> i64 {
    let (mut epoch, mut offset) = epoch_and_offset(n);
    let (pp, ap) = (PERSON_PROPORTION as i64, AUCTION_PROPORTION as i64);
    if offset < pp {
        // A person: the last auction is the last one of the previous epoch.
        epoch -= 1;
        offset = ap - 1;
    } else if offset >= pp + ap {
        // A bid: the last auction is the last one of this epoch.
        offset = ap - 1;
    } else {
        offset -= pp;
    }
    epoch * ap + offset
}

/// A random active person, possibly up to `PERSON_ID_LEAD` ids ahead of the last one.
fn next_base0_person_id(n: u64, h: u64) -> i64 {
    let num_people = last_base0_person_id(n) + 1;
    let active = num_people.min(NUM_ACTIVE_PEOPLE);
    num_people - active + below(h, (active + PERSON_ID_LEAD) as u64) as i64
}

/// A random in-flight auction, possibly up to `AUCTION_ID_LEAD` ids ahead of the last one.
fn next_base0_auction_id(n: u64, h: u64) -> i64 {
    let max_auction = last_base0_auction_id(n);
    let min_auction = (max_auction - NUM_IN_FLIGHT_AUCTIONS).max(0);
    min_auction + below(h, (max_auction - min_auction + 1 + AUCTION_ID_LEAD) as u64) as i64
}

/// `PriceGenerator.nextPrice`: `round(10^(6u) * 100)`, computed as `exp(6u ln 10)` (cheaper than
/// `powf`). `u < 1`, so the result is in `[100, 100_000_000]`.
#[inline(always)]
fn price(h: u64) -> i64 {
    let u = (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    ((u * (6.0 * std::f64::consts::LN_10)).exp() * 100.0).round() as i64
}

fn auction_initial_bid(n: u64) -> i64 {
    price(rnd(n, S_INITIAL_BID))
}

fn auction_seller(n: u64) -> i64 {
    let base0 = if below(rnd(n, S_SELLER_HOT), HOT_SELLERS_RATIO) > 0 {
        // The first person of the last batch of 100.
        (last_base0_person_id(n) / HOT_ID_BATCH) * HOT_ID_BATCH
    } else {
        next_base0_person_id(n, rnd(n, S_SELLER))
    };
    base0 + FIRST_PERSON_ID
}

#[inline(always)]
fn bid_auction(n: u64) -> i64 {
    let base0 = if below(rnd(n, S_BID_AUCTION_HOT), HOT_AUCTION_RATIO) > 0 {
        // The first auction of the last batch of 100.
        (last_base0_auction_id(n) / HOT_ID_BATCH) * HOT_ID_BATCH
    } else {
        next_base0_auction_id(n, rnd(n, S_BID_AUCTION))
    };
    base0 + FIRST_AUCTION_ID
}

#[inline(always)]
fn bid_bidder(n: u64) -> i64 {
    let base0 = if below(rnd(n, S_BIDDER_HOT), HOT_BIDDERS_RATIO) > 0 {
        // The second person of the last batch of 100, so hot bidders and hot sellers differ.
        (last_base0_person_id(n) / HOT_ID_BATCH) * HOT_ID_BATCH + 1
    } else {
        next_base0_person_id(n, rnd(n, S_BIDDER))
    };
    base0 + FIRST_PERSON_ID
}

/// Index into [`Pools::channels`]: a hot channel (0..4) half of the time, else `channel-N`.
#[inline(always)]
fn bid_channel_index(n: u64) -> usize {
    let h = rnd(n, S_CHANNEL);
    let pick = step(h);
    if below(h, HOT_CHANNELS_RATIO) > 0 {
        below(pick, HOT_CHANNELS.len() as u64) as usize
    } else {
        HOT_CHANNELS.len() + below(pick, CHANNELS_NUMBER) as usize
    }
}

fn pick(list: &[&'static str], h: u64) -> &'static str {
    list.get(below(h, list.len() as u64) as usize)
        .copied()
        .unwrap_or("")
}

fn person_name(p: &'static Pools, n: u64) -> &'static str {
    let i = below(rnd(n, S_NAME), p.names.len() as u64) as usize;
    p.names.get(i).map_or("", String::as_str)
}

/// The user and domain parts of `nextString(7)@nextString(5).com`.
fn person_email(p: &'static Pools, n: u64) -> (&'static str, &'static str) {
    (
        next_string(p, n, S_EMAIL_USER, 7),
        next_string(p, n, S_EMAIL_DOMAIN, 5),
    )
}

fn person_city(n: u64) -> &'static str {
    pick(&US_CITIES, rnd(n, S_CITY))
}

fn person_state(n: u64) -> &'static str {
    pick(&US_STATES, rnd(n, S_STATE))
}

/// Four `%04d` groups of `nextInt(10000)`, separated by spaces.
fn push_credit_card(out: &mut String, n: u64) {
    let h1 = rnd(n, S_CREDIT_CARD);
    let h2 = step(h1);
    let words = [h1 as u32, (h1 >> 32) as u32, h2 as u32, (h2 >> 32) as u32];
    for (i, word) in words.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let v = ((u64::from(word) * 10_000) >> 32) as u32; // uniform in 0..10_000
        for d in [v / 1000, v / 100 % 10, v / 10 % 10, v % 10] {
            out.push(char::from(b'0' + d as u8));
        }
    }
}

fn person_extra(p: &'static Pools, n: u64) -> &'static str {
    let (user, domain) = person_email(p, n);
    let email_len = user.len() + 1 + domain.len() + 4;
    let current = 8
        + person_name(p, n).len()
        + email_len
        + CREDIT_CARD_LEN
        + person_city(n).len()
        + person_state(n).len();
    next_extra(p, n, S_PERSON_EXTRA, current as u64, AVG_PERSON_BYTE_SIZE)
}

fn auction_item_name(p: &'static Pools, n: u64) -> &'static str {
    next_string(p, n, S_ITEM_NAME, 20)
}

fn auction_description(p: &'static Pools, n: u64) -> &'static str {
    next_string(p, n, S_DESCRIPTION, 100)
}

fn auction_extra(p: &'static Pools, n: u64) -> &'static str {
    let current = 8 + auction_item_name(p, n).len() + auction_description(p, n).len() + 8 * 5;
    next_extra(p, n, S_AUCTION_EXTRA, current as u64, AVG_AUCTION_BYTE_SIZE)
}

/// `StringsGenerator.nextString(max)`: `3..max-1` characters (1/13 of them spaces), trimmed.
fn next_string(p: &'static Pools, n: u64, salt: u64, max_len: u64) -> &'static str {
    let h = rnd(n, salt);
    let len = MIN_STRING_LENGTH + below(h, max_len - MIN_STRING_LENGTH);
    pool_slice(&p.text, step(h), len).trim_matches(' ')
}

/// `StringsGenerator.nextExtra`: letters so that `current + len` averages `avg`.
fn next_extra(p: &'static Pools, n: u64, salt: u64, current: u64, avg: u64) -> &'static str {
    if current > avg {
        return "";
    }
    let desired = avg - current;
    let delta = (desired + 2) / 5; // (int) Math.round(desired * 0.2)
    let h = rnd(n, salt);
    let len = desired - delta + if delta == 0 { 0 } else { below(h, 2 * delta) };
    pool_slice(&p.letters, step(h), len)
}

/// A `len`-byte slice of an ASCII pool at an `h`-chosen offset.
fn pool_slice(pool: &str, h: u64, len: u64) -> &str {
    let len = len.min(pool.len() as u64);
    let offset = below(h, pool.len() as u64 - len + 1);
    pool.get(offset as usize..(offset + len) as usize)
        .unwrap_or("")
}

/// Text and lookup tables built once per process; all generated strings point into them.
struct Pools {
    /// `POOL_LEN` random lowercase letters (for `nextExactString`).
    letters: String,
    /// `POOL_LEN` random lowercase letters, each a space with probability 1/13 (for `nextString`).
    text: String,
    /// All 99 "First Last" combinations (picking one uniformly = picking both names uniformly).
    names: Vec<String>,
    /// The 4 hot channels, then `channel-0` .. `channel-9999`; `urls` is parallel.
    channels: Vec<String>,
    urls: Vec<String>,
}

static POOLS: LazyLock<Pools> = LazyLock::new(Pools::build);

impl Pools {
    fn build() -> Self {
        let letter = |h: u64| char::from(b'a' + below(h, 26) as u8);
        let mut letters = String::with_capacity(POOL_LEN);
        let mut text = String::with_capacity(POOL_LEN);
        for i in 0..POOL_LEN as u64 {
            let h = rnd(i, S_POOL);
            letters.push(letter(h));
            let h2 = step(h);
            text.push(if below(h2, 13) == 0 {
                ' '
            } else {
                letter(step(h2))
            });
        }
        let names = FIRST_NAMES
            .iter()
            .flat_map(|first| LAST_NAMES.iter().map(move |last| format!("{first} {last}")))
            .collect();
        let total = HOT_CHANNELS.len() + CHANNELS_NUMBER as usize;
        let mut channels = Vec::with_capacity(total);
        let mut urls = Vec::with_capacity(total);
        for (i, hot) in HOT_CHANNELS.iter().enumerate() {
            channels.push((*hot).to_string());
            urls.push(base_url(rnd(i as u64, S_HOT_URL)));
        }
        for i in 0..CHANNELS_NUMBER {
            let mut url = base_url(rnd(i, S_CHANNEL_URL));
            if below(rnd(i, S_CHANNEL_ID), 10) > 0 {
                // Java's Math.abs(Integer.reverse(i)); wrapping_abs keeps Java's result for
                // i = 1 (reverse(1) = Integer.MIN_VALUE, whose abs is itself).
                url.push_str("&channel_id=");
                url.push_str(&(i as i32).reverse_bits().wrapping_abs().to_string());
            }
            channels.push(format!("channel-{i}"));
            urls.push(url);
        }
        Self {
            letters,
            text,
            names,
            channels,
            urls,
        }
    }

    fn channel(&self, i: usize) -> &str {
        self.channels.get(i).map_or("", String::as_str)
    }

    fn url(&self, i: usize) -> &str {
        self.urls.get(i).map_or("", String::as_str)
    }
}

/// `https://www.nexmark.com/<s>/<s>/<s>/item.htm?query=1` with `<s>` = `nextString(5, '_')`:
/// 3 or 4 characters, each '_' with probability 1/13 (`trim` keeps underscores).
fn base_url(mut h: u64) -> String {
    let mut url = String::from("https://www.nexmark.com/");
    for _ in 0..3 {
        let len = MIN_STRING_LENGTH + below(h, 5 - MIN_STRING_LENGTH);
        for _ in 0..len {
            h = step(h);
            url.push(if below(h, 13) == 0 {
                '_'
            } else {
                h = step(h);
                char::from(b'a' + below(h, 26) as u8)
            });
        }
        url.push('/');
        h = step(h);
    }
    url.push_str("item.htm?query=1");
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use NexmarkTable::{Auction, Bid, Person};
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{
        Field, Int32Type, Int64Type, Schema, TimestampMicrosecondType, TimestampMillisecondType,
        TimestampSecondType,
    };
    use datafusion::arrow::util::display::array_value_to_string;

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
            assert!(
                url.starts_with("https://www.nexmark.com/") && url.contains("/item.htm?query=1")
            );
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
            NexmarkGenerator::try_new(cfg(1000), Bid, Arc::clone(&schema), 0, 1, Some(1_000))
                .unwrap();
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
}
