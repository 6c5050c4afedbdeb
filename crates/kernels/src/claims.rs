//! Work sharing inside a parallel region: units of work (a GEMM's rows or columns of C,
//! `team::map_init`'s items) are dealt out in shares, one per part, and handed out a
//! chunk at a time; a part that has finished its own share takes chunks from the back
//! of the others'.
//!
//! A static split leaves one thread waiting whenever the other is slower, and on a
//! shared (virtual) machine one of them always is by a few percent: in an MLP-600
//! training step at 2 threads, each thread waited 6–13% of the time at the ends of
//! regions. Which thread computes a unit never changes its bits (every element of C is
//! summed in the same k order by whichever tile covers it; an item's result does not
//! depend on its thread), so the split can follow the threads' speed. Owners take from
//! the front and thieves from the back, so each part still computes most of the same
//! share as last time (its rows of the weights stay in its cache between the forward
//! pass and the SGD step), and each claims from its own cache line: one counter shared
//! by all would move between the cores on every claim.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most parts a `Claims` can deal to; a region with more runs a static split.
pub const MAX_PARTS: usize = 16;

/// The shares of one region: `[front, back)` of each part, packed into one atomic
/// (front in the low half), so that an owner and a thief never both take a unit.
pub struct Claims {
    shares: [Share; MAX_PARTS],
    parts: usize,
    chunk: usize,
}

/// One part's share, alone on its cache lines (128 bytes: the adjacent-line prefetcher
/// pairs lines), so that owners claiming from their own shares do not bounce one line
/// between cores.
#[repr(align(128))]
struct Share(AtomicU64);

fn pack(front: usize, back: usize) -> u64 {
    (front as u64) | ((back as u64) << 32)
}

fn unpack(state: u64) -> (usize, usize) {
    ((state & 0xffff_ffff) as usize, (state >> 32) as usize)
}

impl Claims {
    /// `units` units dealt to `parts` parts (part `t` owns `t·units/parts ..
    /// (t+1)·units/parts`), handed out `chunk` at a time. `None` when there are more
    /// than [`MAX_PARTS`] parts or `units` does not fit in 32 bits.
    pub fn new(units: usize, parts: usize, chunk: usize) -> Option<Claims> {
        if parts == 0 || parts > MAX_PARTS || u32::try_from(units).is_err() {
            return None;
        }
        let shares = std::array::from_fn(|t| {
            let t = t.min(parts);
            Share(AtomicU64::new(pack(t * units / parts, (t + 1).min(parts) * units / parts)))
        });
        Some(Claims { shares, parts, chunk: chunk.max(1) })
    }

    /// Units per chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// The next chunk for `part`: from the front of its own share while it lasts, then
    /// from the back of the other shares (the next part's first). `None` when every
    /// unit has been handed out.
    pub fn next(&self, part: usize) -> Option<Range<usize>> {
        self.take(part, true)
            .or_else(|| (1..self.parts).find_map(|d| self.take((part + d) % self.parts, false)))
    }

    fn take(&self, share: usize, front: bool) -> Option<Range<usize>> {
        let cell = &self.shares[share].0;
        let mut state = cell.load(Ordering::Relaxed);
        loop {
            let (f, b) = unpack(state);
            if f >= b {
                return None;
            }
            let n = self.chunk.min(b - f);
            let (next, range) = if front { (pack(f + n, b), f..f + n) } else { (pack(f, b - n), b - n..b) };
            // Relaxed is enough: the shares only partition the units; what the parts
            // write is published by the region's end.
            match cell.compare_exchange_weak(state, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(range),
                Err(now) => state = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_takes_its_share_front_first_then_the_others_from_the_back() {
        let claims = Claims::new(10, 2, 2).unwrap();
        // Part 0 owns 0..5, part 1 owns 5..10.
        assert_eq!(claims.next(0), Some(0..2));
        assert_eq!(claims.next(0), Some(2..4));
        assert_eq!(claims.next(0), Some(4..5));
        assert_eq!(claims.next(0), Some(8..10), "steals from the back of part 1's share");
        assert_eq!(claims.next(1), Some(5..7), "the owner keeps taking from its front");
        assert_eq!(claims.next(0), Some(7..8));
        assert_eq!(claims.next(1), None);
        assert_eq!(claims.next(0), None);
    }

    #[test]
    fn every_unit_is_handed_out_once_under_contention() {
        for (units, parts, chunk) in [(1000, 4, 3), (37, 3, 1), (5, 4, 2), (0, 2, 1), (75, 2, 4)] {
            let claims = Claims::new(units, parts, chunk).unwrap();
            let seen: Vec<Vec<Range<usize>>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..parts)
                    .map(|t| {
                        let claims = &claims;
                        s.spawn(move || std::iter::from_fn(|| claims.next(t)).collect::<Vec<_>>())
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut count = vec![0; units];
            for r in seen.iter().flatten() {
                assert!(r.len() <= chunk.max(1) && !r.is_empty());
                for u in r.clone() {
                    count[u] += 1;
                }
            }
            assert!(count.iter().all(|&c| c == 1), "{units} units, {parts} parts: {count:?}");
        }
    }

    #[test]
    fn too_many_parts_are_refused() {
        assert!(Claims::new(100, MAX_PARTS + 1, 1).is_none());
        assert!(Claims::new(100, 0, 1).is_none());
    }
}
