//! The reference event model: which event number is a person, an auction or a bid
//! ([`NexmarkTable`]), and the id, reference and price rules of the reference generator.

use super::random::{
    S_BID_AUCTION, S_BID_AUCTION_HOT, S_BIDDER, S_BIDDER_HOT, S_INITIAL_BID, S_SELLER,
    S_SELLER_HOT, below, rnd,
};

// ---- Reference constants (GeneratorConfig / NexmarkConfiguration defaults, *Generator classes).
const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
pub(super) const TOTAL_PROPORTION: u64 = 50; // person + auction + bid (46)
pub(super) const FIRST_PERSON_ID: i64 = 1000;
pub(super) const FIRST_AUCTION_ID: i64 = 1000;
pub(super) const FIRST_CATEGORY_ID: i64 = 10;
pub(super) const NUM_CATEGORIES: u64 = 5;
const NUM_ACTIVE_PEOPLE: i64 = 1000;
pub(super) const PERSON_ID_LEAD: i64 = 10;
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
pub(super) const AUCTION_ID_LEAD: i64 = 10;
/// Probability of a hot auction / bidder / seller is `1 - 1/ratio`.
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDERS_RATIO: u64 = 4;
const HOT_SELLERS_RATIO: u64 = 4;
/// Hot ids are the first (second for bidders) id of the last batch of this many ids
/// (`HOT_AUCTION_RATIO`, `HOT_BIDDER_RATIO`, `HOT_SELLER_RATIO` = 100 in the Java classes).
const HOT_ID_BATCH: i64 = 100;
/// Events until `numInFlightAuctions` more auctions exist: 100 * 50 / 3 = 1666.
pub(super) const NUM_EVENTS_FOR_AUCTIONS: u64 =
    (NUM_IN_FLIGHT_AUCTIONS as u64 * TOTAL_PROPORTION) / AUCTION_PROPORTION;

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

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Auction => "auction",
            Self::Bid => "bid",
        }
    }

    /// The residues `n % 50` of this kind's event numbers.
    pub(super) fn residues(self) -> std::ops::Range<u64> {
        match self {
            Self::Person => 0..PERSON_PROPORTION,
            Self::Auction => PERSON_PROPORTION..PERSON_PROPORTION + AUCTION_PROPORTION,
            Self::Bid => PERSON_PROPORTION + AUCTION_PROPORTION..TOTAL_PROPORTION,
        }
    }
}

/// The kind of event number `n` (the reference's `rem < personProportion ...` test).
pub(super) fn event_kind(n: u64) -> NexmarkTable {
    let r = n % TOTAL_PROPORTION;
    if r < PERSON_PROPORTION {
        NexmarkTable::Person
    } else if r < PERSON_PROPORTION + AUCTION_PROPORTION {
        NexmarkTable::Auction
    } else {
        NexmarkTable::Bid
    }
}

// ---- Reference id arithmetic (PersonGenerator / AuctionGenerator), in i64 like Java's longs:
// lastBase0AuctionId is -1 before the first auction. Event numbers are u64, but n / 50 < 2^59
// so none of this can overflow.

fn epoch_and_offset(n: u64) -> (i64, i64) {
    ((n / TOTAL_PROPORTION) as i64, (n % TOTAL_PROPORTION) as i64)
}

/// Id (base 0) of the last person created at event `n` (this event's own id if it is a person).
pub(super) fn last_base0_person_id(n: u64) -> i64 {
    let (epoch, mut offset) = epoch_and_offset(n);
    if offset >= PERSON_PROPORTION as i64 {
        offset = PERSON_PROPORTION as i64 - 1;
    }
    epoch * PERSON_PROPORTION as i64 + offset
}

/// Id (base 0) of the last auction created at event `n` (this event's own id if it is an auction).
pub(super) fn last_base0_auction_id(n: u64) -> i64 {
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
pub(super) fn price(h: u64) -> i64 {
    let u = (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    ((u * (6.0 * std::f64::consts::LN_10)).exp() * 100.0).round() as i64
}

pub(super) fn auction_initial_bid(n: u64) -> i64 {
    price(rnd(n, S_INITIAL_BID))
}

pub(super) fn auction_seller(n: u64) -> i64 {
    let base0 = if below(rnd(n, S_SELLER_HOT), HOT_SELLERS_RATIO) > 0 {
        // The first person of the last batch of 100.
        (last_base0_person_id(n) / HOT_ID_BATCH) * HOT_ID_BATCH
    } else {
        next_base0_person_id(n, rnd(n, S_SELLER))
    };
    base0 + FIRST_PERSON_ID
}

#[inline(always)]
pub(super) fn bid_auction(n: u64) -> i64 {
    let base0 = if below(rnd(n, S_BID_AUCTION_HOT), HOT_AUCTION_RATIO) > 0 {
        // The first auction of the last batch of 100.
        (last_base0_auction_id(n) / HOT_ID_BATCH) * HOT_ID_BATCH
    } else {
        next_base0_auction_id(n, rnd(n, S_BID_AUCTION))
    };
    base0 + FIRST_AUCTION_ID
}

#[inline(always)]
pub(super) fn bid_bidder(n: u64) -> i64 {
    let base0 = if below(rnd(n, S_BIDDER_HOT), HOT_BIDDERS_RATIO) > 0 {
        // The second person of the last batch of 100, so hot bidders and hot sellers differ.
        (last_base0_person_id(n) / HOT_ID_BATCH) * HOT_ID_BATCH + 1
    } else {
        next_base0_person_id(n, rnd(n, S_BIDDER))
    };
    base0 + FIRST_PERSON_ID
}
