//! `agora up`: run the agents of agents.toml until Ctrl-C.
//!
//! `agora up` runs [`deploy::up::Up`]: it prepares the chain ([`deploy::ChainSetup`]: the
//! embedded devnet, started or reopened in the state directory, with the contracts
//! deployed when they are missing and the agents funded; or a node by URL with a
//! deployment it is given), then runs each agent as a child process (`agora agent-run`)
//! under a [`deploy::Supervisor`]: a child that dies is restarted with a capped, doubling delay;
//! Ctrl-C or SIGTERM closes every child's standard input (the agent's signal to stop),
//! waits for it, kills what does not stop in time, stops the chain and exits 0. Each
//! agent registers itself in the `AgentRegistry` once it listens and finds its peers
//! there. The state directory's layout is in [`deploy::layout`].

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use deploy::config::Config;
use deploy::dashboard::{deployment_journals, Dashboard, DashboardOptions};
use deploy::layout::{state_dir, UpState};
use deploy::up::{AgentRun, ChainPlace, Up, UpEvent, UpOptions};
use deploy::SupervisorEvent;
use indicatif::{ProgressBar, ProgressStyle};
use registry::discovery::Discovery;
use wallets::Amount;

use crate::LogFormat;

/// `agora up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The deployment file.
    #[arg(long, default_value = "agents.toml")]
    config: PathBuf,
    /// State directory: chain data, agent stores, journals (default: .agora beside
    /// the config file).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where the embedded chain serves JSON-RPC (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8545")]
    chain_listen: SocketAddr,
    /// For an rpc network: the deployment's addresses.json, as written by
    /// `agora registry deploy --out` (default: DIR/addresses.json).
    #[arg(long)]
    addresses: Option<PathBuf>,
    /// Delay before restarting an agent that died; it doubles per crash up to 30 s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    restart_delay: Duration,
    /// Stablecoin each buyer (an agent with the travel skill) is topped up to on the
    /// embedded chain.
    #[arg(long, default_value = "100 USDC")]
    buyer_funds: Amount,
    /// Where to serve the web dashboard (default 127.0.0.1:7400; port 0 picks a free
    /// port). Off loopback it needs a token in $AGORA_DASHBOARD_TOKEN.
    #[arg(long, value_name = "ADDR")]
    dashboard: Option<SocketAddr>,
    /// Serve no dashboard.
    #[arg(long, conflicts_with = "dashboard")]
    no_dashboard: bool,
}

/// The dashboard's port on 127.0.0.1 unless told otherwise.
const DASHBOARD_PORT: u16 = 7400;

/// Serves the dashboard of `up` as `args` ask. A dashboard asked for by address that
/// cannot be served is an error; the default one only a warning.
async fn start_dashboard(args: &UpArgs, up: &Up) -> Result<Option<Dashboard>> {
    if args.no_dashboard {
        return Ok(None);
    }
    let config = Config::load(&args.config)?;
    let listen = args
        .dashboard
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DASHBOARD_PORT)));
    let options = DashboardOptions {
        listen,
        token: deploy::dashboard::token_from_env(),
        journals: deployment_journals(up.state_dir(), &config),
        cache_dir: up.state_dir().join("dashboard"),
        config,
        rpc_url: up.chain().url.clone(),
        addresses: up.chain().addresses,
        refresh: Duration::from_secs(1),
    };
    match Dashboard::start(options).await {
        Ok(d) => {
            d.up_state(up.state());
            println!("dashboard: {}", d.url());
            Ok(Some(d))
        }
        Err(e) if args.dashboard.is_none() => {
            eprintln!("warning: {e}; pass --dashboard ADDR to serve it elsewhere");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Parses `500ms`, `2s`, `1m` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 2s or 1m"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?} is not a duration like 500ms, 2s or 1m")),
    }
}

/// Syncs `discovery` with the chain, with a progress bar on a terminal and a plain
/// line otherwise.
pub(crate) async fn sync_with_progress(discovery: &Discovery, what: &str) -> Result<usize> {
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut announced = false;
    let logs = discovery
        .sync_with_progress(|done, head| {
            if terminal {
                let b = bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(head).with_message(format!("syncing {what}"));
                    b.set_style(
                        ProgressStyle::with_template("{msg} [{bar:30}] block {pos}/{len}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    b
                });
                b.set_length(head);
                b.set_position(done);
            } else if !announced {
                announced = true;
                eprintln!("syncing {what}: blocks {done}..{head}");
            }
        })
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    tracing::info!(target: "agora::up", what, logs, "registry synced");
    Ok(logs)
}

pub(crate) async fn run_up(args: UpArgs, log: LogFormat) -> Result<ExitCode> {
    let dir = state_dir(&args.config, args.dir.as_deref());
    let config_path = args.config.clone();
    let exe = std::env::current_exe().context("finding the agora executable")?;
    let options = UpOptions {
        config_path: args.config.clone(),
        state_dir: dir.clone(),
        chain_data: args.dir.as_ref().map(|d| d.join("chain")),
        chain_listen: args.chain_listen,
        addresses: args.addresses.clone(),
        restart_delay: args.restart_delay,
        buyer_funds: args.buyer_funds,
        agent_command: Box::new(move |run: &AgentRun| {
            let args: Vec<OsString> = vec![
                "--log-format".into(),
                log.as_str().into(),
                "agent-run".into(),
                "--config".into(),
                run.config_path.clone().into(),
                "--dir".into(),
                run.state_dir.clone().into(),
                "--name".into(),
                run.name.clone().into(),
                "--rpc".into(),
                run.rpc_url.clone().into(),
                "--addresses".into(),
                run.addresses_path.clone().into(),
            ];
            (exe.clone(), args)
        }),
    };
    let mut up = Up::start(options, |step| eprintln!("{step}"))
        .await
        .with_context(|| format!("starting the deployment of {}", config_path.display()))?;
    let chain = up.chain();
    let chain_id = chain.addresses.chain_id;
    match up.chain_place() {
        ChainPlace::Embedded(data) => {
            if chain.deployed_now {
                eprintln!("deployed the contracts");
            }
            println!(
                "chain:     {} (chain {chain_id}, data in {})",
                chain.url,
                data.display()
            );
        }
        ChainPlace::Rpc => println!("chain:     {} (chain {chain_id})", chain.url),
    }

    let dashboard = start_dashboard(&args, &up).await?;
    let show = |event: SupervisorEvent| {
        if let Some(d) = &dashboard {
            d.agent_event(&event);
        }
        print_event(event);
    };

    let mut stop = crate::signals::Stop::listen()?;
    let mut discovery: Option<Discovery> = None;
    loop {
        tokio::select! {
            signal = stop.recv() => {
                tracing::info!(target: "agora::up", "{signal}: stopping the agents");
                break;
            }
            event = up.next() => match event? {
                Some(UpEvent::Child(event)) => show(event),
                Some(UpEvent::AllReady) => {
                    let d = Discovery::open(dir.join("discovery"), &up.chain().url, up.chain().addresses).await?;
                    if let Err(e) = announce(&d, up.state()).await {
                        tracing::warn!(target: "agora::up", error = %e, "registry listing failed");
                    }
                    discovery = Some(d);
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    // Print what the children say while they stop.
    up.stop(show).await;
    drop(discovery);
    drop(dashboard);
    println!("stopped; state kept in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Prints a supervisor event.
fn print_event(event: SupervisorEvent) {
    match event {
        SupervisorEvent::Ready {
            name,
            pid,
            url,
            address,
        } => {
            println!("agent {name:<10} ready  pid {pid}  {url}  {address}");
        }
        SupervisorEvent::Output { name, line } => println!("[{name}] {line}"),
        SupervisorEvent::Exited {
            name,
            status,
            restart_in,
            ..
        } => println!(
            "agent {name:<10} exited ({status}); restarting in {:.1}s",
            restart_in.as_secs_f64()
        ),
        SupervisorEvent::Started { .. }
        | SupervisorEvent::SpawnFailed { .. }
        | SupervisorEvent::Stopped { .. } => {}
    }
}

/// Prints the registry's view of the running agents once all of them are up.
async fn announce(d: &Discovery, state: &UpState) -> Result<()> {
    sync_with_progress(d, "the agent registry").await?;
    for (name, a) in &state.agents {
        let listed = d.agent_at(a.address)?;
        let services = listed
            .as_ref()
            .map(|r| {
                r.services
                    .iter()
                    .map(|s| format!("{} at {}", s.skill, s.price))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        println!(
            "{name:<10} {} {} {}{}",
            a.address,
            a.endpoint.as_deref().unwrap_or("-"),
            if listed.is_some() {
                "registered"
            } else {
                "NOT registered"
            },
            if services.is_empty() {
                String::new()
            } else {
                format!(" ({services})")
            }
        );
    }
    println!("all {} agents are up; Ctrl-C to stop", state.agents.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("2h").is_err());
    }
}
