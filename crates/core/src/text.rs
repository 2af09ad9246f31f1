//! Text people read and addresses they compare: the limits every field shares
//! (operations, policies, labels).

use crate::error::{Error, Result};

/// Longest destination address or memo accepted.
pub const MAX_ADDRESS_LEN: usize = 256;
/// Longest free-text field (labels, reasons, names), in characters.
pub const MAX_TEXT_LEN: usize = 256;

/// Characters that change how text *looks* without being visible themselves: bidi
/// embeddings, overrides and isolates, zero-width characters, the BOM, soft hyphen.
/// Refused in every text an approver reads, so a label cannot display as something
/// other than its bytes ("Trojan Source"-style spoofing).
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Free text shown to people: at most [`MAX_TEXT_LEN`] characters, no control or
/// invisible formatting characters.
///
/// # Errors
/// [`Error::InvalidOperation`] naming `field`.
pub fn check_text(field: &str, s: &str) -> Result<()> {
    if s.chars().count() > MAX_TEXT_LEN || s.chars().any(|c| c.is_control() || is_invisible_format(c)) {
        return Err(Error::InvalidOperation(format!(
            "{field}: at most {MAX_TEXT_LEN} characters, no control or invisible formatting characters"
        )));
    }
    Ok(())
}

/// A destination address or memo: printable ASCII without spaces, bounded.
///
/// # Errors
/// [`Error::InvalidOperation`] naming `field`.
pub(crate) fn check_address(field: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty() && s.len() <= MAX_ADDRESS_LEN && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOperation(format!(
            "{field}: 1 to {MAX_ADDRESS_LEN} printable ASCII characters without spaces"
        )))
    }
}
