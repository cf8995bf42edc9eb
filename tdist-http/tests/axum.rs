//! The server layer on an axum router: route names, client address, joined traces.

mod support;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use std::net::SocketAddr;
use support::{one, plain_client, spans, tag, tracer};
use tdist_core::export::InMemory;
use tdist_core::{FutureExt, Kind};
use tdist_http::{ClientLayer, ServerLayer};
use tower::{Layer, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_routes_are_traced_and_joined() {
    let sink = InMemory::new();
    let backend = tracer(&sink, "users");
    let frontend = backend.with_service_name("web");
    let t = backend.clone();
    let app = Router::new()
        .route(
            "/users/{id}",
            get(move |Path(id): Path<u32>| {
                let t = t.clone();
                async move {
                    tdist_core::spawn(async move { t.span("load user").finish() })
                        .await
                        .unwrap();
                    format!("user {id}")
                }
            }),
        )
        .layer(ServerLayer::new(backend.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, make).await.unwrap() });

    let mut client = ClientLayer::new(frontend.clone()).layer(plain_client());
    let root = frontend.root_span("page");
    let body = async {
        let req = Request::get(format!("http://{addr}/users/42"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = client.call(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap().to_bytes()
    }
    .in_span(root)
    .await;
    assert_eq!(&body[..], b"user 42");

    let all = spans(&sink, 4).await;
    let server = one(&all, Kind::Server);
    let client_span = one(&all, Kind::Client);
    let load = all.iter().find(|s| s.name() == "load user").unwrap();
    assert_eq!(server.name().to_ascii_lowercase(), "get /users/{id}");
    assert_eq!((server.id(), server.shared()), (client_span.id(), true));
    assert_eq!(load.parent_id(), Some(server.id()));
    assert_eq!(tag(&server, "http.path").as_deref(), Some("/users/42"));
    assert_eq!(tag(&server, "http.status_code").as_deref(), Some("200"));
    let peer = server
        .remote_endpoint()
        .expect("client address from ConnectInfo");
    assert_eq!(peer.ipv4(), Some(std::net::Ipv4Addr::LOCALHOST));
    assert!(peer.port().is_some());
    assert!(sink.orphans().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_route_names_and_unmatched_requests() {
    let sink = InMemory::new();
    let t = tracer(&sink, "users");
    let app = Router::new()
        .route("/a", get(|| async { "a" }))
        .layer(ServerLayer::new(t.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (status, _) = support::get(addr, "/a", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let s = one(&spans(&sink, 1).await, Kind::Server);
    assert_eq!(s.name().to_ascii_lowercase(), "get /a");

    // No route matched: the span is named by the method only (paths are unbounded).
    sink.clear();
    let (status, _) = support::get(addr, "/missing/123", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let s = one(&spans(&sink, 1).await, Kind::Server);
    assert_eq!(s.name().to_ascii_lowercase(), "get");
    assert_eq!(tag(&s, "http.status_code").as_deref(), Some("404"));
    assert_eq!(tag(&s, "error"), None, "4xx is not a server error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_tag_their_span_through_the_response() {
    use axum::Extension;
    use tdist_http::SpanDetails;

    let sink = InMemory::new();
    let t = tracer(&sink, "orders");
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(|Path(id): Path<u32>| async move {
                let details = SpanDetails::new()
                    .tag("order.id", id)
                    .tag("customer.tier", "gold");
                (Extension(details), format!("order {id}"))
            }),
        )
        .route(
            "/pay",
            get(|| async {
                let details = SpanDetails::new().name("payment").error("card declined");
                (StatusCode::BAD_GATEWAY, Extension(details), "declined")
            }),
        )
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .layer(ServerLayer::new(t.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    for (path, status) in [
        ("/orders/7", StatusCode::OK),
        ("/pay", StatusCode::BAD_GATEWAY),
        ("/fail", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = plain_client().request(req).await.unwrap();
        assert_eq!(resp.status(), status);
        resp.into_body().collect().await.unwrap();
    }
    let all = spans(&sink, 3).await;
    let by_path = |p: &str| {
        all.iter()
            .find(|s| tag(s, "http.path").as_deref() == Some(p))
            .unwrap()
            .clone()
    };
    let order = by_path("/orders/7");
    assert_eq!(tag(&order, "order.id").as_deref(), Some("7"));
    assert_eq!(tag(&order, "customer.tier").as_deref(), Some("gold"));
    assert_eq!(tag(&order, "error"), None);
    // The handler's name and error win over the route and the status, and `error` is there once.
    let pay = by_path("/pay");
    assert_eq!(pay.name(), "payment");
    assert_eq!(tag(&pay, "error").as_deref(), Some("card declined"));
    assert_eq!(pay.tags().filter(|(k, _)| *k == "error").count(), 1);
    assert_eq!(tag(&by_path("/fail"), "error").as_deref(), Some("503"));
}
