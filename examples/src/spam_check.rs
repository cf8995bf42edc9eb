//! The demo's spam checker: a small scoring handler for the `SpamCheck` Thrift service, reusable
//! from the Thrift example and from pipeline bolts.
//!
//! ```
//! use tdist_examples::spam_check::{score, SpamChecker};
//! use tdist_examples::thrift_gen::comments::{Comment, SpamCheckSyncHandler, Verdict};
//!
//! let c = Comment::new("c1".to_owned(), "ann".to_owned(), "BUY CHEAP PILLS NOW http://x".to_owned(), None);
//! let s = SpamChecker::default().handle_check(c).unwrap();
//! assert_eq!(s.verdict, Some(Verdict::SPAM));
//! assert!(score("thanks, this helped me fix my build") < 0.3);
//! ```

use crate::thrift_gen::comments::{
    Comment, InvalidComment, SpamCheckSyncHandler, SpamScore, Verdict,
};
use std::sync::atomic::{AtomicU64, Ordering};
use thrift::OrderedFloat;

const SPAM_WORDS: &[&str] = &[
    "buy", "cheap", "pills", "free", "winner", "casino", "crypto", "click", "offer", "viagra",
];

/// A spam probability in [0, 1] from simple text features: spam words, links, shouting,
/// repeated punctuation.
pub fn score(text: &str) -> f64 {
    let lower = text.to_lowercase();
    let words = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    let spam_words = words.filter(|w| SPAM_WORDS.contains(w)).count() as f64;
    let links = lower.matches("http://").count() + lower.matches("https://").count();
    let letters = text.chars().filter(|c| c.is_alphabetic()).count().max(1) as f64;
    let upper = text.chars().filter(|c| c.is_uppercase()).count() as f64 / letters;
    let bangs = text.matches("!!").count() as f64;
    let raw = 0.25 * spam_words + 0.3 * links as f64 + 0.6 * upper + 0.1 * bangs;
    raw.clamp(0.0, 1.0)
}

/// The verdict for a score: SPAM from 0.7, HAM below 0.3, UNSURE between.
pub fn verdict(score: f64) -> Verdict {
    if score >= 0.7 {
        Verdict::SPAM
    } else if score < 0.3 {
        Verdict::HAM
    } else {
        Verdict::UNSURE
    }
}

/// The `SpamCheck` handler. `check` rejects comments without an id or text with
/// `InvalidComment`; `report` counts moderator feedback.
#[derive(Debug, Default)]
pub struct SpamChecker {
    reports: AtomicU64,
}

impl SpamChecker {
    /// How many `report` calls were received.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }
}

impl SpamCheckSyncHandler for SpamChecker {
    fn handle_check(&self, comment: Comment) -> thrift::Result<SpamScore> {
        let text = comment.text.unwrap_or_default();
        if comment.id.as_deref().unwrap_or("").is_empty() || text.trim().is_empty() {
            return Err(InvalidComment::new("comment needs an id and text".to_owned()).into());
        }
        let s = score(&text);
        let reason = (s >= 0.3).then(|| format!("score {s:.2}"));
        Ok(SpamScore::new(OrderedFloat(s), verdict(s), reason))
    }

    fn handle_report(&self, _comment_id: String, _verdict: Verdict) -> thrift::Result<()> {
        self.reports.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
