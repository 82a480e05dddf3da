//! Value parsers for numeric options: a bad value says what is wrong and what is
//! allowed (clap's own parsers would call `-1` an unknown flag or an "invalid digit").

/// A parser for a whole number from `min` to `max`, `what` naming it in the error.
pub fn whole(
    min: u64,
    max: u64,
    what: &'static str,
) -> impl Fn(&str) -> Result<u64, String> + Clone {
    move |text: &str| {
        let allowed = format!("{what} is a whole number from {min} to {max}");
        match text.trim().parse::<i128>() {
            Ok(value) if value < i128::from(min) || value > i128::from(max) => {
                Err(format!("{text} is out of range: {allowed}"))
            }
            // In range of u64 by the check above.
            Ok(value) => Ok(value as u64),
            Err(_) => Err(format!("`{text}` is not a whole number: {allowed}")),
        }
    }
}

/// A parser for a number of seconds from `min` to `max`.
pub fn seconds(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |text: &str| {
        let allowed = format!("give seconds from {min} to {max}");
        match text.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && (min..=max).contains(&secs) => Ok(secs),
            Ok(_) => Err(format!("{text} is out of range: {allowed}")),
            Err(_) => Err(format!("`{text}` is not a number of seconds: {allowed}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_say_what_is_allowed() {
        let parse = whole(1, 10, "N");
        assert_eq!(parse("7"), Ok(7));
        assert_eq!(parse("1"), Ok(1));
        assert_eq!(
            parse("-1").unwrap_err(),
            "-1 is out of range: N is a whole number from 1 to 10"
        );
        assert!(parse("0").unwrap_err().contains("out of range"));
        assert!(
            parse("99999999999999999999999")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse("1.5").unwrap_err().contains("not a whole number"));
        assert!(
            parse("many")
                .unwrap_err()
                .starts_with("`many` is not a whole number")
        );
        assert_eq!(
            whole(0, u64::MAX, "seed")("18446744073709551615"),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn seconds_say_what_is_allowed() {
        let parse = seconds(0.001, 1e6);
        assert_eq!(parse("1.5"), Ok(1.5));
        for bad in ["-1", "0", "1e300", "inf", "NaN"] {
            assert!(parse(bad).unwrap_err().contains("out of range"), "{bad}");
        }
        assert!(
            parse("soon")
                .unwrap_err()
                .contains("not a number of seconds")
        );
    }
}
