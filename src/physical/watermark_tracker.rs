//! `WatermarkTracker`: combines the watermarks of several inputs into one.
//!
//! Every place where streams meet (source splits inside a source task, the inputs of an
//! exchange output, the sides of a join) needs the same rule: the combined watermark is the
//! minimum over the inputs that are neither idle nor finished, and it never moves backwards.
//! An idle input stops holding the others back until it produces data again; a finished input
//! counts as [`END_OF_TIME`].
//!
//! The tracker also refines per-row watermarks of a batch arriving from one input: had that
//! input's watermark advanced after each of its rows, the combined watermark just before row `r`
//! would have been `max(combined, min(row_wm[r], min over the other active inputs))`.

use datafusion::arrow::array::Int64Array;

use super::message::{END_OF_TIME, NO_WATERMARK};

#[derive(Debug, Clone, Copy)]
struct InputState {
    watermark: i64,
    idle: bool,
    finished: bool,
}

/// Minimum-of-inputs watermark that never goes backwards. See the module docs.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    inputs: Vec<InputState>,
    combined: i64,
}

impl WatermarkTracker {
    /// A tracker over `num_inputs` inputs, all active and without a watermark.
    pub fn new(num_inputs: usize) -> Self {
        Self {
            inputs: vec![
                InputState {
                    watermark: NO_WATERMARK,
                    idle: false,
                    finished: false,
                };
                num_inputs
            ],
            combined: NO_WATERMARK,
        }
    }

    /// The combined watermark.
    pub fn current(&self) -> i64 {
        self.combined
    }

    /// Number of inputs.
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Records a watermark from `input` (which also ends its idleness). Returns the new combined
    /// watermark if it advanced.
    pub fn update(&mut self, input: usize, watermark: i64) -> Option<i64> {
        let state = &mut self.inputs[input];
        state.idle = false;
        state.watermark = state.watermark.max(watermark);
        self.recompute()
    }

    /// Marks `input` active again because it produced data.
    pub fn mark_active(&mut self, input: usize) {
        self.inputs[input].idle = false;
    }

    /// Marks `input` idle. Returns the new combined watermark if it advanced.
    pub fn mark_idle(&mut self, input: usize) -> Option<i64> {
        self.inputs[input].idle = true;
        self.recompute()
    }

    /// Marks `input` finished. Returns the new combined watermark if it advanced.
    pub fn mark_finished(&mut self, input: usize) -> Option<i64> {
        let state = &mut self.inputs[input];
        state.finished = true;
        state.watermark = END_OF_TIME;
        self.recompute()
    }

    /// True if every unfinished input is idle (and at least one is unfinished).
    pub fn all_idle(&self) -> bool {
        let mut any = false;
        for s in &self.inputs {
            if !s.finished {
                any = true;
                if !s.idle {
                    return false;
                }
            }
        }
        any
    }

    /// True if every input finished.
    pub fn all_finished(&self) -> bool {
        self.inputs.iter().all(|s| s.finished)
    }

    /// True if `input` finished.
    pub fn is_finished(&self, input: usize) -> bool {
        self.inputs[input].finished
    }

    fn min_active(&self, except: Option<usize>) -> Option<i64> {
        self.inputs
            .iter()
            .enumerate()
            .filter(|(i, s)| Some(*i) != except && !s.idle && !s.finished)
            .map(|(_, s)| s.watermark)
            .min()
    }

    fn recompute(&mut self) -> Option<i64> {
        let candidate = match self.min_active(None) {
            Some(min) => min,
            // All idle or finished: idle inputs do not hold back; if everything finished the
            // watermark is the end of time, otherwise the highest watermark of an idle input
            // still running is safe (a finished input's end of time says nothing about the
            // idle ones, which may still send rows).
            None if self.all_finished() => END_OF_TIME,
            None => self
                .inputs
                .iter()
                .filter(|s| !s.finished)
                .map(|s| s.watermark)
                .max()
                .unwrap_or(NO_WATERMARK),
        };
        if candidate > self.combined {
            self.combined = candidate;
            Some(candidate)
        } else {
            None
        }
    }

    /// Per-row watermarks for rows arriving from `input`, given that input's own per-row
    /// watermarks (`None`: the input's last watermark applies to all rows). Returns `None` when
    /// the result would equal the combined watermark for every row.
    pub fn refine_row_watermarks(
        &self,
        input: usize,
        row_watermarks: Option<&Int64Array>,
    ) -> Option<Int64Array> {
        let row_watermarks = row_watermarks?;
        let others = self.min_active(Some(input)).unwrap_or(END_OF_TIME);
        let combined = self.combined;
        // Nothing to refine when another input holds the watermark at or below what is known.
        let highest = row_watermarks
            .values()
            .last()
            .copied()
            .unwrap_or(NO_WATERMARK);
        if others <= combined || highest <= combined {
            return None;
        }
        let values: Vec<i64> = row_watermarks
            .values()
            .iter()
            .map(|&w| combined.max(w.min(others)))
            .collect();
        Some(Int64Array::from(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_inputs_and_never_backwards() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.update(0, 10), None, "input 1 still has no watermark");
        assert_eq!(t.update(1, 5), Some(5));
        assert_eq!(t.update(1, 20), Some(10));
        assert_eq!(
            t.update(0, 8),
            None,
            "a lower watermark of one input is ignored"
        );
        assert_eq!(t.current(), 10);
    }

    #[test]
    fn idle_input_stops_holding_back_until_it_speaks_again() {
        let mut t = WatermarkTracker::new(2);
        t.update(0, 100);
        assert_eq!(t.mark_idle(1), Some(100));
        assert!(!t.all_idle());
        t.update(1, 50);
        assert_eq!(
            t.current(),
            100,
            "never goes back when the idle input returns"
        );
        assert_eq!(t.update(0, 200), None, "input 1 holds it at 100 again");
        assert_eq!(t.update(1, 150), Some(150));
    }

    #[test]
    fn all_idle_releases_highest_watermark() {
        let mut t = WatermarkTracker::new(2);
        t.update(0, 100);
        t.update(1, 40);
        t.mark_idle(0);
        assert_eq!(t.current(), 40);
        t.mark_idle(1);
        assert!(t.all_idle());
        assert_eq!(t.current(), 100);
    }

    #[test]
    fn finished_inputs_count_as_end_of_time() {
        let mut t = WatermarkTracker::new(2);
        t.update(0, 10);
        assert_eq!(t.mark_finished(1), Some(10));
        assert_eq!(t.mark_finished(0), Some(END_OF_TIME));
        assert!(t.all_finished());
    }

    /// One input finished, the other idle: the idle one may still send rows, so the watermark
    /// is its own, not the finished input's end of time.
    #[test]
    fn a_finished_input_does_not_release_an_idle_one() {
        let mut t = WatermarkTracker::new(2);
        t.update(1, 40);
        t.mark_finished(0);
        assert_eq!(t.current(), 40);
        t.mark_idle(1);
        assert_eq!(t.current(), 40);
        assert_eq!(t.update(1, 60), Some(60));
    }

    #[test]
    fn refine_row_watermarks_bounds_by_other_inputs() {
        let mut t = WatermarkTracker::new(2);
        t.update(0, 10);
        t.update(1, 30);
        // Rows of input 0 whose own watermark rose to 25 and 40: the other input caps at 30.
        let rows = Int64Array::from(vec![10, 25, 40]);
        let refined = t.refine_row_watermarks(0, Some(&rows)).unwrap();
        assert_eq!(refined.values().to_vec(), vec![10, 25, 30]);
        // Input 1 is held back by input 0 at 10 = combined: nothing to refine.
        assert!(t.refine_row_watermarks(1, Some(&rows)).is_none());
    }
}
