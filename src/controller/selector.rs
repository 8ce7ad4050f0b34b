//! The agent's `--selector`: parsed once into kube's [`Selector`], which both the ConfigRepo
//! watch (rendered back to the server's syntax) and the reconcile's own check use, so the two
//! can never disagree. Supports the API server's set-based syntax: `k=v`, `k==v`, `k!=v`,
//! `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas.

use kube::core::{Expression, Selector, SelectorExt};
use std::collections::{BTreeMap, BTreeSet};

/// A parsed label selector.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSelector(Selector);

/// Splits at commas outside parentheses.
fn terms(s: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced parentheses in {s:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {s:?}"));
    }
    out.push(s[start..].trim());
    Ok(out.into_iter().filter(|t| !t.is_empty()).collect())
}

fn key(k: &str, term: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(k.to_owned())
    } else {
        Err(format!("invalid label key in selector term {term:?}"))
    }
}

fn value(v: &str, term: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "invalid label value {v:?} in selector term {term:?}"
        ))
    }
}

fn set(rest: &str, term: &str) -> Result<BTreeSet<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected (values) in selector term {term:?}"))?;
    inner.split(',').map(|v| value(v, term)).collect()
}

fn expression(term: &str) -> Result<Expression, String> {
    if let Some(k) = term.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key(k, term)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Expression::NotEqual(key(k, term)?, value(v, term)?));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Expression::Equal(key(k, term)?, value(v, term)?));
    }
    let words: Vec<&str> = term.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim_start();
        if let Some(r) = rest.strip_prefix("notin") {
            return Ok(Expression::NotIn(key(words[0], term)?, set(r, term)?));
        }
        if let Some(r) = rest.strip_prefix("in") {
            return Ok(Expression::In(key(words[0], term)?, set(r, term)?));
        }
        return Err(format!("unknown operator in selector term {term:?}"));
    }
    Ok(Expression::Exists(key(term, term)?))
}

impl LabelSelector {
    /// Parses a selector; an error names the term.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let exprs = terms(s)?
            .into_iter()
            .map(expression)
            .collect::<Result<Vec<_>, _>>()?;
        if exprs.is_empty() {
            return Err("the selector is empty".into());
        }
        Ok(LabelSelector(exprs.into_iter().collect()))
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.matches(labels)
    }

    /// The selector in the API server's syntax (for watches and lists).
    pub fn to_query(&self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Defect: the hand-written matcher read `!=`, `in (...)` and `!key` differently from the
    /// server-side watch, so the agent ignored its own repos.
    #[test]
    fn set_based_terms_match_as_the_server_reads_them() {
        let cases: &[(&str, &[(&str, &str)], bool)] = &[
            ("team=a", &[("team", "a")], true),
            ("team==a", &[("team", "a")], true),
            ("team!=a", &[("team", "b")], true),
            ("team!=a", &[], true),
            ("team!=a", &[("team", "a")], false),
            ("team in (a, b)", &[("team", "b")], true),
            ("team in (a,b)", &[("team", "c")], false),
            ("team notin (a,b)", &[("team", "c")], true),
            ("!shard", &[("team", "a")], true),
            ("!shard", &[("shard", "1")], false),
            ("shard", &[("shard", "1")], true),
            (
                "team=a,shard in (1,2),!legacy",
                &[("team", "a"), ("shard", "2")],
                true,
            ),
            (
                "team=a,shard in (1,2),!legacy",
                &[("team", "a"), ("shard", "2"), ("legacy", "")],
                false,
            ),
        ];
        for (sel, l, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&labels(l)), *want, "{sel} on {l:?}");
            // The query sent to the server parses back to the same selector.
            assert_eq!(LabelSelector::parse(&s.to_query()), Ok(s.clone()), "{sel}");
        }
    }

    #[test]
    fn malformed_selectors_are_refused_with_the_term() {
        for bad in [
            "",
            "team in a",
            "team in (a",
            "te am=x",
            "team=a b",
            "x ~ y",
        ] {
            let e = LabelSelector::parse(bad).expect_err(bad);
            assert!(!e.is_empty());
        }
    }
}
