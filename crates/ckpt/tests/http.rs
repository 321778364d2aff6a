//! The HTTP surface through raw requests: methods, malformed requests, limits, idle
//! timeouts, the connection limit and shutdown.

use std::time::{Duration, Instant};

use strata_ckpt::CkptConfig;
use tokio::io::AsyncWriteExt;

use crate::util::{Running, new_object, raw, redb_store, request, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_paths_and_headers_get_their_status_codes() -> anyhow::Result<()> {
    let target = new_object(b"object")?;
    let (store, _dir) = redb_store()?;
    let config = CkptConfig { max_body_bytes: 64, ..test_config() };
    let server = Running::start(&config, store).await?;
    let addr = server.addr;
    let head = raw(addr, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    assert_eq!(head.status, 204);
    let patch = raw(addr, &request("PATCH", "/tx", &target, "", "")).await?;
    assert_eq!(patch.status, 405);
    assert!(patch.head.to_ascii_lowercase().contains("allow: head, get, put, delete, post"));
    let cases = [
        ("GET", "/", "X-Storage-Url: ftp://127.0.0.1/o\r\n", 400, "only http and https"),
        ("GET", "/tx", "", 400, "empty path"),
        ("PUT", "/", "", 400, "transaction id"),
        ("POST", "/a/b", "", 400, "transaction id"),
    ];
    for (method, path, extra, want, text) in cases {
        let mut sent = request(method, path, &target, "", "");
        if !extra.is_empty() {
            sent = sent.replacen(&format!("X-Storage-Url: {}\r\n", target.storage_url), extra, 1);
        }
        let got = raw(addr, &sent).await?;
        assert_eq!(got.status, want, "{method} {path}: {}", got.body);
        assert!(got.body.contains(text), "{method} {path}: {}", got.body);
    }
    let no_url = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Auth-Token: t\r\n\r\n";
    assert_eq!(raw(addr, no_url).await?.status, 400);
    let no_token = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Storage-Url: {}\r\n\r\n",
        target.storage_url
    );
    assert_eq!(raw(addr, &no_token).await?.status, 401);
    let big = raw(addr, &request("PUT", "/tx", &target, "", &"x".repeat(65))).await?;
    assert_eq!(big.status, 413);
    let fits = raw(addr, &request("PUT", "/tx", &target, "", &"x".repeat(64))).await?;
    assert_eq!(fits.status, 202, "{}", fits.body);
    let post = raw(addr, &request("POST", "/tx", &target, "", "")).await?;
    assert_eq!(post.status, 204);
    assert!(post.head.to_ascii_lowercase().contains("x-ckpt-revision: 1"), "{}", post.head);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_connections_are_bounded() -> anyhow::Result<()> {
    let (store, _dir) = redb_store()?;
    let config = CkptConfig { max_connections: 2, idle_timeout_ms: 400, ..test_config() };
    let server = Running::start(&config, store).await?;
    // Two connections that never send a request fill the server.
    let idle = [
        tokio::net::TcpStream::connect(server.addr).await?,
        tokio::net::TcpStream::connect(server.addr).await?,
    ];
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let head = raw(server.addr, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    let waited = started.elapsed();
    assert_eq!(head.status, 204);
    assert!(waited >= Duration::from_millis(250), "served at once past the limit: {waited:?}");
    assert!(waited < Duration::from_secs(5), "idle connections were not closed: {waited:?}");
    drop(idle);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_progress_and_closes_the_port() -> anyhow::Result<()> {
    let target = new_object(b"object")?;
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    let addr = server.addr;
    // A PUT whose body is still on its way when shutdown begins.
    let mut slow = tokio::net::TcpStream::connect(addr).await?;
    let whole = request("PUT", "/tx", &target, "", "0123456789");
    let (head, body) = whole.split_at(whole.len() - 10);
    slow.write_all(head.as_bytes()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    slow.write_all(body.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut slow, &mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), stopping).await???;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening");
    Ok(())
}
