//! Go-style durations (`90s`, `1m30s`, `1h`, `250ms`) as they appear in fledge's resources.
//!
//! Kubernetes users write durations the way `kubectl` and every controller they know does; the
//! CRD schema checks the shape with a regular expression so a typo is rejected by the API
//! server, and [`parse`] turns the text into a [`std::time::Duration`].

use std::time::Duration;

/// Regular expression the CRD schemas use for duration fields.
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Why a duration string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 30s, 5m, 1h30m, 250ms)")]
pub struct ParseError {
    input: String,
    reason: &'static str,
}

/// Parses a Go-style duration made of one or more `<number><unit>` parts, unit one of
/// `ms`, `s`, `m`, `h`. Fractions are allowed (`1.5m`); a bare number is not.
pub fn parse(input: &str) -> Result<Duration, ParseError> {
    let err = |reason| ParseError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(err("empty"));
    }
    let mut total = 0f64;
    let mut rest = input;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err("bad number"))?;
        rest = &rest[num_len..];
        let (unit_secs, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return Err(err("missing or unknown unit"));
        };
        total += value * unit_secs;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 10.0 * 365.0 * 86400.0 {
        return Err(err("too large"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way [`parse`] reads it (`1h2m3s`, `250ms`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1.5m").unwrap(), Duration::from_secs(90));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in ["", "10", "s", "5x", "1m-2s", "1..5s", " 5s"] {
            let e = parse(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["1h2m3s", "250ms", "5m", "0s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
