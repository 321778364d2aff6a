//! Server-side request forgery: the service sends requests only to the object stores of
//! `storage_hosts`, and with `authorization = "container"` read access to an object alone
//! does not authorize its checkpoint.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use strata_ckpt::{Authorization, CkptConfig, Target};
use strata_testkit::{SWIFT_OTHER_USER, shared_swift};

use crate::util::{Running, new_object, redb_store, status, swift_auth, test_config};

/// A loopback listener that counts the connections made to it: the address a forged
/// `X-Storage-Url` points at.
fn decoy() -> anyhow::Result<(u16, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    Ok((port, accepted))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_urls_off_the_configured_store_are_refused_before_any_request() -> anyhow::Result<()>
{
    let (port, accepted) = decoy()?;
    let object = new_object(b"object")?;
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    let client = &server.client;

    let forged = |url: String| Target { storage_url: url, token: object.token.clone() };
    for url in [
        format!("http://127.0.0.1:{port}/v1/AUTH_test/c/o"),
        format!("http://localhost:{port}/latest/meta-data"),
        object.storage_url.replacen("http://", "https://", 1),
    ] {
        let err = client.get(&forged(url.clone())).await.unwrap_err();
        assert_eq!(status(&err), 400, "{url}: {err}");
        assert!(err.to_string().contains("storage_hosts"), "{url}: {err}");
        let err = client.put(&forged(url.clone()), Bytes::from_static(b"x")).await.unwrap_err();
        assert_eq!(status(&err), 400, "{url}: {err}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the service connected to a forged URL");

    // The configured store still works.
    assert_eq!(client.get(&object).await?.value, "object");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_prefix_limits_the_service_to_one_account_and_empty_refuses_all()
-> anyhow::Result<()> {
    let object = new_object(b"object")?;
    let (store, _dir) = redb_store()?;
    let other_account = format!("{}/v1/AUTH_test2", shared_swift().url());
    let config = CkptConfig { storage_hosts: vec![other_account], ..test_config() };
    let server = Running::start(&config, store).await?;
    let err = server.client.get(&object).await.unwrap_err();
    assert_eq!(status(&err), 400, "{err}");
    server.stop().await?;

    let (store, _dir) = redb_store()?;
    let config = CkptConfig { storage_hosts: Vec::new(), ..test_config() };
    let server = Running::start(&config, store).await?;
    let err = server.client.get(&object).await.unwrap_err();
    assert_eq!(status(&err), 400, "{err}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_authorization_needs_more_than_read_access_to_the_object() -> anyhow::Result<()> {
    let swift = shared_swift();
    let owner = swift_auth();
    // A container anyone may read objects from, but only its owner may list.
    let container = format!("public-{}", std::process::id());
    let path = format!("/v1/AUTH_test/{container}");
    let response = swift.request(
        "PUT",
        &path,
        &[("X-Auth-Token", &owner.token), ("X-Container-Read", ".r:*")],
        b"",
    )?;
    anyhow::ensure!(response.status / 100 == 2, "create {path}: {}", response.status);
    let url = swift.put_object(owner, &container, "checkpoint", b"public")?;
    let stranger = swift.auth_as(SWIFT_OTHER_USER.0, SWIFT_OTHER_USER.1)?;
    let as_owner = Target { storage_url: url.clone(), token: owner.token.clone() };
    let as_stranger = Target { storage_url: url.clone(), token: stranger.token.clone() };

    // By default, read access to the object authorizes its checkpoint.
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    assert_eq!(server.client.get(&as_stranger).await?.value, "public");
    server.stop().await?;

    // With container authorization, the stranger is refused and the owner is not.
    let (store, _dir) = redb_store()?;
    let config = CkptConfig { authorization: Authorization::Container, ..test_config() };
    let server = Running::start(&config, store).await?;
    let err = server.client.get(&as_stranger).await.unwrap_err();
    assert_eq!(status(&err), 403, "{err}");
    let err = server.client.put(&as_stranger, Bytes::from_static(b"mine")).await.unwrap_err();
    assert_eq!(status(&err), 403, "{err}");
    assert_eq!(server.client.put(&as_owner, Bytes::from_static(b"v1")).await?, 1);
    assert_eq!(server.client.get(&as_owner).await?.value, "v1");
    server.stop().await
}
