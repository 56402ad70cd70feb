//! Stopping Warden (#13 item 9, P5.1: no event missing). Once the front end has stopped taking
//! work and its grace period is over (the connection workers' runtimes still live), then
//! [`Gateway::stop`]: every stdio child still running — a session's or a shared one — gets an
//! `upstream.stopped` event, is stopped, and is waited for (bounded) so its `upstream.exit`
//! event is written before the audit log closes; every session ends as on DELETE (the guards'
//! `session_end` runs); every call still open gets one `mcp.interrupted` event (reason
//! `shutdown`), from its relay or from here.
//!
//! It decides nothing: the order of the steps is all it owns.

use std::sync::Arc;
use std::time::Duration;

use warden_audit::{AuditEvent, Decision};

use crate::gateway::{Gateway, Link, Transport};
use crate::upstream::stdio::StdioUpstream;

impl Gateway {
    /// Mark the start of shutdown: calls cut from now on are audited with reason `shutdown`.
    pub fn stopping(&self) {
        self.in_flight.stop();
    }

    /// Wait at most `within` for the calls still open to end by themselves (their relays audit
    /// them), as after a server exited: they end as that exit decides, not as a shutdown.
    pub async fn settle(&self, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        while !self.in_flight.is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Audit what is still open, end every session and stop every stdio child, waiting at most
    /// `within` for the children to exit.
    pub async fn stop(&self, within: Duration) {
        self.in_flight.stop();
        let mut children: Vec<Arc<StdioUpstream>> = Vec::new();
        let sessions = self.sessions.take_all();
        self.metrics.sessions_open.set(0);
        for s in &sessions {
            for link in &s.links {
                if let Link::Stdio(c) = link {
                    children.push(c.clone());
                }
            }
        }
        for u in &self.upstreams {
            if let Transport::Stdio { shared } = &u.transport {
                children.push(shared.clone());
            }
        }
        let mut waits = tokio::task::JoinSet::new();
        for c in children {
            let audit = self.audit.clone();
            waits.spawn(async move {
                if c.is_running().await {
                    let mut ev = AuditEvent::new("upstream.stopped", Decision::Info);
                    ev.upstream = Some(c.name().into());
                    ev.reason = Some("shutdown".into());
                    ev.control = Some("P5.1");
                    ev.hint = Some("Warden is stopping: the stdio server is stopped".into());
                    audit.emit(ev);
                    c.stop_and_wait(within).await;
                }
            });
        }
        while waits.join_next().await.is_some() {}
        for s in &sessions {
            self.close_session(s).await;
        }
        // The relays of calls on stopped children audit their interruption themselves; give
        // them a moment, then audit whatever is still open.
        self.settle(Duration::from_millis(500)).await;
        for ctx in self.in_flight.drain() {
            self.audit_interrupted(&ctx, "shutdown");
        }
    }
}
