//! Redaction of credentials from everything `source` prints: remote URLs (any form, parseable
//! or not) and error text that comes from libgit2 or from the remote. One function per job:
//! [`redact`] for a URL, [`redact_text`] for free text (it redacts every URL-like token in it,
//! removes the known secret values and escapes control characters).

/// What replaces a removed secret.
pub const REDACTED: &str = "<redacted>";

/// `url` with its credentials removed, for printing.
///
/// - user info of `scheme://user:password@host/…` is dropped, whatever it contains (`@`, `/`,
///   `:`): everything up to the last `@` before the query goes. (A token can be the user name,
///   so the user goes too.) If what was dropped contains a `/`, the cut may have been in the
///   path: `<redacted>@` marks it.
/// - scp-like `user@host:path` keeps a plain user name (`git@`); `user:password@…` loses it all.
/// - every query value and the fragment are replaced (`?private_token=<redacted>`).
/// - control characters are escaped, so a URL cannot forge a line in a log.
///
/// Works on text, never needs the URL to parse: an unparseable URL is redacted the same way.
pub fn redact(url: &str) -> String {
    let (before_query, query, fragment) = split_query(url);
    let (scheme, rest) = match before_query.find("://") {
        Some(i) => (&before_query[..i + 3], &before_query[i + 3..]),
        None => ("", before_query),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match rest.rfind('@') {
        Some(at) => {
            let user = &rest[..at];
            let plain_user = !user.is_empty()
                && user.len() <= 32
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if scheme.is_empty() && plain_user {
                // scp-like `git@host:path`: the user name is not a secret there.
                out.push_str(user);
                out.push('@');
            } else if user.contains('/') || (scheme.is_empty() && !user.is_empty()) {
                out.push_str(REDACTED);
                out.push('@');
            }
            out.push_str(&rest[at + 1..]);
        }
        None => out.push_str(rest),
    }
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{k}={REDACTED}"),
                None if pair.is_empty() => String::new(),
                None => REDACTED.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if fragment.is_some() {
        out.push('#');
        out.push_str(REDACTED);
    }
    escape_control(&out)
}

fn split_query(url: &str) -> (&str, Option<&str>, Option<&str>) {
    let (main, fragment) = match url.split_once('#') {
        Some((m, f)) => (m, Some(f)),
        None => (url, None),
    };
    match main.split_once('?') {
        Some((m, q)) => (m, Some(q), fragment),
        None => (main, None, fragment),
    }
}

/// Free text (an error message from libgit2 or from the remote) made safe to print: every
/// non-empty value in `secrets` (and its percent-encoded form) is replaced, every URL-like token
/// is passed through [`redact`], and control characters are escaped.
pub fn redact_text(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        text = text.replace(s, REDACTED);
        let encoded = percent_encode(s);
        if encoded != *s {
            text = text.replace(&encoded, REDACTED);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if token.contains("://") || token.contains('@') {
            out.push_str(&redact(token));
        } else {
            out.push_str(&escape_control(token));
        }
        token.clear();
    };
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '\'' | '"' | '`' | '(' | ')' | ',' | ';') {
            flush(&mut token, &mut out);
            out.push_str(&escape_control(c.encode_utf8(&mut [0; 4])));
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Control characters escaped (one implementation for the crate: [`crate::limits::escape_controls`]).
pub fn escape_control(s: &str) -> String {
    crate::limits::escape_controls(s).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_every_credential() {
        let cases = [
            ("https://host/org/repo.git", "https://host/org/repo.git"),
            ("https://user:s3cr3t@host/x", "https://host/x"),
            ("http://user:p@ss@host/x", "http://host/x"),
            ("https://ghp_t0ken@github.com/o/r", "https://github.com/o/r"),
            ("https://user:pa/ss@host/x", "https://<redacted>@host/x"),
            ("https://user:s3cr3t@host:8443", "https://host:8443"),
            (
                "https://host/x?private_token=s3cr3t&ref=main",
                "https://host/x?private_token=<redacted>&ref=<redacted>",
            ),
            (
                "https://host/x#access_token=s3cr3t",
                "https://host/x#<redacted>",
            ),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            ("user:s3cr3t@host:org/repo", "<redacted>@host:org/repo"),
            ("user:p@ss@host:path", "<redacted>@host:path"),
            ("ssh://git:s3cr3t@host:2222/r.git", "ssh://host:2222/r.git"),
            // Unparseable, still redacted.
            ("http//user:s3cr3t@host", "<redacted>@host"),
            ("https://user:s3cr3t@[::1/x", "https://[::1/x"),
            ("https://user:s3cr3t@", "https://"),
            (
                "https://host/\nerror: forged",
                "https://host/\\nerror: forged",
            ),
        ];
        for (input, want) in cases {
            let got = redact(input);
            assert_eq!(got, want, "redact({input:?})");
            assert!(!got.contains("s3cr3t") && !got.contains("p@ss") && !got.contains("pa/ss"));
        }
    }

    #[test]
    fn text_loses_urls_secrets_and_control_characters() {
        let msg =
            "failed to connect to 'https://u:s3cr3t@host/x': token t0k-abc rejected\n\u{1b}[31mok";
        let got = redact_text(msg, &["t0k-abc", "", "x"]);
        assert_eq!(
            got,
            "failed to connect to 'https://host/x': token <redacted> rejected\\n\\u{1b}[31mok"
        );
        // Percent-encoded form of a secret.
        let got = redact_text("GET /?p=a%2Fb%40c", &["a/b@c"]);
        assert!(!got.contains("a%2Fb%40c"), "{got}");
    }
}
