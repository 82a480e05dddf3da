//! "Did you mean" hints for misspelt names.

/// The candidate closest to `word`, if it is close enough to be a likely typo.
///
/// A candidate equal to `word` ignoring case always wins; otherwise the closest one by
/// Levenshtein distance, if that distance is at most a third of the longer word (at
/// least 1), as rustc does for its own suggestions.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if let Some(same) = candidates.iter().find(|c| c.eq_ignore_ascii_case(word)) {
        return Some(same);
    }
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (distance(&word, c), *c))
        .filter(|&(d, c)| d <= (word.chars().count().max(c.len()) / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `a, b, c` with each name in backticks.
pub(crate) fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The edit distance between two words, counting a swap of two neighbouring letters as
/// one edit (the "optimal string alignment" distance), so that `frok` is next to `fork`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: the distance between the first i letters of a and the first j of b.
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: &[&str] = &[
        "fork", "exec", "uid", "gid", "sid", "comm", "ptrace", "coredump", "exit", "free",
    ];

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("exit", "exit"), 0);
        assert_eq!(distance("exot", "exit"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("frok", "fork"), 1);
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("exot", EVENTS), Some("exit"));
        assert_eq!(closest("Fork", EVENTS), Some("fork"));
        assert_eq!(closest("EXIT", EVENTS), Some("exit"));
        assert_eq!(closest("frok", EVENTS), Some("fork"));
        assert_eq!(closest("coredumb", EVENTS), Some("coredump"));
        assert_eq!(closest("clone", EVENTS), None);
        assert_eq!(
            closest("priorty", &["events", "priority", "name", "crate"]),
            Some("priority")
        );
        assert_eq!(closest("x", &["events", "priority", "name", "crate"]), None);
    }

    #[test]
    fn lists() {
        assert_eq!(list(&["a", "b"]), "`a`, `b`");
    }
}
