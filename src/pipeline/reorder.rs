//! Ordered release: work numbered by its source (chunk sequence numbers) comes back from a pool
//! of workers in any order; a [`Reorder`] hands it on strictly in sequence.
//!
//! Invariant: [`Reorder::pop`] returns item `n` only after items `0..n` were returned, so segment
//! boundaries, and therefore file names and committed positions, depend on the input alone.
//! Memory is what the workers can have in flight (the channels before it are bounded).

use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Reorder<T> {
    next: u64,
    waiting: BTreeMap<u64, T>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Reorder {
            next: 0,
            waiting: BTreeMap::new(),
        }
    }
}

impl<T> Reorder<T> {
    /// Hold item `seq` until everything before it is released.
    pub fn push(&mut self, seq: u64, item: T) {
        self.waiting.insert(seq, item);
    }

    /// The next item in sequence, if it has arrived.
    pub fn pop(&mut self) -> Option<T> {
        let item = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(item)
    }

    /// Every item numbered below this has been released.
    pub fn released_below(&self) -> u64 {
        self.next
    }

    /// Items that arrived ahead of a missing one (none at a clean end of input).
    pub fn held(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Reorder;

    #[test]
    fn releases_in_sequence_whatever_the_arrival_order() {
        // Table: arrival order → what each push lets out.
        let cases: &[(&[u64], &[&[u64]])] = &[
            (&[0, 1, 2], &[&[0], &[1], &[2]]),
            (&[2, 1, 0], &[&[], &[], &[0, 1, 2]]),
            (&[1, 0, 3, 2], &[&[], &[0, 1], &[], &[2, 3]]),
            (&[0, 2, 3], &[&[0], &[], &[]]),
        ];
        for (arrivals, released) in cases {
            let mut r = Reorder::default();
            for (seq, want) in arrivals.iter().zip(released.iter()) {
                r.push(*seq, *seq);
                let got: Vec<u64> = std::iter::from_fn(|| r.pop()).collect();
                assert_eq!(&got, want, "arrivals {arrivals:?}");
            }
        }
        let mut r = Reorder::default();
        r.push(0, "a");
        r.push(2, "c");
        assert_eq!(r.pop(), Some("a"));
        assert_eq!(r.pop(), None);
        assert_eq!((r.released_below(), r.held()), (1, 1));
    }
}
