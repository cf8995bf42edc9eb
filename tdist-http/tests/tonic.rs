//! gRPC through tonic over a real socket on 127.0.0.1: the server layer on a tonic server, the
//! client layer on a tonic channel, with tonic-health's generated service and client.

mod support;

use support::{one, spans, tag, tracer};
use tdist_core::export::InMemory;
use tdist_core::{FutureExt, Kind};
use tdist_http::{ClientLayer, ServerLayer};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::ServingStatus;
use tower::Layer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_joined_named_and_tagged_with_their_status() {
    let sink = InMemory::new();
    let backend = tracer(&sink, "backend");
    let frontend = backend.with_service_name("frontend");
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("orders", ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(ServerLayer::new(backend.clone()))
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The channel adds the server's address below the layer: the layer is told the service.
    let layer = ClientLayer::new(frontend.clone()).remote_service_name("backend");
    let mut client = HealthClient::new(layer.layer(channel));

    // A call that succeeds: one trace, the server span shares the client span's id.
    let root = frontend.root_span("check orders");
    let reply = async {
        let request = HealthCheckRequest {
            service: "orders".into(),
        };
        client.check(request).await
    }
    .in_span(root)
    .await
    .unwrap();
    assert_eq!(reply.into_inner().status, ServingStatus::Serving as i32);
    let all = spans(&sink, 3).await;
    let (c, s) = (one(&all, Kind::Client), one(&all, Kind::Server));
    assert_eq!(c.trace_id(), s.trace_id());
    assert_eq!(c.id(), s.id());
    assert!(s.shared());
    let remote = c.remote_endpoint().map(|e| e.service_name());
    assert_eq!(remote, Some(Some("backend")));
    for span in [&c, &s] {
        assert_eq!(span.name(), "grpc.health.v1.Health/Check");
        assert_eq!(
            tag(span, "rpc.service").as_deref(),
            Some("grpc.health.v1.Health")
        );
        assert_eq!(tag(span, "rpc.method").as_deref(), Some("Check"));
        assert_eq!(tag(span, "http.status_code").as_deref(), Some("200"));
        assert_eq!(tag(span, "grpc.status_code"), None, "{span:?}");
        assert_eq!(tag(span, "error"), None, "{span:?}");
    }

    // A call that fails with NOT_FOUND still answers HTTP 200: both sides read the gRPC
    // status and mark the span failed with its message.
    sink.clear();
    let request = HealthCheckRequest {
        service: "missing".into(),
    };
    let status = client.check(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let all = spans(&sink, 2).await;
    for kind in [Kind::Client, Kind::Server] {
        let span = one(&all, kind);
        assert_eq!(tag(&span, "http.status_code").as_deref(), Some("200"));
        assert_eq!(
            tag(&span, "grpc.status_code").as_deref(),
            Some("NOT_FOUND"),
            "{span:?}"
        );
        assert_eq!(tag(&span, "error").as_deref(), Some(status.message()));
    }
}
