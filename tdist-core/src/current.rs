//! The current span context: task-local inside futures run by tdist, thread-local otherwise,
//! and one [`current()`] that looks at both.
//!
//! Async code gets its context from a task slot that [`FutureExt`] installs around every poll
//! (the future keeps the task's context between polls, and puts it in a thread-local for the
//! length of each poll, as `tokio::task_local!` does, minus its bookkeeping), so it survives
//! `.await` and never leaks to other tasks on the same worker thread. Sync code (a Thrift
//! handler thread, a Storm bolt) uses a thread-local slot.
//! [`set_current`] writes to whichever slot is active and restores it when the guard drops.
//!
//! ```
//! use tdist_core::{current, set_current, SpanContext, SpanId, TraceId};
//!
//! let ctx = SpanContext::new(TraceId::random_64(), SpanId::random());
//! assert_eq!(current(), None);
//! {
//!     let _guard = set_current(Some(ctx));
//!     assert_eq!(current(), Some(ctx));
//!     // Work handed to a thread carries the context with it.
//!     let seen = std::thread::spawn(tdist_core::wrap(tdist_core::current)).join().unwrap();
//!     assert_eq!(seen, Some(ctx));
//! }
//! assert_eq!(current(), None);
//! ```

use crate::context::{Packed, SpanContext};
use crate::span::Span;
use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    /// The context of the task being polled: marked [`TASK`] while a [`WithContext`] polls its
    /// future (the rest is that task's context), unmarked outside every tdist future.
    static TASK_CONTEXT: Cell<Packed> = const { Cell::new(Packed::NONE) };
    static THREAD_CONTEXT: Cell<Packed> = const { Cell::new(Packed::NONE) };
}

/// The task-slot flag: a task scope is active.
const TASK: u64 = 1 << 10;

/// The current span context, if any: the task's inside a tdist-instrumented future, else the
/// thread's.
#[inline]
pub fn current() -> Option<SpanContext> {
    let task = TASK_CONTEXT.with(Cell::get);
    if task.has(TASK) {
        task.get()
    } else {
        THREAD_CONTEXT.with(Cell::get).get()
    }
}

/// Makes `ctx` current until the guard drops, then restores what was current before.
///
/// Inside a future run through [`FutureExt`] (or [`spawn`]) this sets the task's context, so the
/// guard may be held across `.await`. Elsewhere it sets the thread's; do not hold that across an
/// `.await` in a task tdist does not know about.
#[must_use = "the context is current only while the guard lives"]
#[inline]
pub fn set_current(ctx: Option<SpanContext>) -> ContextGuard {
    let new = Packed::new(ctx);
    let prev = TASK_CONTEXT.with(|task| {
        let prev = task.get();
        if prev.has(TASK) {
            task.set(new.with(TASK));
            prev
        } else {
            THREAD_CONTEXT.with(|c| c.replace(new))
        }
    });
    ContextGuard {
        prev,
        _not_send: PhantomData,
    }
}

/// Restores the previous current context on drop. Not `Send`: it belongs to its thread or task.
#[derive(Debug)]
pub struct ContextGuard {
    /// What was current, marked [`TASK`] when it was a task's.
    prev: Packed,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ContextGuard {
    #[inline]
    fn drop(&mut self) {
        if self.prev.has(TASK) {
            // A guard that outlived its task's poll has no task slot to restore.
            TASK_CONTEXT.with(|task| {
                if task.get().has(TASK) {
                    task.set(self.prev);
                }
            });
        } else {
            THREAD_CONTEXT.with(|c| c.set(self.prev));
        }
    }
}

/// A future's own copy of its task's context, for wrapper futures that poll an inner future
/// with a context current ([`WithContext`] is one). Poll the inner future with
/// [`poll_inner`](Self::poll_inner) and drop it with [`drop_inner`](Self::drop_inner) (or
/// [`enter`](Self::enter) the slot around other work): the context is current for that long,
/// and what the inner future changes (a [`set_current`] guard held across `.await`) is kept here
/// for the next poll. An adapter whose own future already wraps the inner one (the HTTP response
/// future) uses it to avoid a second layer of futures, each of which copies the output.
#[derive(Debug, Clone, Copy)]
pub struct TaskSlot(Packed);

impl TaskSlot {
    /// A slot holding `ctx`.
    #[inline]
    pub fn new(ctx: Option<SpanContext>) -> TaskSlot {
        TaskSlot(Packed::new(ctx).with(TASK))
    }

    /// Makes this slot the task's context until the scope drops, also when the poll panics.
    #[inline]
    pub fn enter(&mut self) -> TaskScope<'_> {
        let outer = TASK_CONTEXT.with(|task| task.replace(self.0));
        TaskScope {
            slot: &mut self.0,
            outer,
        }
    }

    /// Polls `inner` with this slot's context current; a future that completes is dropped in
    /// the same scope. Panics when polled again after completion.
    #[inline]
    pub fn poll_inner<F: Future>(
        &mut self,
        mut inner: Pin<&mut Option<F>>,
        cx: &mut Context<'_>,
    ) -> Poll<F::Output> {
        let _scope = self.enter();
        let out = match inner.as_mut().as_pin_mut() {
            Some(f) => f.poll(cx),
            None => panic!("a tdist-scoped future polled after completion"),
        };
        if out.is_ready() {
            inner.set(None);
        }
        out
    }

    /// Drops `inner`, if it has not completed, with this slot's context current: for the
    /// `Drop` of a wrapper future.
    #[inline]
    pub fn drop_inner<F>(&mut self, mut inner: Pin<&mut Option<F>>) {
        if inner.as_ref().is_some() {
            let _scope = self.enter();
            inner.set(None);
        }
    }
}

/// The task's context installed from a [`TaskSlot`] for one poll (or one drop): on exit the
/// task's context, as the inner future left it, goes back into the slot, and the outer context
/// is restored.
#[must_use = "the slot's context is current only while the scope lives"]
#[derive(Debug)]
pub struct TaskScope<'a> {
    /// The task's context, marked [`TASK`].
    slot: &'a mut Packed,
    outer: Packed,
}

impl Drop for TaskScope<'_> {
    #[inline]
    fn drop(&mut self) {
        let left = TASK_CONTEXT.with(|task| task.replace(self.outer));
        if left.has(TASK) {
            *self.slot = left;
        }
    }
}

pin_project_lite::pin_project! {
    /// A future that runs with a given context current on every poll, and optionally finishes a
    /// span when it completes or is dropped. Made by [`FutureExt`]. The wrapped future is also
    /// dropped with its context current.
    #[derive(Debug)]
    pub struct WithContext<F> {
        #[pin]
        inner: Option<F>,
        ctx: TaskSlot,
        span: Option<Span>,
    }

    impl<F> PinnedDrop for WithContext<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.ctx.drop_inner(this.inner);
        }
    }
}

impl<F> WithContext<F> {
    #[inline]
    fn new(inner: F, ctx: Option<SpanContext>, span: Option<Span>) -> WithContext<F> {
        WithContext {
            inner: Some(inner),
            ctx: TaskSlot::new(ctx),
            span,
        }
    }
}

impl<F: Future> Future for WithContext<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // A completed future is dropped in the scope this poll already has, rather than in a
        // scope of its own when the wrapper drops.
        let out = this.ctx.poll_inner(this.inner, cx);
        if out.is_ready() {
            if let Some(span) = this.span.take() {
                span.finish();
            }
        }
        out
    }
}

/// Runs futures inside a span or a context.
pub trait FutureExt: Future + Sized {
    /// Runs the future with `span` current; the span finishes when the future completes (or is
    /// dropped before completing).
    #[inline]
    fn in_span(self, span: Span) -> WithContext<Self> {
        let ctx = Some(span.context());
        WithContext::new(self, ctx, Some(span))
    }

    /// Runs the future with `ctx` current.
    #[inline]
    fn with_context(self, ctx: Option<SpanContext>) -> WithContext<Self> {
        WithContext::new(self, ctx, None)
    }

    /// Runs the future with the context that is current now (call it before handing the future
    /// to another task or executor).
    #[inline]
    fn with_current_context(self) -> WithContext<Self> {
        self.with_context(current())
    }
}

impl<F: Future> FutureExt for F {}

/// `tokio::spawn` that carries the current context into the new task.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.with_current_context())
}

/// `tokio::task::spawn_blocking` that carries the current context into the blocking closure.
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(wrap(f))
}

/// `std::thread::spawn` that carries the current context into the new thread.
pub fn spawn_thread<F, T>(f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(wrap(f))
}

/// Captures the current context now and makes it current while the closure runs, wherever it
/// runs: a thread pool, an executor, a callback.
pub fn wrap<F, T>(f: F) -> impl FnOnce() -> T + Send
where
    F: FnOnce() -> T + Send,
{
    let ctx = current();
    move || {
        let _guard = set_current(ctx);
        f()
    }
}

/// Like [`wrap`] for closures called many times (`Fn`), such as a pool's task factory.
pub fn wrap_fn<F, T>(f: F) -> impl Fn() -> T + Send + Sync
where
    F: Fn() -> T + Send + Sync,
{
    let ctx = current();
    move || {
        let _guard = set_current(ctx);
        f()
    }
}
