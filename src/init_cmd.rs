//! `agora init`: a starter agents.toml, encrypted keystores for its agents, and the
//! owner's keystore: the principal the travel agent plans trips for (`agora plan`
//! asks as the owner by default).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use wallets::{Address, KdfStrength, KeystoreFile, Wallet};

use crate::wallet_cmd::PasswordArgs;
use deploy::config::Config;

/// `agora init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Directory to write agents.toml and .agora/keystores into.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Use geth's light scrypt parameters for the keystores (dev chains only).
    #[arg(long)]
    light: bool,
    #[command(flatten)]
    password: PasswordArgs,
}

/// The starter deployment: one travel agent, three competing weather agents, and an
/// LLM seller that serves the inference oracle.
const AGENTS: &[(&str, u16, &[&str], Option<&str>)] = &[
    ("travel", 7401, &["travel", "llm"], None),
    ("weather-a", 7411, &["weather"], Some("1.20 USDC")),
    ("weather-b", 7412, &["weather"], Some("0.95 USDC")),
    ("weather-c", 7413, &["weather"], Some("1.50 USDC")),
    ("scribe", 7421, &["llm"], Some("0.02 USDC")),
];

/// The owner's keystore, relative to the directory of agents.toml.
pub(crate) const OWNER_KEYSTORE: &str = ".agora/keystores/owner.json";

fn render(password_env: &str, owner: Address) -> String {
    let mut out = String::from(
        "# Agora deployment written by `agora init`. Check it with `agora config check`.\n\
         # Keystore passwords come from the environment variable named by password_env.\n\n\
         [network]\nkind = \"embedded\"\n",
    );
    for (name, port, skills, price) in AGENTS {
        let skills: Vec<String> = skills.iter().map(|s| format!("{s:?}")).collect();
        out.push_str(&format!(
            "\n[agents.{name}]\nkeystore = \".agora/keystores/{name}.json\"\npassword_env = \"{password_env}\"\nlisten = \"127.0.0.1:{port}\"\nskills = [{}]\n",
            skills.join(", ")
        ));
        match price {
            Some(price) if skills.contains(&"\"llm\"".to_owned()) => out.push_str(&format!(
                "# Completions from the default model, attested; and the inference oracle.\n\
                 oracle = true\n\
                 services = [{{ skill = \"llm.complete\", price = \"{price}\", unit = \"completion\" }}]\n"
            )),
            Some(price) => out.push_str(&format!(
                "services = [{{ skill = \"weather.forecast\", price = \"{price}\", unit = \"forecast\" }}]\n"
            )),
            None => out.push_str(&format!(
                "\n[agents.{name}.policy]\nper_deal = \"5 USDC\"\nper_peer_daily = \"10 USDC\"\ndaily = \"25 USDC\"\n\n\
                 # Who may commission trips (each trip pays a weather agent), and how much.\n\
                 [agents.{name}.principals.owner]\naddress = \"{owner}\"\nskills = [\"travel.Plan\"]\n\
                 max_per_request = \"2 USDC\"\ndaily = \"10 USDC\"\n"
            )),
        }
    }
    out
}

pub(crate) fn run_init(args: InitArgs) -> Result<ExitCode> {
    let config_path = args.dir.join("agents.toml");
    if config_path.exists() {
        bail!("{} exists; refusing to overwrite it", config_path.display());
    }
    let keystores = args.dir.join(".agora/keystores");
    let owner_path = args.dir.join(OWNER_KEYSTORE);
    for path in AGENTS
        .iter()
        .map(|(name, ..)| keystores.join(format!("{name}.json")))
        .chain([owner_path.clone()])
    {
        if path.exists() {
            bail!("{} exists; refusing to overwrite a key", path.display());
        }
    }
    let password = args.password.read(true)?;
    let strength = if args.light {
        KdfStrength::Light
    } else {
        KdfStrength::Standard
    };
    for (name, ..) in AGENTS {
        let wallet = Wallet::random();
        let path = keystores.join(format!("{name}.json"));
        KeystoreFile::encrypt(&wallet, password.as_bytes(), strength)?.write_new(&path)?;
        println!("{name:<10} {}  {}", wallet.address(), path.display());
    }
    let owner = Wallet::random();
    KeystoreFile::encrypt(&owner, password.as_bytes(), strength)?.write_new(&owner_path)?;
    println!(
        "{:<10} {}  {}",
        "owner",
        owner.address(),
        owner_path.display()
    );
    let text = render(args.password.env_name(), owner.address());
    write_new(&config_path, &text)?;
    // What we wrote must pass our own checks.
    Config::load(&config_path).map_err(|e| anyhow::anyhow!("generated config is invalid: {e}"))?;
    println!("wrote {}", config_path.display());
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
