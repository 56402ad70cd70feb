//! Run-time flow control (P6.4, A-ZT4, the "lethal trifecta"): what a session (or, for stateless
//! 2026-07-28 traffic, a principal within a window) has touched, for policies to read.
//!
//! A forwarded `tools/call` is **recorded** against its flow key: a tool labelled
//! [`UNTRUSTED_INPUT`] or [`PRIVATE_DATA`] taints the flow with its name (the result may reach the
//! client even if it ends in an error, so the call taints, not the result), and every call is
//! counted per tool and per label in a bounded history. The [`FlowView`] of a key is what the
//! policy context shows (`context.flow`, `context.calls`, see [`crate::context`]).
//!
//! The book is bounded: at most [`FlowBook::new`]'s `max_keys` flows (a new key past it is
//! refused — dropping a tainted flow would be a bypass), at most [`MAX_TAINTERS`] tool names per
//! taint, at most [`MAX_STAMPS`] timestamps per tool or label (counts saturate there), none
//! older than a day. Recording is one short critical section, so two concurrent calls cannot
//! lose each other's taint.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Returns content an outsider can write (web pages, issues, mail).
pub const UNTRUSTED_INPUT: &str = "untrusted_input";
/// Returns the user's private data.
pub const PRIVATE_DATA: &str = "private_data";
/// Can send data out.
pub const EGRESS: &str = "egress";
/// Changes or deletes things.
pub const DESTRUCTIVE: &str = "destructive";
/// The labels every policy context knows.
pub const WELL_KNOWN: [&str; 4] = [UNTRUSTED_INPUT, PRIVATE_DATA, EGRESS, DESTRUCTIVE];

/// Tool names kept per taint.
pub const MAX_TAINTERS: usize = 32;
/// Timestamps kept per tool or label.
pub const MAX_STAMPS: usize = 1024;
/// The windows counts are given for, in seconds: a minute, an hour, a day.
pub const WINDOWS: [u64; 3] = [60, 3600, 86_400];

/// Counts within [`WINDOWS`].
pub type Counts = [u32; 3];

#[derive(Default)]
struct FlowState {
    untrusted_by: Vec<Arc<str>>,
    private_by: Vec<Arc<str>>,
    stamps: HashMap<Arc<str>, VecDeque<u64>>,
    last: u64,
    /// Forgotten this many seconds after its last call (stateless flows); `None`: when the
    /// session ends.
    ttl: Option<u64>,
}

/// What a flow has touched, as of now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowView {
    /// Tools whose results brought in untrusted input.
    pub untrusted_by: Vec<Arc<str>>,
    /// Tools whose results brought in private data.
    pub private_by: Vec<Arc<str>>,
    /// Calls of the target tool in each window.
    pub tool: Counts,
    /// Calls per label (every label of [`FlowBook::labels`]) in each window.
    pub labels: Vec<(Arc<str>, Counts)>,
}

impl FlowView {
    /// Every tool that tainted the flow (untrusted first), without repeats.
    pub fn tainted_by(&self) -> Vec<Arc<str>> {
        let mut v = self.untrusted_by.clone();
        for t in &self.private_by {
            if !v.contains(t) {
                v.push(t.clone());
            }
        }
        v
    }
}

/// A key the book cannot take: it is full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flow state is full ({0} flows)")]
pub struct Full(pub usize);

/// The flows of this process.
pub struct FlowBook {
    map: Mutex<HashMap<Arc<str>, FlowState>>,
    max_keys: usize,
    labels: Vec<Arc<str>>,
}

fn count(q: &VecDeque<u64>, now: u64) -> Counts {
    let mut c = [0u32; 3];
    for (i, w) in WINDOWS.iter().enumerate() {
        // Within the window: later than `now - w`.
        let first = q.partition_point(|t| t.saturating_add(*w) <= now);
        c[i] = (q.len() - first) as u32;
    }
    c
}

fn label_key(l: &str) -> String {
    format!("label:{l}")
}

impl FlowBook {
    /// A book of at most `max_keys` flows that counts the well-known labels and `extra`.
    pub fn new(max_keys: usize, extra: &[String]) -> Self {
        let mut labels: Vec<Arc<str>> = WELL_KNOWN.iter().map(|l| Arc::from(*l)).collect();
        for l in extra {
            if !labels.iter().any(|x| &**x == l) {
                labels.push(l.as_str().into());
            }
        }
        Self {
            map: Mutex::new(HashMap::new()),
            max_keys,
            labels,
        }
    }

    /// The labels counted (and shown in every context).
    pub fn labels(&self) -> &[Arc<str>] {
        &self.labels
    }

    /// The view of `key` at `now` (unix seconds) for a call of `tool`.
    pub fn view(&self, key: &str, now: u64, tool: &str) -> FlowView {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let expired = map
            .get(key)
            .is_some_and(|s| s.ttl.is_some_and(|t| now > s.last.saturating_add(t)));
        if expired {
            map.remove(key);
        }
        let Some(s) = map.get(key) else {
            return FlowView {
                labels: self.labels.iter().map(|l| (l.clone(), [0; 3])).collect(),
                ..FlowView::default()
            };
        };
        let stamps = |k: &str| s.stamps.get(k).map_or([0; 3], |q| count(q, now));
        FlowView {
            untrusted_by: s.untrusted_by.clone(),
            private_by: s.private_by.clone(),
            tool: stamps(&format!("tool:{tool}")),
            labels: self
                .labels
                .iter()
                .map(|l| (l.clone(), stamps(&label_key(l))))
                .collect(),
        }
    }

    /// Record a forwarded call of `tool` with `labels` at `now`. `ttl`: forget the flow this
    /// long after its last call (stateless flows); `None` for a session's flow.
    pub fn record(
        &self,
        key: &str,
        now: u64,
        tool: &Arc<str>,
        labels: &[String],
        ttl: Option<u64>,
    ) -> Result<(), Full> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(key) && map.len() >= self.max_keys {
            map.retain(|_, s| s.ttl.is_none_or(|t| now <= s.last.saturating_add(t)));
            if map.len() >= self.max_keys {
                return Err(Full(self.max_keys));
            }
        }
        let s = map.entry(key.into()).or_insert_with(|| FlowState {
            ttl,
            ..FlowState::default()
        });
        s.last = now;
        let taint = |v: &mut Vec<Arc<str>>| {
            if !v.contains(tool) && v.len() < MAX_TAINTERS {
                v.push(tool.clone());
            }
        };
        if labels.iter().any(|l| l == UNTRUSTED_INPUT) {
            taint(&mut s.untrusted_by);
        }
        if labels.iter().any(|l| l == PRIVATE_DATA) {
            taint(&mut s.private_by);
        }
        let mut push = |k: String| {
            let q = s.stamps.entry(k.into()).or_default();
            while q.front().is_some_and(|t| *t + WINDOWS[2] < now) || q.len() >= MAX_STAMPS {
                q.pop_front();
            }
            q.push_back(now);
        };
        push(format!("tool:{tool}"));
        for l in labels {
            if self.labels.iter().any(|x| &**x == l) {
                push(label_key(l));
            }
        }
        Ok(())
    }

    /// Forget `key` (its session ended).
    pub fn end(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// No flows held?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn taints_counts_windows_and_bounds() {
        let b = FlowBook::new(2, &["send".into()]);
        let fetch: Arc<str> = "fetch_page".into();
        let send: Arc<str> = "send_message".into();
        assert_eq!(b.view("s", 100, "x").untrusted_by.len(), 0);
        b.record("s", 100, &fetch, &[UNTRUSTED_INPUT.into()], None)
            .unwrap();
        for t in 0..3 {
            b.record("s", 1000 + t, &send, &[EGRESS.into(), "send".into()], None)
                .unwrap();
        }
        let v = b.view("s", 1030, "send_message");
        assert_eq!(v.untrusted_by, std::slice::from_ref(&fetch));
        assert!(v.private_by.is_empty());
        assert_eq!(v.tool, [3, 3, 3]);
        let egress = v.labels.iter().find(|(l, _)| &**l == EGRESS).unwrap().1;
        assert_eq!(egress, [3, 3, 3]);
        assert_eq!(
            b.view("s", 1000 + 3600, "send_message").tool,
            [0, 2, 3],
            "the hour moved on"
        );
        // Stateless flows expire; sessions do not.
        b.record("p", 10, &fetch, &[PRIVATE_DATA.into()], Some(60))
            .unwrap();
        assert_eq!(
            b.view("p", 70, "x").private_by,
            std::slice::from_ref(&fetch)
        );
        assert!(b.view("p", 71, "x").private_by.is_empty());
        // Full: a third key is refused, never a tainted one forgotten.
        b.record("p", 100, &fetch, &[], Some(60)).unwrap();
        assert_eq!(b.record("q", 100, &fetch, &[], None), Err(Full(2)));
        assert_eq!(
            b.view("s", 5000, "x").untrusted_by,
            std::slice::from_ref(&fetch)
        );
        // An expired stateless flow makes room.
        b.record("q", 1000, &fetch, &[], None).unwrap();
        b.end("s");
        assert!(b.view("s", 5000, "x").untrusted_by.is_empty());
    }
}
