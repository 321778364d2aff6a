//! Behaviour of the etcd engine alone: namespaces and etcd's limits.

use anyhow::ensure;
use strata_kv::{Category, Read, Store};

use strata_testkit::etcd_config;

#[test]
fn prefixes_keep_instances_apart() -> anyhow::Result<()> {
    let a = Store::etcd(&etcd_config(128))?;
    let b = Store::etcd(&etcd_config(128))?;
    let mut txn = a.write()?;
    txn.put(b"shared-name", b"a");
    txn.commit()?;
    ensure!(b.read()?.get(b"shared-name")?.is_none());
    ensure!(b.read()?.prefix(b"")?.is_empty());
    ensure!(a.read()?.prefix(b"")?.len() == 1);
    Ok(())
}

#[test]
fn oversized_transaction_is_a_clear_error() -> anyhow::Result<()> {
    let store = Store::etcd(&etcd_config(128))?;
    let mut txn = store.write()?;
    for i in 0..200 {
        txn.put(format!("k{i}").as_bytes(), b"v");
    }
    let err = txn.commit().err().ok_or_else(|| anyhow::anyhow!("200 writes committed"))?;
    ensure!(err.category() == Category::InvalidArgument, "{err}");
    ensure!(err.to_string().contains("max-txn-ops"), "{err}");
    Ok(())
}

#[test]
fn unreachable_etcd_is_unavailable() -> anyhow::Result<()> {
    let port = strata_testkit::free_port()?;
    let config = strata_kv::EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        connect_timeout_ms: 300,
        request_timeout_ms: 500,
        ..strata_kv::EtcdConfig::default()
    };
    let err = Store::etcd(&config).err().ok_or_else(|| anyhow::anyhow!("connected to nothing"))?;
    ensure!(err.category() == Category::Unavailable, "{err}");
    Ok(())
}
