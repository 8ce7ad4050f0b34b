//! Budgets: every input fledge reads from outside (config repositories, metric backends) has a
//! limit here, with its default, so a hostile commit or backend costs bounded time and memory.
//! Breaking one is an error naming the file (and line) or the backend, never a crash, hang or
//! OOM. `docs/limits.md` lists the same budgets for users; a test keeps the two in step.

use std::time::Duration;

/// Budgets of one render (a bundle and everything it includes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderLimits {
    /// Largest file (bundle, manifest, symlink blob) read, in bytes. Checked from the size in
    /// the directory entry or the git object header, before the content is read.
    pub max_file_bytes: u64,
    /// Total bytes of YAML read in one render.
    pub max_total_input_bytes: u64,
    /// Deepest nesting of a YAML value or an object after patches (mappings and lists).
    pub max_depth: usize,
    /// YAML nodes built in one render, aliases expanded (scalars, mappings and lists): the
    /// budget against alias bombs, counted over all documents of all files together.
    pub max_nodes: usize,
    /// Size of the rendered objects (canonical JSON bytes), summed over the render, after
    /// aliases and patches.
    pub max_output_bytes: u64,
    /// Size of one object after each patch operation (canonical JSON bytes).
    pub max_object_bytes: u64,
    /// YAML documents in one render.
    pub max_documents: usize,
    /// Objects in one render.
    pub max_objects: usize,
    /// Bundle files loaded in one render (each bundle is loaded at most once).
    pub max_bundles: usize,
    /// Bundles nested inside each other.
    pub max_bundle_depth: usize,
    /// Patch operations in one render, over all bundles.
    pub max_patch_ops: usize,
    /// Directory entries visited while walking included directories.
    pub max_dir_entries: usize,
    /// Symlinks followed while resolving one path.
    pub max_symlink_hops: usize,
}

impl Default for RenderLimits {
    fn default() -> Self {
        RenderLimits {
            max_file_bytes: 4 << 20,
            max_total_input_bytes: 64 << 20,
            max_depth: 64,
            max_nodes: 1_000_000,
            max_output_bytes: 128 << 20,
            max_object_bytes: 4 << 20,
            max_documents: 20_000,
            max_objects: 50_000,
            max_bundles: 1_000,
            max_bundle_depth: 32,
            max_patch_ops: 50_000,
            max_dir_entries: 100_000,
            max_symlink_hops: 40,
        }
    }
}

/// Budgets of one analysis (a template judged over a window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisLimits {
    /// Largest Prometheus response body read, in bytes; a longer (or endless) body is an error.
    pub max_response_bytes: usize,
    /// Time allowed for one Prometheus request, headers and body together.
    pub request_timeout: Duration,
    /// Samples kept per series and track; more is an error, not a silent truncation.
    pub max_samples: usize,
    /// Retries of one query (the template's `onError.retries` is capped to this).
    pub max_retries: u32,
    /// Smallest wait between retries (a template's shorter backoff is raised to this).
    pub min_backoff: Duration,
    /// Longest wait between two retries (exponential backoff stops growing here).
    pub max_backoff: Duration,
    /// Total time spent retrying one query.
    pub max_retry_time: Duration,
    /// Length of a template query after variables are substituted.
    pub max_query_bytes: usize,
}

impl Default for AnalysisLimits {
    fn default() -> Self {
        AnalysisLimits {
            max_response_bytes: 16 << 20,
            request_timeout: Duration::from_secs(30),
            max_samples: 100_000,
            max_retries: 10,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(60),
            max_retry_time: Duration::from_secs(300),
            max_query_bytes: 16 << 10,
        }
    }
}

/// Escapes control characters so a name, file name or remote error text cannot forge a line of
/// output: a newline prints as `\n`, not as a line break.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain-name"), "plain-name");
        assert_eq!(escape_controls("a\nerror: b"), "a\\nerror: b");
        assert_eq!(escape_controls("x\u{0}\u{1b}[31m"), "x\\u{0}\\u{1b}[31m");
        assert_eq!(escape_controls("back\\slash"), "back\\slash");
    }

    #[test]
    fn docs_list_every_budget_with_its_default() {
        let docs = include_str!("../docs/limits.md");
        let r = RenderLimits::default();
        let a = AnalysisLimits::default();
        for (name, value) in [
            ("max_file_bytes", r.max_file_bytes.to_string()),
            ("max_total_input_bytes", r.max_total_input_bytes.to_string()),
            ("max_depth", r.max_depth.to_string()),
            ("max_nodes", r.max_nodes.to_string()),
            ("max_output_bytes", r.max_output_bytes.to_string()),
            ("max_object_bytes", r.max_object_bytes.to_string()),
            ("max_documents", r.max_documents.to_string()),
            ("max_objects", r.max_objects.to_string()),
            ("max_bundles", r.max_bundles.to_string()),
            ("max_bundle_depth", r.max_bundle_depth.to_string()),
            ("max_patch_ops", r.max_patch_ops.to_string()),
            ("max_dir_entries", r.max_dir_entries.to_string()),
            ("max_symlink_hops", r.max_symlink_hops.to_string()),
            ("max_response_bytes", a.max_response_bytes.to_string()),
            (
                "request_timeout",
                format!("{}s", a.request_timeout.as_secs()),
            ),
            ("max_samples", a.max_samples.to_string()),
            ("max_retries", a.max_retries.to_string()),
            ("min_backoff", format!("{}ms", a.min_backoff.as_millis())),
            ("max_backoff", format!("{}s", a.max_backoff.as_secs())),
            ("max_retry_time", format!("{}s", a.max_retry_time.as_secs())),
            ("max_query_bytes", a.max_query_bytes.to_string()),
        ] {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}`")))
                .unwrap_or_else(|| panic!("docs/limits.md has no row for {name}"));
            assert!(
                row.contains(&format!("`{value}`")),
                "docs/limits.md row for {name} should give the default `{value}`: {row}"
            );
        }
    }
}
