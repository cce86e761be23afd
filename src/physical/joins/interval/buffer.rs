//! The buffered rows of one side of an interval join, chained per key.

use std::collections::{HashMap, VecDeque};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::Rows;

/// Encoded join keys of a batch: one integer key as is, other keys in arrow's row format.
pub(super) enum Keys {
    Int(Vec<i64>),
    Rows(Rows),
}

/// A key, borrowed from [`Keys`].
#[derive(Clone, Copy)]
pub(super) enum KeyRef<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

impl Keys {
    pub(super) fn get(&self, i: usize) -> KeyRef<'_> {
        match self {
            Keys::Int(v) => KeyRef::Int(v[i]),
            Keys::Rows(rows) => KeyRef::Bytes(rows.row(i).data()),
        }
    }
}

/// No further row in a chain.
pub(super) const END: u64 = u64::MAX;

/// A buffered row's address: the low 32 bits of its segment id in the high half, the row in
/// the low half. Segment ids wrap around; a link is resolved relative to the oldest live
/// segment, and fewer than 2^31 segments are ever alive at once.
pub(super) fn address(segment: u64, row: usize) -> u64 {
    ((segment & 0xffff_ffff) << 32) | row as u64
}

/// Rows of one input batch kept in a side's buffer.
pub(super) struct Segment {
    pub(super) id: u64,
    pub(super) rows: RecordBatch,
    pub(super) keys: Keys,
    pub(super) times: Vec<i64>,
    pub(super) matched: Vec<bool>,
    /// The next older buffered row with the same key (an address), or `END`.
    pub(super) next: Vec<u64>,
    /// Row indices by time; `order[..cursor]` are gone.
    pub(super) order: Vec<u32>,
    pub(super) cursor: usize,
    /// Memory the segment holds, counted once when it is buffered.
    pub(super) bytes: usize,
}

/// The buffered rows of one side (see the module docs). Rows with the same key form a chain,
/// newest first, from the index through `Segment::next`; links only point to older rows, so a
/// walk stops at the first segment already freed. Rows that are gone but whose segment is not
/// yet freed are skipped by their time.
pub(super) struct SideBuffer {
    pub(super) segments: VecDeque<Segment>,
    pub(super) next_id: u64,
    /// Key -> newest row with the key (integer keys).
    pub(super) ints: HashMap<i64, u64>,
    /// Key -> newest row with the key (other keys).
    pub(super) bytes: HashMap<Box<[u8]>, u64>,
    pub(super) alive: usize,
    /// Rows at or below this time are gone.
    pub(super) threshold: i64,
    /// Memory of the segments (see [`Segment::bytes`]).
    segment_bytes: usize,
    /// Memory of the keys of `bytes`.
    key_bytes: usize,
}

impl SideBuffer {
    pub(super) fn new() -> Self {
        Self {
            segments: VecDeque::new(),
            next_id: 0,
            ints: HashMap::new(),
            bytes: HashMap::new(),
            alive: 0,
            threshold: i64::MIN,
            segment_bytes: 0,
            key_bytes: 0,
        }
    }

    /// Memory the buffered rows and their index hold, approximately, in bytes (kept up to
    /// date as segments come and go, so asking costs nothing).
    pub(super) fn memory_size(&self) -> usize {
        self.segment_bytes + self.ints.capacity() * 16 + self.key_bytes
    }

    pub(super) fn head(&self, key: KeyRef<'_>) -> u64 {
        match key {
            KeyRef::Int(k) => self.ints.get(&k).copied().unwrap_or(END),
            KeyRef::Bytes(k) => self.bytes.get(k).copied().unwrap_or(END),
        }
    }

    /// Calls `found(segment position, row)` for every buffered row with `key` still in time.
    pub(super) fn matches(&self, key: KeyRef<'_>, mut found: impl FnMut(usize, usize)) {
        let Some(first) = self.segments.front().map(|s| s.id) else {
            return;
        };
        let first = (first & 0xffff_ffff) as u32;
        let mut link = self.head(key);
        while link != END {
            let segment = (link >> 32) as u32;
            // A segment older than the oldest live one wraps to a huge position: this row and
            // all older ones were freed.
            let pos = segment.wrapping_sub(first) as usize;
            let row = (link & 0xffff_ffff) as usize;
            let Some(s) = self.segments.get(pos) else {
                break;
            };
            if s.times[row] > self.threshold {
                found(pos, row);
            }
            link = s.next[row];
        }
    }

    /// Links row `row` of the segment at `pos` in front of its key's chain.
    pub(super) fn link(&mut self, pos: usize, row: usize) {
        let segment = &self.segments[pos];
        let me = address(segment.id, row);
        let head = match segment.keys.get(row) {
            KeyRef::Int(k) => self.ints.entry(k).or_insert(END),
            KeyRef::Bytes(k) => match self.bytes.get_mut(k) {
                Some(head) => head,
                None => {
                    self.key_bytes += k.len() + 24;
                    self.bytes.entry(Box::from(k)).or_insert(END)
                }
            },
        };
        let previous = std::mem::replace(head, me);
        self.segments[pos].next[row] = previous;
    }

    /// Adds rows (already checked to be above the threshold and to have non-NULL keys).
    pub(super) fn insert(
        &mut self,
        rows: RecordBatch,
        keys: Keys,
        times: Vec<i64>,
        matched: Vec<bool>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let n = rows.num_rows();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&i| times[i as usize]);
        self.alive += n;
        let bytes = rows.get_array_memory_size()
            + match &keys {
                Keys::Int(k) => k.capacity() * 8,
                Keys::Rows(rows) => rows.size(),
            }
            // times, next (8 bytes each), order (4) and matched (1) per row.
            + n * 21;
        self.segment_bytes += bytes;
        self.segments.push_back(Segment {
            id,
            rows,
            keys,
            times,
            matched,
            next: vec![END; n],
            order,
            cursor: 0,
            bytes,
        });
        let pos = self.segments.len() - 1;
        for row in 0..n {
            self.link(pos, row);
        }
    }

    /// Raises the threshold; returns the rows that went and never matched, as
    /// (segment position, row) with the segments still in place. Call [`Self::compact`] after.
    pub(super) fn evict(&mut self, threshold: i64) -> Vec<(usize, usize)> {
        let mut unmatched = Vec::new();
        if threshold <= self.threshold {
            return unmatched;
        }
        self.threshold = threshold;
        for (pos, segment) in self.segments.iter_mut().enumerate() {
            while segment.cursor < segment.order.len() {
                let row = segment.order[segment.cursor] as usize;
                if segment.times[row] > threshold {
                    break;
                }
                if !segment.matched[row] {
                    unmatched.push((pos, row));
                }
                segment.cursor += 1;
                self.alive -= 1;
            }
        }
        unmatched
    }

    /// Frees the segments that are gone from the front, and rebuilds the index once most of
    /// its keys only lead to rows that are gone.
    pub(super) fn compact(&mut self) {
        while self
            .segments
            .front()
            .is_some_and(|s| s.cursor == s.order.len())
        {
            if let Some(freed) = self.segments.pop_front() {
                self.segment_bytes -= freed.bytes;
            }
        }
        if self.ints.len() + self.bytes.len() > 2 * self.alive + 4096 {
            self.ints.clear();
            self.bytes.clear();
            self.key_bytes = 0;
            for pos in 0..self.segments.len() {
                let n = self.segments[pos].times.len();
                for row in 0..n {
                    self.segments[pos].next[row] = END;
                    if self.segments[pos].times[row] > self.threshold {
                        self.link(pos, row);
                    }
                }
            }
        }
    }

    /// The rows still in time of the segment at `pos`.
    pub(super) fn alive_rows(&self, pos: usize) -> impl Iterator<Item = u32> + '_ {
        let s = &self.segments[pos];
        s.order[s.cursor..]
            .iter()
            .copied()
            .filter(|&r| s.times[r as usize] > self.threshold)
    }
}
