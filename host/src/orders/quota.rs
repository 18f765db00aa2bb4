//! What one caller may hold at once: live watch streams (SSE and gRPC), or
//! keyed orders being placed. A cap per caller (its token's subject) keeps
//! one caller from taking what others need; a cap in total bounds the
//! process. A place is held by a [`QuotaPermit`] and freed when it drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One kind of thing held, and its caps.
#[derive(Debug)]
pub struct Quota {
    what: &'static str,
    per_subject: usize,
    total: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_subject: HashMap<String, usize>,
}

/// Why a place was refused: `what` is at its cap, per caller or in total.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many {what} at once: at most {limit} {scope}")]
pub struct Exhausted {
    pub what: &'static str,
    pub limit: usize,
    /// `per caller` or `in all`.
    pub scope: &'static str,
}

/// A place held; freed when dropped.
#[derive(Debug)]
pub struct QuotaPermit {
    quota: Arc<Quota>,
    subject: String,
}

impl Quota {
    pub fn new(what: &'static str, per_subject: usize, total: usize) -> Arc<Self> {
        Arc::new(Self { what, per_subject: per_subject.max(1), total: total.max(1), held: Mutex::default() })
    }

    /// A place for `subject`, if both caps allow one.
    pub fn take(self: &Arc<Self>, subject: &str) -> Result<QuotaPermit, Exhausted> {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if held.total >= self.total {
            return Err(Exhausted { what: self.what, limit: self.total, scope: "in all" });
        }
        let mine = held.by_subject.get(subject).copied().unwrap_or(0);
        if mine >= self.per_subject {
            return Err(Exhausted { what: self.what, limit: self.per_subject, scope: "per caller" });
        }
        held.total += 1;
        held.by_subject.insert(subject.to_owned(), mine + 1);
        Ok(QuotaPermit { quota: self.clone(), subject: subject.to_owned() })
    }
}

impl Drop for QuotaPermit {
    fn drop(&mut self) {
        let mut held = self.quota.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.total -= 1;
        // A subject holding nothing is forgotten: the map stays as small as what is held.
        if let Some(count) = held.by_subject.get_mut(&self.subject) {
            *count -= 1;
            if *count == 0 {
                held.by_subject.remove(&self.subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_its_share_and_all_share_the_total() {
        let quota = Quota::new("watches", 2, 3);
        let (a1, _a2) = (quota.take("a").unwrap(), quota.take("a").unwrap());
        assert_eq!(quota.take("a").unwrap_err().scope, "per caller");
        let _b1 = quota.take("b").unwrap();
        assert_eq!(quota.take("c").unwrap_err().scope, "in all", "the total is reached first");
        drop(a1);
        let _c1 = quota.take("c").expect("a place freed");
        assert!(quota.take("a").is_err(), "still full in all");
    }

    #[test]
    fn a_freed_caller_is_forgotten() {
        let quota = Quota::new("keys", 1, 10);
        for round in 0..3 {
            let permit = quota.take("a").unwrap_or_else(|_| panic!("round {round}"));
            drop(permit);
        }
        assert!(quota.held.lock().unwrap().by_subject.is_empty());
        assert_eq!(quota.held.lock().unwrap().total, 0);
    }
}
