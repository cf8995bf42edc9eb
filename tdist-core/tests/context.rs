//! The current context follows work into tasks, threads and pools, and spans nest correctly
//! under concurrency.

mod support;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;
use support::tracer;
use tdist_core::{
    current, spawn, spawn_blocking, spawn_thread, wrap, wrap_fn, FutureExt, SpanContext,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn context_crosses_tokio_spawn_and_await() {
    let (tracer, sink) = tracer("spawn");
    let root = tracer.root_span("request");
    let root_ctx = root.context();
    let t = tracer.clone();
    async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(current(), Some(root_ctx));
        let t2 = t.clone();
        let child = spawn(async move {
            tokio::task::yield_now().await;
            let s = t2.span("spawned");
            s.context()
        })
        .await
        .unwrap();
        assert_eq!(child.parent_id(), Some(root_ctx.span_id()));
        let blocking = spawn_blocking(current).await.unwrap();
        assert_eq!(blocking, Some(root_ctx));
    }
    .in_span(root)
    .await;
    // Outside the future nothing is current.
    assert_eq!(current(), None);
    tracer.flush().unwrap();
    assert_eq!(sink.trace(root_ctx.trace_id()).len(), 2);
    assert!(sink.orphans().is_empty());
}

#[test]
fn context_crosses_threads_and_a_thread_pool() {
    let (tracer, sink) = tracer("threads");
    let root = tracer.root_span("batch");
    let _g = root.enter();
    let ctx = root.context();
    assert_eq!(spawn_thread(current).join().unwrap(), Some(ctx));

    // A small pool fed through a channel, as an executor would be.
    let (tx, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || loop {
                let job = rx.lock().unwrap().recv();
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            })
        })
        .collect();
    let (seen_tx, seen_rx) = mpsc::channel();
    for i in 0..12 {
        let t = tracer.clone();
        let seen = seen_tx.clone();
        tx.send(Box::new(wrap(move || {
            let s = t.span(format!("job {i}"));
            seen.send(s.context()).unwrap();
        })))
        .unwrap();
    }
    drop(tx);
    drop(seen_tx);
    for w in workers {
        w.join().unwrap();
    }
    let children: Vec<SpanContext> = seen_rx.iter().collect();
    assert_eq!(children.len(), 12);
    assert!(children
        .iter()
        .all(|c| c.parent_id() == Some(ctx.span_id())));
    // Pool threads are left with nothing current.
    let f = wrap_fn(current);
    assert_eq!(f(), Some(ctx));
    drop(_g);
    root.finish();
    tracer.flush().unwrap();
    assert_eq!(sink.trace(ctx.trace_id()).len(), 13);
    assert!(sink.orphans().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_tasks_never_cross_talk() {
    let (tracer, sink) = tracer("concurrency");
    let mut handles = Vec::new();
    for i in 0..200 {
        let t = tracer.clone();
        let root = t.root_span(format!("task {i}"));
        let root_ctx = root.context();
        handles.push(tokio::spawn(
            async move {
                for step in 0..5 {
                    let s = t.span("step");
                    // Yield with the step in scope so tasks interleave on the workers.
                    async {
                        tokio::task::yield_now().await;
                        assert_eq!(current().unwrap().trace_id(), root_ctx.trace_id());
                        let inner = t.span("inner");
                        tokio::time::sleep(Duration::from_micros(50 * (step + 1))).await;
                        inner.finish();
                    }
                    .in_span(s)
                    .await;
                    assert_eq!(current(), Some(root_ctx));
                }
                root_ctx
            }
            .in_span(root),
        ));
    }
    let mut roots = Vec::new();
    for h in handles {
        roots.push(h.await.unwrap());
    }
    tracer.flush().unwrap();
    let spans = sink.spans();
    assert_eq!(spans.len(), 200 * 11);
    assert!(sink.orphans().is_empty());
    let by_id: HashMap<_, _> = spans.iter().map(|s| (s.id(), s)).collect();
    for s in &spans {
        match s.name() {
            "step" => assert!(
                s.name() == "step" && by_id[&s.parent_id().unwrap()].name().starts_with("task")
            ),
            "inner" => assert_eq!(by_id[&s.parent_id().unwrap()].name(), "step"),
            _ => assert!(s.parent_id().is_none()),
        }
        let root = roots.iter().find(|r| r.trace_id() == s.trace_id()).unwrap();
        let _ = root;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn context_set_with_a_guard_inside_a_task_survives_await() {
    let (tracer, _sink) = tracer("guard");
    let outer = tracer.root_span("outer");
    let ctx = outer.context();
    async move {
        let inner = tdist_core::Tracer::noop().child_span(&ctx, "inner");
        let _g = inner.enter();
        tokio::task::yield_now().await;
        assert_eq!(current(), Some(inner.context()));
    }
    .in_span(outer)
    .await;
    assert_eq!(current(), None);
}

#[test]
fn nested_scopes_restore_the_outer_context_and_drop_runs_inside_the_scope() {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};
    use tdist_core::{current, FutureExt, SpanContext, SpanId, TraceId};

    let outer = Some(SpanContext::new(TraceId::random_64(), SpanId::random()));
    let inner = Some(SpanContext::new(TraceId::random_64(), SpanId::random()));
    let mut cx = Context::from_waker(Waker::noop());

    // Inside nested futures the innermost context is current; after each poll the thread sees
    // nothing; a context set inside the inner future stays with that future between polls.
    let fut = async move {
        assert_eq!(current(), outer);
        let nested = async move {
            assert_eq!(current(), inner);
            let _g = tdist_core::set_current(outer);
            YieldOnce(false).await;
            assert_eq!(current(), outer, "set inside the task, kept across a poll");
        }
        .with_context(inner);
        nested.await;
        assert_eq!(current(), outer);
    }
    .with_context(outer);
    let mut fut = pin!(fut);
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
    assert_eq!(current(), None);
    assert_eq!(fut.as_mut().poll(&mut cx), Poll::Ready(()));
    assert_eq!(current(), None);

    // A future dropped before completing is dropped with its context current, so destructors
    // that finish spans or log still belong to the trace.
    struct SeesContext(Arc<Mutex<Option<Option<SpanContext>>>>);
    impl Drop for SeesContext {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(current());
        }
    }
    let seen = Arc::new(Mutex::new(None));
    let guard = SeesContext(seen.clone());
    let mut pending = Box::pin(
        async move {
            let _guard = guard;
            YieldOnce(false).await;
        }
        .with_context(inner),
    );
    assert_eq!(pending.as_mut().poll(&mut cx), Poll::Pending);
    drop(pending);
    assert_eq!(*seen.lock().unwrap(), Some(inner));
    assert_eq!(current(), None);

    // A panicking poll leaves the thread as it was.
    let panicking = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut f = pin!(async { panic!("in the task") }.with_context(inner));
        let _ = f.as_mut().poll(&mut cx);
    }));
    assert!(panicking.is_err());
    assert_eq!(current(), None);
}

struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}
