//! Cutting text to a byte bound without splitting a UTF-8 character.

/// The largest index ≤ `max` (and ≤ `s.len()`) that is a character boundary of `s`.
pub fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::floor_char_boundary;

    #[test]
    fn never_inside_a_character() {
        assert_eq!(floor_char_boundary("abc", 10), 3);
        assert_eq!(floor_char_boundary("abc", 2), 2);
        // "é" is two bytes: a cut at 2 would split it.
        assert_eq!(floor_char_boundary("aé", 2), 1);
        assert_eq!(floor_char_boundary("aé", 3), 3);
        assert_eq!(floor_char_boundary("", 0), 0);
    }
}
