//! Counter-based randomness shared by the generators: a random value is the `n`-th output of
//! the SplitMix64 stream seeded with a salt, so it is a pure function of `(salt, n)` and any
//! row can be generated without generating the rows before it.

/// SplitMix64's increment (the golden ratio in 64 bits).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output mix.
pub(crate) const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n`-th output of the SplitMix64 stream seeded with `salt`.
#[inline(always)]
pub(crate) fn rnd(n: u64, salt: u64) -> u64 {
    mix64(salt.wrapping_add(n.wrapping_mul(GOLDEN)))
}

/// A further, independent-looking draw derived from `h` (the next SplitMix64 step).
#[inline(always)]
pub(crate) fn step(h: u64) -> u64 {
    mix64(h.wrapping_add(GOLDEN))
}

/// Uniform integer in `0..bound` (Lemire's multiply-high; the bias is < bound / 2^64).
#[inline(always)]
pub(crate) fn below(h: u64, bound: u64) -> u64 {
    ((u128::from(h) * u128::from(bound)) >> 64) as u64
}
