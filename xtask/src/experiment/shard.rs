//! `--shard i/n`: a deterministic slice of a sweep, so that n machines (a Slurm job
//! array, GNU parallel) can share it without talking to each other.
//!
//! Shards are numbered from 1. Runs are dealt round-robin in the recipe's order, so
//! every shard gets a mix of small and large widths and the shards finish together.

use std::fmt;
use std::str::FromStr;

/// One slice `index` of `count` (1 ≤ index ≤ count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard's number, from 1.
    pub index: usize,
    /// How many shards share the sweep.
    pub count: usize,
}

impl Shard {
    /// The whole sweep.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether the run at position `position` of the sweep belongs to this shard.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// The items of `items` this shard runs, in order.
    pub fn select<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items.iter().enumerate().filter(|(i, _)| self.owns(*i)).map(|(_, t)| t.clone()).collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("shard `{s}` is not of the form i/n"))?;
        let index: usize = i.trim().parse().map_err(|_| format!("shard index `{i}` is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| format!("shard count `{n}` is not a number"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("shard `{s}`: need 1 ≤ i ≤ n (shards are numbered from 1)"));
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("2/5".parse::<Shard>().unwrap(), Shard { index: 2, count: 5 });
        for bad in ["0/3", "4/3", "1/0", "x/2", "3", "1/y"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} should be rejected");
        }
        assert_eq!(Shard { index: 2, count: 5 }.to_string(), "2/5");
    }

    #[test]
    fn shards_partition_the_sweep_exactly_once() {
        let runs: Vec<usize> = (0..23).collect();
        for n in 1..=7 {
            let mut seen: Vec<usize> =
                (1..=n).flat_map(|i| Shard { index: i, count: n }.select(&runs)).collect();
            seen.sort();
            assert_eq!(seen, runs, "{n} shards");
            let sizes: Vec<usize> =
                (1..=n).map(|i| Shard { index: i, count: n }.select(&runs).len()).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        }
        assert_eq!(Shard { index: 2, count: 3 }.select(&runs)[..3], [1, 4, 7]);
    }
}
