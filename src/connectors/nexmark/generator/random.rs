//! Counter-based randomness: each drawn value is the `n`-th output of the SplitMix64 stream
//! seeded with a per-field salt, so every field of event `n` is a pure function of `n`.

use crate::connectors::splitmix::mix64;
pub(super) use crate::connectors::splitmix::{below, rnd, step};

// One salt per drawn field so that fields are independent of each other.
pub(super) const S_POOL: u64 = mix64(1);
pub(super) const S_NAME: u64 = mix64(2);
pub(super) const S_EMAIL_USER: u64 = mix64(3);
pub(super) const S_EMAIL_DOMAIN: u64 = mix64(4);
pub(super) const S_CREDIT_CARD: u64 = mix64(5);
pub(super) const S_CITY: u64 = mix64(6);
pub(super) const S_STATE: u64 = mix64(7);
pub(super) const S_PERSON_EXTRA: u64 = mix64(8);
pub(super) const S_ITEM_NAME: u64 = mix64(9);
pub(super) const S_DESCRIPTION: u64 = mix64(10);
pub(super) const S_INITIAL_BID: u64 = mix64(11);
pub(super) const S_RESERVE: u64 = mix64(12);
pub(super) const S_EXPIRES: u64 = mix64(13);
pub(super) const S_SELLER_HOT: u64 = mix64(14);
pub(super) const S_SELLER: u64 = mix64(15);
pub(super) const S_CATEGORY: u64 = mix64(16);
pub(super) const S_AUCTION_EXTRA: u64 = mix64(17);
pub(super) const S_BID_AUCTION_HOT: u64 = mix64(18);
pub(super) const S_BID_AUCTION: u64 = mix64(19);
pub(super) const S_BIDDER_HOT: u64 = mix64(20);
pub(super) const S_BIDDER: u64 = mix64(21);
pub(super) const S_PRICE: u64 = mix64(22);
pub(super) const S_CHANNEL: u64 = mix64(23);
pub(super) const S_BID_EXTRA: u64 = mix64(24);
pub(super) const S_HOT_URL: u64 = mix64(25);
pub(super) const S_CHANNEL_URL: u64 = mix64(26);
pub(super) const S_CHANNEL_ID: u64 = mix64(27);
