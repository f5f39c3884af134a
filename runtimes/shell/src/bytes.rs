//! Raw bytes inside the shell's UTF-8 strings.
//!
//! Shell text is Rust `String`s, but scripts produce arbitrary bytes (`printf '\377'`,
//! `$'\xff'`, binary output captured by `$(…)`). A byte ≥ 0x80 that is not part of valid UTF-8
//! is carried as one private-use character, U+F780 + (byte − 0x80) (the same idea as Python's
//! `surrogateescape`), and turned back into the byte where the shell writes.

use std::borrow::Cow;

const BASE: u32 = 0xF700;

/// The character standing for byte `b`.
pub fn byte_char(b: u8) -> char {
    if b < 0x80 {
        b as char
    } else {
        char::from_u32(BASE + b as u32).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

/// The byte a character stands for, if it is one of ours.
fn raw_byte(c: char) -> Option<u8> {
    let v = c as u32;
    (BASE + 0x80..=BASE + 0xFF)
        .contains(&v)
        .then(|| (v - BASE) as u8)
}

/// The bytes to write for shell text.
pub fn encode(s: &str) -> Cow<'_, [u8]> {
    if !s.chars().any(|c| raw_byte(c).is_some()) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        match raw_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    Cow::Owned(out)
}

/// Shell text for bytes read (valid UTF-8 stays as it is; other bytes become byte characters).
pub fn decode(mut b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, rest) = b.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len()).max(1);
                for &x in &rest[..bad] {
                    out.push(byte_char(x));
                }
                b = &rest[bad..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let raw = [b'a', 0xff, 0xc3, 0xa9, 0x80, b'z'];
        let s = decode(&raw);
        assert_eq!(s.chars().count(), 5);
        assert!(s.contains('é'));
        assert_eq!(&*encode(&s), &raw);
        assert_eq!(&*encode("plain μ"), "plain μ".as_bytes());
    }
}
