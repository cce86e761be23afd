//! Reading the inputs of an operator: one event at a time, taking turns, barriers aligned,
//! each input's watermark kept.

use std::future::poll_fn;
use std::task::{Context, Poll};

use datafusion::common::{Result, internal_err};
use futures::StreamExt;

use crate::physical::message::{
    END_OF_TIME, MessageStream, NO_WATERMARK, StreamBatch, StreamMessage,
};

/// What happened on the inputs.
pub enum Event {
    /// Rows from input `.0`.
    Data(usize, StreamBatch),
    /// The watermark of an input advanced (each input's is in [`Inputs::watermarks`]), or an
    /// input went idle while another is not.
    Watermark,
    /// Every unfinished input is idle.
    Idle,
    /// Every unfinished input delivered this barrier.
    Barrier(u64),
}

/// An operator's inputs (see the module docs).
pub struct Inputs {
    inputs: Vec<MessageStream>,
    finished: Vec<bool>,
    blocked: Vec<bool>,
    idle: Vec<bool>,
    barrier: Option<u64>,
    watermarks: Vec<i64>,
    next: usize,
}

impl Inputs {
    pub fn new(inputs: Vec<MessageStream>) -> Self {
        let n = inputs.len();
        Self {
            inputs,
            finished: vec![false; n],
            blocked: vec![false; n],
            idle: vec![false; n],
            barrier: None,
            watermarks: vec![NO_WATERMARK; n],
            next: 0,
        }
    }

    /// Each input's watermark; a finished input's is the end of time.
    pub fn watermarks(&self) -> &[i64] {
        &self.watermarks
    }

    /// Per input, whether it is idle (it said so, and has sent nothing since).
    pub fn idle(&self) -> &[bool] {
        &self.idle
    }

    /// Restores the watermarks of a checkpoint.
    pub fn restore_watermarks(&mut self, watermarks: &[i64]) {
        for (mine, restored) in self.watermarks.iter_mut().zip(watermarks) {
            *mine = *restored;
        }
    }

    /// The next event; `None` when every input ended.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(epoch) = self.barrier
                && (0..self.inputs.len()).all(|i| self.blocked[i] || self.finished[i])
            {
                self.barrier = None;
                self.blocked.fill(false);
                return Some(Ok(Event::Barrier(epoch)));
            }
            if self.finished.iter().all(|f| *f) {
                return None;
            }
            let (input, msg) = match poll_fn(|cx| self.poll_any(cx)).await {
                Ok(next) => next,
                Err(e) => return Some(Err(e)),
            };
            match msg {
                None => {
                    self.finished[input] = true;
                    if self.watermarks[input] != END_OF_TIME {
                        self.watermarks[input] = END_OF_TIME;
                        return Some(Ok(Event::Watermark));
                    }
                }
                Some(StreamMessage::Data(batch)) => {
                    self.idle[input] = false;
                    return Some(Ok(Event::Data(input, batch)));
                }
                Some(StreamMessage::Watermark(w)) => {
                    self.idle[input] = false;
                    if w > self.watermarks[input] {
                        self.watermarks[input] = w;
                        return Some(Ok(Event::Watermark));
                    }
                }
                Some(StreamMessage::Idle) => {
                    let was = self.all_idle();
                    let newly = !self.idle[input];
                    self.idle[input] = true;
                    if !was && self.all_idle() {
                        return Some(Ok(Event::Idle));
                    }
                    // The watermark of the inputs still active may now be ahead (see
                    // `Watermarks::active_min`).
                    if newly {
                        return Some(Ok(Event::Watermark));
                    }
                }
                Some(StreamMessage::Barrier(b)) => {
                    match self.barrier {
                        None => self.barrier = Some(b.epoch),
                        Some(e) if e == b.epoch => {}
                        Some(e) => {
                            return Some(internal_err!(
                                "barrier {} arrived while aligning barrier {e}",
                                b.epoch
                            ));
                        }
                    }
                    self.blocked[input] = true;
                }
            }
        }
    }

    /// Every input that has not finished is idle (and one has not).
    fn all_idle(&self) -> bool {
        (0..self.inputs.len()).all(|i| self.idle[i] || self.finished[i])
            && !self.finished.iter().all(|f| *f)
    }

    /// The next message of any readable input, taking turns.
    fn poll_any(&mut self, cx: &mut Context<'_>) -> Poll<Result<(usize, Option<StreamMessage>)>> {
        let n = self.inputs.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if self.blocked[i] || self.finished[i] {
                continue;
            }
            match self.inputs[i].poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(msg))) => {
                    self.next = i + 1;
                    return Poll::Ready(Ok((i, Some(msg))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok((i, None))),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physical::message::CheckpointBarrier;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    fn data(v: i64) -> Result<StreamMessage> {
        let batch =
            RecordBatch::try_from_iter(vec![("v", Arc::new(Int64Array::from(vec![v])) as _)])
                .unwrap();
        Ok(StreamMessage::Data(StreamBatch::new(batch)))
    }

    fn stream(msgs: Vec<Result<StreamMessage>>) -> MessageStream {
        Box::pin(futures::stream::iter(msgs))
    }

    #[tokio::test]
    async fn barrier_waits_for_both_sides_and_later_rows_wait_for_it() {
        let b = || Ok(StreamMessage::Barrier(CheckpointBarrier { epoch: 1 }));
        let mut inputs = Inputs::new(vec![
            stream(vec![data(1), b(), data(2)]),
            stream(vec![data(10), data(11), data(12), b(), data(13)]),
        ]);
        let mut seen = Vec::new();
        while let Some(event) = inputs.next().await {
            match event.unwrap() {
                Event::Data(side, batch) => {
                    let v = batch.batch.column(0).as_any().downcast_ref::<Int64Array>();
                    seen.push(format!("{side}:{}", v.unwrap().value(0)));
                }
                Event::Barrier(e) => seen.push(format!("b{e}")),
                Event::Watermark | Event::Idle => {}
            }
        }
        let at = seen.iter().position(|s| s == "b1").unwrap();
        let mut before = seen[..at].to_vec();
        before.sort();
        assert_eq!(before, vec!["0:1", "1:10", "1:11", "1:12"]);
        let mut after = seen[at + 1..].to_vec();
        after.sort();
        assert_eq!(after, vec!["0:2", "1:13"]);
    }

    #[tokio::test]
    async fn watermarks_per_side_and_idle_once_every_running_side_is() {
        let mut inputs = Inputs::new(vec![
            stream(vec![Ok(StreamMessage::Watermark(5))]),
            stream(vec![
                Ok(StreamMessage::Watermark(7)),
                Ok(StreamMessage::Watermark(3)),
            ]),
        ]);
        while let Some(event) = inputs.next().await {
            event.unwrap();
        }
        assert_eq!(inputs.watermarks(), [END_OF_TIME, END_OF_TIME]);
        let mut inputs = Inputs::new(vec![
            stream(vec![
                Ok(StreamMessage::Watermark(5)),
                Ok(StreamMessage::Idle),
            ]),
            stream(vec![]),
        ]);
        // The right side ends at once; then the left goes idle: every side still running is
        // idle, so the join says so downstream (and never after both ended).
        let mut idle = 0;
        while let Some(event) = inputs.next().await {
            if matches!(event.unwrap(), Event::Idle) {
                idle += 1;
            }
        }
        assert_eq!(idle, 1);
    }
}
