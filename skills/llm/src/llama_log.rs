//! llama.cpp's own words for a failure: its log lines, caught while a call runs.
//!
//! llama.cpp explains why it refuses a file only in its log (which llama-cpp-2 sends
//! to `tracing`, see [`crate::backend`]); its return value is a null pointer.
//! [`capture`] runs a call under a thread-local `tracing` subscriber that keeps the
//! warnings and errors logged meanwhile (llama.cpp logs on the calling thread) and
//! hands every event and span on to the subscriber that was in place, so nothing the
//! binary's subscriber would show is lost.

use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

/// Runs `f`, returning its result and the warning and error messages logged through
/// `tracing` on this thread meanwhile (llama.cpp's, once [`crate::backend`] is up).
pub(crate) fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let previous = tracing::dispatcher::get_default(Dispatch::clone);
    let capture = std::sync::Arc::new(Capture {
        lines: Mutex::new(Vec::new()),
        previous,
    });
    let dispatch = Dispatch::from(std::sync::Arc::clone(&capture));
    let result = tracing::dispatcher::with_default(&dispatch, f);
    drop(dispatch);
    let lines = capture
        .lines
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    (result, lines)
}

struct Capture {
    lines: Mutex<Vec<String>>,
    previous: Dispatch,
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.trim().clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.0.is_empty() {
            self.0 = format!("{value:?}").trim().to_owned();
        }
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN || self.previous.enabled(metadata)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.previous.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.previous.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.previous.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() <= Level::WARN {
            let mut message = Message(String::new());
            event.record(&mut message);
            if !message.0.is_empty() {
                if let Ok(mut lines) = self.lines.lock() {
                    lines.push(message.0);
                }
            }
        }
        if self.previous.enabled(event.metadata()) {
            self.previous.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        self.previous.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.previous.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.previous.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.previous.try_close(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_caught_and_the_result_returned() {
        let (n, lines) = capture(|| {
            tracing::info!("not kept");
            tracing::warn!("kept");
            tracing::error!(code = 3, "also kept");
            7
        });
        assert_eq!(n, 7);
        assert_eq!(lines, ["kept", "also kept"]);
    }
}
