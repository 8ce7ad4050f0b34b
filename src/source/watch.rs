//! Watches a local work tree and signals when files change, so `fledge render --watch` (and the
//! agent with a local directory source) re-render at once.

use notify::{RecursiveMode, Watcher};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Starts watching `dir` recursively. Each burst of changes (debounced by `debounce`) sends one
/// `()` on the returned channel. Keep the watcher alive as long as you read the channel.
pub fn watch(
    dir: &Path,
    debounce: Duration,
) -> notify::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    let (raw_tx, raw_rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !ev.kind.is_access()
            && !ev
                .paths
                .iter()
                .all(|p| p.components().any(|c| c.as_os_str() == ".git"))
        {
            let _ = raw_tx.send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while raw_rx.recv().is_ok() {
            // Swallow the rest of the burst.
            while raw_rx.recv_timeout(debounce).is_ok() {}
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    Ok((watcher, rx))
}
