//! EIP-191 version 0x45 ("personal_sign") message hashing.

use crate::B256;
use keccak_asm::{Digest, Keccak256};

/// The prefix every personal message is hashed with.
pub const PREFIX: &str = "\x19Ethereum Signed Message:\n";

/// `keccak256("\x19Ethereum Signed Message:\n" || len(message) || message)`.
pub fn hash_message(message: impl AsRef<[u8]>) -> B256 {
    let message = message.as_ref();
    let mut hasher = Keccak256::new();
    hasher.update(PREFIX.as_bytes());
    hasher.update(message.len().to_string().as_bytes());
    hasher.update(message);
    B256(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_world_digest() {
        // The digest ethers, web3 and cast all give for "Hello World".
        assert_eq!(
            hash_message("Hello World").to_string(),
            "0xa1de988600a42c4b4ab089b619297c17d53cffae5d5120d82d8a92d0bb3b78f2"
        );
    }
}
