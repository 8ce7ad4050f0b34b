//! Render errors: each names the file (and line, where the parser knows it) and what is wrong,
//! displayed as `path/to/file.yaml:LINE: message`.

use std::fmt;

/// One problem found while rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    /// Repository path of the file the problem is in (or the bundle that refers to it).
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub kind: ErrorKind,
}

impl RenderError {
    pub fn at(path: impl Into<String>, kind: ErrorKind) -> Self {
        RenderError {
            path: path.into(),
            line: None,
            kind,
        }
    }
    pub fn at_line(path: impl Into<String>, line: Option<usize>, kind: ErrorKind) -> Self {
        RenderError {
            path: path.into(),
            line,
            kind,
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "."
        } else {
            &self.path
        };
        // Names, paths and messages come from the repository: escape control characters so a
        // newline in a name cannot forge another line of output.
        let path = crate::limits::escape_controls(path);
        let message = self.kind.to_string();
        let message = crate::limits::escape_controls(&message);
        match self.line {
            Some(line) => write!(f, "{path}:{line}: {message}"),
            None => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for RenderError {}

/// What went wrong. One variant per failure, so callers (and tests) can match on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("path {path:?} is not allowed: {why}")]
    PathEscape { path: String, why: &'static str },
    #[error("symlink chain is too long or loops")]
    SymlinkLoop,
    #[error("no such file or directory")]
    NotFound,
    #[error("included path {0:?} does not exist")]
    IncludeNotFound(String),
    #[error("read error: {0}")]
    Io(String),
    #[error("file is {size} bytes, over the limit of {limit} bytes")]
    FileTooLarge { size: u64, limit: u64 },
    #[error("file is not valid UTF-8 (byte {0})")]
    NotUtf8(usize),
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("document {doc} is {found}, expected a mapping (a Kubernetes object)")]
    NotAnObject { doc: usize, found: &'static str },
    #[error("document {doc}: {field} is missing or not a string")]
    MissingField { doc: usize, field: &'static str },
    #[error("document {doc}: {message}")]
    InvalidObject { doc: usize, message: String },
    #[error("invalid bundle: {0}")]
    InvalidBundle(String),
    #[error("bundle include cycle: {0}")]
    Cycle(String),
    #[error("bundles nest deeper than {0} levels")]
    TooDeep(usize),
    #[error(
        "{kind} {name}: the scope (namespaced or cluster-wide) of {group_version} {kind} is unknown offline and the object has no metadata.namespace; set metadata.namespace, include the CRD in the render, or render with --discover against a cluster"
    )]
    UnknownScope {
        group_version: String,
        kind: String,
        name: String,
    },
    #[error("cluster-scoped {kind} {name} must not set metadata.namespace ({namespace:?})")]
    NamespaceOnClusterScoped {
        kind: String,
        name: String,
        namespace: String,
    },
    #[error("patch {index}: target {target} matches no object")]
    PatchNoMatch { index: usize, target: String },
    #[error(
        "patch {index}: target {target} matches {count} objects ({examples}); add apiVersion or namespace to the target"
    )]
    PatchAmbiguous {
        index: usize,
        target: String,
        count: usize,
        examples: String,
    },
    #[error("patch {index} on {target}: {message}")]
    PatchFailed {
        index: usize,
        target: String,
        message: String,
    },
    #[error("duplicate object {key}: also defined in {other}")]
    Duplicate { key: String, other: String },
    #[error("render produced {count} objects, over the limit of {limit}")]
    TooManyObjects { count: usize, limit: usize },
    #[error("{what} over the limit of {limit}")]
    Limit { what: &'static str, limit: u64 },
    #[error("YAML nests deeper than {0} levels")]
    TooDeepYaml(usize),
    #[error("{0}")]
    Skipped(String),
    #[error("invalid {field} {value}: {why}")]
    InvalidIdentity {
        field: &'static str,
        value: String,
        why: String,
    },
    #[error("file is included more than once (first from {0})")]
    IncludedTwice(String),
    #[error("render produced no objects")]
    Empty,
}

/// All the errors of one render (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderErrors(pub Vec<RenderError>);

impl fmt::Display for RenderErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RenderErrors {}

impl From<RenderError> for RenderErrors {
    fn from(e: RenderError) -> Self {
        RenderErrors(vec![e])
    }
}
