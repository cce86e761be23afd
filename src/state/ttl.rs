//! Flink's `table.exec.state.ttl` for the operators whose state grows with their input: the
//! regular join, the top-N, the OVER aggregate, the temporal join and the updating GROUP BY.
//!
//! State not written for the time to live (processing time: the machine's clock, as Flink's
//! state TTL) is dropped, without anything emitted: what it had produced stays in the result.
//! Expiry makes results approximate, as in Flink:
//!
//! - a join row that expired no longer meets partners arriving later, and a retraction of it is
//!   ignored; an outer row that expired is not padded again when its last partner goes;
//! - a top-N key that expired starts over: its next row ranks first, while the ranks it had
//!   emitted stay in the result;
//! - an OVER aggregate's key that expired forgets the rows its frames reached: its next row's
//!   frame starts with it;
//! - an updating GROUP BY's group that expired starts over: the key's next row gives a new
//!   result (`+I`) while the one it had emitted stays.
//!
//! A row's clock starts when it is stored and restarts whenever it is written again (a join
//! row's count of partners changes; a top-N key gets or loses a row). A restored checkpoint
//! gives every row a whole time to live again. Expired state is swept every quarter of the time
//! to live (but not more often than every 10 ms, and at least once a minute), by the operator's
//! timer, whether rows arrive or not.

use std::time::Duration;

/// When an operator's state expires (see the module docs).
#[derive(Debug, Clone)]
pub struct TimeToLive {
    ttl_ms: i64,
    next_sweep: i64,
}

impl TimeToLive {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            next_sweep: i64::MIN,
        }
    }

    /// The oldest write time still alive at `now`.
    pub fn oldest(&self, now: i64) -> i64 {
        now.saturating_sub(self.ttl_ms)
    }

    /// When the next sweep is due (ms; the first is due at once).
    pub fn next_sweep(&self) -> i64 {
        self.next_sweep
    }

    /// At `now` (ms): if a sweep is due, the oldest write time state may keep.
    pub fn sweep(&mut self, now: i64) -> Option<i64> {
        if now < self.next_sweep {
            return None;
        }
        self.next_sweep = now.saturating_add((self.ttl_ms / 4).clamp(10, 60_000));
        Some(now.saturating_sub(self.ttl_ms))
    }
}

/// `, ttl=...` in an operator's EXPLAIN line, if it has a time to live.
pub fn fmt_ttl(f: &mut std::fmt::Formatter<'_>, ttl: Option<Duration>) -> std::fmt::Result {
    match ttl {
        Some(ttl) => write!(
            f,
            ", ttl={}ms (state not written for this long is dropped)",
            ttl.as_millis()
        ),
        None => Ok(()),
    }
}

/// The machine's clock in milliseconds since the epoch.
pub use crate::functions::proctime::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_come_every_quarter_of_the_time_to_live() {
        let mut ttl = TimeToLive::new(Duration::from_secs(4));
        assert_eq!(ttl.sweep(10_000), Some(6_000));
        assert_eq!(ttl.sweep(10_999), None);
        assert_eq!(ttl.sweep(11_000), Some(7_000));
        // A tiny time to live is swept at most every 10 ms.
        let mut tiny = TimeToLive::new(Duration::from_millis(1));
        assert_eq!(tiny.sweep(0), Some(-1));
        assert_eq!(tiny.sweep(9), None);
        assert_eq!(tiny.sweep(10), Some(9));
    }
}
