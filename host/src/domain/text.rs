//! The text the service stores. Control characters are refused wherever text
//! comes in (a request or a component's answer): PostgreSQL cannot store
//! NUL at all, and no SKU, name or reason means to carry the others. A
//! one-line text (a SKU, a name, a currency, an attribute's key) holds none;
//! free text (a reason, an attribute's value, a component's note) may hold
//! tabs and line breaks.

use super::violation::Violation;

/// Which control characters a text may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// None at all.
    One,
    /// Tab, line feed and carriage return.
    Many,
}

/// The first character of `text` that a text of its kind may not hold.
pub fn refused_character(text: &str, lines: Lines) -> Option<char> {
    text.chars().find(|&c| c.is_control() && !(lines == Lines::Many && matches!(c, '\t' | '\n' | '\r')))
}

/// The violation for `field` when its `text` holds a refused character.
pub fn control_character(field: &str, text: &str, lines: Lines) -> Option<Violation> {
    refused_character(text, lines).map(|c| {
        Violation::new(
            "control-character",
            field,
            format!("{field} holds the control character U+{:04X}, which is not accepted", u32::from(c)),
        )
    })
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_other_controls_are_refused_and_named() {
        assert_eq!(refused_character("mug\0", Lines::Many), Some('\0'));
        assert_eq!(refused_character("a\u{7f}", Lines::One), Some('\u{7f}'));
        assert_eq!(refused_character("a\u{85}", Lines::Many), Some('\u{85}'));
        assert_eq!(refused_character("tab\there", Lines::One), Some('\t'));
        let violation = control_character("name", "x\u{1}", Lines::One).unwrap();
        assert_eq!((violation.code.as_str(), violation.field.as_str()), ("control-character", "name"));
        assert!(violation.message.contains("U+0001"), "{}", violation.message);
    }

    #[test]
    fn free_text_keeps_line_breaks_and_any_printable_character() {
        assert_eq!(refused_character("line one\r\nline\ttwo", Lines::Many), None);
        assert_eq!(refused_character("Café ☕ 東京 \u{200b}", Lines::One), None);
    }

    #[test]
    fn truncation_never_splits_a_character() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
