//! `agora wallet ...` and `agora journal ...`.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use wallets::{
    journal, keystore, Address, KdfStrength, KeystoreFile, Signature, TypedData, Wallet,
};
use zeroize::Zeroizing;

/// Agora's working directory: `$AGORA_HOME`, defaulting to `.agora` in the current
/// directory.
pub(crate) fn agora_home() -> PathBuf {
    std::env::var_os("AGORA_HOME").map_or_else(|| PathBuf::from(".agora"), PathBuf::from)
}

/// Where keystores go when no path is given.
fn default_keystore_dir() -> PathBuf {
    agora_home().join("keystores")
}

#[derive(Debug, Subcommand)]
pub(crate) enum WalletCommand {
    /// Generate a new key and write it to an encrypted keystore.
    New {
        /// Keystore file to write (default: $AGORA_HOME/keystores/ADDRESS.json).
        #[arg(long)]
        keystore: Option<PathBuf>,
        /// Use geth's light scrypt parameters (fast; for dev chains only).
        #[arg(long)]
        light: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Import a secret key (hex, read from standard input or a prompt) into a keystore.
    Import {
        /// Keystore file to write.
        #[arg(long)]
        keystore: PathBuf,
        /// Use geth's light scrypt parameters (fast; for dev chains only).
        #[arg(long)]
        light: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Print the address of a keystore.
    Address {
        /// The keystore file.
        keystore: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Sign a message (EIP-191) or typed data (EIP-712) with a keystore's key.
    Sign {
        /// The keystore file.
        keystore: PathBuf,
        #[command(flatten)]
        input: SignInput,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Check that a signature over a message or typed data was made by an address.
    Verify {
        /// The expected signer.
        #[arg(long)]
        address: Address,
        /// The 65-byte signature, hex.
        #[arg(long)]
        signature: String,
        #[command(flatten)]
        input: SignInput,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct SignInput {
    /// The message text (signed as an EIP-191 personal message).
    #[arg(long)]
    message: Option<String>,
    /// A file whose bytes are the message.
    #[arg(long)]
    message_file: Option<PathBuf>,
    /// A JSON file of EIP-712 typed data (the eth_signTypedData_v4 form).
    #[arg(long)]
    typed_data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PasswordArgs {
    /// Environment variable that holds the keystore password; without it, the
    /// password is asked for on the terminal. Never pass a password as an argument.
    #[arg(long, value_name = "VAR", default_value = "AGORA_PASSWORD")]
    password_env: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum JournalCommand {
    /// Verify a payment journal: hash links, signatures, signer, order.
    Verify {
        /// The journal file.
        journal: PathBuf,
        /// Require every entry to be signed by this address.
        #[arg(long)]
        signer: Option<Address>,
    },
}

enum Digest {
    Message(Vec<u8>),
    Typed(Box<TypedData>),
}

impl SignInput {
    fn load(&self) -> Result<Digest> {
        if let Some(text) = &self.message {
            Ok(Digest::Message(text.as_bytes().to_vec()))
        } else if let Some(path) = &self.message_file {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Ok(Digest::Message(bytes))
        } else if let Some(path) = &self.typed_data {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let data = TypedData::from_json(&text).with_context(|| path.display().to_string())?;
            Ok(Digest::Typed(Box::new(data)))
        } else {
            bail!("give one of --message, --message-file or --typed-data")
        }
    }
}

impl PasswordArgs {
    /// The environment variable the password is read from.
    pub(crate) fn env_name(&self) -> &str {
        &self.password_env
    }

    /// The password from the environment variable, else from a terminal prompt.
    pub(crate) fn read(&self, confirm: bool) -> Result<Zeroizing<String>> {
        if let Ok(pw) = std::env::var(&self.password_env) {
            return Ok(Zeroizing::new(pw));
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "no password: set the environment variable {} or run in a terminal to be asked",
                self.password_env
            );
        }
        let pw = Zeroizing::new(rpassword::prompt_password("Keystore password: ")?);
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("Repeat password: ")?);
            if *pw != *again {
                bail!("the passwords do not match");
            }
        }
        if confirm && pw.is_empty() {
            bail!("refusing an empty password");
        }
        Ok(pw)
    }
}

fn strength(light: bool) -> KdfStrength {
    if light {
        KdfStrength::Light
    } else {
        KdfStrength::Standard
    }
}

fn write_keystore(
    wallet: &Wallet,
    path: &Path,
    password: &PasswordArgs,
    light: bool,
) -> Result<()> {
    let pw = password.read(true)?;
    KeystoreFile::encrypt(wallet, pw.as_bytes(), strength(light))?.write_new(path)?;
    println!("address:  {}", wallet.address());
    println!("keystore: {}", path.display());
    Ok(())
}

pub(crate) fn run_wallet(cmd: WalletCommand) -> Result<ExitCode> {
    match cmd {
        WalletCommand::New {
            keystore,
            light,
            password,
        } => {
            let wallet = Wallet::random();
            let path = keystore.unwrap_or_else(|| {
                default_keystore_dir().join(format!("{}.json", wallet.address()))
            });
            write_keystore(&wallet, &path, &password, light)?;
        }
        WalletCommand::Import {
            keystore,
            light,
            password,
        } => {
            let secret = if std::io::stdin().is_terminal() {
                Zeroizing::new(rpassword::prompt_password("Secret key (hex): ")?)
            } else {
                let mut s = Zeroizing::new(String::new());
                std::io::stdin().read_to_string(&mut s)?;
                s
            };
            let wallet = Wallet::from_hex(&secret).context("secret key from standard input")?;
            write_keystore(&wallet, &keystore, &password, light)?;
        }
        WalletCommand::Address { keystore, password } => {
            let file = KeystoreFile::read(&keystore)?;
            let address = match file.address(&keystore)? {
                Some(a) => a,
                None => file
                    .decrypt(password.read(false)?.as_bytes(), &keystore)?
                    .address(),
            };
            println!("{address}");
        }
        WalletCommand::Sign {
            keystore: path,
            input,
            password,
        } => {
            let digest = input.load()?;
            let wallet = keystore::load(&path, password.read(false)?.as_bytes())?;
            let signature = match digest {
                Digest::Message(m) => wallet.sign_message(m)?,
                Digest::Typed(t) => wallet.sign_typed_data(&t)?,
            };
            println!("{signature}");
        }
        WalletCommand::Verify {
            address,
            signature,
            input,
        } => {
            let signature = Signature::from_hex(&signature).context("--signature")?;
            let hash = match input.load()? {
                Digest::Message(m) => wallets::eip191::hash_message(m),
                Digest::Typed(t) => t.signing_hash()?,
            };
            let signer = signature.recover(&hash)?;
            if signer == address {
                println!("valid: signed by {signer}");
            } else {
                println!("INVALID: signed by {signer}, not {address}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_journal(cmd: JournalCommand) -> Result<ExitCode> {
    match cmd {
        JournalCommand::Verify {
            journal: path,
            signer,
        } => {
            let report = journal::verify(&path, signer)?;
            println!("journal:  {}", path.display());
            println!("entries:  {}", report.entries);
            println!("head:     {}", report.head);
            match report.signer {
                Some(s) => println!("signer:   {s}"),
                None => println!("signer:   (empty journal)"),
            }
            if report.torn_tail_bytes > 0 {
                println!(
                    "note:     {} bytes of an interrupted append at the end are ignored",
                    report.torn_tail_bytes
                );
            }
            println!("valid");
        }
    }
    Ok(ExitCode::SUCCESS)
}
