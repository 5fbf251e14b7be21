//! The agent: what runs, wired together. The steps are in `startup`, the threads and tasks in
//! `tasks`.

use anyhow::{Context as _, Result};
use tracing::info;

use crate::config::Args;
use crate::node::cgroupfs::CgroupMounts;
use crate::serve::http;
use crate::startup;
use crate::tasks::{self, Threads};

pub async fn run(args: Args) -> Result<()> {
    info!(version = env!("CARGO_PKG_VERSION"), "podlife starting");
    let access = http::Access::from_flags(args.api_token_file.as_deref(), args.api_open)?;
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Some(http::tls::Tls::load(cert, key)?),
        _ => None,
    };
    startup::check_flags(&args)?;
    startup::preflight()?;
    let mounts = startup::discover_mounts();
    let tcp = startup::listen(&args, tls.is_some(), &access).await?;
    match tls {
        Some(tls) => run_on(http::tls::TlsListener::new(tcp, tls)?, args, access, mounts).await,
        None => run_on(tcp, args, access, mounts).await,
    }
}

/// Attach, load the store and bootstrap off the async threads while the start-up API answers,
/// then run the threads, the tasks and the API on `listener` until SIGTERM.
async fn run_on<L>(
    mut listener: L,
    args: Args,
    access: http::Access,
    mounts: CgroupMounts,
) -> Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let refused = std::sync::Arc::new(http::limits::Refused::default());
    let start_mounts = mounts.clone();
    let (args, capture, ring, shared) = http::while_starting(&mut listener, &refused, async {
        tokio::task::spawn_blocking(move || startup::prepare(args, &start_mounts))
            .await
            .context("start-up task")?
    })
    .await?;
    startup::count_start_refusals(&refused, &shared);
    let cri = tasks::spawn_cri(&args, &shared)?;
    tasks::spawn_kube(&args, &shared).await;
    tasks::spawn_otlp(&args, &shared);
    let threads = Threads::start(&args, ring, capture, mounts, &shared, cri)?;
    http::serve_on(listener, shared.clone(), access, tasks::shutdown_signal()).await?;
    info!("shutting down: flushing history");
    threads.stop(&shared).await;
    Ok(())
}
