//! podlife: wires configuration, logging and the runtime; the agent is wired in `app.rs`.

use std::process::ExitCode;

use clap::Parser as _;
use podlife::config::{Args, Command};

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr (stdout carries `podlife record` output); colours only for a person at
    // a terminal, never in a DaemonSet's log.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podlife: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &args.command {
            Some(Command::Record { out, seconds, all }) => {
                podlife::record::run(out, *seconds, *all, args.ringbuf_bytes).await
            }
            Some(Command::Check) => podlife::check::main(&args).await,
            Some(Command::Run) | None => podlife::app::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
