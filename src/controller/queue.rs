//! A keyed work queue for reconcile workers: each key is in it at most once, at its earliest
//! due time, and is handed to at most one worker at a time (a key pushed while a worker has it
//! waits until that worker is done). Several workers share one queue, so one slow key (a hung
//! remote, a long analysis) never stalls the others. The ConfigRepo and Rollout controllers
//! both run on it.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

pub struct Queue<K> {
    state: Mutex<State<K>>,
    notify: Notify,
}

struct State<K> {
    due: HashMap<K, Instant>,
    active: HashSet<K>,
}

impl<K> Default for Queue<K> {
    fn default() -> Self {
        Queue {
            state: Mutex::new(State {
                due: HashMap::new(),
                active: HashSet::new(),
            }),
            notify: Notify::new(),
        }
    }
}

impl<K: Clone + Eq + Hash> Queue<K> {
    /// Schedules `key` after `delay` (keeps an earlier schedule).
    pub fn push(&self, key: &K, delay: Duration) {
        let at = Instant::now() + delay;
        let mut s = self.state.lock().expect("queue lock");
        let slot = s.due.entry(key.clone()).or_insert(at);
        if at < *slot {
            *slot = at;
        }
        drop(s);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    pub fn remove(&self, key: &K) {
        self.state.lock().expect("queue lock").due.remove(key);
    }

    /// Number of keys waiting (due or not).
    pub fn len(&self) -> usize {
        self.state.lock().expect("queue lock").due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the next due key no other worker holds, and holds it until [`Queue::done`].
    pub async fn pop(&self) -> K {
        loop {
            let notified = self.notify.notified();
            let next = {
                let mut s = self.state.lock().expect("queue lock");
                let next = s
                    .due
                    .iter()
                    .filter(|(k, _)| !s.active.contains(*k))
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, at)| (k.clone(), *at));
                if let Some((k, at)) = &next
                    && *at <= Instant::now()
                {
                    s.due.remove(k);
                    s.active.insert(k.clone());
                    return k.clone();
                }
                next.map(|(_, at)| at)
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The worker holding `key` is done with it.
    pub fn done(&self, key: &K) {
        self.state.lock().expect("queue lock").active.remove(key);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_slow_key_does_not_stall_the_others() {
        let q: Arc<Queue<&'static str>> = Arc::default();
        q.push(&"slow", Duration::ZERO);
        q.push(&"fast", Duration::from_millis(1));
        let first = q.pop().await;
        assert_eq!(first, "slow");
        // The first worker still holds "slow"; a second worker gets "fast".
        let second = tokio::time::timeout(Duration::from_secs(1), q.pop())
            .await
            .expect("a second worker is not stalled");
        assert_eq!(second, "fast");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_held_by_one_worker_at_a_time() {
        let q: Arc<Queue<&'static str>> = Arc::default();
        q.push(&"a", Duration::ZERO);
        assert_eq!(q.pop().await, "a");
        q.push(&"a", Duration::ZERO); // pushed again while a worker has it
        let blocked = tokio::time::timeout(Duration::from_secs(5), q.pop()).await;
        assert!(blocked.is_err(), "handed out twice at once");
        q.done(&"a");
        let again = tokio::time::timeout(Duration::from_secs(1), q.pop()).await;
        assert_eq!(again.ok(), Some("a"), "handed out after done");
    }
}
