//! Swift stopped mid-test: requests fail with 503 after the retries, and nothing committed
//! is lost, neither across the outage nor across a restart of the service.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_ckpt::{CkptConfig, TxId};
use strata_kv::Store;
use strata_testkit::Swift;

use crate::util::{Running, new_object_in, status, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_stopped_gives_503_after_the_retries_and_loses_no_commit() -> anyhow::Result<()> {
    let mut swift = tokio::task::spawn_blocking(Swift::start).await??;
    let auth = swift.auth()?;
    let target = new_object_in(&swift, &auth, b"object")?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kv.redb");
    // Three retries after 100, 200 and 400 ms (each ±20 %): at least 560 ms in all.
    let config = CkptConfig {
        swift_retry_delay_ms: 100,
        swift_retry_limit: 3,
        transaction_timeout_ms: 600_000,
        storage_hosts: vec![swift.url()],
        ..test_config()
    };
    let server = Running::start(&config, Store::redb(&path)?).await?;
    let client = &server.client;
    assert_eq!(client.put(&target, Bytes::from_static(b"v1")).await?, 1);
    let txid = TxId::generate();
    client.stage_put(&target, &txid, Bytes::from_static(b"v2")).await?;

    swift.stop();
    let started = Instant::now();
    let err = client.get(&target).await.unwrap_err();
    assert_eq!(status(&err), 503, "{err}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(560), "{:?}", started.elapsed());
    assert_eq!(status(&client.commit(&target, &txid).await.unwrap_err()), 503);

    let _swift = tokio::task::spawn_blocking(move || {
        swift.restart()?;
        Ok::<_, anyhow::Error>(swift)
    })
    .await??;
    let got = client.get(&target).await?;
    assert_eq!((got.value.as_ref(), got.revision), (&b"v1"[..], 1));
    // The POST that failed for want of authorization left its change staged.
    assert_eq!(client.commit(&target, &txid).await?, 2);
    server.stop().await?;

    let reopened = Running::start(&config, Store::redb(&path)?).await?;
    let got = reopened.client.get(&target).await?;
    assert_eq!((got.value.as_ref(), got.revision, got.committed), (&b"v2"[..], 2, true));
    reopened.stop().await
}
