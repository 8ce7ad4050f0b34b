//! User requests carried by the `fledge.dev/request` annotation: `<verb>@<nonce>`.

use std::fmt;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Finish the current step (a pause, a marginal or inconclusive analysis) and go on.
    Promote,
    /// Skip all remaining steps and promote.
    PromoteFull,
    /// Abort: traffic to stable, canary and baseline removed, `RolledBack`, git rollback.
    Abort,
    /// Run again: the analysis step after `Inconclusive`/`Marginal`, or the whole rollout of a
    /// template that failed.
    Retry,
    /// Hold where the rollout is (weights and workloads stay).
    Pause,
    /// Undo `pause`; also ends an indefinite `pause` step.
    Resume,
}

impl Verb {
    /// The word used in the annotation and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Promote => "promote",
            Verb::PromoteFull => "promote-full",
            Verb::Abort => "abort",
            Verb::Retry => "retry",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
        }
    }

    fn parse(word: &str) -> Option<Verb> {
        Some(match word {
            "promote" => Verb::Promote,
            "promote-full" => Verb::PromoteFull,
            "abort" => Verb::Abort,
            "retry" => Verb::Retry,
            "pause" => Verb::Pause,
            "resume" => Verb::Resume,
            _ => return None,
        })
    }
}

/// A parsed request annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub verb: Verb,
    /// Any fresh token; makes two successive identical verbs two requests.
    pub nonce: String,
}

/// Why an annotation value is not a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("expected <verb>@<nonce>, e.g. promote@1764500000")]
    Shape,
    #[error("unknown verb {0:?} (promote, promote-full, abort, retry, pause, resume)")]
    Verb(String),
    #[error("nonce must be 1-63 characters of [A-Za-z0-9._-]")]
    Nonce,
}

impl Request {
    /// Parses `<verb>@<nonce>`.
    pub fn parse(value: &str) -> Result<Request, RequestError> {
        let (verb, nonce) = value.split_once('@').ok_or(RequestError::Shape)?;
        let verb =
            Verb::parse(verb).ok_or_else(|| RequestError::Verb(verb.escape_debug().to_string()))?;
        let nonce_ok = !nonce.is_empty()
            && nonce.len() <= 63
            && nonce
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !nonce_ok {
            return Err(RequestError::Nonce);
        }
        Ok(Request {
            verb,
            nonce: nonce.to_owned(),
        })
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.verb.as_str(), self.nonce)
    }
}
