//! A carrier that reads only text, for checks of the byte reads: its `get_bytes` is the
//! `Extractor` trait's default, as for carriers that do not override it. Included by path from
//! the crate's unit tests and its `headers` fuzz target.

use tdist_core::propagation::Extractor;

/// Forwards `get` and `count` to the carrier it wraps, and nothing else.
pub(crate) struct TextOnly<'a, E>(pub(crate) &'a E);

impl<E: Extractor> Extractor for TextOnly<'_, E> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }
    fn count(&self, key: &str) -> usize {
        self.0.count(key)
    }
}
