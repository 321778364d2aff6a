//! The protocol against a real Swift: authorization, two-phase changes, expiry.

use std::time::Duration;

use bytes::Bytes;
use strata_ckpt::{CkptConfig, Target, TxId};
use strata_testkit::{SWIFT_OTHER_USER, shared_swift};

use crate::util::{Running, new_object, redb_store, status, swift_auth, test_config};

const OBJECT: &[u8] = b"0000000000000001 0000000000000002 0000000000000003 0000000000000004\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_a_good_token_returns_the_object() -> anyhow::Result<()> {
    let target = new_object(OBJECT)?;
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    server.client.health().await?;
    let got = server.client.get(&target).await?;
    assert_eq!(got.value, OBJECT);
    assert_eq!((got.revision, got.committed), (0, false));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_tokens_get_401_and_change_nothing() -> anyhow::Result<()> {
    let target = new_object(OBJECT)?;
    let bad = Target { token: "AUTH_tk_not_a_token".into(), ..target.clone() };
    let missing = Target { token: String::new(), ..target.clone() };
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    let client = &server.client;
    let txid = TxId::generate();
    for who in [&bad, &missing] {
        assert_eq!(status(&client.get(who).await.unwrap_err()), 401);
        let staged = client.stage_put(who, &txid, Bytes::from_static(b"evil")).await;
        assert_eq!(status(&staged.unwrap_err()), 401);
        assert_eq!(status(&client.stage_delete(who, &txid).await.unwrap_err()), 401);
    }
    // Nothing was staged, so the good token has nothing to commit; a good stage cannot be
    // committed with a bad token either.
    assert_eq!(status(&client.commit(&target, &txid).await.unwrap_err()), 409);
    client.stage_put(&target, &txid, Bytes::from_static(b"good")).await?;
    assert_eq!(status(&client.commit(&bad, &txid).await.unwrap_err()), 401);
    assert_eq!(client.get(&target).await?.value, OBJECT);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_without_access_gets_403() -> anyhow::Result<()> {
    let target = new_object(OBJECT)?;
    let (user, key) = SWIFT_OTHER_USER;
    let other = shared_swift().auth_as(user, key)?;
    let stranger = Target { token: other.token, ..target.clone() };
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    let err = server.client.put(&stranger, Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(status(&err), 403, "{err}");
    assert_eq!(server.client.get(&target).await?.value, OBJECT);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_without_post_is_invisible_and_put_then_post_is_visible() -> anyhow::Result<()> {
    let target = new_object(OBJECT)?;
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    let client = &server.client;
    let txid = TxId::generate();
    client.stage_put(&target, &txid, Bytes::from_static(b"staged")).await?;
    let before = client.get(&target).await?;
    assert_eq!((before.value.as_ref(), before.committed), (OBJECT, false));
    assert_eq!(client.commit(&target, &txid).await?, 1);
    let after = client.get(&target).await?;
    assert_eq!((after.value.as_ref(), after.revision, after.committed), (&b"staged"[..], 1, true));
    assert_eq!(client.put(&target, Bytes::from_static(b"second")).await?, 2);
    assert_eq!(client.get(&target).await?.value, "second");
    // A committed transaction cannot be committed twice.
    assert_eq!(status(&client.commit(&target, &txid).await.unwrap_err()), 409);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_with_another_txid_commits_nothing() -> anyhow::Result<()> {
    let target = new_object(OBJECT)?;
    let other_object = new_object(b"other")?;
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    let client = &server.client;
    let (staged, other) = (TxId::generate(), TxId::generate());
    client.stage_put(&target, &staged, Bytes::from_static(b"v1")).await?;
    let err = client.commit(&target, &other).await.unwrap_err();
    assert_eq!(status(&err), 409, "{err}");
    // The same id on another storage URL names nothing either.
    assert_eq!(status(&client.commit(&other_object, &staged).await.unwrap_err()), 409);
    assert_eq!(client.get(&target).await?.value, OBJECT);
    assert_eq!(client.get(&other_object).await?.value, "other");
    client.commit(&target, &staged).await?;
    assert_eq!(client.get(&target).await?.value, "v1");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_post_falls_back_to_the_object() -> anyhow::Result<()> {
    let target = new_object(OBJECT)?;
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    let client = &server.client;
    client.put(&target, Bytes::from_static(b"committed")).await?;
    let txid = TxId::generate();
    client.stage_delete(&target, &txid).await?;
    assert_eq!(client.get(&target).await?.value, "committed", "an uncommitted delete showed");
    assert_eq!(client.commit(&target, &txid).await?, 2);
    let got = client.get(&target).await?;
    assert_eq!((got.value.as_ref(), got.revision, got.committed), (OBJECT, 2, false));
    assert_eq!(client.put(&target, Bytes::from_static(b"again")).await?, 3);
    assert_eq!(client.get(&target).await?.value, "again");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_staged_change_cannot_be_committed() -> anyhow::Result<()> {
    let target = new_object(OBJECT)?;
    let (store, _dir) = redb_store()?;
    let config = CkptConfig { transaction_timeout_ms: 300, ..test_config() };
    let server = Running::start(&config, store).await?;
    let client = &server.client;
    let (late, on_time) = (TxId::generate(), TxId::generate());
    client.stage_put(&target, &late, Bytes::from_static(b"late")).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let err = client.commit(&target, &late).await.unwrap_err();
    assert_eq!(status(&err), 409, "{err}");
    assert_eq!(client.get(&target).await?.value, OBJECT);
    client.stage_put(&target, &on_time, Bytes::from_static(b"on time")).await?;
    client.commit(&target, &on_time).await?;
    assert_eq!(client.get(&target).await?.value, "on time");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_404_and_storage_urls_are_normalized() -> anyhow::Result<()> {
    let auth = swift_auth();
    let target = new_object(OBJECT)?;
    let missing = Target {
        storage_url: format!("{}/{}/no-such-object", auth.storage_url, crate::util::CONTAINER),
        token: auth.token.clone(),
    };
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    assert_eq!(status(&server.client.get(&missing).await.unwrap_err()), 404);
    server.client.put(&target, Bytes::from_static(b"v")).await?;
    let respelled = Target {
        storage_url: target.storage_url.replacen("http://127.0.0.1", "HTTP://127.0.0.1", 1),
        ..target.clone()
    };
    assert_eq!(server.client.get(&respelled).await?.value, "v");
    server.stop().await
}
