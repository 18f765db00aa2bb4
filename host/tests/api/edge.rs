//! The bounds at the edge, each tried by a client that means to exceed it:
//! a slowloris, an idle keep-alive connection, more connections than the
//! cap, more HTTP/2 streams than a connection may carry.

use std::time::{Duration, Instant};

use host::grpc::proto::{GetOrderRequest, WatchOrdersRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, Options, TestApp};

/// Reads until the server closes the connection (or `within` passes):
/// whether it closed, and what it sent.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> (bool, String) {
    let (deadline, mut seen, mut buffer) = (tokio::time::Instant::now() + within, Vec::new(), [0u8; 4096]);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(read)) => seen.extend_from_slice(&buffer[..read]),
            Err(_) => return (false, String::from_utf8_lossy(&seen).into_owned()),
        }
    }
}

fn quick_to_read_headers() -> Options {
    Options { header_read_timeout_ms: Some(500), ..Options::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_cut_off_at_the_header_timeout() {
    let app = TestApp::spawn_with(Backend::Embedded, quick_to_read_headers()).await;
    let (mut reader, mut writer) = TcpStream::connect(app.address).await.unwrap().into_split();
    let started = Instant::now();
    writer.write_all(b"GET /health HTTP/1.1\r\nHost: orderly\r\n").await.unwrap();
    // A header line every 100 ms, never the blank line that ends them.
    let trickle = tokio::spawn(async move {
        for n in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(format!("x-slow-{n}: 1\r\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let (closed, answer) = closed_within(&mut reader, Duration::from_secs(5)).await;
    assert!(closed, "still open after 5 s of trickled headers: {answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    assert!(!answer.contains("200 OK"), "never answered: {answer}");
    trickle.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = TestApp::spawn_with(Backend::Embedded, quick_to_read_headers()).await;
    let mut stream = TcpStream::connect(app.address).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: orderly\r\n\r\n").await.unwrap();
    let mut first = [0u8; 1024];
    let read = stream.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"), "answered first");
    // Then nothing: the connection is not kept for a request that never comes.
    let (closed, _) = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(closed, "an idle keep-alive connection stayed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_until_one_closes() {
    let options = Options { max_connections: Some(3), ..Options::default() };
    let app = TestApp::spawn_with(Backend::Embedded, options).await;
    // Three connections that send nothing hold every place.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(app.address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = TcpStream::connect(app.address).await.unwrap();
    fourth.write_all(b"GET /health HTTP/1.1\r\nHost: orderly\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let waited = tokio::time::timeout(Duration::from_millis(700), fourth.read_to_end(&mut answer)).await;
    assert!(waited.is_err(), "answered past the cap: {}", String::from_utf8_lossy(&answer));
    // One place frees: the waiting connection is taken and answered.
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    // The gRPC listener has the same cap: a fourth channel's call waits.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc_address)).unwrap();
    let mut channels = Vec::new();
    for _ in 0..3 {
        let channel = endpoint.connect().await.unwrap();
        let mut client = host::grpc::proto::order_service_client::OrderServiceClient::new(channel.clone());
        // A call answered (UNAUTHENTICATED: no token) proves the server took the connection.
        assert!(client.get_order(GetOrderRequest { id: 1 }).await.is_err());
        channels.push(channel);
    }
    let over = endpoint.connect().await.unwrap();
    let mut waiting = host::grpc::proto::order_service_client::OrderServiceClient::new(over);
    let call = tokio::spawn(async move { waiting.get_order(GetOrderRequest { id: 1 }).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!call.is_finished(), "a fourth gRPC connection was served past the cap");
    drop(channels.pop());
    let answered = tokio::time::timeout(Duration::from_secs(5), call).await.expect("served once a place freed");
    assert_eq!(answered.unwrap().unwrap_err().code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_carries_at_most_its_streams_at_once() {
    let options = Options { http2_max_streams: Some(2), ..Options::default() };
    let app = TestApp::spawn_with(Backend::Embedded, options).await;
    // One client is one HTTP/2 connection: two streams that never end fill it.
    let client = app.grpc().await;
    let (mut first, mut second) = (client.clone(), client.clone());
    let one = first.watch_orders(WatchOrdersRequest {}).await.unwrap().into_inner();
    let two = second.watch_orders(WatchOrdersRequest {}).await.unwrap().into_inner();
    let mut third = client.clone();
    let waiting = tokio::time::timeout(Duration::from_millis(700), third.get_order(GetOrderRequest { id: 1 })).await;
    assert!(waiting.is_err(), "a third stream ran beside two: {waiting:?}");
    // A stream ends: the next one runs.
    drop(one);
    let answered = tokio::time::timeout(Duration::from_secs(5), third.get_order(GetOrderRequest { id: 1 })).await;
    let status = answered.expect("answered once a stream ended").unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    drop(two);
}

fn two_watches_each() -> Options {
    Options { max_watches_per_caller: Some(2), max_watches: Some(3), ..Options::default() }
}

/// Opens `/api/v1/events` as `token`'s holder.
async fn feed(app: &TestApp, token: &str) -> reqwest::Response {
    app.client.get(app.url("/api/v1/events")).bearer_auth(token).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_holds_only_its_share_of_live_streams() {
    let app = TestApp::spawn_with(Backend::Embedded, two_watches_each()).await;
    let alice = crate::helpers::token("1", "orders");
    // Her two places, one over SSE and one over gRPC: both ways count.
    let sse = feed(&app, &alice).await;
    assert_eq!(sse.status(), 200);
    let mut grpc = app.grpc_as(&alice).await;
    let watching = grpc.watch_orders(WatchOrdersRequest {}).await.unwrap().into_inner();
    // A third: refused, with a time to come back.
    let third = feed(&app, &alice).await;
    assert_eq!(third.headers()["retry-after"], "1");
    let body = crate::helpers::problem(third, 429).await;
    assert_eq!(body["type"], "urn:orderly:problem:too-many");
    let refused = grpc.watch_orders(WatchOrdersRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    use tonic_types::StatusExt;
    assert_eq!(refused.get_details_error_info().unwrap().reason, "too-many");
    assert_eq!(refused.get_details_quota_failure().unwrap().violations[0].subject, "caller");
    assert!(refused.get_details_retry_info().is_some());
    // Another caller has places of its own; the total (3) is then reached.
    let bob = crate::helpers::token("2", "orders");
    let bobs = feed(&app, &bob).await;
    assert_eq!(bobs.status(), 200);
    let carol = crate::helpers::token("3", "orders");
    let body = crate::helpers::problem(feed(&app, &carol).await, 429).await;
    assert!(body["detail"].as_str().unwrap().contains("in all"), "{body}");
    // A stream that ends frees its place.
    drop(watching);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let again = feed(&app, &carol).await;
        if again.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the ended stream's place was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((sse, bobs));
}

fn slow_pricing_one_key_each() -> Options {
    Options {
        components: vec![(host::runtime::Slot::Pricing, "fixtures/sleep")],
        configs: vec![(host::runtime::Slot::Pricing, "[limits]\ndeadline_ms = 10000\n".into())],
        request_timeout_ms: Some(3000),
        max_keys_in_flight_per_caller: Some(1),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_has_only_so_many_keyed_orders_in_flight() {
    let app = TestApp::spawn_with(Backend::Embedded, slow_pricing_one_key_each()).await;
    let mug = app.product("MUG", 1250, 10).await;
    let alice = crate::helpers::token("1", "orders");
    let order = serde_json::json!({"product_id": mug, "quantity": 1});
    let keyed = |token: &str, key: &str| {
        app.client.post(app.url("/api/v1/orders")).bearer_auth(token).header("idempotency-key", key).json(&order)
    };
    // Her first keyed order is being placed (pricing is slow)...
    let first = tokio::spawn(keyed(&alice, "cart-1").send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...so a second, with another key, is refused at once.
    let started = Instant::now();
    let second = keyed(&alice, "cart-2").send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once, not queued");
    assert_eq!(second.headers()["retry-after"], "1");
    let body = crate::helpers::problem(second, 429).await;
    assert!(body["detail"].as_str().unwrap().contains("per caller"), "{body}");
    // Another caller is not held back by her.
    let bob = crate::helpers::token("2", "orders");
    let his = tokio::time::timeout(Duration::from_millis(500), keyed(&bob, "cart-1").send()).await;
    assert!(his.is_err(), "his order is being placed, not refused: {his:?}");
    // Her first ends at the time limit, and her place with it.
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 503);
    let after = tokio::time::timeout(Duration::from_millis(500), keyed(&alice, "cart-3").send()).await;
    assert!(after.is_err(), "her next keyed order is being placed again, not refused: {after:?}");
}
