//! Small primitives the workers share with whoever drives them (the CLI or the app): a
//! cancellation token, a wake-up callback, a one-slot mailbox where the latest value wins, and
//! [`Task`], background work on a named thread whose outcome (or panic) comes back by channel.
//! No egui types: the app passes a `Notify` that requests a repaint.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

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

/// A message from a [`Task`]'s thread: progress `M` while it works, then its outcome once
/// (`Err`: the work panicked, with the panic's message).
#[derive(Debug)]
pub enum TaskMsg<T, M> {
    Progress(M),
    Done(Result<T, String>),
}

/// What a [`Task`]'s work gets: the cancel token and a way to report progress (each message
/// wakes whoever drives the task).
pub struct TaskContext<T, M> {
    tx: Sender<TaskMsg<T, M>>,
    notify: Notify,
    cancel: CancelToken,
}

impl<T, M> TaskContext<T, M> {
    pub fn send(&self, message: M) {
        // A driver that stopped listening has dropped the task: nothing to tell.
        let _ = self.tx.send(TaskMsg::Progress(message));
        self.notify.notify();
    }

    pub fn cancel(&self) -> &CancelToken {
        &self.cancel
    }
}

/// Background work on a named thread (the one way the app and the services start one-off
/// work: the file dialog, the data check, exports, training, the demo set). Messages and the
/// outcome come back over a channel, `notify` after each; a panic in the work becomes an
/// `Err` outcome instead of a silent death. Dropping the task cancels it and waits up to its
/// grace period for the thread, then lets it finish on its own.
pub struct Task<T, M = ()> {
    rx: Receiver<TaskMsg<T, M>>,
    cancel: CancelToken,
    thread: Option<JoinHandle<()>>,
    grace: Duration,
}

impl<T: Send + 'static, M: Send + 'static> Task<T, M> {
    /// Starts `work` on a thread called `name` with a fresh cancel token.
    pub fn spawn(
        name: &str,
        notify: Notify,
        work: impl FnOnce(&TaskContext<T, M>) -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        Self::spawn_with(name, CancelToken::new(), notify, work)
    }

    /// Starts `work` with the caller's cancel token (a CLI's Ctrl-C token, say).
    pub fn spawn_with(
        name: &str,
        cancel: CancelToken,
        notify: Notify,
        work: impl FnOnce(&TaskContext<T, M>) -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = unbounded();
        let context = TaskContext {
            tx,
            notify,
            cancel: cancel.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| work(&context)))
                    .map_err(|panic| panic_text(panic.as_ref()));
                let _ = context.tx.send(TaskMsg::Done(outcome));
                context.notify.notify();
            })?;
        Ok(Self {
            rx,
            cancel,
            thread: Some(thread),
            grace: Duration::ZERO,
        })
    }
}

impl<T, M> Task<T, M> {
    /// How long dropping the task waits for its thread after cancelling it.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// Up to `max` messages that arrived (the outcome last), without waiting.
    pub fn drain(&self, max: usize) -> Vec<TaskMsg<T, M>> {
        self.rx.try_iter().take(max).collect()
    }

    /// The next message, waiting for it; `None` once the thread is gone.
    pub fn recv(&self) -> Option<TaskMsg<T, M>> {
        self.rx.recv().ok()
    }

    /// The outcome if it arrived (progress messages are skipped), without waiting.
    pub fn try_outcome(&self) -> Option<Result<T, String>> {
        self.rx.try_iter().find_map(|msg| match msg {
            TaskMsg::Done(outcome) => Some(outcome),
            TaskMsg::Progress(_) => None,
        })
    }
}

impl<T, M> Drop for Task<T, M> {
    fn drop(&mut self) {
        self.cancel.cancel();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + self.grace;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// The text of a panic payload (`panic!` with a string literal or a formatted message).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
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

    #[test]
    fn a_task_reports_progress_then_its_outcome_or_its_panic() {
        let task = Task::spawn("kineto-test-task", Notify::none(), |ctx| {
            ctx.send(1u8);
            ctx.send(2u8);
            7u32
        })
        .expect("spawn");
        let mut seen = Vec::new();
        let outcome = loop {
            match task.recv().expect("message") {
                TaskMsg::Progress(m) => seen.push(m),
                TaskMsg::Done(outcome) => break outcome,
            }
        };
        assert_eq!(seen, vec![1, 2]);
        assert_eq!(outcome, Ok(7));

        let task: Task<u32> = Task::spawn("kineto-test-panic", Notify::none(), |_| {
            panic!("boom {}", 3)
        })
        .expect("spawn");
        let outcome = loop {
            if let TaskMsg::Done(outcome) = task.recv().expect("message") {
                break outcome;
            }
        };
        assert_eq!(outcome, Err("boom 3".to_string()));
    }
}
