//! The k+m shard layout of one aggregate: length prefix, data shards, Reed-Solomon parity.
//!
//! Pure functions, no I/O. Layout: `docs/design/tlog-format.md`, "Redis k+m shards".

use reed_solomon_simd::{decode, encode};

/// Bytes of the little-endian length prefix before the envelope.
pub const PREFIX: usize = 8;

/// Splits `envelope` into `k` data shards and `m` parity shards of equal, even length.
pub fn split(envelope: &[u8], k: usize, m: usize) -> Result<Vec<Vec<u8>>, String> {
    let total = PREFIX + envelope.len();
    let shard_len = shard_len(total, k);
    let mut framed = Vec::with_capacity(shard_len * k);
    framed.extend_from_slice(&(envelope.len() as u64).to_le_bytes());
    framed.extend_from_slice(envelope);
    framed.resize(shard_len * k, 0);
    let mut shards: Vec<Vec<u8>> = framed.chunks(shard_len).map(<[u8]>::to_vec).collect();
    if m > 0 {
        let parity = encode(k, m, &shards).map_err(|e| format!("reed-solomon encode: {e}"))?;
        shards.extend(parity);
    }
    Ok(shards)
}

/// Rebuilds the envelope from `shards` (index `0..k+m`, `None` when missing); all present
/// shards must have the same length and at least `k` must be present.
pub fn join(shards: &[Option<Vec<u8>>], k: usize, m: usize) -> Result<Vec<u8>, String> {
    let present = shards.iter().filter(|s| s.is_some()).count();
    if present < k {
        return Err(format!("only {present} of {} shards, {k} needed", k + m));
    }
    let mut data: Vec<Vec<u8>> = Vec::with_capacity(k);
    if shards[..k].iter().all(Option::is_some) {
        data.extend(shards[..k].iter().flatten().cloned());
    } else {
        let original = shards[..k].iter().enumerate().filter_map(|(i, s)| Some((i, s.as_ref()?)));
        let recovery = shards[k..].iter().enumerate().filter_map(|(i, s)| Some((i, s.as_ref()?)));
        let mut restored =
            decode(k, m, original, recovery).map_err(|e| format!("reed-solomon decode: {e}"))?;
        for (i, shard) in shards[..k].iter().enumerate() {
            match shard {
                Some(shard) => data.push(shard.clone()),
                None => data.push(restored.remove(&i).ok_or("decoder lost a shard")?),
            }
        }
    }
    let framed = data.concat();
    let len_bytes: [u8; PREFIX] = framed
        .get(..PREFIX)
        .and_then(|b| b.try_into().ok())
        .ok_or("shards shorter than the length prefix")?;
    let len = u64::from_le_bytes(len_bytes);
    let end = usize::try_from(len).ok().and_then(|len| len.checked_add(PREFIX));
    match end {
        Some(end) if end <= framed.len() && framed.len() - end < 2 * k => {
            Ok(framed[PREFIX..end].to_vec())
        }
        _ => Err(format!("length prefix {len} does not fit {} bytes of shards", framed.len())),
    }
}

/// The length of each shard for `total` framed bytes: `ceil(total / k)`, rounded up to even
/// (the Reed-Solomon coder works on 16-bit words).
fn shard_len(total: usize, k: usize) -> usize {
    let len = total.div_ceil(k);
    len + len % 2
}

#[cfg(test)]
mod tests {
    use crate::storage::redis::shards::{join, split};

    #[test]
    fn rebuilds_from_any_k_shards() {
        let envelope: Vec<u8> = (0..1001u32).map(|i| (i * 7) as u8).collect();
        let shards = split(&envelope, 4, 2).unwrap();
        assert_eq!(shards.len(), 6);
        for a in 0..6 {
            for b in a..6 {
                let mut some: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
                some[a] = None;
                some[b] = None;
                assert_eq!(join(&some, 4, 2).unwrap(), envelope);
            }
        }
        let mut three: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
        three[0] = None;
        three[1] = None;
        three[5] = None;
        assert!(join(&three, 4, 2).is_err());
    }

    #[test]
    fn works_without_parity() {
        let shards = split(b"abc", 3, 0).unwrap();
        let some: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
        assert_eq!(join(&some, 3, 0).unwrap(), b"abc");
    }
}
