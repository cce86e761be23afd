//! Counter-based randomness: a random value is the `n`-th output of the SplitMix64 stream seeded
//! with a per-column salt, so it is a pure function of `(seed, column, row)`; and the random
//! string pool.

use std::sync::LazyLock;

/// Size of the random string pool, and the longest random string.
pub(super) const POOL_LEN: usize = 1 << 16;
const POOL_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

pub(super) use crate::connectors::splitmix::rnd;
use crate::connectors::splitmix::{below, mix64, step};

/// Uniform in `0..=span`.
#[inline(always)]
pub(super) fn up_to(h: u64, span: u64) -> u64 {
    if span == u64::MAX {
        h
    } else {
        below(h, span + 1)
    }
}

/// Uniform in `[0, 1)`.
#[inline(always)]
pub(super) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in `min..=max` (requires `min <= max`).
pub(super) fn uniform_i128(h: u64, min: i128, max: i128) -> i128 {
    let span = (max as u128).wrapping_sub(min as u128);
    let offset = if span <= u128::from(u64::MAX) {
        u128::from(up_to(h, span as u64))
    } else {
        // Wider than 64 bits (Decimal128 only): 128 random bits, modulo (bias < 2^-25).
        let wide = (u128::from(h) << 64) | u128::from(step(h));
        if span == u128::MAX {
            wide
        } else {
            wide % (span + 1)
        }
    };
    (min as u128).wrapping_add(offset) as i128
}

const S_SEED: u64 = mix64(0x6461_7461_6765_6e01);
const S_POOL: u64 = mix64(0x6461_7461_6765_6e02);
pub(super) const PURPOSE_VALUE: u64 = 0;
pub(super) const PURPOSE_NULL: u64 = 1;

/// Salt of the values (or NULL decisions) of source column `column` under `seed`.
pub(super) fn column_salt(seed: u64, column: usize, purpose: u64) -> u64 {
    let stream = (column as u64).wrapping_mul(2).wrapping_add(purpose);
    rnd(stream, mix64(seed ^ S_SEED))
}

/// Pseudo-random lowercase letters and digits; random strings are slices of it.
pub(super) static POOL: LazyLock<String> = LazyLock::new(|| {
    (0..POOL_LEN as u64)
        .map(|i| {
            let c = POOL_ALPHABET[below(rnd(i, S_POOL), POOL_ALPHABET.len() as u64) as usize];
            c as char
        })
        .collect()
});
