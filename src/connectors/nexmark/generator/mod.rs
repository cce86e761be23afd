//! Columnar, deterministic, splittable Nexmark event generator.
//!
//! Nexmark models an online auction site with three event streams: `person` (new users),
//! `auction` (items put up for sale) and `bid`. This module follows the reference generator
//! (Apache Beam's `org.apache.beam.sdk.nexmark.sources.generator`, the Flink port
//! `com.github.nexmark.flink.generator`, and RisingWave's Rust crate `nexmark`) and produces
//! Arrow [`RecordBatch`](datafusion::arrow::record_batch::RecordBatch)es column by column instead of event objects.
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
//!
//! # Layout
//!
//! * `model`: the reference constants, event kinds ([`NexmarkTable`]) and the id, reference and
//!   price rules.
//! * `strings`: the text pools, the name, city and state lists, the text fields and the bid
//!   channels.
//! * `random`: the counter-based SplitMix64 draws and the per-field salts.
//! * `columns`: the internal column ids, matching the declared schema, and building each column.
//! * `batch`: [`NexmarkConfig`] and [`NexmarkGenerator`], one split's walk over the timeline.

mod batch;
mod columns;
mod model;
mod random;
mod strings;
#[cfg(test)]
mod tests;

pub use batch::{NexmarkConfig, NexmarkGenerator};
pub use model::NexmarkTable;
