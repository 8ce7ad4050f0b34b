//! Crash points for crash-safety tests: with `FLEDGE_FAILPOINTS=name[,name…]` in its
//! environment, the agent aborts the process (as `kill -9` would end it) when it reaches one of
//! the named points. Unset (always, in production), a point costs one load of a cached flag.

use std::sync::OnceLock;

fn enabled() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var("FLEDGE_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Aborts the process when the point `name` is enabled.
pub fn hit(name: &str) {
    if enabled().iter().any(|p| p == name) {
        eprintln!("fledge: failpoint {name} reached: aborting");
        std::process::abort();
    }
}
