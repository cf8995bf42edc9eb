//! The CLIENT span of the call in flight, shared by a client's output protocol (which starts it)
//! and its input protocol (which ends it when the reply has been read).

use std::sync::{Arc, Mutex};
use tdist_core::Span;

#[derive(Debug, Default)]
struct Slot {
    span: Option<Span>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.set_error("connection dropped before the reply was read");
            span.finish();
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct CallHandle(Arc<Mutex<Slot>>);

impl CallHandle {
    fn with<T>(&self, f: impl FnOnce(&mut Slot) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Stores the span of a new call; a previous call whose reply was never read ends with an
    /// error.
    pub(crate) fn start(&self, span: Span) {
        let old = self.with(|s| s.span.replace(span));
        if let Some(mut old) = old {
            old.set_error("no reply read");
            old.finish();
        }
    }

    /// Ends the call in flight, if any.
    pub(crate) fn finish(&self, error: Option<String>) {
        if let Some(mut span) = self.with(|s| s.span.take()) {
            if let Some(e) = error {
                span.set_error(e);
            }
            span.finish();
        }
    }
}
