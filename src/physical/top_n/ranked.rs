//! One partition key's rows of a top-N, in rank order.
//!
//! Each row is held under its order-by values (Arrow's row format, whose bytes compare in the
//! `ORDER BY`'s order) and a tie number that tells equal rows apart. A key that holds few rows
//! (at most the first `rank_end` over an input that only appends, and `rank_end` is small) keeps
//! them in a sorted vector: a deduplication holds one row per key, and a B-tree's smallest node
//! would cost ten times the row. A key of a changelog's top-N, or of a long `LIMIT`, keeps a
//! B-tree.

use std::collections::BTreeMap;

/// The most rows a sorted vector holds (beyond, inserting moves too much).
pub(super) const SMALL: usize = 256;

/// A row's place: its order-by bytes and tie number.
pub(super) type Place = (Box<[u8]>, u64);

/// One key's rows (see the module docs).
#[derive(Debug)]
pub(super) enum Ranked {
    /// Sorted by place, at most [`SMALL`] rows.
    Few(Vec<(Place, Box<[u8]>)>),
    Many(BTreeMap<Place, Box<[u8]>>),
}

impl Ranked {
    /// An empty key holding at most `bound` rows (`None`: any number).
    pub(super) fn new(bound: Option<usize>) -> Self {
        match bound {
            Some(n) if n <= SMALL => Ranked::Few(Vec::with_capacity(n.min(4))),
            _ => Ranked::Many(BTreeMap::new()),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Ranked::Few(v) => v.len(),
            Ranked::Many(m) => m.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The place of the last row.
    pub(super) fn last(&self) -> Option<(&[u8], u64)> {
        match self {
            Ranked::Few(v) => v.last().map(|((o, t), _)| (o.as_ref(), *t)),
            Ranked::Many(m) => m.last_key_value().map(|((o, t), _)| (o.as_ref(), *t)),
        }
    }

    pub(super) fn insert(&mut self, place: Place, row: Box<[u8]>) {
        match self {
            Ranked::Few(v) => {
                let at = v.partition_point(|(p, _)| *p < place);
                v.insert(at, (place, row));
            }
            Ranked::Many(m) => {
                m.insert(place, row);
            }
        }
    }

    /// Removes the last row.
    pub(super) fn pop_last(&mut self) -> Option<(Place, Box<[u8]>)> {
        match self {
            Ranked::Few(v) => v.pop(),
            Ranked::Many(m) => m.pop_last(),
        }
    }

    /// The rows in rank order: tie number and row.
    pub(super) fn iter(&self) -> Box<dyn Iterator<Item = (u64, &[u8])> + '_> {
        match self {
            Ranked::Few(v) => Box::new(v.iter().map(|((_, t), r)| (*t, r.as_ref()))),
            Ranked::Many(m) => Box::new(m.iter().map(|((_, t), r)| (*t, r.as_ref()))),
        }
    }

    /// Removes the last row equal to `row` among those ordered by `order`; its place.
    pub(super) fn remove(&mut self, order: &[u8], row: &[u8]) -> Option<(Place, Box<[u8]>)> {
        match self {
            Ranked::Few(v) => {
                let from = v.partition_point(|((o, _), _)| o.as_ref() < order);
                let to = v.partition_point(|((o, _), _)| o.as_ref() <= order);
                let at = (from..to).rev().find(|&i| v[i].1.as_ref() == row)?;
                Some(v.remove(at))
            }
            Ranked::Many(m) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn place(order: u8, tie: u64) -> Place {
        (vec![order].into(), tie)
    }

    /// Both forms keep the same order and remove the same copy.
    #[test]
    fn few_and_many_rank_alike() {
        for bound in [Some(8), None] {
            let mut r = Ranked::new(bound);
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
