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
