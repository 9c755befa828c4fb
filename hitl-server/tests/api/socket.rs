//! The server on a real loopback port: `serve_with_shutdown`, chunked SSE, shutdown.

use hitl_server::{Server, Store};
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_a_loopback_port_until_shut_down() {
    let server = Server::builder()
        .graph("agent", reference_agent())
        .store(Store::in_memory())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(listener, async {
        let _ = stopped.await;
    }));

    // reqwest is built without a default TLS provider; plain HTTP still needs one set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let ok: Value = http
        .get(format!("{url}/ok"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok, json!({"ok": true, "services": {}}));
    let thread: Value = http
        .post(format!("{url}/threads"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = thread["thread_id"].as_str().unwrap();
    let res = http
        .post(format!("{url}/threads/{t}/runs/stream"))
        .header("accept", "text/event-stream")
        .json(&json!({"assistant_id": "agent", "input": email_input(), "stream_mode": ["values", "updates"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["transfer-encoding"], "chunked");
    let events = parse_sse(&res.text().await.unwrap());
    assert_eq!(
        names(&events),
        [
            "metadata", "values", "updates", "values", "updates", "values"
        ]
    );

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    assert!(
        http.get(format!("{url}/ok")).send().await.is_err(),
        "the port is closed"
    );
}
