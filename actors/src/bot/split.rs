//! Splitting a reply to Meta's text limits: Messenger text must be under 2000 characters, Instagram text
//! at most 1000 bytes of UTF-8. Splits prefer a line break or space near the limit and never cut a
//! character in two.

use crate::domain::event::Channel;

/// Characters per Messenger message ("under 2000").
pub const MESSENGER_MAX_CHARS: usize = 1999;
/// Bytes per Instagram message ("1000 bytes or less").
pub const INSTAGRAM_MAX_BYTES: usize = 1000;

/// `text` cut into pieces that each fit `channel`'s limit; empty pieces are dropped.
pub fn split_for(channel: Channel, text: &str) -> Vec<String> {
    let fits = |s: &str| match channel {
        Channel::Messenger => s.chars().count() <= MESSENGER_MAX_CHARS,
        Channel::Instagram => s.len() <= INSTAGRAM_MAX_BYTES,
    };
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if fits(rest) {
            out.push(rest.to_owned());
            break;
        }
        // The longest prefix that fits, at a char boundary.
        let mut end = 0;
        let mut chars = 0;
        for (i, c) in rest.char_indices() {
            let next = i + c.len_utf8();
            chars += 1;
            let ok = match channel {
                Channel::Messenger => chars <= MESSENGER_MAX_CHARS,
                Channel::Instagram => next <= INSTAGRAM_MAX_BYTES,
            };
            if !ok {
                break;
            }
            end = next;
        }
        // Prefer to break at whitespace in the last fifth of the piece.
        let cut = rest[..end].rfind(['\n', ' ']).filter(|&i| i > end * 4 / 5).unwrap_or(end);
        let cut = if cut == 0 { end } else { cut };
        out.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(split_for(Channel::Messenger, " hi "), vec!["hi"]);
        assert!(split_for(Channel::Instagram, "   ").is_empty());
    }

    #[test]
    fn messenger_pieces_stay_under_2000_characters() {
        let text = "é".repeat(4500);
        let parts = split_for(Channel::Messenger, &text);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= 1999));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn instagram_pieces_stay_within_1000_bytes_without_cutting_characters() {
        let text = "😀".repeat(600);
        let parts = split_for(Channel::Instagram, &text);
        assert!(parts.iter().all(|p| p.len() <= 1000));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn splits_prefer_word_boundaries() {
        let text = format!("{} tail", "word ".repeat(399));
        let parts = split_for(Channel::Messenger, &text);
        assert!(parts[0].ends_with("word"), "{:?}", &parts[0][parts[0].len() - 10..]);
        assert!(parts.iter().all(|p| !p.starts_with(' ')));
    }
}
