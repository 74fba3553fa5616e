//! "Did you mean": the closest known name to a mistyped one, for plan-time errors.

/// The edit distance of two names (optimal string alignment: a swap of two neighbours is one
/// edit, as in `mkae`), for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// ` (did you mean `x`?)` when one of `known` is within two edits of `name`.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    known
        .into_iter()
        .map(|k| (distance(name, k), k))
        // A third of the name at most, so `nope` does not suggest `mode`.
        .filter(|(d, _)| *d <= (name.chars().count() / 3).max(1))
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn close_names_are_suggested_far_ones_are_not() {
        assert_eq!(
            did_you_mean("max_iters", ["max_iter", "alpha"]),
            " (did you mean `max_iter`?)"
        );
        assert_eq!(
            did_you_mean("mkae", ["make", "double"]),
            " (did you mean `make`?)"
        );
        assert_eq!(did_you_mean("nope", ["mode", "seed"]), "");
    }
}
