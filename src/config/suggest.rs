//! "Did you mean …?": the known name nearest to a misspelled one.
//!
//! Names are compared after folding case and treating `-` as `_`, by the number of single-
//! character edits (insert, delete, substitute, swap two neighbours) between them.

/// The candidate nearest to `word`, if it is close enough to be a plausible typo of it:
/// at most one edit for short names, up to three for long ones. Ties go to the earliest
/// candidate, so the answer does not depend on anything but the candidates' order.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    nearest_within(word, candidates, typo_budget(word))
}

/// The candidate nearest to `word` within `max_edits` edits; ties go to the earliest.
pub(crate) fn nearest_within<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    max_edits: usize,
) -> Option<&'a str> {
    let word = fold(word);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = edit_distance(&word, &fold(candidate));
        let closer = match best {
            Some((best_distance, _)) => distance < best_distance,
            None => true,
        };
        if distance <= max_edits && closer {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// How many edits still look like a typo of `word` rather than another word.
fn typo_budget(word: &str) -> usize {
    (word.chars().count() / 4).clamp(1, 3)
}

/// `word` as compared: lower case, with `-` read as `_`.
fn fold(word: &str) -> Vec<char> {
    word.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == '-' { '_' } else { c })
        .collect()
}

/// Edits (insert, delete, substitute, or swap of two neighbours) that turn `a` into `b`:
/// the optimal-string-alignment distance, computed with three rolling rows.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut before_previous: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for (i, &a_char) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, &b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != b_char);
            let mut best = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
            if i > 0 && j > 0 && a_char == b[j - 1] && a[i - 1] == b_char {
                best = best.min(before_previous[j - 1] + 1);
            }
            current[j + 1] = best;
        }
        std::mem::swap(&mut before_previous, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance(a: &str, b: &str) -> usize {
        edit_distance(&fold(a), &fold(b))
    }

    #[test]
    fn distance_counts_each_kind_of_edit_once() {
        assert_eq!(distance("limits", "limits"), 0);
        assert_eq!(distance("limit", "limits"), 1);
        assert_eq!(distance("limitss", "limits"), 1);
        assert_eq!(distance("lemits", "limits"), 1);
        assert_eq!(distance("lmiits", "limits"), 1);
        assert_eq!(distance("", "bind"), 4);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn case_and_dashes_do_not_count() {
        assert_eq!(distance("Max-Packet-Size", "max_packet_size"), 0);
    }

    #[test]
    fn nearest_picks_the_closest_plausible_candidate() {
        let keys = [
            "max_inflight_messages",
            "max_queued_messages",
            "max_queued_bytes",
        ];
        assert_eq!(
            nearest("max_inflight_message", keys),
            Some("max_inflight_messages")
        );
        assert_eq!(nearest("max_queued_byte", keys), Some("max_queued_bytes"));
        assert_eq!(nearest("colour", keys), None);
    }

    #[test]
    fn short_words_allow_a_single_edit() {
        assert_eq!(nearest("bnd", ["bind"]), Some("bind"));
        assert_eq!(nearest("bn", ["bind"]), None);
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        assert_eq!(nearest("ab", ["aa", "bb"]), Some("aa"));
    }
}
