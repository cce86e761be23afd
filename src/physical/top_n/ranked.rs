//! One partition key's rows of a top-N, in rank order.
//!
//! Each row is held under its order-by values (Arrow's row format, whose bytes compare in the
//! `ORDER BY`'s order) and a tie number that tells equal rows apart. A key that holds few rows
//! (at most the first `rank_end` over an input that only appends, and `rank_end` is small) keeps
//! them in a sorted vector: a deduplication holds one row per key, and a B-tree's smallest node
//! would cost ten times the row. A key of a changelog's top-N, or of a long `LIMIT`, keeps a
//! B-tree.

use std::collections::BTreeMap;

use datafusion::common::Result;

use crate::state::keyed_db::{ValueReader, put_bytes};

/// The most rows a sorted vector holds (beyond, inserting moves too much).
pub(super) const SMALL: usize = 256;

/// A row's place: its order-by bytes and tie number.
pub(super) type Place = (Box<[u8]>, u64);

/// One key's rows (see the module docs), and when they were last written.
#[derive(Debug)]
pub(super) struct Ranked {
    rows: Rows,
    /// When a row was last added or removed, in processing-time milliseconds
    /// (`table.exec.state.ttl` counts from here).
    pub(super) written: i64,
}

#[derive(Debug)]
enum Rows {
    /// Sorted by place, at most [`SMALL`] rows.
    Few(Vec<(Place, Box<[u8]>)>),
    Many(BTreeMap<Place, Box<[u8]>>),
}

impl Ranked {
    /// An empty key holding at most `bound` rows (`None`: any number), written at `now`.
    pub(super) fn new(bound: Option<usize>, now: i64) -> Self {
        let rows = match bound {
            Some(n) if n <= SMALL => Rows::Few(Vec::with_capacity(n.min(4))),
            _ => Rows::Many(BTreeMap::new()),
        };
        Self { rows, written: now }
    }

    pub(super) fn len(&self) -> usize {
        match &self.rows {
            Rows::Few(v) => v.len(),
            Rows::Many(m) => m.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The place of the last row.
    pub(super) fn last(&self) -> Option<(&[u8], u64)> {
        match &self.rows {
            Rows::Few(v) => v.last().map(|((o, t), _)| (o.as_ref(), *t)),
            Rows::Many(m) => m.last_key_value().map(|((o, t), _)| (o.as_ref(), *t)),
        }
    }

    pub(super) fn insert(&mut self, place: Place, row: Box<[u8]>) {
        match &mut self.rows {
            Rows::Few(v) => {
                let at = v.partition_point(|(p, _)| *p < place);
                v.insert(at, (place, row));
            }
            Rows::Many(m) => {
                m.insert(place, row);
            }
        }
    }

    /// Removes the last row.
    pub(super) fn pop_last(&mut self) -> Option<(Place, Box<[u8]>)> {
        match &mut self.rows {
            Rows::Few(v) => v.pop(),
            Rows::Many(m) => m.pop_last(),
        }
    }

    /// The bytes its rows take, as the top-N counts them (places, rows and 48 per row).
    pub(super) fn held_bytes(&self) -> usize {
        let sizes: Box<dyn Iterator<Item = usize> + '_> = match &self.rows {
            Rows::Few(v) => Box::new(v.iter().map(|((o, _), r)| o.len() + r.len())),
            Rows::Many(m) => Box::new(m.iter().map(|((o, _), r)| o.len() + r.len())),
        };
        sizes.map(|n| n + 48).sum()
    }

    /// The rows in rank order: tie number and row.
    pub(super) fn iter(&self) -> Box<dyn Iterator<Item = (u64, &[u8])> + '_> {
        match &self.rows {
            Rows::Few(v) => Box::new(v.iter().map(|((_, t), r)| (*t, r.as_ref()))),
            Rows::Many(m) => Box::new(m.iter().map(|((_, t), r)| (*t, r.as_ref()))),
        }
    }

    /// Removes the last row equal to `row` among those ordered by `order`; its place.
    pub(super) fn remove(&mut self, order: &[u8], row: &[u8]) -> Option<(Place, Box<[u8]>)> {
        match &mut self.rows {
            Rows::Few(v) => {
                let from = v.partition_point(|((o, _), _)| o.as_ref() < order);
                let to = v.partition_point(|((o, _), _)| o.as_ref() <= order);
                let at = (from..to).rev().find(|&i| v[i].1.as_ref() == row)?;
                Some(v.remove(at))
            }
            Rows::Many(m) => {
                let from = (Box::<[u8]>::from(order), 0);
                let to = (Box::<[u8]>::from(order), u64::MAX);
                let place = m
                    .range(from..=to)
                    .rev()
                    .find(|(_, held)| held.as_ref() == row)
                    .map(|(p, _)| p.clone())?;
                m.remove_entry(&place)
            }
        }
    }
}

impl Ranked {
    /// The key's rows as stored in RocksDB: when it was last written (8 bytes), then each row's
    /// order-by bytes, tie number (8 bytes) and bytes, in rank order.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.held_bytes());
        out.extend_from_slice(&self.written.to_le_bytes());
        let mut put = |(order, tie): &Place, row: &[u8]| {
            put_bytes(&mut out, order);
            out.extend_from_slice(&tie.to_le_bytes());
            put_bytes(&mut out, row);
        };
        match &self.rows {
            Rows::Few(v) => v.iter().for_each(|(p, r)| put(p, r)),
            Rows::Many(m) => m.iter().for_each(|(p, r)| put(p, r)),
        }
        out
    }

    /// A key's rows as [`Self::encode`] stored them, holding at most `bound` rows.
    pub(super) fn decode(value: &[u8], bound: Option<usize>) -> Result<Self> {
        let mut r = ValueReader::new(value, "a top-N");
        let mut ranked = Ranked::new(bound, r.i64()?);
        while !r.is_empty() {
            let order = r.bytes()?.into();
            let tie = r.u64()?;
            ranked.insert((order, tie), r.bytes()?.into());
        }
        Ok(ranked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(order: u8, tie: u64) -> Place {
        (vec![order].into(), tie)
    }

    /// Both forms read back as they were stored; a value cut short is an error.
    #[test]
    fn stored_rows_read_back() {
        for bound in [Some(8), None] {
            let mut r = Ranked::new(bound, 1234);
            for (order, tie, row) in [(5, 0, &b"a"[..]), (2, 1, b"bb"), (5, 2, b"")] {
                r.insert(place(order, tie), row.to_vec().into());
            }
            let value = r.encode();
            let back = Ranked::decode(&value, bound).unwrap();
            assert_eq!(back.written, 1234);
            // As RocksDB's compaction reads it (key space 0).
            assert_eq!(
                crate::state::keyed_db::written_first_in_space_0(&[0, b'k'], &value),
                Some(1234)
            );
            let rows = |r: &Ranked| -> Vec<(u64, Vec<u8>)> {
                r.iter().map(|(t, row)| (t, row.to_vec())).collect()
            };
            assert_eq!(rows(&back), rows(&r));
            assert!(Ranked::decode(&value[..value.len() - 1], bound).is_err());
        }
    }

    /// Both forms keep the same order and remove the same copy.
    #[test]
    fn few_and_many_rank_alike() {
        for bound in [Some(8), None] {
            let mut r = Ranked::new(bound, 0);
            for (order, tie, row) in [(5, 0, b"a"), (2, 1, b"b"), (5, 2, b"a"), (9, 3, b"c")] {
                r.insert(place(order, tie), row.to_vec().into());
            }
            let ties: Vec<u64> = r.iter().map(|(t, _)| t).collect();
            assert_eq!(ties, [1, 0, 2, 3], "{bound:?}");
            assert_eq!(r.last(), Some((&[9u8][..], 3)));
            // The later of the two equal rows goes.
            let (removed, _) = r.remove(&[5], b"a").unwrap();
            assert_eq!(removed.1, 2);
            assert!(r.remove(&[5], b"z").is_none());
            assert!(r.remove(&[7], b"a").is_none());
            assert_eq!(r.pop_last().map(|(p, _)| p.1), Some(3));
            assert_eq!(r.len(), 2);
        }
    }
}
