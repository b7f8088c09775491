//! [`Shutdown`]: the stop signal shared by one agent's tasks.
//!
//! It owns only the waiting side of a `watch` channel whose sender is held
//! by the agent's handle (or, in the daemon, by the signal handler); it
//! must not decide when to stop.

use tokio::sync::watch;

/// The stop signal shared by one agent's tasks. Fires when the handle asks
/// for shutdown or is dropped.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new(rx: watch::Receiver<bool>) -> Shutdown {
        Shutdown(rx)
    }

    /// Resolves once shutdown is requested. Cancel-safe, for `select!`.
    pub async fn wait(&mut self) {
        // An error means the sender is gone, which also means "stop".
        if self.0.wait_for(|stop| *stop).await.is_err() {
            tracing::trace!("agent handle dropped; stopping");
        }
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}
