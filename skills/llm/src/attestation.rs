//! Signed statements that an output came from a model, a prompt and sampling settings.
//!
//! An [`InferenceAttestation`] is an EIP-712 struct of four hashes: the model
//! fingerprint (SHA-256 of the GGUF), the prompt hash (Keccak-256 of the exact text
//! the model saw, after the chat template), the sampling hash
//! ([`SamplingParams::hash_with_grammar_at`] the record's [`SpecVersion`]: every
//! parameter, the seed and the grammar)
//! and the output hash (Keccak-256 of the generated text). The seller signs it with
//! its [`Wallet`]; anyone holding the [`InferenceRecord`] can check each hash, recover
//! the signer, and (with the engine's `verify`) re-run the inference and compare.

use serde::{Deserialize, Serialize};
use wallets::eip712::Encoder;
use wallets::{keccak256, Address, Eip712, Eip712Domain, Signature, Wallet, B256};

use super::model::ModelFingerprint;
use super::sampling::{Prompt, SamplingParams, SpecVersion};
use crate::{Error, Result};

/// The EIP-712 domain of inference attestations: name `Agora Inference`, version `1`,
/// and the chain id when the attestation is meant for one chain.
pub fn attestation_domain(chain_id: Option<u64>) -> Eip712Domain {
    Eip712Domain {
        name: Some("Agora Inference".to_owned()),
        version: Some("1".to_owned()),
        chain_id,
        ..Eip712Domain::default()
    }
}

/// The attested hashes of one inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceAttestation {
    /// SHA-256 of the GGUF file.
    pub model_fingerprint: B256,
    /// Keccak-256 of the prompt text after the chat template.
    pub prompt_hash: B256,
    /// [`SamplingParams::hash_with_grammar_at`] the record's [`SpecVersion`].
    pub sampling_hash: B256,
    /// Keccak-256 of the output text.
    pub output_hash: B256,
}

impl Eip712 for InferenceAttestation {
    const NAME: &'static str = "InferenceAttestation";
    const TYPE: &'static str = "InferenceAttestation(bytes32 modelFingerprint,bytes32 promptHash,bytes32 samplingHash,bytes32 outputHash)";

    fn struct_hash(&self) -> B256 {
        Encoder::new(Self::type_hash())
            .b256(self.model_fingerprint)
            .b256(self.prompt_hash)
            .b256(self.sampling_hash)
            .b256(self.output_hash)
            .finish()
    }
}

/// Everything needed to check an attestation and re-run the inference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceRecord {
    /// The model's fingerprint.
    pub model: ModelFingerprint,
    /// The prompt as the caller gave it.
    pub prompt: Prompt,
    /// The exact text the model saw (the prompt after the chat template).
    pub prompt_text: String,
    /// The sampling parameters, seed included.
    pub params: SamplingParams,
    /// The GBNF grammar the output was constrained by, if any.
    pub grammar: Option<String>,
    /// The sampling spec version: how the grammar was made and the sampling hash is
    /// computed. Records from before versions existed read as version 1.
    #[serde(default = "SpecVersion::first")]
    pub spec_version: SpecVersion,
    /// The generated text.
    pub output: String,
}

impl InferenceRecord {
    /// The attestation of this record.
    pub fn attestation(&self) -> InferenceAttestation {
        InferenceAttestation {
            model_fingerprint: self.model.to_b256(),
            prompt_hash: keccak256(self.prompt_text.as_bytes()),
            sampling_hash: self
                .params
                .hash_with_grammar_at(self.spec_version, self.grammar.as_deref()),
            output_hash: keccak256(self.output.as_bytes()),
        }
    }

    /// Checks that `attestation` attests exactly this record (all four hashes).
    ///
    /// # Errors
    /// [`Error::AttestationMismatch`] naming the first differing field.
    pub fn check(&self, attestation: &InferenceAttestation) -> Result<()> {
        let mine = self.attestation();
        let fields = [
            (
                "modelFingerprint",
                attestation.model_fingerprint,
                mine.model_fingerprint,
            ),
            ("promptHash", attestation.prompt_hash, mine.prompt_hash),
            (
                "samplingHash",
                attestation.sampling_hash,
                mine.sampling_hash,
            ),
            ("outputHash", attestation.output_hash, mine.output_hash),
        ];
        for (field, attested, actual) in fields {
            if attested != actual {
                return Err(Error::AttestationMismatch {
                    field,
                    attested: attested.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// An attestation with its signature and the signer's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAttestation {
    /// What is attested.
    pub attestation: InferenceAttestation,
    /// The signer's EIP-712 signature over it.
    pub signature: Signature,
    /// Who claims to have signed it.
    pub signer: Address,
}

impl SignedAttestation {
    /// Signs `attestation` in `domain` with `wallet`.
    ///
    /// # Errors
    /// [`Error::Wallet`] if signing fails.
    pub fn sign(
        wallet: &Wallet,
        domain: &Eip712Domain,
        attestation: InferenceAttestation,
    ) -> Result<Self> {
        let signature = wallet.sign_typed(domain, &attestation)?;
        Ok(Self {
            attestation,
            signature,
            signer: wallet.address(),
        })
    }

    /// The address that signed it, recovered from the signature.
    ///
    /// # Errors
    /// [`Error::Wallet`] if no key recovers from the signature.
    pub fn recover(&self, domain: &Eip712Domain) -> Result<Address> {
        Ok(self
            .signature
            .recover(&self.attestation.signing_hash(domain))?)
    }

    /// Checks the signature: it recovers to [`Self::signer`], and to `expected` when
    /// given (the seller the buyer dealt with).
    ///
    /// # Errors
    /// [`Error::AttestationMismatch`] with field `signer`, or [`Error::Wallet`].
    pub fn verify_signature(
        &self,
        domain: &Eip712Domain,
        expected: Option<Address>,
    ) -> Result<Address> {
        let recovered = self.recover(domain)?;
        for claimed in std::iter::once(self.signer).chain(expected) {
            if recovered != claimed {
                return Err(Error::AttestationMismatch {
                    field: "signer",
                    attested: claimed.to_string(),
                    actual: recovered.to_string(),
                });
            }
        }
        Ok(recovered)
    }

    /// Checks the signature and that it attests exactly `record`, without re-running
    /// the inference (the engine's `verify` also re-runs it).
    ///
    /// # Errors
    /// As [`Self::verify_signature`] and [`InferenceRecord::check`].
    pub fn verify_record(
        &self,
        domain: &Eip712Domain,
        record: &InferenceRecord,
        expected_signer: Option<Address>,
    ) -> Result<Address> {
        let signer = self.verify_signature(domain, expected_signer)?;
        record.check(&self.attestation)?;
        Ok(signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> InferenceRecord {
        InferenceRecord {
            model: ModelFingerprint::from_bytes([7; 32]),
            prompt: Prompt::user("hi"),
            prompt_text: "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n".to_owned(),
            params: SamplingParams::default().with_seed(3),
            grammar: None,
            spec_version: SpecVersion::CURRENT,
            output: "hello".to_owned(),
        }
    }

    #[test]
    fn records_without_a_version_are_version_1_and_hash_as_it() {
        let rec = record();
        let mut json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["specVersion"], 2);
        json.as_object_mut().unwrap().remove("specVersion");
        let old: InferenceRecord = serde_json::from_value(json).unwrap();
        assert_eq!(old.spec_version, SpecVersion::HandWrittenGrammar);
        assert_eq!(
            old.attestation().sampling_hash,
            rec.params
                .hash_with_grammar_at(SpecVersion::HandWrittenGrammar, None)
        );
        assert_ne!(old.attestation(), rec.attestation());
    }

    #[test]
    fn signed_attestation_verifies_and_names_tampered_fields() {
        let wallet = Wallet::random();
        let domain = attestation_domain(Some(31337));
        let rec = record();
        let signed = SignedAttestation::sign(&wallet, &domain, rec.attestation()).unwrap();
        assert_eq!(
            signed
                .verify_record(&domain, &rec, Some(wallet.address()))
                .unwrap(),
            wallet.address()
        );

        let mut out = rec.clone();
        out.output.push('!');
        let err = signed.verify_record(&domain, &out, None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::AttestationMismatch {
                    field: "outputHash",
                    ..
                }
            ),
            "{err}"
        );

        let mut seed = rec.clone();
        seed.params = seed.params.with_seed(4);
        let err = signed.verify_record(&domain, &seed, None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::AttestationMismatch {
                    field: "samplingHash",
                    ..
                }
            ),
            "{err}"
        );

        let other = Wallet::random();
        let err = signed
            .verify_record(&domain, &rec, Some(other.address()))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::AttestationMismatch {
                    field: "signer",
                    ..
                }
            ),
            "{err}"
        );

        // A signature made in another domain recovers to someone else.
        let err = signed
            .verify_record(&attestation_domain(Some(1)), &rec, None)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::AttestationMismatch {
                    field: "signer",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn signed_attestation_round_trips_json() {
        let wallet = Wallet::random();
        let domain = attestation_domain(None);
        let signed = SignedAttestation::sign(&wallet, &domain, record().attestation()).unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedAttestation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, signed);
    }
}
