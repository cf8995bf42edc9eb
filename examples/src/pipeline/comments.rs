//! The comments the demo posts, and their JSON form on the wire and in tuples.
//!
//! ```
//! use tdist_examples::pipeline::comments::{sample, Comment};
//!
//! let c = sample(3);
//! let back = Comment::from_json(&c.to_json()).unwrap();
//! assert_eq!(back, c);
//! assert!(Comment::from_json("{\"author\":1}").is_err());
//! ```

use serde_json::{json, Value};

/// A comment as posted to `POST /comments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// Assigned by the HTTP service (empty in requests).
    pub id: String,
    /// Who wrote it.
    pub author: String,
    /// The text.
    pub text: String,
}

/// Why a comment could not be read.
#[derive(Debug, thiserror::Error)]
#[error("bad comment: {0}")]
pub struct BadComment(pub String);

impl Comment {
    /// The JSON object `{"id", "author", "text"}`.
    pub fn to_json(&self) -> String {
        json!({"id": self.id, "author": self.author, "text": self.text}).to_string()
    }

    /// Reads the JSON object (`id` may be absent).
    pub fn from_json(text: &str) -> Result<Comment, BadComment> {
        let v: Value = serde_json::from_str(text).map_err(|e| BadComment(e.to_string()))?;
        let field = |k: &str| -> Result<String, BadComment> {
            match v.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                None if k == "id" => Ok(String::new()),
                _ => Err(BadComment(format!("`{k}` must be a string"))),
            }
        };
        let c = Comment {
            id: field("id")?,
            author: field("author")?,
            text: field("text")?,
        };
        if c.text.trim().is_empty() {
            return Err(BadComment("empty text".into()));
        }
        Ok(c)
    }
}

const HAM: &[&str] = &[
    "Thanks, this fixed my build on the first try.",
    "I disagree with the second paragraph, but good post overall.",
    "Could you add an example with async code and a timeout?",
    "We hit the same issue in production; the workaround works.",
    "Nice write-up. The diagram of the pipeline helped a lot.",
];

const SPAM: &[&str] = &[
    "BUY CHEAP PILLS NOW!!! http://pills.example",
    "Free crypto offer, click here: https://coins.example",
];

const AUTHORS: &[&str] = &["ann", "bob", "chen", "dana", "eli", "fatima"];

/// The `n`th demo comment: every fourth one is spam.
pub fn sample(n: usize) -> Comment {
    let text = if n % 4 == 3 {
        SPAM[(n / 4) % SPAM.len()]
    } else {
        HAM[n % HAM.len()]
    };
    Comment {
        id: String::new(),
        author: AUTHORS[n % AUTHORS.len()].to_owned(),
        text: text.to_owned(),
    }
}

/// Whether the `n`th demo comment is spam.
pub fn is_spam_sample(n: usize) -> bool {
    n % 4 == 3
}
