//! YAML streams to JSON values, one per document, each with the line it starts on, so errors can
//! name the line. Hardened: duplicate keys are errors, alias expansion is bounded (alias bombs).

use super::error::ErrorKind;
use serde_json::Value;

/// A parsed document and the 1-based line its content starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based index of the document in its file.
    pub index: usize,
    pub line: usize,
    pub value: Value,
}

/// A YAML error with the 1-based line, where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: Option<usize>,
    pub kind: ErrorKind,
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 200_000,
            max_replay_stack_depth: 32,
            max_alias_expansions_per_anchor: 10_000,
        },
        with_snippet: false,
        strict_booleans: true,
    }
}

/// Splits `text` into documents at `---` lines (a `---` at column 0 is always a document
/// marker in YAML) and parses each. Empty and comment-only documents are skipped. Every error is
/// returned, not only the first.
pub fn parse_documents(text: &str) -> (Vec<Document>, Vec<YamlError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let mut index = 0;
    for (start_line, chunk) in split(text) {
        if is_blank(&chunk) {
            continue;
        }
        index += 1;
        match serde_saphyr::from_str_with_options::<Value>(&chunk, options()) {
            Ok(Value::Null) => {}
            Ok(value) => docs.push(Document {
                index,
                line: first_content_line(&chunk) + start_line - 1,
                value,
            }),
            Err(e) => {
                let line = e
                    .location()
                    .map(|l| l.line() as usize + start_line - 1)
                    .filter(|l| *l > 0);
                errors.push(YamlError {
                    line,
                    kind: ErrorKind::Yaml(clean_message(&e.to_string())),
                });
            }
        }
    }
    (docs, errors)
}

/// Parses a single-document YAML file (bundles) into `T`.
pub fn parse_one<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options::<T>(text, options()).map_err(|e| YamlError {
        line: e.location().map(|l| l.line() as usize).filter(|l| *l > 0),
        kind: ErrorKind::Yaml(clean_message(&e.to_string())),
    })
}

/// serde-saphyr appends "at line X column Y" (we report the line ourselves) and may span lines.
fn clean_message(msg: &str) -> String {
    let first = msg
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("syntax error");
    let cut = first
        .find(" at line ")
        .map(|i| &first[..i])
        .unwrap_or(first);
    cut.trim_end_matches(':').to_owned()
}

fn split(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let is_end = bare == "..." || bare.starts_with("... ");
        if is_marker {
            out.push((start, std::mem::take(&mut current)));
            start = i + 1;
            // Content after the marker on the same line belongs to the new document.
            current.push_str(&" ".repeat(3));
            current.push_str(&line[3..]);
        } else if is_end {
            out.push((start, std::mem::take(&mut current)));
            start = i + 2;
        } else {
            current.push_str(line);
        }
    }
    out.push((start, current));
    out
}

fn is_blank(chunk: &str) -> bool {
    chunk.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with('%')
    })
}

fn first_content_line(chunk: &str) -> usize {
    chunk
        .lines()
        .position(|l| {
            let t = l.trim();
            !(t.is_empty() || t.starts_with('#'))
        })
        .map(|p| p + 1)
        .unwrap_or(1)
}

/// The kind of JSON value, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
