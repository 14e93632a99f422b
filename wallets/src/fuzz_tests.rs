//! Fuzz tests (`fuzz_…`) of the parsers of outside input in this crate: amounts
//! (people's text and the wire's JSON), addresses, EIP-712 typed-data JSON (parsed and
//! hashed) and keystore JSON (parsed and decrypted). See the README's "Fuzzing".

use std::path::Path;

use aes::cipher::{KeyIvInit, StreamCipher};
use fuzz_support::proptest::prelude::*;
use fuzz_support::proptest::strategy::Union;
use fuzz_support::{
    arbitrary_text, explained, fuzz, json_value, mutate_json, mutate_text, nested_json, Case,
};
use serde_json::{json, Value};

use crate::eip712::tests_support::MAIL_JSON;
use crate::{keccak256, Address, Amount, Error, KeystoreFile, TypedData, Wallet};

const AMOUNT_TOKENS: &[&str] = &[
    "USDC",
    "usdc",
    "UsDc",
    "ETH",
    " ",
    "\t",
    "\u{a0}",
    ".",
    "..",
    "-",
    "+",
    "e",
    "E",
    "_",
    ",",
    "0",
    "000000",
    "1",
    "9",
    "340282366920938463463374607431768211455",
    "340282366920938463463374607431768211456",
    "340282366920938.463463",
    "340282366920938463463374607431768.211455",
];

fn amount_like() -> BoxedStrategy<String> {
    prop_oneof![
        "[ \t]{0,2}[+-]?[0-9]{0,42}(\\.[0-9]{0,9})?[ \t]{0,3}(USDC|usdc|UsDc|ETH|USD C)?[ \t]{0,2}",
        arbitrary_text(),
        mutate_text("12.50 USDC".into(), AMOUNT_TOKENS),
        mutate_text(
            "340282366920938463463374607431.768211 USDC".into(),
            AMOUNT_TOKENS
        ),
    ]
    .boxed()
}

/// `Amount::from_str`: whole tokens as people write them.
#[test]
fn fuzz_amount_from_str() {
    let valid = any::<u128>().prop_flat_map(|units| {
        let a = Amount::from_base_units(units);
        prop::sample::select(vec![
            a.to_string(),
            a.to_decimal_string(),
            format!("  {}\tusdc ", a.to_decimal_string()),
        ])
        .prop_map(move |text| (text, a))
    });
    let cases = prop_oneof![
        1 => valid.prop_map(Case::Valid),
        3 => amount_like().prop_map(|t| Case::Fuzzed((t, Amount::ZERO))),
    ];
    fuzz("fuzz_amount_from_str", 2000, cases, |case| match case {
        Case::Valid((text, want)) => match text.parse::<Amount>() {
            Ok(got) if got == *want => Ok(()),
            other => Err(format!("{text:?} gave {other:?}, not {want}")),
        },
        Case::Fuzzed((text, _)) => {
            let parsed = text.parse::<Amount>();
            explained(&parsed)?;
            // Whatever parses shows in a form that parses back to itself.
            if let Ok(a) = parsed {
                let back = a.to_string().parse::<Amount>();
                if back.as_ref().ok() != Some(&a) {
                    return Err(format!("{text:?} → {a} → {back:?}"));
                }
            }
            Ok(())
        }
    });
}

/// `Amount`'s serde form: a JSON string of base units.
#[test]
fn fuzz_amount_serde() {
    let cases = prop_oneof![
        any::<u128>().prop_map(|u| Case::Valid(format!("\"{u}\""))),
        any::<u128>().prop_map(|u| Case::Valid(format!("\"{u:0>45}\""))),
        "\"[+-]?[0-9]{0,45}\"".prop_map(Case::Fuzzed),
        json_value(AMOUNT_TOKENS).prop_map(|v| Case::Fuzzed(v.to_string())),
        mutate_text("\"12500000\"".into(), AMOUNT_TOKENS).prop_map(Case::Fuzzed),
        arbitrary_text().prop_map(Case::Fuzzed),
    ];
    fuzz("fuzz_amount_serde", 2000, cases, |case| {
        let (Case::Valid(text) | Case::Fuzzed(text)) = case;
        let parsed = serde_json::from_str::<Amount>(text);
        explained(&parsed)?;
        if let Ok(a) = parsed {
            let string: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let digits = string.trim_start_matches('0');
            let expected = if digits.is_empty() { "0" } else { digits };
            if serde_json::to_string(&a).ok() != Some(format!("\"{expected}\"")) {
                return Err(format!("{text} parsed to {a}, which serializes otherwise"));
            }
        } else if matches!(case, Case::Valid(_)) {
            return Err(format!("{text} refused: {parsed:?}"));
        }
        Ok(())
    });
}

/// A valid address in one of the forms `Address::parse` accepts.
fn address_forms() -> BoxedStrategy<(String, Address)> {
    (any::<[u8; 20]>(), 0usize..6)
        .prop_map(|(bytes, form)| {
            let a = Address(bytes);
            let lower = hex::encode(bytes);
            let text = match form {
                0 => a.to_string(),
                1 => format!("0x{lower}"),
                2 => format!("0x{}", lower.to_uppercase()),
                3 => lower.clone(),
                4 => format!("0X{lower}"),
                _ => format!("0X{}", lower.to_uppercase()),
            };
            (text, a)
        })
        .boxed()
}

/// `Address::parse`: hex with or without `0x`, EIP-55 checksums.
#[test]
fn fuzz_address_parse() {
    let flipped = (address_forms(), any::<prop::sample::Index>()).prop_map(|((text, _), i)| {
        // One letter's case flipped: a mixed-case string with a wrong checksum, or
        // one that became single-case (no checksum at all).
        let mut chars: Vec<char> = text.chars().collect();
        let k = i.index(chars.len());
        if k >= 2 || !text.starts_with("0x") {
            chars[k] = if chars[k].is_ascii_lowercase() {
                chars[k].to_ascii_uppercase()
            } else {
                chars[k].to_ascii_lowercase()
            };
        }
        chars.into_iter().collect::<String>()
    });
    let cases = prop_oneof![
        address_forms().prop_map(Case::Valid),
        flipped.prop_map(|t| Case::Fuzzed((t, Address([0; 20])))),
        "(0x|0X)?[0-9a-fA-F]{36,44}".prop_map(|t| Case::Fuzzed((t, Address([0; 20])))),
        arbitrary_text().prop_map(|t| Case::Fuzzed((t, Address([0; 20])))),
        mutate_text(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            &["0x", "0X", "a", "A", "g", " ", "00", "\u{e9}"]
        )
        .prop_map(|t| Case::Fuzzed((t, Address([0; 20])))),
    ];
    fuzz("fuzz_address_parse", 2000, cases, |case| match case {
        Case::Valid((text, want)) => match Address::parse(text) {
            Ok(got) if got == *want => Ok(()),
            other => Err(format!("{text:?} gave {other:?}, not {want}")),
        },
        Case::Fuzzed((text, _)) => {
            let parsed = Address::parse(text);
            explained(&parsed)?;
            if let Ok(a) = parsed {
                // Whatever parses has these very bytes, in any case.
                let digits = text.get(2..).unwrap_or_default().to_ascii_lowercase();
                let bare = text.to_ascii_lowercase();
                let lower = hex::encode(a.as_bytes());
                if digits != lower && bare != lower {
                    return Err(format!("{text:?} parsed to {a}"));
                }
            }
            Ok(())
        }
    });
}

const TYPED_TOKENS: &[&str] = &[
    "types",
    "primaryType",
    "domain",
    "message",
    "EIP712Domain",
    "name",
    "version",
    "chainId",
    "verifyingContract",
    "salt",
    "type",
    "Mail",
    "Person",
    "Order",
    "from",
    "to",
    "contents",
    "wallet",
    "people",
    "address",
    "bool",
    "string",
    "bytes",
    "bytes0",
    "bytes1",
    "bytes4",
    "bytes32",
    "bytes33",
    "uint",
    "uint0",
    "uint7",
    "uint8",
    "uint64",
    "uint256",
    "uint264",
    "int",
    "int8",
    "int64",
    "int255",
    "int256",
    "Person[]",
    "Person[2]",
    "Person[][]",
    "Mail[]",
    "Order[1]",
    "string[]",
    "uint256[3]",
    "uint8[0]",
    "bytes32[]",
    "int64[2][]",
    "[]",
    "[",
    "]",
    "Person]",
    "Person[",
    "uint256[18446744073709551616]",
    "uint256[-1]",
    "uint256[ 1]",
    "TransferWithAuthorization",
    "Permit",
    "0x",
    "0X",
    "0x0",
    "0x00",
    "0x01020304",
    "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
    "0xcccccccccccccccccccccccccccccccccccccccc",
    "-",
    "-0",
    "-1",
    "-0x1",
    "-0x",
    "0x10000000000000000000000000000000000000000000000000000000000000000",
    "115792089237316195423570985008687907853269984665640564039457584007913129639935",
    "115792089237316195423570985008687907853269984665640564039457584007913129639936",
    "57896044618658097711785492504343953926634992332820282019728792003956564819968",
    "-57896044618658097711785492504343953926634992332820282019728792003956564819968",
    "-57896044618658097711785492504343953926634992332820282019728792003956564819969",
];

/// Typed data with arrays, fixed arrays, signed and unsigned integers, bytes, bool
/// and nested structs, its domain without an `EIP712Domain` type.
const ORDER_JSON: &str = r#"{
    "types": {
        "Order": [
            {"name": "amounts", "type": "uint256[]"},
            {"name": "deltas", "type": "int64[2]"},
            {"name": "ok", "type": "bool"},
            {"name": "blob", "type": "bytes"},
            {"name": "tag", "type": "bytes4"},
            {"name": "people", "type": "Person[]"},
            {"name": "grid", "type": "uint8[2][]"},
            {"name": "id", "type": "bytes32"}
        ],
        "Person": [
            {"name": "name", "type": "string"},
            {"name": "wallet", "type": "address"}
        ]
    },
    "primaryType": "Order",
    "domain": {"name": "Agora", "version": "1", "chainId": 1337,
               "verifyingContract": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"},
    "message": {
        "amounts": ["1", "0x10", 3, "115792089237316195423570985008687907853269984665640564039457584007913129639935"],
        "deltas": [-5, "-0x7f"],
        "ok": true,
        "blob": "0xdeadbeef",
        "tag": "0x01020304",
        "people": [{"name": "Ada", "wallet": "0xcd2a3d9f938e13cd947ec05abc7fe734df8dd826"}],
        "grid": [[1, 2], [255, "0"]],
        "id": "0x000000000000000000000000000000000000000000000000000000000000002a"
    }
}"#;

/// `TypedData::from_json`, then everything a signer computes from it.
#[test]
fn fuzz_typed_data() {
    let mail: Value = serde_json::from_str(MAIL_JSON).unwrap();
    let order: Value = serde_json::from_str(ORDER_JSON).unwrap();
    let cases = prop_oneof![
        1 => prop::sample::select(vec![MAIL_JSON.to_owned(), ORDER_JSON.to_owned(), mail.to_string()])
            .prop_map(Case::Valid),
        4 => mutate_json(mail.clone(), TYPED_TOKENS).prop_map(|v| Case::Fuzzed(v.to_string())),
        4 => mutate_json(order.clone(), TYPED_TOKENS).prop_map(|v| Case::Fuzzed(v.to_string())),
        1 => mutate_text(ORDER_JSON.to_owned(), TYPED_TOKENS).prop_map(Case::Fuzzed),
        1 => nested_json().prop_map(Case::Fuzzed),
        1 => arbitrary_text().prop_map(Case::Fuzzed),
    ];
    fuzz("fuzz_typed_data", 1000, cases, |case| {
        let (Case::Valid(text) | Case::Fuzzed(text)) = case;
        let parsed = TypedData::from_json(text);
        explained(&parsed)?;
        let Ok(td) = parsed else {
            return match case {
                Case::Valid(_) => Err(format!("refused: {parsed:?}")),
                Case::Fuzzed(_) => Ok(()),
            };
        };
        let hash = td.signing_hash();
        explained(&hash)?;
        explained(&td.encode_type(&td.primary_type))?;
        explained(&td.verifying_contract())?;
        let _ = td.is_payment();
        if let Case::Valid(_) = case {
            let hash = hash.map_err(|e| e.to_string())?;
            if text.contains("Ether Mail")
                && hash.to_string()
                    != "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
            {
                return Err(format!("the Mail example hashes to {hash}"));
            }
        }
        Ok(())
    });
}

const PASSWORD: &[u8] = b"fuzz";
const KEY: [u8; 32] = [0x42; 32];

/// A keystore of [`KEY`] under [`PASSWORD`] with cheap KDF parameters.
fn keystore(kdf: &str, crypto_key: &str, with_address: bool) -> Value {
    let salt = [7u8; 16];
    let iv = [9u8; 16];
    let mut derived = [0u8; 32];
    let params = if kdf == "scrypt" {
        crate::scrypt::derive(PASSWORD, &salt, 2, 2, 1, &mut derived).unwrap();
        json!({"dklen": 32, "n": 4, "r": 2, "p": 1, "salt": hex::encode(salt)})
    } else {
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(PASSWORD, &salt, 3, &mut derived);
        json!({"c": 3, "dklen": 32, "prf": "hmac-sha256", "salt": hex::encode(salt)})
    };
    let mut ciphertext = KEY.to_vec();
    ctr::Ctr128BE::<aes::Aes128>::new_from_slices(&derived[..16], &iv)
        .unwrap()
        .apply_keystream(&mut ciphertext);
    let mac = keccak256([&derived[16..], &ciphertext[..]].concat());
    let mut doc = json!({
        crypto_key: {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": hex::encode(iv)},
            "ciphertext": hex::encode(&ciphertext),
            "kdf": kdf,
            "kdfparams": params,
            "mac": hex::encode(mac.as_bytes()),
        },
        "id": "3198bc9c-6672-5ab3-d995-4942343ae5b6",
        "version": 3,
    });
    if with_address {
        let wallet = Wallet::from_bytes(&KEY).unwrap();
        doc["address"] = hex::encode(wallet.address().as_bytes()).into();
    }
    doc
}

/// Keeps a mutated keystore cheap to decrypt: numeric KDF costs above small caps
/// are brought under them (the parser's own caps allow up to four times geth's
/// standard scrypt work and 10 million pbkdf2 rounds, seconds by design).
fn cheap(mut doc: Value) -> Value {
    for section in ["crypto", "Crypto"] {
        if let Some(Value::Object(params)) = doc.pointer_mut(&format!("/{section}/kdfparams")) {
            for (name, cap) in [("n", 256u64), ("r", 4), ("p", 2), ("c", 256)] {
                if let Some(v) = params.get_mut(name) {
                    if let Some(n) = v.as_u64().filter(|n| *n > cap) {
                        *v = (n % (cap + 1)).into();
                    }
                }
            }
        }
    }
    doc
}

const KEYSTORE_TOKENS: &[&str] = &[
    "crypto",
    "Crypto",
    "cipher",
    "cipherparams",
    "iv",
    "ciphertext",
    "kdf",
    "kdfparams",
    "mac",
    "id",
    "version",
    "address",
    "aes-128-ctr",
    "aes-256-gcm",
    "scrypt",
    "pbkdf2",
    "hmac-sha256",
    "hmac-sha512",
    "dklen",
    "n",
    "r",
    "p",
    "c",
    "prf",
    "salt",
    "",
    "00",
    "0x",
    "0x00",
    "090909090909090909090909090909",
    "09090909090909090909090909090909",
    "0909090909090909090909090909090909",
    "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
];

/// Keystore JSON parsed, its address read, then decrypted.
#[test]
fn fuzz_keystore() {
    let docs = vec![
        keystore("scrypt", "crypto", true),
        keystore("pbkdf2", "crypto", true),
        keystore("scrypt", "Crypto", false),
        keystore("pbkdf2", "Crypto", false),
    ];
    let expected = Wallet::from_bytes(&KEY).unwrap().address();
    let mutated =
        Union::new(docs.iter().map(|d| mutate_json(d.clone(), KEYSTORE_TOKENS))).prop_map(cheap);
    let cut = Union::new(
        docs.iter()
            .map(|d| mutate_text(d.to_string(), KEYSTORE_TOKENS)),
    );
    let cases = prop_oneof![
        1 => prop::sample::select(docs.clone()).prop_map(|d| Case::Valid(d.to_string())),
        8 => mutated.prop_map(|d| Case::Fuzzed(d.to_string())),
        1 => cut.prop_map(Case::Fuzzed),
        1 => arbitrary_text().prop_map(Case::Fuzzed),
    ];
    let path = Path::new("fuzz.json");
    fuzz("fuzz_keystore", 1000, cases, |case| {
        let (Case::Valid(text) | Case::Fuzzed(text)) = case;
        let parsed = serde_json::from_str::<KeystoreFile>(text);
        explained(&parsed)?;
        let Ok(file) = parsed else {
            return match case {
                Case::Valid(_) => Err(format!("refused: {parsed:?}")),
                Case::Fuzzed(_) => Ok(()),
            };
        };
        explained(&file.address(path))?;
        let opened = file.decrypt(PASSWORD, path);
        explained(&opened)?;
        if let Case::Valid(_) = case {
            match opened {
                Ok(w) if w.address() == expected => {}
                other => return Err(format!("valid keystore gave {other:?}")),
            }
            match file.decrypt(b"fuzZ", path) {
                Err(Error::KeystoreMac(_)) => {}
                other => return Err(format!("a wrong password gave {other:?}")),
            }
        }
        Ok(())
    });
}
