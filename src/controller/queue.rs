//! A small delay queue of ConfigRepo names: each name is in it at most once, at its earliest due
//! time.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

#[derive(Default)]
pub struct Queue {
    due: Mutex<HashMap<String, Instant>>,
    notify: Notify,
}

impl Queue {
    /// Schedules `name` after `delay` (keeps an earlier schedule).
    pub fn push(&self, name: &str, delay: Duration) {
        let at = Instant::now() + delay;
        let mut due = self.due.lock().expect("queue lock");
        let slot = due.entry(name.to_owned()).or_insert(at);
        if at < *slot {
            *slot = at;
        }
        drop(due);
        self.notify.notify_one();
    }

    pub fn remove(&self, name: &str) {
        self.due.lock().expect("queue lock").remove(name);
    }

    /// Waits for the next due name.
    pub async fn pop(&self) -> String {
        loop {
            let next = {
                let due = self.due.lock().expect("queue lock");
                due.iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(n, at)| (n.clone(), *at))
            };
            match next {
                Some((name, at)) if at <= Instant::now() => {
                    self.due.lock().expect("queue lock").remove(&name);
                    return name;
                }
                Some((_, at)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.notify.notified() => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }
}
