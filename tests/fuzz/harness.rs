//! What every fuzz target shares: the time budget, the seeds, the random bytes that
//! `arbitrary` turns into structured inputs, panic detection and the report.

use std::collections::BTreeMap;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();

/// Panics seen anywhere in the process so far (every thread, caught or not: a panic inside a
/// spawned task that Tokio or DataFusion turns into an error still counts).
pub fn panics() -> usize {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// Seconds each target runs: `SABOT_FUZZ_SECONDS` (CI: about a minute), else a short run.
pub fn budget() -> Duration {
    let seconds = std::env::var("SABOT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(4.0);
    Duration::from_secs_f64(seconds.max(0.5))
}

/// Two fixed seeds and one that changes with every run (`SABOT_FUZZ_SEED` replays it).
pub fn seeds() -> Vec<u64> {
    let changing = std::env::var("SABOT_FUZZ_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    vec![0x5ab0_7001, 0x5ab0_7002, changing]
}

/// SplitMix64: the bytes of one seed, the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// What one input did, for the report: an outcome class (`ok`, a SQLSTATE, ...).
pub type Outcome = String;

/// Runs `case` on random inputs of up to `max_len` bytes, seed after seed, until the budget
/// is spent. An input fails when `case` returns an error (the oracle said no) or anything
/// panicked while it ran; the test then fails naming the seed and the input. Prints how many
/// inputs ran and their outcomes.
pub fn run<F>(target: &str, max_len: usize, mut case: F)
where
    F: FnMut(&[u8]) -> Result<Outcome, String>,
{
    let budget = budget();
    let seeds = seeds();
    let per_seed = budget / seeds.len() as u32;
    let mut total = 0usize;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for seed in &seeds {
        let mut rng = Rng::new(*seed);
        let start = Instant::now();
        while start.elapsed() < per_seed {
            let len = 1 + rng.below(max_len as u64) as usize;
            let data = rng.bytes(len);
            let before = panics();
            let result = case(&data);
            if panics() != before {
                panic!(
                    "fuzz {target}: a panic (seed {seed:#x}, input {total}: {} bytes {:02x?})",
                    data.len(),
                    &data[..data.len().min(64)]
                );
            }
            match result {
                Ok(outcome) => *outcomes.entry(outcome).or_default() += 1,
                Err(why) => panic!("fuzz {target}: seed {seed:#x}, input {total}: {why}"),
            }
            total += 1;
        }
    }
    let mut summary: Vec<(String, usize)> = outcomes.into_iter().collect();
    summary.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    let top: Vec<String> = summary
        .iter()
        .take(12)
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    eprintln!(
        "fuzz {target}: {total} inputs in {:.0?} (seeds {}), no failure; outcomes: {}",
        budget,
        seeds
            .iter()
            .map(|s| format!("{s:#x}"))
            .collect::<Vec<_>>()
            .join(", "),
        top.join(", ")
    );
}

/// A Tokio runtime as an embedder would start one (default 2 MiB worker stacks).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
