//! scrypt (RFC 7914) as Ethereum keystores use it.
//!
//! The `scrypt` crate enforces RFC 7914's `n < 2^(16 r)`, which the Web3 Secret
//! Storage test vector itself (n = 2^18, r = 1) and keystores written by other
//! tools break; geth and eth-account accept them. This is the same algorithm on
//! the same RustCrypto primitives (Salsa20/8 from `salsa20`, PBKDF2-HMAC-SHA256
//! from `pbkdf2`) without that check, with its own bounds on memory instead.

use pbkdf2::pbkdf2_hmac;
use salsa20::cipher::{typenum::U4, StreamCipherCore};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Largest `128 · r · n` (the size of ROMix's table) accepted: 1 GiB.
const MAX_MEMORY: u64 = 1 << 30;
/// Largest `128 · r · p` accepted.
const MAX_PARALLEL_MEMORY: u64 = 1 << 28;
/// Largest `n · r · p` accepted: the work of a derivation, four times that of geth's
/// standard keystore (n = 2^18, r = 8, p = 1) and of the Web3 test vector (n = 2^18,
/// r = 1, p = 8). Memory bounds alone let a hostile keystore ask for hours of CPU
/// with a large `p`.
const MAX_WORK: u64 = MAX_MEMORY / 128;

/// Derives `output.len()` bytes from `password` and `salt` with cost `n = 2^log_n`.
///
/// # Errors
/// A message naming the parameter that is out of range.
pub(crate) fn derive(
    password: &[u8],
    salt: &[u8],
    log_n: u8,
    r: u32,
    p: u32,
    output: &mut [u8],
) -> Result<(), String> {
    if log_n == 0 || log_n > 40 {
        return Err(format!("n = 2^{log_n} must be between 2 and 2^40"));
    }
    if r == 0 || p == 0 {
        return Err(format!("r = {r} and p = {p} must both be at least 1"));
    }
    let n = 1u64 << log_n;
    let block = 128 * u64::from(r);
    if block.saturating_mul(n) > MAX_MEMORY {
        return Err(format!(
            "n = {n}, r = {r} would need {} MiB, over the limit of {} MiB",
            block.saturating_mul(n) >> 20,
            MAX_MEMORY >> 20
        ));
    }
    if block.saturating_mul(u64::from(p)) > MAX_PARALLEL_MEMORY {
        return Err(format!("r = {r}, p = {p} is too large"));
    }
    let work = n.saturating_mul(u64::from(r)).saturating_mul(u64::from(p));
    if work > MAX_WORK {
        // With p = 1 the memory bound above already keeps n·r under the limit.
        return Err(format!(
            "p = {p}: n·r·p = {n}·{r}·{p} is over the work limit of 2^{} (four times geth's standard keystore)",
            MAX_WORK.trailing_zeros()
        ));
    }
    // Both products were bounded above, so they fit in usize on 64-bit targets.
    let block = usize::try_from(block).map_err(|_| "r too large".to_owned())?;
    let n = usize::try_from(n).map_err(|_| "n too large".to_owned())?;
    let mut b = Zeroizing::new(vec![0u8; block * p as usize]);
    pbkdf2_hmac::<Sha256>(password, salt, 1, &mut b);
    let mut v = Zeroizing::new(vec![0u8; block * n]);
    let mut t = Zeroizing::new(vec![0u8; block]);
    for chunk in b.chunks_mut(block) {
        ro_mix(chunk, &mut v, &mut t, n);
    }
    pbkdf2_hmac::<Sha256>(password, &b, 1, output);
    Ok(())
}

/// ROMix in place on one `128 · r`-byte block; `v` holds `n` blocks, `t` one.
fn ro_mix(b: &mut [u8], v: &mut [u8], t: &mut [u8], n: usize) {
    let len = b.len();
    for slot in v.chunks_mut(len) {
        slot.copy_from_slice(b);
        block_mix(slot, b);
    }
    for _ in 0..n {
        let j = integerify(b) & (n - 1);
        if let Some(vj) = v.get(j * len..(j + 1) * len) {
            for ((t, b), v) in t.iter_mut().zip(b.iter()).zip(vj) {
                *t = b ^ v;
            }
        }
        block_mix(t, b);
    }
}

/// The low 32 bits of the last 64-byte sub-block, little-endian, as an index.
fn integerify(b: &[u8]) -> usize {
    let tail = b.len().saturating_sub(64);
    let mut word = [0u8; 4];
    if let Some(bytes) = b.get(tail..tail + 4) {
        word.copy_from_slice(bytes);
    }
    u32::from_le_bytes(word) as usize
}

/// BlockMix with Salsa20/8: `input` and `output` are `2r` sub-blocks of 64 bytes.
fn block_mix(input: &[u8], output: &mut [u8]) {
    type Salsa20x8 = salsa20::SalsaCore<U4>;
    let half = input.len() / 2;
    let mut x = [0u8; 64];
    if let Some(last) = input.get(input.len() - 64..) {
        x.copy_from_slice(last);
    }
    for (i, chunk) in input.chunks(64).enumerate() {
        let mut state = [0u32; 16];
        for ((word, xs), cs) in state
            .iter_mut()
            .zip(x.chunks_exact(4))
            .zip(chunk.chunks_exact(4))
        {
            let mut w = [0u8; 4];
            for ((w, a), b) in w.iter_mut().zip(xs).zip(cs) {
                *w = a ^ b;
            }
            *word = u32::from_le_bytes(w);
        }
        Salsa20x8::from_raw_state(state).write_keystream_block((&mut x).into());
        // Even sub-blocks go to the first half, odd ones to the second.
        let pos = (i / 2) * 64 + if i % 2 == 0 { 0 } else { half };
        if let Some(out) = output.get_mut(pos..pos + 64) {
            out.copy_from_slice(&x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> String {
        let mut out = [0u8; 64];
        derive(password, salt, log_n, r, p, &mut out).unwrap();
        hex::encode(out)
    }

    /// Test vectors of RFC 7914, section 12.
    #[test]
    fn rfc7914_vectors() {
        assert_eq!(
            hex_of(b"", b"", 4, 1, 1),
            "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"
        );
        assert_eq!(
            hex_of(b"password", b"NaCl", 10, 8, 16),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
    }

    #[test]
    fn bounds_are_enforced() {
        let mut out = [0u8; 32];
        assert!(derive(b"", b"", 0, 1, 1, &mut out).is_err());
        assert!(derive(b"", b"", 4, 0, 1, &mut out).is_err());
        assert!(derive(b"", b"", 30, 8, 1, &mut out)
            .unwrap_err()
            .contains("MiB"));
    }
}
