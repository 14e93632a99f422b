//! Property tests of signing and recovery.

use proptest::prelude::*;
use wallets::{eip712::Encoder, keccak256, Eip712, Eip712Domain, Signature, Wallet, B256};

struct Note {
    id: u64,
    text: String,
}

impl Eip712 for Note {
    const NAME: &'static str = "Note";
    const TYPE: &'static str = "Note(uint64 id,string text)";
    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .uint(self.id)
            .string(&self.text)
            .finish()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_recover_round_trip(secret in any::<[u8; 32]>(), message in proptest::collection::vec(any::<u8>(), 0..256)) {
        // Almost every 32-byte string is a valid key; skip the rest.
        let Ok(wallet) = Wallet::from_bytes(&secret) else { return Ok(()) };
        let sig = wallet.sign_message(&message).unwrap();
        prop_assert_eq!(sig.recover_message(&message).unwrap(), wallet.address());
        // Canonical: low s, v in {27, 28}, and the bytes parse back to the same signature.
        prop_assert!(sig.s().as_bytes()[0] < 0x80);
        prop_assert!(sig.v() == 27 || sig.v() == 28);
        prop_assert_eq!(Signature::from_bytes(&sig.to_bytes()).unwrap(), sig);
    }

    #[test]
    fn typed_round_trip_and_tamper(id in any::<u64>(), text in ".{0,40}", chain in 1u64..100_000) {
        let wallet = Wallet::from_bytes(keccak256(text.as_bytes()).as_bytes()).unwrap();
        let domain = Eip712Domain::new("Agora", "1", chain, wallets::Address([9; 20]));
        let note = Note { id, text: text.clone() };
        let sig = wallet.sign_typed(&domain, &note).unwrap();
        prop_assert_eq!(sig.recover(&note.signing_hash(&domain)).unwrap(), wallet.address());
        // Any change of the message or the domain moves the signer.
        let other = Note { id: id.wrapping_add(1), text };
        prop_assert_ne!(sig.recover(&other.signing_hash(&domain)).ok(), Some(wallet.address()));
        let other_chain = Eip712Domain::new("Agora", "1", chain + 1, wallets::Address([9; 20]));
        prop_assert_ne!(sig.recover(&note.signing_hash(&other_chain)).ok(), Some(wallet.address()));
    }
}
