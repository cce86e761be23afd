//! Output columns: the internal column ids, matching the declared schema against a table's
//! columns (names and types), and building each requested column for a batch of events.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, StringBuilder, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::{exec_datafusion_err, internal_err, plan_err};
use datafusion::error::Result;

use super::model::{
    FIRST_AUCTION_ID, FIRST_CATEGORY_ID, FIRST_PERSON_ID, NUM_CATEGORIES, NexmarkTable,
    auction_initial_bid, auction_seller, bid_auction, bid_bidder, last_base0_auction_id,
    last_base0_person_id, price,
};
use super::random::{S_BID_EXTRA, S_CATEGORY, S_PRICE, S_RESERVE, below, rnd};
use super::strings::{
    AVG_BID_BYTE_SIZE, CREDIT_CARD_LEN, POOLS, Pools, auction_description, auction_extra,
    auction_item_name, bid_channel_index, next_extra, person_city, person_email, person_extra,
    person_name, person_state, push_credit_card,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Col {
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
pub(super) enum ColKind {
    Int,
    Str,
    Time,
}

impl Col {
    pub(super) fn kind(self) -> ColKind {
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

impl NexmarkTable {
    /// Internal column ids, parallel to [`Self::column_names`].
    pub(super) fn columns(self) -> &'static [Col] {
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
}

/// One requested output column: what to generate and as which Arrow type.
#[derive(Debug)]
pub(super) struct OutputColumn {
    pub(super) col: Col,
    name: String,
    pub(super) data_type: DataType,
}

/// Matches the declared fields against the table's columns and checks their types.
pub(super) fn resolve_columns(
    table: NexmarkTable,
    schema: &SchemaRef,
) -> Result<Vec<OutputColumn>> {
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

pub(super) fn int_array(values: Vec<i64>, out: &OutputColumn) -> Result<ArrayRef> {
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

pub(super) fn timestamp_array(ms: Vec<i64>, out: &OutputColumn) -> Result<ArrayRef> {
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

pub(super) fn int_values(col: Col, events: &[u64]) -> Result<Vec<i64>> {
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

pub(super) fn string_column(col: Col, events: &[u64]) -> Result<ArrayRef> {
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
