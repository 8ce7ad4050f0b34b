//! YAML streams to JSON values, one per document, each with the line it starts on and the lines
//! of its top-level fields (from the parser's spans), so errors can name the line.
//!
//! Built straight from the parser's events rather than through serde, so that fledge decides
//! what every scalar means and what a document may cost:
//! - numbers mean what they mean to `kubectl apply` (YAML 1.1 as Go's yaml.v2 reads it:
//!   `0644` is 420, `0x1F` is 31, `1_000` is 1000, an integral float is an integer); forms
//!   whose meaning differs between readers or loses precision (integers beyond 64 bits,
//!   `.inf`/`.nan`, unquoted timestamps) are refused with the line, to be quoted;
//! - only `true`/`false` (any case form of YAML 1.2) are booleans; `yes`, `no`, `on`, `off`,
//!   `y`, `n` stay strings (a deliberate difference from kubectl, documented in the README);
//! - a key repeated in a mapping is an error, including keys that differ only in type
//!   (`1` and `"1"` are the same JSON key);
//! - nesting, nodes built (aliases expanded) and bytes are charged to a [`Budget`] shared by
//!   every document of every file in one render, so alias bombs spread over many documents or
//!   files are bounded as a whole.

use super::error::ErrorKind;
use super::scalar::{core, scalar, show_tag};
use serde_json::{Map, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span, StrInput};
use std::collections::{BTreeMap, HashMap};

/// A parsed document and the 1-based line its content starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based index of the document in its file.
    pub index: usize,
    pub line: usize,
    pub value: Value,
    /// Lines of nodes up to three levels deep, by JSON pointer (`/include/0`, `/patches/1/target`).
    pub lines: BTreeMap<String, usize>,
}

impl Document {
    /// Line of the node at `pointer`, else of the nearest recorded ancestor, else the document's.
    pub fn line_of(&self, pointer: &str) -> usize {
        let mut p = pointer;
        loop {
            if let Some(l) = self.lines.get(p) {
                return *l;
            }
            match p.rsplit_once('/') {
                Some((up, _)) => p = up,
                None => return self.line,
            }
        }
    }
}

/// A YAML error with the 1-based line, where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: Option<usize>,
    pub kind: ErrorKind,
}

/// What the YAML of one render may still cost. Shared by every file of the render.
#[derive(Debug, Clone)]
pub struct Budget {
    pub max_depth: usize,
    pub nodes_left: usize,
    pub max_nodes: usize,
    pub bytes_left: u64,
    pub max_bytes: u64,
    pub documents_left: usize,
    pub max_documents: usize,
}

impl Budget {
    pub fn new(limits: &crate::limits::RenderLimits) -> Budget {
        Budget {
            max_depth: limits.max_depth,
            nodes_left: limits.max_nodes,
            max_nodes: limits.max_nodes,
            bytes_left: limits.max_output_bytes,
            max_bytes: limits.max_output_bytes,
            documents_left: limits.max_documents,
            max_documents: limits.max_documents,
        }
    }

    /// True once a budget is spent: later files are not parsed at all.
    pub fn exhausted(&self) -> bool {
        self.nodes_left == 0 || self.bytes_left == 0 || self.documents_left == 0
    }

    fn charge(&mut self, nodes: usize, bytes: u64) -> Result<(), ErrorKind> {
        if nodes > self.nodes_left {
            self.nodes_left = 0;
            return Err(ErrorKind::Limit {
                what: "YAML nodes in the render (aliases expanded)",
                limit: self.max_nodes as u64,
            });
        }
        if bytes > self.bytes_left {
            self.bytes_left = 0;
            return Err(ErrorKind::Limit {
                what: "bytes of YAML values in the render (aliases expanded)",
                limit: self.max_bytes,
            });
        }
        self.nodes_left -= nodes;
        self.bytes_left -= bytes;
        Ok(())
    }
}

/// A finished value with what it cost, so an alias of it can be charged without a walk.
#[derive(Debug, Clone)]
struct Built {
    value: Value,
    nodes: usize,
    bytes: u64,
    depth: usize,
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        cost: Built,
        pointer: String,
    },
    Map {
        map: Map<String, Value>,
        /// Key read, waiting for its value: (key, is the merge key `<<`).
        key: Option<(String, bool)>,
        merged: Vec<Map<String, Value>>,
        anchor: usize,
        cost: Built,
        pointer: String,
    },
}

const NODE_BYTES: u64 = 16;
const TRACK_DEPTH: usize = 3;

struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Built>,
    lines: BTreeMap<String, usize>,
}

fn err(line: usize, message: impl Into<String>) -> YamlError {
    YamlError {
        line: Some(line),
        kind: ErrorKind::Yaml(message.into()),
    }
}

fn limit(line: usize, kind: ErrorKind) -> YamlError {
    YamlError {
        line: Some(line),
        kind,
    }
}

impl Builder {
    fn child_pointer(&self) -> Option<String> {
        if self.stack.len() > TRACK_DEPTH {
            return None;
        }
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { items, pointer, .. }) => Some(format!("{pointer}/{}", items.len())),
            Some(Frame::Map {
                key: Some((k, _)),
                pointer,
                ..
            }) => Some(format!(
                "{pointer}/{}",
                k.replace('~', "~0").replace('/', "~1")
            )),
            Some(Frame::Map { .. }) => None,
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// Places a finished value into its parent; returns it when it is the document's root.
    fn place(&mut self, built: Built, line: usize) -> Result<Option<Built>, YamlError> {
        match self.stack.last_mut() {
            None => Ok(Some(built)),
            Some(Frame::Seq { items, cost, .. }) => {
                cost.nodes += built.nodes;
                cost.bytes += built.bytes;
                cost.depth = cost.depth.max(built.depth + 1);
                items.push(built.value);
                Ok(None)
            }
            Some(Frame::Map {
                map,
                key,
                merged,
                cost,
                ..
            }) => {
                cost.nodes += built.nodes;
                cost.bytes += built.bytes;
                cost.depth = cost.depth.max(built.depth + 1);
                match key.take() {
                    Some((_, true)) => match built.value {
                        Value::Object(m) => merged.push(m),
                        Value::Array(list) => {
                            for v in list {
                                match v {
                                    Value::Object(m) => merged.push(m),
                                    _ => return Err(err(line, "merge key << takes mappings only")),
                                }
                            }
                        }
                        _ => {
                            return Err(err(
                                line,
                                "merge key << takes a mapping or a list of mappings",
                            ));
                        }
                    },
                    Some((k, false)) => {
                        map.insert(k, built.value);
                    }
                    None => {
                        let k = match built.value {
                            Value::String(s) => s,
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            Value::Null => "null".to_owned(),
                            _ => {
                                return Err(err(
                                    line,
                                    "a mapping key must be a scalar, not a mapping or list",
                                ));
                            }
                        };
                        if map.contains_key(&k) {
                            return Err(err(
                                line,
                                format!(
                                    "duplicate key {} (keys that differ only in type, like 1 and \"1\", are the same key)",
                                    json_str(&k)
                                ),
                            ));
                        }
                        *key = Some((k, false));
                    }
                }
                Ok(None)
            }
        }
    }
}

pub(super) fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Parses every document of `text`, charging `budget`. Documents that are empty (or only
/// comments, or `null`) are skipped. Every document with an error is reported; a syntax error
/// ends the file.
pub fn parse_documents(text: &str, budget: &mut Budget) -> (Vec<Document>, Vec<YamlError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let mut parser = Parser::new_from_str(text);
    let mut index = 0;
    loop {
        match parse_document(&mut parser, budget, &mut index) {
            Step::Doc(d) => docs.push(d),
            Step::Empty => {}
            Step::End => break,
            Step::Skip(e) => {
                errors.push(e);
                if budget.exhausted() {
                    break;
                }
                match parser.proceed_next_document() {
                    Ok(true) => {}
                    _ => break,
                }
            }
            Step::Fatal(e) => {
                errors.push(e);
                break;
            }
        }
    }
    (docs, errors)
}

enum Step {
    Doc(Document),
    Empty,
    End,
    /// An error inside one document: report and go on with the next.
    Skip(YamlError),
    /// A syntax error or a spent budget: report and stop reading the file.
    Fatal(YamlError),
}

fn parse_document<'t>(
    parser: &mut Parser<'t, StrInput<'t>>,
    budget: &mut Budget,
    index: &mut usize,
) -> Step {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        lines: BTreeMap::new(),
    };
    let mut root: Option<(Built, usize)> = None;
    let mut started = false;
    let mut doc_line = 1;
    loop {
        let (event, span): (Event<'_>, Span) = match parser.next_event() {
            None => return if started { Step::Empty } else { Step::End },
            Some(Err(e)) => {
                let line = e.marker().line().max(1);
                let message = e.info();
                let message = message.lines().next().unwrap_or("syntax error").to_owned();
                return Step::Fatal(err(
                    line,
                    if message.is_empty() {
                        "syntax error".into()
                    } else {
                        message
                    },
                ));
            }
            Some(Ok(ev)) => ev,
        };
        let line = span.start.line().max(1);
        let is_seq = matches!(event, Event::SequenceStart(..));
        match event {
            Event::StreamStart => {}
            Event::StreamEnd => return Step::End,
            Event::DocumentStart(..) => {
                started = true;
                doc_line = line;
            }
            Event::DocumentEnd => {
                let Some((built, first)) = root else {
                    return Step::Empty;
                };
                if built.value.is_null() {
                    return Step::Empty;
                }
                *index += 1;
                if budget.documents_left == 0 {
                    return Step::Fatal(limit(
                        first,
                        ErrorKind::Limit {
                            what: "YAML documents in the render",
                            limit: budget.max_documents as u64,
                        },
                    ));
                }
                budget.documents_left -= 1;
                let _ = doc_line;
                return Step::Doc(Document {
                    index: *index,
                    line: first,
                    value: built.value,
                    lines: b.lines,
                });
            }
            Event::Alias(id) => {
                let Some(target) = b.anchors.get(&id).cloned() else {
                    return Step::Skip(err(line, "alias to an unknown anchor"));
                };
                if b.stack.len() + target.depth > budget.max_depth {
                    return Step::Fatal(limit(line, ErrorKind::TooDeepYaml(budget.max_depth)));
                }
                if let Err(k) = budget.charge(target.nodes, target.bytes) {
                    return Step::Fatal(limit(line, k));
                }
                if b.expecting_key() && !target.value.is_string() && !target.value.is_number() {
                    return Step::Skip(err(line, "a mapping key must be a scalar"));
                }
                if let Some(p) = b.child_pointer() {
                    b.lines.insert(p, line);
                }
                match b.place(target, line) {
                    Ok(Some(r)) => root = Some((r, line)),
                    Ok(None) => {}
                    Err(e) => return Step::Skip(e),
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let is_key = b.expecting_key();
                let value = match scalar(&text, style, tag.as_deref()) {
                    Ok(v) => v,
                    Err(m) => return Step::Skip(err(line, m)),
                };
                let bytes = NODE_BYTES + text.len() as u64;
                if let Err(k) = budget.charge(1, bytes) {
                    return Step::Fatal(limit(line, k));
                }
                if is_key {
                    if style == ScalarStyle::Plain && text == "<<" && tag.is_none() {
                        if let Some(Frame::Map { key, .. }) = b.stack.last_mut() {
                            *key = Some(("<<".into(), true));
                        }
                        continue;
                    }
                } else if let Some(p) = b.child_pointer() {
                    b.lines.insert(p, line);
                }
                let built = Built {
                    value,
                    nodes: 1,
                    bytes,
                    depth: 0,
                };
                if anchor != 0 {
                    b.anchors.insert(anchor, built.clone());
                }
                match b.place(built, line) {
                    Ok(Some(r)) => root = Some((r, line)),
                    Ok(None) => {}
                    Err(e) => return Step::Skip(e),
                }
            }
            Event::SequenceStart(_, anchor, tag) | Event::MappingStart(_, anchor, tag) => {
                if b.expecting_key() {
                    return Step::Skip(err(
                        line,
                        "a mapping key must be a scalar, not a mapping or list",
                    ));
                }
                if let Some(t) = tag.as_deref()
                    && !matches!(core(t), Some("seq" | "map" | "omap"))
                {
                    return Step::Skip(err(line, format!("unsupported tag {}", show_tag(t))));
                }
                if b.stack.len() >= budget.max_depth {
                    return Step::Fatal(limit(line, ErrorKind::TooDeepYaml(budget.max_depth)));
                }
                if let Err(k) = budget.charge(1, NODE_BYTES) {
                    return Step::Fatal(limit(line, k));
                }
                let pointer = b.child_pointer();
                if let Some(p) = &pointer {
                    b.lines.insert(p.clone(), line);
                }
                let pointer = pointer.unwrap_or_default();
                let cost = Built {
                    value: Value::Null,
                    nodes: 1,
                    bytes: NODE_BYTES,
                    depth: 1,
                };
                b.stack.push(if is_seq {
                    Frame::Seq {
                        items: Vec::new(),
                        anchor,
                        cost,
                        pointer,
                    }
                } else {
                    Frame::Map {
                        map: Map::new(),
                        key: None,
                        merged: Vec::new(),
                        anchor,
                        cost,
                        pointer,
                    }
                });
                if root.is_none() && b.stack.len() == 1 {
                    // Remember where the document's content starts.
                    b.lines.insert(String::new(), line);
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = b.stack.pop() else {
                    return Step::Fatal(err(line, "unbalanced collection"));
                };
                let (value, anchor, cost) = match frame {
                    Frame::Seq {
                        items,
                        anchor,
                        cost,
                        ..
                    } => (Value::Array(items), anchor, cost),
                    Frame::Map {
                        mut map,
                        merged,
                        anchor,
                        cost,
                        ..
                    } => {
                        for m in merged {
                            for (k, v) in m {
                                map.entry(k).or_insert(v);
                            }
                        }
                        (Value::Object(map), anchor, cost)
                    }
                };
                let built = Built { value, ..cost };
                if anchor != 0 {
                    b.anchors.insert(anchor, built.clone());
                }
                let start = b.lines.get("").copied().unwrap_or(line);
                match b.place(built, line) {
                    Ok(Some(r)) => root = Some((r, start)),
                    Ok(None) => {}
                    Err(e) => return Step::Skip(e),
                }
            }
            _ => {}
        }
    }
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

/// Depth of a value (a scalar is 0), walked without recursion.
pub fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut todo = vec![(v, 0usize)];
    while let Some((v, d)) = todo.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => todo.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(m) => todo.extend(m.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    max
}

/// Approximate size in bytes (JSON text), walked without recursion.
pub fn size(v: &Value) -> u64 {
    let mut total = 0u64;
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        total += match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 8,
            Value::String(s) => s.len() as u64 + 2,
            Value::Array(a) => {
                todo.extend(a.iter());
                2 + a.len() as u64
            }
            Value::Object(m) => {
                todo.extend(m.values());
                2 + m.keys().map(|k| k.len() as u64 + 4).sum::<u64>()
            }
        };
    }
    total
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
