//! What a YAML scalar means, decided the way `kubectl apply` decides it (YAML 1.1 as Go's
//! yaml.v2 reads it), or why it is refused as ambiguous. See `docs/limits.md`.

use super::yaml::json_str;
use serde_json::{Number, Value};
use serde_saphyr::granit_parser::{ScalarStyle, Tag};

/// The core-schema name of a tag (`!!int` → `int`), or `None` for other tags.
pub(super) fn core(tag: &Tag) -> Option<&str> {
    (tag.handle() == "tag:yaml.org,2002:").then(|| tag.suffix())
}

pub(super) fn show_tag(tag: &Tag) -> String {
    match core(tag) {
        Some(s) => format!("!!{s}"),
        None => format!("{}{}", tag.handle(), tag.suffix()),
    }
}

pub(super) fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(t) = tag {
        return match core(t) {
            Some("str" | "binary") => Ok(Value::String(text.to_owned())),
            Some("null") => Ok(Value::Null),
            Some("bool") => match plain(text)? {
                v @ Value::Bool(_) => Ok(v),
                _ => Err(format!("{} is not a boolean", json_str(text))),
            },
            Some("int") => match plain(text)? {
                v @ Value::Number(_) if !text.contains(['.', 'e', 'E']) => Ok(v),
                _ => Err(format!("{} is not an integer", json_str(text))),
            },
            Some("float") => match plain(text)? {
                v @ Value::Number(_) => Ok(v),
                _ => Err(format!("{} is not a number", json_str(text))),
            },
            _ => Err(format!("unsupported tag {}", show_tag(t))),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    plain(text)
}

/// The meaning of a plain scalar, as kubectl reads it, or why it is refused.
fn plain(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Ok(Value::String(text.to_owned()));
    }
    let lower = text.to_ascii_lowercase();
    if matches!(lower.trim_start_matches(['-', '+']), ".inf" | ".nan") {
        return Err(format!(
            "{text} is not a finite number and cannot be sent as JSON; quote it if it is a string"
        ));
    }
    if is_timestamp(text) {
        return Err(format!(
            "{text} is an unquoted timestamp, which kubectl turns into a different string; quote it"
        ));
    }
    let digits: String = text.chars().filter(|c| *c != '_').collect();
    if let Some(n) = integer(&digits) {
        return n
            .map(Value::Number)
            .map_err(|why| format!("{text} {why}; quote it if it is a string"));
    }
    if is_float(&digits) {
        let f: f64 = digits
            .parse()
            .map_err(|_| format!("{text} is not a number"))?;
        if !f.is_finite() {
            return Err(format!(
                "{text} is out of range for a number; quote it if it is a string"
            ));
        }
        if f.fract() == 0.0 {
            // Go's JSON encoder (kubectl) writes an integral float as an integer.
            if f.abs() >= 9.223_372_036_854_776e18 {
                return Err(format!(
                    "{text} is an integer beyond 64 bits and would be rounded; quote it if it is a string"
                ));
            }
            return Ok(Value::Number(Number::from(f as i64)));
        }
        return Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| format!("{text} is not a number"));
    }
    Ok(Value::String(text.to_owned()))
}

/// YAML 1.1 integers as Go's `strconv.ParseInt(s, 0, 64)` reads them (underscores already
/// removed): decimal, `0x` hex, `0o`/leading-`0` octal, `0b` binary, with an optional sign.
/// `None`: not an integer form; `Some(Err)`: an integer form out of range.
fn integer(s: &str) -> Option<Result<Number, &'static str>> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        if radix == 8
            && body.starts_with('0')
            && !body.starts_with("0o")
            && body.bytes().all(|b| b.is_ascii_digit())
        {
            // `09`, `0128`: not octal; kubectl falls back to reading a float. Refuse instead.
            return Some(Err(
                "has a leading zero but is not octal (YAML 1.1 reads 0-prefixed integers as octal)",
            ));
        }
        return None;
    }
    let magnitude = match u128::from_str_radix(digits, radix) {
        Ok(m) if m <= u64::MAX as u128 => m,
        _ => return Some(Err("is an integer beyond 64 bits")),
    };
    Some(if neg {
        if magnitude <= i64::MAX as u128 + 1 {
            Ok(Number::from((-(magnitude as i128)) as i64))
        } else {
            Err("is an integer beyond 64 bits")
        }
    } else {
        Ok(Number::from(magnitude as u64))
    })
}

/// yaml.v2's float form: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - f;
        if int_digits == 0 && frac_digits == 0 {
            return false;
        }
    } else if int_digits == 0 {
        return false;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

/// `2001-12-14`, `2001-12-14t21:59:43.10-05:00` and the like: YAML 1.1 timestamps.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && {
        let rest = &s[5..];
        let mut parts = rest.splitn(3, ['-', 'T', 't', ' ']);
        let month = parts.next().unwrap_or("");
        let day: String = parts
            .next()
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        (1..=2).contains(&month.len())
            && month.bytes().all(|c| c.is_ascii_digit())
            && (1..=2).contains(&day.len())
    }
}

#[cfg(test)]
mod tests {
    use super::super::yaml::{Budget, parse_documents};
    use serde_json::Value;

    fn one(text: &str) -> Result<Value, String> {
        let mut budget = Budget::new(&crate::limits::RenderLimits::default());
        let (mut docs, errors) = parse_documents(text, &mut budget);
        if let Some(e) = errors.first() {
            return Err(format!("{:?}: {}", e.line, e.kind));
        }
        Ok(docs.remove(0).value)
    }

    #[test]
    fn numbers_mean_what_kubectl_reads() {
        for (text, want) in [
            ("a: 0644", serde_json::json!({"a": 420})),
            ("a: 0400", serde_json::json!({"a": 256})),
            ("a: 03", serde_json::json!({"a": 3})),
            ("a: 0o17", serde_json::json!({"a": 15})),
            ("a: 0x1F", serde_json::json!({"a": 31})),
            ("a: 0b101", serde_json::json!({"a": 5})),
            ("a: 1_000", serde_json::json!({"a": 1000})),
            ("a: -0", serde_json::json!({"a": 0})),
            ("a: 3.0", serde_json::json!({"a": 3})),
            ("a: 1e3", serde_json::json!({"a": 1000})),
            ("a: 0.5", serde_json::json!({"a": 0.5})),
            (
                "a: 18446744073709551615",
                serde_json::json!({"a": 18446744073709551615u64}),
            ),
            (
                "a: -9223372036854775808",
                serde_json::json!({"a": i64::MIN}),
            ),
            ("a: '0644'", serde_json::json!({"a": "0644"})),
            ("a: yes", serde_json::json!({"a": "yes"})),
            ("a: 1.2.3", serde_json::json!({"a": "1.2.3"})),
            ("a: 1:30", serde_json::json!({"a": "1:30"})),
            ("a: \"2001-12-14\"", serde_json::json!({"a": "2001-12-14"})),
            ("a: !!str 0644", serde_json::json!({"a": "0644"})),
            ("a: ~", serde_json::json!({"a": null})),
        ] {
            assert_eq!(one(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn ambiguous_numbers_are_refused_with_the_line() {
        for text in [
            "x: 1\na: 18446744073709551616",
            "x: 1\na: 0x1FFFFFFFFFFFFFFFFF",
            "x: 1\na: -9223372036854775809",
            "x: 1\na: 09",
            "x: 1\na: .inf",
            "x: 1\na: 1e300",
            "x: 1\na: 2001-12-14",
            "x: 1\na: !!int 1.5",
            "x: 1\na: !custom x",
        ] {
            let e = one(text).unwrap_err();
            assert!(e.starts_with("Some(2)"), "{text}: {e}");
        }
    }
}
