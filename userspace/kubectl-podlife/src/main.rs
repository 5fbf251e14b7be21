//! `kubectl podlife`: podlife's timelines and events from anywhere a kubeconfig reaches. The
//! pod's node comes from the API server, the agent on that node from its label and
//! `spec.nodeName`, and every request goes through the API server's pod proxy.

mod cluster;
mod commands;
mod merge;
mod output;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl podlife",
    bin_name = "kubectl podlife",
    version,
    about = "podlife timelines and events across the cluster, through the API server",
    after_help = "Needs: get/list pods and get pods/proxy in podlife's namespace, get pods in the \
                  pod's namespace, and get on the token Secret (deploy/rbac-plugin-users.yaml)."
)]
struct Cli {
    #[command(flatten)]
    flags: cluster::Flags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The lifecycle timeline of one pod, from the agent of the node it ran on.
    Timeline {
        /// The pod's name.
        pod: String,
        /// Node to ask (for a pod the API no longer has; default: from the pod, else every node).
        #[arg(long)]
        node: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = output::Format::Text)]
        output: output::Format,
    },
    /// Lifecycle events of one node or of all, merged in time order.
    Events {
        /// Only this node's agent.
        #[arg(long, conflicts_with = "all_nodes")]
        node: Option<String>,
        /// Every node's agent (the default when --node is not given).
        #[arg(long)]
        all_nodes: bool,
        /// Events since a time (RFC 3339) or for a duration back (30s, 10m, 2h).
        #[arg(long, default_value = "10m")]
        since: String,
        /// Newest events per node at most (the agents allow up to 100000).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Keep printing new events as they come (every 2 s, resumed by event id).
        #[arg(short = 'w', long)]
        watch: bool,
        #[arg(short = 'o', long, value_enum, default_value_t = output::Format::Text)]
        output: output::Format,
    },
    /// The pods one node's agent knows, live and recently removed.
    Pods {
        #[arg(long)]
        node: String,
        #[arg(short = 'o', long, value_enum, default_value_t = output::Format::Text)]
        output: output::Format,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let code = match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let cluster = cluster::Cluster::connect(cli.flags).await?;
    match cli.command {
        Command::Timeline { pod, node, output } => {
            commands::timeline(&cluster, &pod, node.as_deref(), output).await
        }
        Command::Events {
            node,
            all_nodes: _,
            since,
            limit,
            watch,
            output,
        } => {
            let q = commands::EventsQuery {
                node,
                since,
                limit,
                watch,
            };
            commands::events(&cluster, &q, output).await
        }
        Command::Pods { node, output } => commands::pods(&cluster, &node, output).await,
    }
}
