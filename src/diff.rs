// SPDX-License-Identifier: MIT
//! A line diff for `plan` output: Myers' O(ND) algorithm in linear space
//! (divide and conquer on the "middle snake"), on lines interned to numbers,
//! after dropping the lines that occur on one side only (they can never be
//! common). Past a cost bound a split is chosen heuristically, as git's
//! xdiff does: the result is then still a correct diff, if not a minimal one.

use std::collections::HashMap;

/// Unified-style lines (`-`, `+`, ` `) turning `old` into `new`; unchanged
/// runs longer than `context` lines on either side of a change are elided.
pub fn lines(old: &str, new: &str, context: usize) -> Vec<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = ops(&a, &b);
    // distance (in ops) to the nearest change before and after each op
    let mut near = vec![usize::MAX; ops.len()];
    let mut last = None;
    for (k, (op, _)) in ops.iter().enumerate() {
        if *op != ' ' {
            last = Some(k);
        }
        near[k] = last.map_or(usize::MAX, |c| k - c);
    }
    let mut next = None;
    for (k, (op, _)) in ops.iter().enumerate().rev() {
        if *op != ' ' {
            next = Some(k);
        }
        near[k] = near[k].min(next.map_or(usize::MAX, |c| c - k));
    }
    let mut out = Vec::new();
    let mut skipped = false;
    for ((op, line), dist) in ops.iter().zip(near) {
        if dist != usize::MAX && dist <= context {
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

/// The edit script: `(' ' | '-' | '+', line)`, deletions before insertions
/// between two common lines.
fn ops<'t>(a: &[&'t str], b: &[&'t str]) -> Vec<(char, &'t str)> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut intern = |line: &'t str| {
        let next = ids.len();
        *ids.entry(line).or_insert(next)
    };
    let ai: Vec<usize> = a.iter().map(|l| intern(l)).collect();
    let bi: Vec<usize> = b.iter().map(|l| intern(l)).collect();
    let mut in_a = vec![false; ids.len()];
    let mut in_b = vec![false; ids.len()];
    ai.iter().for_each(|&x| in_a[x] = true);
    bi.iter().for_each(|&x| in_b[x] = true);
    // positions (in a, b) of the lines that occur on both sides
    let ka: Vec<usize> = (0..a.len()).filter(|&i| in_b[ai[i]]).collect();
    let kb: Vec<usize> = (0..b.len()).filter(|&j| in_a[bi[j]]).collect();
    let xa: Vec<usize> = ka.iter().map(|&i| ai[i]).collect();
    let xb: Vec<usize> = kb.iter().map(|&j| bi[j]).collect();
    let mut ops = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    for (x, y) in common(&xa, &xb) {
        let (ci, cj) = (ka[x], kb[y]);
        ops.extend(a[i..ci].iter().map(|l| ('-', *l)));
        ops.extend(b[j..cj].iter().map(|l| ('+', *l)));
        ops.push((' ', a[ci]));
        (i, j) = (ci + 1, cj + 1);
    }
    ops.extend(a[i..].iter().map(|l| ('-', *l)));
    ops.extend(b[j..].iter().map(|l| ('+', *l)));
    ops
}

/// A subproblem `a[a0..a1]` vs `b[b0..b1]`, or common pairs to emit.
enum Task {
    Diff(usize, usize, usize, usize),
    Common(usize, usize, usize),
}

/// The pairs `(x, y)` with `a[x] == b[y]` of a common subsequence, in order:
/// a longest one unless the cost bound was reached.
fn common(a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
    // xdiff's bound: the square root of the input size, at least 256
    let max_cost = (a.len() + b.len()).isqrt().max(256);
    let mut out = Vec::new();
    let mut todo = vec![Task::Diff(0, a.len(), 0, b.len())];
    while let Some(task) = todo.pop() {
        let (mut a0, mut a1, mut b0, mut b1) = match task {
            Task::Common(x, y, n) => {
                out.extend((0..n).map(|k| (x + k, y + k)));
                continue;
            }
            Task::Diff(a0, a1, b0, b1) => (a0, a1, b0, b1),
        };
        while a0 < a1 && b0 < b1 && a[a0] == b[b0] {
            out.push((a0, b0));
            (a0, b0) = (a0 + 1, b0 + 1);
        }
        let end = a1;
        while a0 < a1 && b0 < b1 && a[a1 - 1] == b[b1 - 1] {
            (a1, b1) = (a1 - 1, b1 - 1);
        }
        todo.push(Task::Common(a1, b1, end - a1));
        if a0 == a1 || b0 == b1 {
            continue;
        }
        let (x, y) = split(&a[a0..a1], &b[b0..b1], max_cost);
        todo.push(Task::Diff(a0 + x, a1, b0 + y, b1));
        todo.push(Task::Diff(a0, a0 + x, b0, b0 + y));
    }
    out
}

/// A point `(x, y)` on a shortest edit path of `a` vs `b` where the forward
/// and backward searches meet, strictly between `(0, 0)` and `(n, m)`.
/// Both must be non-empty and differ in their first and in their last
/// element. Past `max_cost` edits from either end, the point either search
/// got furthest to instead.
fn split(a: &[usize], b: &[usize], max_cost: usize) -> (usize, usize) {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max_d = (n + m + 1) / 2;
    let bound = max_d.min(max_cost as isize + 1);
    let offset = bound + 1;
    let len = (2 * offset + 1) as usize;
    // furthest x on each diagonal k = x - y, from the start (vf) and, in
    // reversed coordinates, from the end (vb)
    let mut vf = vec![-1isize; len];
    let mut vb = vec![-1isize; len];
    vf[(offset + 1) as usize] = 0;
    vb[(offset + 1) as usize] = 0;
    let delta = n - m;
    let front = delta % 2 != 0;
    // diagonals that ran off the grid on the right (end) or bottom (start);
    // a search meets the other only at a point inside the grid
    let (mut kf_start, mut kf_end, mut kb_start, mut kb_end) = (0, 0, 0, 0);
    let at = |k: isize| (offset + k) as usize;
    for d in 0..bound {
        let mut k = -d + kf_start;
        while k <= d - kf_end {
            let mut x = if k == -d || (k != d && vf[at(k - 1)] < vf[at(k + 1)]) {
                vf[at(k + 1)]
            } else {
                vf[at(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                (x, y) = (x + 1, y + 1);
            }
            vf[at(k)] = x;
            if x > n {
                kf_end += 2;
            } else if y > m {
                kf_start += 2;
            } else if front {
                let kb = delta - k;
                if (-d..=d).contains(&kb)
                    && (0..=n).contains(&vb[at(kb)])
                    && vb[at(kb)] - kb <= m
                    && x >= n - vb[at(kb)]
                {
                    return (x as usize, y as usize);
                }
            }
            k += 2;
        }
        let mut k = -d + kb_start;
        while k <= d - kb_end {
            let mut x = if k == -d || (k != d && vb[at(k - 1)] < vb[at(k + 1)]) {
                vb[at(k + 1)]
            } else {
                vb[at(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[(n - x - 1) as usize] == b[(m - y - 1) as usize] {
                (x, y) = (x + 1, y + 1);
            }
            vb[at(k)] = x;
            if x > n {
                kb_end += 2;
            } else if y > m {
                kb_start += 2;
            } else if !front {
                let kf = delta - k;
                let xf = if (-d..=d).contains(&kf) {
                    vf[at(kf)]
                } else {
                    -1
                };
                if (0..=n).contains(&xf) && (0..=m).contains(&(xf - kf)) && xf >= n - x {
                    return (xf as usize, (xf - kf) as usize);
                }
            }
            k += 2;
        }
    }
    // Too costly for a minimal diff: take the point furthest from its end.
    let d = bound - 1;
    let inside = |x: isize, y: isize| (0..=n).contains(&x) && (0..=m).contains(&y);
    let best = |v: &[isize]| {
        (-d..=d)
            .step_by(2)
            .map(|k| (v[at(k)], v[at(k)] - k))
            .filter(|&(x, y)| inside(x, y) && x + y > 0 && x + y < n + m)
            .max_by_key(|&(x, y)| x + y)
    };
    let forward = best(&vf);
    let backward = best(&vb).map(|(x, y)| (n - x, m - y));
    let point = match (forward, backward) {
        (Some(f), Some(b)) if f.0 + f.1 >= n + m - (b.0 + b.1) => f,
        (_, Some(b)) => b,
        (Some(f), None) => f,
        // nothing in common (e.g. [x] vs [y]): any split will do
        (None, None) => (1, 0),
    };
    (point.0 as usize, point.1 as usize)
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

    /// The old and new texts the diff lines describe.
    fn sides(diff: &[String]) -> (Vec<&str>, Vec<&str>) {
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for line in diff {
            let mut chars = line.chars();
            let op = chars.next().unwrap();
            let text = chars.as_str();
            match op {
                ' ' => {
                    old.push(text);
                    new.push(text);
                }
                '-' => old.push(text),
                '+' => new.push(text),
                _ => panic!("unexpected line {line:?}"),
            }
        }
        (old, new)
    }

    /// The length of a longest common subsequence, the quadratic way.
    fn lcs(a: &[&str], b: &[&str]) -> usize {
        let mut row = vec![0; b.len() + 1];
        for x in a {
            let mut diag = 0;
            for (j, y) in b.iter().enumerate() {
                let up = row[j + 1];
                row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
                diag = up;
            }
        }
        row[b.len()]
    }

    /// A deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    #[test]
    fn the_diff_reproduces_both_sides_and_is_minimal() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let words = ["a", "b", "c", "d", "e", "[[runners]]", "", "  x = 1"];
        for case in 0..400 {
            let alphabet = 2 + rng.below(words.len() as u64 - 1);
            let word = |rng: &mut Rng| words[rng.below(alphabet) as usize];
            let len = rng.below(16);
            let old: Vec<&str> = (0..len).map(|_| word(&mut rng)).collect();
            let new: Vec<&str> = if case % 4 == 0 {
                // unrelated
                (0..rng.below(16)).map(|_| word(&mut rng)).collect()
            } else {
                // a few edits of old
                let mut new = old.clone();
                for _ in 0..rng.below(5) {
                    let at = rng.below(new.len() as u64 + 1) as usize;
                    match rng.below(3) {
                        0 if at < new.len() => {
                            new.remove(at);
                        }
                        1 if at < new.len() => new[at] = word(&mut rng),
                        _ => new.insert(at, word(&mut rng)),
                    }
                }
                new
            };
            let (old_text, new_text) = (old.join("\n"), new.join("\n"));
            let diff = super::lines(&old_text, &new_text, usize::MAX);
            let (a, b): (Vec<&str>, Vec<&str>) =
                (old_text.lines().collect(), new_text.lines().collect());
            if a == b {
                assert!(diff.is_empty(), "{case}: {diff:?}");
                continue;
            }
            assert_eq!(sides(&diff), (a.clone(), b.clone()), "{case}: {diff:?}");
            let kept = diff.iter().filter(|l| l.starts_with(' ')).count();
            assert_eq!(kept, lcs(&a, &b), "{case}: not minimal: {diff:?}");
        }
    }

    #[test]
    fn large_inputs() {
        let n = 100_000;
        let old: String = (0..n).map(|i| format!("key{i} = {i}\n")).collect();
        // every 10th line changed
        let new: String = (0..n)
            .map(|i| match i % 10 {
                0 => format!("key{i} = changed\n"),
                _ => format!("key{i} = {i}\n"),
            })
            .collect();
        let diff = super::lines(&old, &new, 1);
        assert_eq!(diff.iter().filter(|l| l.starts_with('-')).count(), n / 10);
        assert_eq!(diff.iter().filter(|l| l.starts_with('+')).count(), n / 10);
        assert_eq!(
            &diff[..4],
            ["-key0 = 0", "+key0 = changed", " key1 = 1", "…"]
        );
        // every line different
        let other: String = (0..n).map(|i| format!("other{i}\n")).collect();
        let diff = super::lines(&old, &other, 3);
        assert_eq!(diff.len(), 2 * n);
        assert!(diff[..n].iter().all(|l| l.starts_with('-')));
        // the same few lines over and over, shifted: no line is unique, so
        // nothing can be dropped up front; the cost bound keeps this quick
        let block = "[[runners]]\n  executor = \"shell\"\n  x = 1\n\n";
        let old: String = (0..n / 4)
            .map(|i| if i % 7 == 0 { "  y = 2\n" } else { block })
            .collect();
        let new: String = (0..n / 4)
            .map(|i| if i % 5 == 0 { "  x = 1\n" } else { block })
            .collect();
        let diff = super::lines(&old, &new, usize::MAX);
        let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
        assert_eq!(sides(&diff), (a, b));
    }
}
