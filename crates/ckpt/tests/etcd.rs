//! The highly available deployment: two strata instances on one etcd; a POST on one is seen
//! by a GET on the other.

use bytes::Bytes;
use strata_kv::{EtcdConfig, Store};
use strata_testkit::shared_etcd;

use crate::util::{Running, new_object, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_one_instance_is_seen_by_a_get_on_the_other() -> anyhow::Result<()> {
    let target = new_object(b"object")?;
    let etcd = tokio::task::spawn_blocking(shared_etcd).await?;
    let config = EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: format!("ckpt-test-{}/", std::process::id()),
        ..EtcdConfig::default()
    };
    // Connecting blocks on the engine's own runtime, which must not run inside this one.
    let open = || {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Store::etcd(&config))
    };
    let first = Running::start(&test_config(), open().await??).await?;
    let second = Running::start(&test_config(), open().await??).await?;
    for round in 1..=3u64 {
        let value = Bytes::from(format!("round {round}"));
        assert_eq!(first.client.put(&target, value.clone()).await?, 2 * round - 1);
        let seen = second.client.get(&target).await?;
        assert_eq!((seen.value, seen.revision), (value, 2 * round - 1));
        let next = Bytes::from(format!("round {round}, from the second"));
        assert_eq!(second.client.put(&target, next.clone()).await?, 2 * round);
        assert_eq!(first.client.get(&target).await?.value, next);
    }
    second.client.delete(&target).await?;
    let got = first.client.get(&target).await?;
    assert_eq!((got.value.as_ref(), got.committed), (&b"object"[..], false));
    first.stop().await?;
    second.stop().await
}
