//! Talking to systemd: readiness, status lines and the watchdog.
//!
//! Policy: READY=1 is sent once the agent has reconciled from its ledger
//! (or found it empty), not when the first session opens. The node's job
//! is to keep running what it was last told; a controller that is down at
//! boot must not hold the unit in "activating" (nor make systemd kill it
//! after `TimeoutStartSec`). Whether the controller is reachable is told
//! through STATUS= lines, which `systemctl status coloc-agent` shows.
//! WATCHDOG=1 is sent at half the interval systemd asks for, from a tokio
//! task, so a wedged runtime stops the pings and systemd restarts the
//! agent. Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.
//! Only the daemon uses this module: simulated agents never notify.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::shutdown::Shutdown;
use crate::status::{AgentStatus, Outcome};

/// Sends `states`; failures are logged, never fatal (systemd may be
/// restarting, and the agent's work does not depend on it).
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The watchdog ping period: half of `WATCHDOG_USEC`, if set for us.
pub fn watchdog_period() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// The STATUS= line for a status snapshot.
pub fn status_line(status: &AgentStatus) -> String {
    if !status.ready {
        return "starting: reconciling from the ledger".to_owned();
    }
    if !status.enrolled {
        return match &status.last_error {
            Some(e) => format!("not enrolled: {e}"),
            None => "enrolling".to_owned(),
        };
    }
    let applied = match status.last_outcome {
        None if status.ledger_generation == 0 => "no configuration yet".to_owned(),
        None => format!("ledger generation {}", status.ledger_generation),
        Some(Outcome::Applied) | Some(Outcome::StaleRejected) => {
            format!("generation {} applied", status.applied_generation)
        }
        Some(Outcome::Failed) => format!(
            "generation {} failed: {}",
            status.ledger_generation, status.last_message
        ),
    };
    let draining = if status.draining { ", draining" } else { "" };
    if status.connected {
        format!("connected; {applied}{draining}")
    } else {
        format!("controller unreachable, working from the ledger; {applied}{draining}")
    }
}

/// Follows the agent's status for systemd until `stop` fires: READY once,
/// STATUS on every change of the line, WATCHDOG at half its interval.
pub async fn follow(mut status: watch::Receiver<AgentStatus>, mut stop: Shutdown) {
    let mut ready_sent = false;
    let mut last_line = String::new();
    let mut watchdog = watchdog_period().map(|period| {
        let mut timer = tokio::time::interval(period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    loop {
        let (ready, line) = {
            let s = status.borrow_and_update();
            (s.ready, status_line(&s))
        };
        if line != last_line {
            send(&[NotifyState::Status(&line)]);
            last_line = line;
        }
        if ready && !ready_sent {
            send(&[NotifyState::Ready]);
            ready_sent = true;
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { break },
            _ = async {
                match watchdog.as_mut() {
                    Some(timer) => { timer.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => send(&[NotifyState::Watchdog]),
            _ = stop.wait() => break,
        }
    }
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_say_where_the_node_stands() {
        let mut s = AgentStatus::default();
        assert!(status_line(&s).starts_with("starting"));
        s.ready = true;
        assert_eq!(status_line(&s), "enrolling");
        s.enrolled = true;
        s.ledger_generation = 7;
        s.applied_generation = 7;
        s.last_outcome = Some(Outcome::Applied);
        assert_eq!(
            status_line(&s),
            "controller unreachable, working from the ledger; generation 7 applied"
        );
        s.connected = true;
        s.draining = true;
        assert_eq!(status_line(&s), "connected; generation 7 applied, draining");
    }
}
