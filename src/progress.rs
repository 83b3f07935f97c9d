//! Small primitives the workers share with whoever drives them (the CLI or the app): a
//! cancellation token, a wake-up callback, and a one-slot mailbox where the latest value wins.
//! No egui types: the app passes a `Notify` that requests a repaint.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Cancels (or pauses) a job; checked by workers between frames, forwards and steps.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<TokenState>);

#[derive(Debug, Default)]
struct TokenState {
    cancelled: AtomicBool,
    paused: AtomicBool,
}

/// How often a paused worker looks whether it may go on.
const PAUSE_POLL: Duration = Duration::from_millis(50);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Asks the worker to stop at its next checkpoint (a training step) until `resume`.
    pub fn pause(&self) {
        self.0.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.0.paused.store(false, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.0.paused.load(Ordering::SeqCst)
    }

    /// Blocks while paused; returns at once when cancelled (a paused job can be cancelled).
    pub fn wait_while_paused(&self) {
        while self.is_paused() && !self.is_cancelled() {
            std::thread::sleep(PAUSE_POLL);
        }
    }
}

/// Called by a worker after every message it sends (the app requests a repaint).
#[derive(Clone)]
pub struct Notify(Arc<dyn Fn() + Send + Sync>);

impl Notify {
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// A notifier that does nothing (the CLI and tests that poll).
    pub fn none() -> Self {
        Self::new(|| {})
    }

    pub fn notify(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notify")
    }
}

/// A lock that survives a panicking holder: the data behind our mutexes is always left
/// consistent (whole values are swapped in), so poisoning carries no information.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One-slot mailbox: `put` replaces a value nobody took yet (counted as skipped); `take_timeout`
/// waits for a value. Live inference requests use it so a slow model never lags behind.
#[derive(Debug)]
pub struct LatestSlot<T> {
    value: Mutex<Option<T>>,
    ready: Condvar,
    skipped: AtomicU64,
    closed: AtomicBool,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        Self {
            value: Mutex::new(None),
            ready: Condvar::new(),
            skipped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }
}

impl<T> LatestSlot<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value`, replacing (and counting) one that was not taken.
    pub fn put(&self, value: T) {
        if lock(&self.value).replace(value).is_some() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_all();
    }

    /// Takes the value if there is one.
    pub fn try_take(&self) -> Option<T> {
        lock(&self.value).take()
    }

    /// Waits up to `timeout` for a value. `None` on timeout or once closed.
    pub fn take_timeout(&self, timeout: Duration) -> Option<T> {
        let guard = lock(&self.value);
        let (mut guard, _) = self
            .ready
            .wait_timeout_while(guard, timeout, |v| {
                v.is_none() && !self.closed.load(Ordering::SeqCst)
            })
            .unwrap_or_else(PoisonError::into_inner);
        guard.take()
    }

    /// Wakes every waiter for good (the owner is shutting down).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// How many values were replaced before anyone took them.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named test thread (`std::thread::spawn` is disallowed: clippy.toml).
    fn spawn<T: Send + 'static>(
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .expect("spawn a test thread")
    }

    #[test]
    fn a_paused_worker_waits_until_resumed_or_cancelled() {
        let token = CancelToken::new();
        token.pause();
        let worker = {
            let token = token.clone();
            spawn("paused-worker", move || {
                token.wait_while_paused();
                token.is_cancelled()
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        assert!(!worker.is_finished(), "still waiting while paused");
        token.resume();
        assert!(!worker.join().unwrap_or(true), "resumed, not cancelled");

        token.pause();
        let worker = {
            let token = token.clone();
            spawn("paused-worker", move || {
                token.wait_while_paused();
                token.is_cancelled()
            })
        };
        token.cancel();
        assert!(worker.join().unwrap_or(false), "cancel ends the wait");
    }

    #[test]
    fn latest_value_wins_and_replacements_are_counted() {
        let slot = LatestSlot::new();
        slot.put(1);
        slot.put(2);
        slot.put(3);
        assert_eq!(slot.skipped(), 2);
        assert_eq!(slot.try_take(), Some(3));
        assert_eq!(slot.try_take(), None);
    }

    #[test]
    fn take_waits_for_a_value_from_another_thread() {
        let slot = Arc::new(LatestSlot::new());
        let writer = Arc::clone(&slot);
        let handle = spawn("writer", move || writer.put("frame"));
        assert_eq!(slot.take_timeout(Duration::from_secs(5)), Some("frame"));
        handle.join().expect("writer thread");
    }

    #[test]
    fn closing_wakes_a_waiter_with_nothing() {
        let slot: Arc<LatestSlot<u8>> = Arc::new(LatestSlot::new());
        let closer = Arc::clone(&slot);
        let handle = spawn("closer", move || closer.close());
        assert_eq!(slot.take_timeout(Duration::from_secs(5)), None);
        handle.join().expect("closer thread");
    }

    #[test]
    fn cancel_token_is_shared_by_clones() {
        let token = CancelToken::new();
        let seen = token.clone();
        token.cancel();
        assert!(seen.is_cancelled());
    }
}
