//! A 64-bit CPU or memory-node mask, printed and parsed in the kernel's list format.

use std::fmt;
use std::str::FromStr;

/// A set of CPUs or memory nodes numbered `0..64` (the kernel's `cpumask_t` and
/// `nodemask_t` on a small machine), shown in the list format of `/proc` files:
/// `0-3,8`.
///
/// ```
/// use watchers_subsystems::Mask;
/// let mask: Mask = "0-2,5".parse()?;
/// assert_eq!(mask.iter().collect::<Vec<_>>(), [0, 1, 2, 5]);
/// assert_eq!(mask.to_string(), "0-2,5");
/// # Ok::<(), watchers_subsystems::MaskError>(())
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Mask(u64);

/// How many CPUs or nodes a [`Mask`] can name.
pub const MASK_BITS: u32 = 64;

/// A mask list that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mask list `{0}`: expected numbers below 64 and ranges such as `0-3,8`")]
pub struct MaskError(pub String);

impl Mask {
    /// No CPU or node.
    pub const EMPTY: Mask = Mask(0);
    /// All 64.
    pub const ALL: Mask = Mask(u64::MAX);

    /// The mask with these bits (bit `n` is CPU or node `n`).
    pub const fn from_bits(bits: u64) -> Mask {
        Mask(bits)
    }

    /// The bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Only `n` (nothing if `n` is 64 or more).
    pub const fn single(n: u32) -> Mask {
        if n < MASK_BITS { Mask(1 << n) } else { Mask(0) }
    }

    /// `first..=last`, cut at 63 (empty if `first > last`).
    pub const fn range(first: u32, last: u32) -> Mask {
        if first > last || first >= MASK_BITS {
            return Mask(0);
        }
        let last = if last >= MASK_BITS {
            MASK_BITS - 1
        } else {
            last
        };
        let high = if last == MASK_BITS - 1 {
            u64::MAX
        } else {
            (1u64 << (last + 1)) - 1
        };
        Mask(high & !((1u64 << first) - 1))
    }

    /// Whether `n` is in the mask.
    pub const fn contains(self, n: u32) -> bool {
        n < MASK_BITS && self.0 & (1 << n) != 0
    }

    /// Whether the mask is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many CPUs or nodes it holds.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether every member is also in `other`.
    pub const fn is_subset(self, other: Mask) -> bool {
        self.0 & !other.0 == 0
    }

    /// The members of both.
    #[must_use]
    pub const fn intersection(self, other: Mask) -> Mask {
        Mask(self.0 & other.0)
    }

    /// The members of either.
    #[must_use]
    pub const fn union(self, other: Mask) -> Mask {
        Mask(self.0 | other.0)
    }

    /// The lowest member.
    pub const fn first(self) -> Option<u32> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros())
        }
    }

    /// The lowest member above `n`, wrapping around to the first (the kernel's
    /// `next_node_in`).
    pub const fn next_after(self, n: u32) -> Option<u32> {
        let above = if n >= MASK_BITS - 1 {
            0
        } else {
            self.0 & !((1u64 << (n + 1)) - 1)
        };
        if above != 0 {
            Some(above.trailing_zeros())
        } else {
            self.first()
        }
    }

    /// The members, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        (0..MASK_BITS).filter(move |&n| self.contains(n))
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut n = 0;
        let mut first = true;
        while n < MASK_BITS {
            if !self.contains(n) {
                n += 1;
                continue;
            }
            let start = n;
            while n + 1 < MASK_BITS && self.contains(n + 1) {
                n += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == n {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{n}")?;
            }
            n += 1;
        }
        Ok(())
    }
}

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mask({self})")
    }
}

impl FromStr for Mask {
    type Err = MaskError;

    /// Parses `0-3,8` (an empty string is the empty mask).
    fn from_str(list: &str) -> Result<Mask, MaskError> {
        let error = || MaskError(list.to_owned());
        let number = |s: &str| -> Result<u32, MaskError> {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n < MASK_BITS)
                .ok_or_else(error)
        };
        let mut mask = Mask::EMPTY;
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            mask = mask.union(match part.split_once('-') {
                None => Mask::single(number(part)?),
                Some((first, last)) => {
                    let (first, last) = (number(first)?, number(last)?);
                    if first > last {
                        return Err(error());
                    }
                    Mask::range(first, last)
                }
            });
        }
        Ok(mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_format_round_trips() {
        for list in ["", "0", "0-63", "1,3,5-7", "62-63", "0,63"] {
            let mask: Mask = list.parse().unwrap();
            assert_eq!(mask.to_string(), list);
        }
        assert_eq!(Mask::range(0, 63), Mask::ALL);
        assert_eq!(Mask::range(3, 1), Mask::EMPTY);
        for bad in ["64", "3-1", "a", "1-", "-1"] {
            assert!(bad.parse::<Mask>().is_err(), "{bad}");
        }
    }

    #[test]
    fn next_after_wraps() {
        let mask: Mask = "1,4,9".parse().unwrap();
        assert_eq!(mask.next_after(1), Some(4));
        assert_eq!(mask.next_after(4), Some(9));
        assert_eq!(mask.next_after(9), Some(1));
        assert_eq!(mask.next_after(63), Some(1));
        assert_eq!(Mask::EMPTY.next_after(0), None);
        assert!(Mask::single(2).is_subset(mask.union(Mask::single(2))));
        assert_eq!(mask.len(), 3);
    }
}
