//! Text fields: the reference name, city and state lists, the pseudo-random text pools that
//! every generated string is a slice of, the `nextString` / `nextExtra` rules, and bid channels.

use std::sync::LazyLock;

use super::random::{
    S_AUCTION_EXTRA, S_CHANNEL, S_CHANNEL_ID, S_CHANNEL_URL, S_CITY, S_CREDIT_CARD, S_DESCRIPTION,
    S_EMAIL_DOMAIN, S_EMAIL_USER, S_HOT_URL, S_ITEM_NAME, S_NAME, S_PERSON_EXTRA, S_POOL, S_STATE,
    below, rnd, step,
};

// ---- Reference constants of the text fields (StringsGenerator, PersonGenerator, ...).
const HOT_CHANNELS_RATIO: u64 = 2;
const CHANNELS_NUMBER: u64 = 10_000;
pub(super) const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const AVG_PERSON_BYTE_SIZE: u64 = 200;
const AVG_AUCTION_BYTE_SIZE: u64 = 500;
pub(super) const AVG_BID_BYTE_SIZE: u64 = 100;
const MIN_STRING_LENGTH: u64 = 3;
pub(super) const CREDIT_CARD_LEN: usize = 19;

pub(super) const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
pub(super) const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
pub(super) const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
pub(super) const US_CITIES: [&str; 10] = [
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

/// Index into [`Pools::channels`]: a hot channel (0..4) half of the time, else `channel-N`.
#[inline(always)]
pub(super) fn bid_channel_index(n: u64) -> usize {
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

pub(super) fn person_name(p: &'static Pools, n: u64) -> &'static str {
    let i = below(rnd(n, S_NAME), p.names.len() as u64) as usize;
    p.names.get(i).map_or("", String::as_str)
}

/// The user and domain parts of `nextString(7)@nextString(5).com`.
pub(super) fn person_email(p: &'static Pools, n: u64) -> (&'static str, &'static str) {
    (
        next_string(p, n, S_EMAIL_USER, 7),
        next_string(p, n, S_EMAIL_DOMAIN, 5),
    )
}

pub(super) fn person_city(n: u64) -> &'static str {
    pick(&US_CITIES, rnd(n, S_CITY))
}

pub(super) fn person_state(n: u64) -> &'static str {
    pick(&US_STATES, rnd(n, S_STATE))
}

/// Four `%04d` groups of `nextInt(10000)`, separated by spaces.
pub(super) fn push_credit_card(out: &mut String, n: u64) {
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

pub(super) fn person_extra(p: &'static Pools, n: u64) -> &'static str {
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

pub(super) fn auction_item_name(p: &'static Pools, n: u64) -> &'static str {
    next_string(p, n, S_ITEM_NAME, 20)
}

pub(super) fn auction_description(p: &'static Pools, n: u64) -> &'static str {
    next_string(p, n, S_DESCRIPTION, 100)
}

pub(super) fn auction_extra(p: &'static Pools, n: u64) -> &'static str {
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
pub(super) fn next_extra(
    p: &'static Pools,
    n: u64,
    salt: u64,
    current: u64,
    avg: u64,
) -> &'static str {
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
pub(super) struct Pools {
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

pub(super) static POOLS: LazyLock<Pools> = LazyLock::new(Pools::build);

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

    pub(super) fn channel(&self, i: usize) -> &str {
        self.channels.get(i).map_or("", String::as_str)
    }

    pub(super) fn url(&self, i: usize) -> &str {
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
