// SPDX-License-Identifier: MIT
//! A small line diff (longest common subsequence) for `plan` output.

/// Unified-style lines (`-`, `+`, ` `) turning `old` into `new`; unchanged
/// runs longer than `context` lines on either side of a change are elided.
pub fn lines(old: &str, new: &str, context: usize) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    // lcs[i][j] = length of the LCS of a[i..] and b[j..]
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op != ' ')
        .map(|(k, _)| k)
        .collect();
    let near = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= context);
    let mut out = Vec::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near(k) {
            if skipped {
                out.push("…".to_string());
                skipped = false;
            }
            out.push(format!("{op}{line}"));
        } else {
            skipped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn shows_changes_with_context() {
        let old = "a\nb\nc\nd\ne\nf\n";
        let new = "a\nb\nC\nd\ne\nf\ng\n";
        assert_eq!(
            super::lines(old, new, 1),
            vec!["…", " b", "-c", "+C", " d", "…", " f", "+g"]
        );
        assert!(super::lines("x\n", "x\n", 3).is_empty());
        assert_eq!(super::lines("", "x\n", 3), vec!["+x"]);
    }
}
