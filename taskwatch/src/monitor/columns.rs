//! The fixed-width columns of the monitor's text lines, appended to a buffer the monitor
//! reuses for every line: no allocation and no `format!` machinery per event, which
//! were most of the monitor's own cost (`callgrind`, see the README).

/// The decimal digits of `value`, in `buf`.
fn digits(value: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    let mut rest = value;
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // Only ASCII digits were written: this never takes the fallback.
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

/// Appends `text` right-aligned in `width` characters (`{text:>width}`).
pub fn push_right(out: &mut String, text: &str, width: usize) {
    for _ in text.chars().count()..width {
        out.push(' ');
    }
    out.push_str(text);
}

/// Pads what was appended to `out` since byte `start` with spaces to `width` characters
/// (`{text:<width}`).
pub fn pad_from(out: &mut String, start: usize, width: usize) {
    let written = out.get(start..).map_or(0, |s| s.chars().count());
    for _ in written..width {
        out.push(' ');
    }
}

/// Appends `value` in decimal, right-aligned in `width` characters.
pub fn push_number_right(out: &mut String, value: u64, width: usize) {
    let mut buf = [0; 20];
    push_right(out, digits(value, &mut buf), width);
}

/// Appends `value` in decimal.
pub fn push_number(out: &mut String, value: u64) {
    let mut buf = [0; 20];
    out.push_str(digits(value, &mut buf));
}

/// Appends `ns` as seconds with three decimals (rounded half up), right-aligned in
/// `width` characters: what `{:>width$.3}` shows for `ns as f64 / 1e9`.
pub fn push_seconds_right(out: &mut String, ns: u64, width: usize) {
    let millis = ns / 1_000_000 + u64::from(ns % 1_000_000 >= 500_000);
    let mut buf = [0; 20];
    let secs = digits(millis / 1000, &mut buf);
    for _ in secs.len() + 4..width {
        out.push(' ');
    }
    out.push_str(secs);
    out.push('.');
    push_three_digits(out, millis % 1000);
}

/// Appends `value` (below 1000) as three digits, zero-padded.
pub fn push_three_digits(out: &mut String, value: u64) {
    for divisor in [100, 10, 1] {
        out.push(char::from(b'0' + (value / divisor % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_match_what_format_shows() {
        let mut rng = crate::rng::SplitMix64::new(5);
        for _ in 0..5000 {
            let value = match rng.below(3) {
                0 => rng.below(10),
                1 => rng.below(5_000_000),
                _ => rng.next_u64(),
            };
            let mut out = String::from("x");
            push_number_right(&mut out, value, 7);
            push_number(&mut out, value);
            assert_eq!(out, format!("x{value:>7}{value}"));
            // Away from an exact half millisecond, where the binary float may lean
            // either way, the integer rounding is the float formatting's.
            let ns = rng.below(100_000_000_000_000);
            if ns % 1_000_000 != 500_000 {
                let mut out = String::new();
                push_seconds_right(&mut out, ns, 9);
                assert_eq!(out, format!("{:>9.3}", ns as f64 / 1e9), "{ns}");
            }
        }
        let mut out = String::from("ab");
        pad_from(&mut out, 1, 4);
        push_right(&mut out, "r 0→1", 7);
        assert_eq!(out, format!("a{:<4}{:>7}", "b", "r 0→1"));
        let mut out = String::new();
        push_seconds_right(&mut out, 1_234_500_000, 0);
        push_three_digits(&mut out, 7);
        assert_eq!(out, "1.235007");
    }
}
