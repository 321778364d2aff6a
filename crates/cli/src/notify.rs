//! Readiness for a service manager: systemd's `sd_notify` protocol, for `Type=notify` units.
//!
//! A long-running command says `READY=1` once it accepts work, and `STOPPING=1` when a signal
//! starts its shutdown. Every call does nothing unless the service manager set
//! `NOTIFY_SOCKET`; a notification that cannot be sent is logged, never an error, because the
//! service itself is fine. Not a watchdog, and not socket activation.

use sd_notify::NotifyState;

/// Says the service is ready, with a one-line `STATUS=` summary (`systemctl status` shows it).
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Says the service is shutting down, so the manager waits for it instead of restarting it.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
