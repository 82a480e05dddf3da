//! Text a process controls (its arguments, its name) made safe to print.
//!
//! Any process can put any bytes in its argv and its comm. Printed raw, a newline forges
//! a monitor line and an escape sequence drives the operator's terminal. In text output
//! every byte that is not printable, valid UTF-8 becomes an escape, and the backslash
//! itself is escaped, so an escape can never be confused with real output:
//!
//! | input | printed |
//! | --- | --- |
//! | `\` | `\\` |
//! | newline, tab, carriage return | `\n`, `\t`, `\r` |
//! | other C0 controls and DEL (U+0000–U+001F, U+007F) | `\x1b`, `\x7f`, … |
//! | C1 controls (U+0080–U+009F), line/paragraph separators, bidirectional marks, overrides and isolates | `\u{85}`, `\u{202e}`, … |
//! | invisible characters: format characters (zero-width space and joiners, soft hyphen, BOM, tags, …) and other default-ignorables | `\u{200b}`, `\u{ad}`, … |
//! | a byte that is not part of valid UTF-8 | `\xff`, … |
//!
//! JSON output stays lossless instead: see [`json_arg`].

use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, Serializer};
#[cfg(test)]
use serde_json::{Value, json};

/// Characters that are printable but reorder or break the line on a terminal.
fn is_layout_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Characters that draw nothing: the format characters (category Cf) and the other
/// default-ignorable code points (Unicode 16). Printed raw, `ss<U+200B>hd` looks
/// exactly like `sshd`, so a process could pass itself off as another.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{034f}' | '\u{0600}'..='\u{0605}' | '\u{06dd}' | '\u{070f}'
        | '\u{0890}'..='\u{0891}' | '\u{08e2}' | '\u{115f}'..='\u{1160}'
        | '\u{17b4}'..='\u{17b5}' | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200d}'
        | '\u{2060}'..='\u{2065}' | '\u{206a}'..='\u{206f}' | '\u{3164}'
        | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}'
        | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}')
}

/// Whether `byte` is printed as it is: printable ASCII other than the backslash.
fn is_plain(byte: u8) -> bool {
    (b' '..=b'~').contains(&byte) && byte != b'\\'
}

/// Appends `bytes`, escaped, to `out`.
///
/// Command lines are mostly plain ASCII: runs of it are copied whole, and only the
/// stretches between them are decoded character by character. An ASCII byte never lies
/// inside a UTF-8 sequence, so cutting at one decodes the rest exactly as a whole.
pub fn push_escaped(out: &mut String, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        let plain = rest
            .iter()
            .position(|&b| !is_plain(b))
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(plain);
        // Printable ASCII is valid UTF-8: this never takes the fallback.
        out.push_str(std::str::from_utf8(run).unwrap_or_default());
        let special = tail.iter().position(|&b| is_plain(b)).unwrap_or(tail.len());
        let (escapes, tail) = tail.split_at(special);
        push_escaped_chars(out, escapes);
        rest = tail;
    }
}

/// [`push_escaped`] one character at a time.
fn push_escaped_chars(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c < ' ' || c == '\u{7f}' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if ('\u{80}'..='\u{9f}').contains(&c)
                    || is_layout_control(c)
                    || is_invisible(c) =>
                {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
}

/// `bytes`, escaped.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    push_escaped(&mut out, bytes);
    out
}

/// The arguments of a raw command line (`/proc/<pid>/cmdline`: each followed by a NUL).
pub fn arguments(cmdline: &[u8]) -> impl Iterator<Item = &[u8]> {
    let cmdline = cmdline.strip_suffix(&[0]).unwrap_or(cmdline);
    cmdline.split(|&b| b == 0)
}

/// One argument (or name) in JSON, losslessly: a string when it is valid UTF-8 (JSON
/// escapes its control characters), else `{"hex": "<its bytes in hex>"}`.
pub struct JsonArg<'a>(pub &'a [u8]);

impl Serialize for JsonArg<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => {
                let mut hex = String::with_capacity(self.0.len() * 2);
                for byte in self.0 {
                    let _ = write!(hex, "{byte:02x}");
                }
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("hex", &hex)?;
                map.end()
            }
        }
    }
}

/// [`JsonArg`] as a `Value`.
#[cfg(test)]
fn json_arg(bytes: &[u8]) -> Value {
    serde_json::to_value(JsonArg(bytes)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_and_bad_utf8_become_escapes() {
        assert_eq!(escaped(b"plain text, caf\xc3\xa9"), "plain text, café");
        assert_eq!(
            escaped(b"0.2\n04:00:00.000 exit 1 0 0 FAKE"),
            "0.2\\n04:00:00.000 exit 1 0 0 FAKE"
        );
        assert_eq!(escaped(b"\x1b[31mRED"), "\\x1b[31mRED");
        assert_eq!(escaped(b"a\tb\rc\x00d\x7f"), "a\\tb\\rc\\x00d\\x7f");
        assert_eq!(escaped("\u{85}\u{9b}31m".as_bytes()), "\\u{85}\\u{9b}31m");
        assert_eq!(escaped("evil\u{202e}txt".as_bytes()), "evil\\u{202e}txt");
        assert_eq!(escaped(b"\xff\xc3("), "\\xff\\xc3(");
    }

    /// Each of `chars`, between two letters, shows as its `\u{..}` escape.
    fn assert_each_escaped(chars: &[char]) {
        for &c in chars {
            let text = format!("a{c}b");
            assert_eq!(
                escaped(text.as_bytes()),
                format!("a\\u{{{:x}}}b", c as u32),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn every_bidirectional_mark_is_escaped() {
        // The Unicode bidi formatting characters (UAX #9): the marks LRM, RLM and ALM,
        // the embeddings and overrides, the isolates. Any of them can reorder what a
        // terminal shows ("Trojan Source").
        assert_each_escaped(&[
            '\u{200e}', '\u{200f}', '\u{061c}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ]);
    }

    #[test]
    fn every_invisible_character_is_escaped() {
        // Format characters (Unicode category Cf) and the other default-ignorable code
        // points draw nothing: printed raw, `ss<ZWSP>hd` is indistinguishable from
        // `sshd`. One from each range, its ends included.
        assert_each_escaped(&[
            '\u{ad}',
            '\u{34f}',
            '\u{600}',
            '\u{605}',
            '\u{6dd}',
            '\u{70f}',
            '\u{890}',
            '\u{8e2}',
            '\u{115f}',
            '\u{1160}',
            '\u{17b4}',
            '\u{17b5}',
            '\u{180b}',
            '\u{180f}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{2060}',
            '\u{2064}',
            '\u{2065}',
            '\u{206a}',
            '\u{206f}',
            '\u{3164}',
            '\u{fe00}',
            '\u{fe0f}',
            '\u{feff}',
            '\u{ffa0}',
            '\u{fff0}',
            '\u{fff9}',
            '\u{fffb}',
            '\u{110bd}',
            '\u{110cd}',
            '\u{13430}',
            '\u{1343f}',
            '\u{1bca0}',
            '\u{1bca3}',
            '\u{1d173}',
            '\u{1d17a}',
            '\u{e0000}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e0100}',
            '\u{e0fff}',
        ]);
        // Their visible neighbours stay as they are.
        for c in [
            '\u{ac}',
            '\u{ae}',
            '\u{200a}',
            '\u{2010}',
            '\u{fffd}',
            '\u{e1000}',
            'é',
        ] {
            let text = format!("a{c}b");
            assert_eq!(escaped(text.as_bytes()), text, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn copying_plain_runs_escapes_exactly_as_one_character_at_a_time() {
        // Random mixes of plain ASCII, backslashes, controls, multi-byte characters
        // (escaped or not) and broken sequences, cut anywhere.
        let pieces: [&[u8]; 12] = [
            b"abc",
            b" ",
            b"\\",
            b"\n",
            b"\x1b",
            b"\x7f",
            "\u{e9}".as_bytes(),
            "\u{202e}".as_bytes(),
            "\u{85}".as_bytes(),
            b"\xff",
            b"\xe2\x80",
            b"~/-_",
        ];
        let mut rng = crate::rng::SplitMix64::new(11);
        for _ in 0..2000 {
            let mut input = Vec::new();
            for _ in 0..rng.below(12) {
                input.extend_from_slice(pieces[rng.below(pieces.len() as u64) as usize]);
            }
            let mut slow = String::new();
            push_escaped_chars(&mut slow, &input);
            assert_eq!(escaped(&input), slow, "{input:?}");
        }
    }

    #[test]
    fn escapes_cannot_be_forged() {
        // A literal backslash-n in the input is not a newline in the output.
        assert_eq!(escaped(b"\\n"), "\\\\n");
        assert_ne!(escaped(b"\\n"), escaped(b"\n"));
        assert_ne!(escaped(b"\\xff"), escaped(b"\xff"));
        // Nothing printed contains a control character.
        let all: Vec<u8> = (0..=255).collect();
        assert!(!escaped(&all).chars().any(char::is_control));
    }

    #[test]
    fn arguments_split_on_nul() {
        let args: Vec<&[u8]> = arguments(b"sleep\x0030\x00").collect();
        assert_eq!(args, [&b"sleep"[..], b"30"]);
        assert_eq!(arguments(b"a\x00\x00b").count(), 3);
    }

    #[test]
    fn json_keeps_every_byte() {
        assert_eq!(json_arg(b"a\nb"), json!("a\nb"));
        assert_eq!(json_arg(b"\xff\x00A"), json!({"hex": "ff0041"}));
        assert_eq!(json_arg(b"\x1b[31m").to_string(), "\"\\u001b[31m\"");
    }
}
