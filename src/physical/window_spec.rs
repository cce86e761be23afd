//! What a window is: TUMBLE, HOP or SESSION, with sizes in milliseconds.
//!
//! Windows are aligned to the Unix epoch plus `offset`; a window `[start, end)` excludes its end
//! and fires when the watermark reaches `end - 1` (Flink's rule). HOP windows are built from
//! *slices* of `gcd(size, slide)` milliseconds, so each row touches one slice however many
//! windows contain it.

use std::fmt;

use datafusion::common::plan_err;
use datafusion::error::Result;

/// The kind of window and its sizes (all in milliseconds, all positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumble { size: i64 },
    /// Windows of `size` starting every `slide`.
    Hop { slide: i64, size: i64 },
    /// Per-key activity sessions closed after `gap` without events.
    Session { gap: i64 },
}

/// A window definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub struct WindowSpec {
    /// Kind and sizes.
    pub kind: WindowKind,
    /// Alignment offset from the epoch (TUMBLE and HOP).
    pub offset: i64,
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a.abs()
}

impl WindowSpec {
    /// A TUMBLE window; errors name the problem and the fix.
    pub fn tumble(size: i64, offset: i64) -> Result<Self> {
        if size <= 0 {
            return plan_err!("TUMBLE size must be a positive interval, got {size} ms");
        }
        Ok(Self {
            kind: WindowKind::Tumble { size },
            offset,
        })
    }

    /// A HOP window.
    pub fn hop(slide: i64, size: i64, offset: i64) -> Result<Self> {
        if slide <= 0 || size <= 0 {
            return plan_err!(
                "HOP slide and size must be positive intervals, got slide {slide} ms and size {size} ms"
            );
        }
        if slide > size {
            return plan_err!(
                "HOP slide ({slide} ms) is larger than the window size ({size} ms): rows between \
                 windows would be lost. Use a slide at most as large as the size"
            );
        }
        Ok(Self {
            kind: WindowKind::Hop { slide, size },
            offset,
        })
    }

    /// A SESSION window.
    pub fn session(gap: i64) -> Result<Self> {
        if gap <= 0 {
            return plan_err!("SESSION gap must be a positive interval, got {gap} ms");
        }
        Ok(Self {
            kind: WindowKind::Session { gap },
            offset: 0,
        })
    }

    /// Name of the window function: TUMBLE, HOP or SESSION.
    pub fn function_name(&self) -> &'static str {
        match self.kind {
            WindowKind::Tumble { .. } => "TUMBLE",
            WindowKind::Hop { .. } => "HOP",
            WindowKind::Session { .. } => "SESSION",
        }
    }

    /// Width of one slice: the unit of state for TUMBLE and HOP.
    pub fn slice_size(&self) -> i64 {
        match self.kind {
            WindowKind::Tumble { size } => size,
            WindowKind::Hop { slide, size } => gcd(slide, size),
            WindowKind::Session { gap } => gap,
        }
    }

    /// Window size (TUMBLE, HOP) or gap (SESSION).
    pub fn size(&self) -> i64 {
        match self.kind {
            WindowKind::Tumble { size } | WindowKind::Hop { size, .. } => size,
            WindowKind::Session { gap } => gap,
        }
    }

    /// Distance between window starts (TUMBLE: the size).
    pub fn slide(&self) -> i64 {
        match self.kind {
            WindowKind::Tumble { size } => size,
            WindowKind::Hop { slide, .. } => slide,
            WindowKind::Session { gap } => gap,
        }
    }

    /// Start of the slice containing `ts`.
    #[inline]
    pub fn slice_start(&self, ts: i64) -> i64 {
        let slice = self.slice_size();
        ts - (ts.wrapping_sub(self.offset)).rem_euclid(slice)
    }

    /// Start of the latest window containing `ts` (TUMBLE and HOP).
    #[inline]
    pub fn last_window_start(&self, ts: i64) -> i64 {
        ts - (ts.wrapping_sub(self.offset)).rem_euclid(self.slide())
    }

    /// Starts of all windows containing `ts`, latest first (TUMBLE and HOP).
    pub fn window_starts(&self, ts: i64) -> impl Iterator<Item = i64> + use<> {
        let size = self.size();
        let slide = self.slide();
        let last = self.last_window_start(ts);
        let count = (size + slide - 1) / slide;
        (0..count)
            .map(move |i| last - i * slide)
            .filter(move |start| start.saturating_add(size) > ts)
    }

    /// End (exclusive) of the earliest window containing the slice starting at `slice_start`:
    /// when the watermark reaches this minus one, rows of that slice are late.
    #[inline]
    pub fn first_window_end_of_slice(&self, slice_start: i64) -> i64 {
        match self.kind {
            WindowKind::Tumble { size } => slice_start.saturating_add(size),
            WindowKind::Hop { slide, size } => {
                // The earliest window containing the slice starts at the first window start at
                // or after `slice_end - size`.
                let lowest = slice_start + self.slice_size() - size;
                let first_start = lowest + (self.offset - lowest).rem_euclid(slide);
                first_start.saturating_add(size)
            }
            WindowKind::Session { gap } => slice_start.saturating_add(gap),
        }
    }

    /// End (exclusive) of the latest window containing the slice starting at `slice_start`:
    /// once the watermark reaches this minus one, every window holding the slice has fired,
    /// and its rows are late.
    #[inline]
    pub fn last_window_end_of_slice(&self, slice_start: i64) -> i64 {
        match self.kind {
            WindowKind::Tumble { size } => slice_start.saturating_add(size),
            // Slices are aligned like windows and divide the slide, so the latest window start
            // at or before the slice holds all of it.
            WindowKind::Hop { size, .. } => {
                self.last_window_start(slice_start).saturating_add(size)
            }
            WindowKind::Session { gap } => slice_start.saturating_add(gap),
        }
    }

    /// The instant at which a window ending at `end` fires: `end - 1`.
    #[inline]
    pub fn fire_time(end: i64) -> i64 {
        end.saturating_sub(1)
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            WindowKind::Tumble { size } => write!(f, "TUMBLE(size={})", format_ms(size))?,
            WindowKind::Hop { slide, size } => write!(
                f,
                "HOP(slide={}, size={})",
                format_ms(slide),
                format_ms(size)
            )?,
            WindowKind::Session { gap } => write!(f, "SESSION(gap={})", format_ms(gap))?,
        }
        if self.offset != 0 {
            write!(f, " offset={}", format_ms(self.offset))?;
        }
        Ok(())
    }
}

/// Formats a duration in ms compactly: `10s`, `1500ms`, `5min`, `2h`, `1d`.
pub fn format_ms(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
    ];
    if ms != 0 {
        for (unit, name) in UNITS {
            if ms % unit == 0 {
                return format!("{}{name}", ms / unit);
            }
        }
    }
    format!("{ms}ms")
}

/// Name of the column holding the window start.
pub const WINDOW_START: &str = "window_start";
/// Name of the column holding the (exclusive) window end.
pub const WINDOW_END: &str = "window_end";
/// Name of the column holding `window_end - 1 ms`, the window's rowtime.
pub const WINDOW_TIME: &str = "window_time";

/// One of the three columns a window adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum WindowField {
    /// `window_start`
    Start,
    /// `window_end`
    End,
    /// `window_time`
    Time,
}

impl WindowField {
    /// All three, in output order.
    pub const ALL: [WindowField; 3] = [WindowField::Start, WindowField::End, WindowField::Time];

    /// The column name.
    pub fn name(&self) -> &'static str {
        match self {
            WindowField::Start => WINDOW_START,
            WindowField::End => WINDOW_END,
            WindowField::Time => WINDOW_TIME,
        }
    }

    /// Value of this field for the window `[start, end)`.
    #[inline]
    pub fn value(&self, start: i64, end: i64) -> i64 {
        match self {
            WindowField::Start => start,
            WindowField::End => end,
            WindowField::Time => end.saturating_sub(1),
        }
    }
}

/// Where a group column of the output comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum GroupColumn {
    /// The i-th key expression.
    Key(usize),
    /// A window column.
    Window(WindowField),
    /// `__grouping_id` of `GROUPING SETS` / `ROLLUP` / `CUBE`, which `GROUPING(...)` (and
    /// Flink's `GROUPING_ID(...)`) read.
    GroupingId,
}

/// One grouping set of `GROUPING SETS`, `ROLLUP` or `CUBE` in a window aggregation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct GroupingSetKeys {
    /// Per key, in the order of `keys`: true when the set leaves the key out (its rows have
    /// NULL there).
    pub absent: Vec<bool>,
    /// The set's `__grouping_id`, encoded as DataFusion's aggregation does: a bit per group
    /// expression (the first one highest) set when it is left out, and above them the
    /// ordinal of a repeated set.
    pub id: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumble_alignment_with_offset_and_negative_times() {
        let w = WindowSpec::tumble(10, 0).unwrap();
        assert_eq!(w.window_starts(25).collect::<Vec<_>>(), vec![20]);
        assert_eq!(w.window_starts(-1).collect::<Vec<_>>(), vec![-10]);
        assert_eq!(
            w.window_starts(20).collect::<Vec<_>>(),
            vec![20],
            "end is exclusive"
        );
        let w = WindowSpec::tumble(10, 3).unwrap();
        assert_eq!(w.window_starts(12).collect::<Vec<_>>(), vec![3]);
        assert_eq!(w.window_starts(13).collect::<Vec<_>>(), vec![13]);
    }

    #[test]
    fn hop_windows_of_a_row() {
        // size 10, slide 4: windows start at multiples of 4; row 9 is in [0,10), [4,14), [8,18)
        let w = WindowSpec::hop(4, 10, 0).unwrap();
        assert_eq!(w.window_starts(9).collect::<Vec<_>>(), vec![8, 4, 0]);
        // row 10 is in [4,14) and [8,18) only
        assert_eq!(w.window_starts(10).collect::<Vec<_>>(), vec![8, 4]);
        assert_eq!(w.slice_size(), 2);
    }

    #[test]
    fn first_window_end_of_a_slice() {
        let w = WindowSpec::hop(2, 10, 0).unwrap();
        // slice [4,6) is first contained by window [-4, 6)
        assert_eq!(w.first_window_end_of_slice(4), 6);
        let w = WindowSpec::hop(4, 10, 0).unwrap();
        // slices of 2; slice [6,8) is in windows starting 0 and 4 (and -? : [-4,6) ends before 8)
        // earliest containing [6,8) is [0,10)
        assert_eq!(w.first_window_end_of_slice(6), 10);
        // slice [8,10): windows [0,10), [4,14), [8,18): earliest ends at 10
        assert_eq!(w.first_window_end_of_slice(8), 10);
        // slice [10,12): windows [4,14), [8,18), earliest ends at 14
        assert_eq!(w.first_window_end_of_slice(10), 14);
        let t = WindowSpec::tumble(10, 0).unwrap();
        assert_eq!(t.first_window_end_of_slice(20), 30);
    }

    #[test]
    fn last_window_end_of_a_slice() {
        let w = WindowSpec::hop(4, 10, 0).unwrap();
        // slice [6,8) is in [0,10) and [4,14): the latest ends at 14
        assert_eq!(w.last_window_end_of_slice(6), 14);
        // slice [8,10): [0,10), [4,14), [8,18)
        assert_eq!(w.last_window_end_of_slice(8), 18);
        // with an offset and before the epoch: windows start at 1 + 4k
        let w = WindowSpec::hop(4, 10, 1).unwrap();
        assert_eq!(w.last_window_end_of_slice(-3), 7);
        let w = WindowSpec::hop(5_000, 10_000, 0).unwrap();
        // the example: slice [12:00:00, 12:00:05) is last in [12:00:00, 12:00:10)
        assert_eq!(w.first_window_end_of_slice(0), 5_000);
        assert_eq!(w.last_window_end_of_slice(0), 10_000);
        let t = WindowSpec::tumble(10, 0).unwrap();
        assert_eq!(t.last_window_end_of_slice(20), 30);
    }

    #[test]
    fn invalid_windows_are_plan_errors() {
        assert!(WindowSpec::tumble(0, 0).is_err());
        assert!(WindowSpec::hop(20, 10, 0).is_err());
        assert!(WindowSpec::session(-1).is_err());
    }

    #[test]
    fn display() {
        assert_eq!(
            WindowSpec::hop(2000, 10000, 0).unwrap().to_string(),
            "HOP(slide=2s, size=10s)"
        );
        assert_eq!(format_ms(1500), "1500ms");
        assert_eq!(format_ms(300_000), "5min");
    }
}
