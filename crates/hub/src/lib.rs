//! The hub: volume sets, snapshots on branches, volumes, on the KV layer; three-way sync
//! with a remote hub; the hub's HTTP server and client.
