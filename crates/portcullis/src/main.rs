//! `portcullis`: controller, standalone data plane, key tool and demo function.

mod demo_function;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis_gateway::logging::{self, LogFormat};

#[derive(Parser)]
#[command(name = "portcullis", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the in-cluster controller and data plane.
    Run(portcullis_controller::RunArgs),
    /// Serve the data plane from a directory of GatewayRoute, ApiKey and
    /// EndpointSlice YAML, reloading on change.
    Serve(serve::ServeArgs),
    /// Print both CustomResourceDefinitions as YAML.
    Crds,
    /// Create, import, rotate, revoke and list API keys.
    #[command(subcommand)]
    Key(portcullis_keys::KeyCommand),
    /// Run a small function server that serves both event formats, for
    /// demos and tests.
    DemoFunction(demo_function::DemoArgs),
}

fn main() -> ExitCode {
    // Invoked as the kubectl plugin `kubectl-portcullis`, argv[0] differs but
    // the arguments are the same.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };

    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => {
                logging::init(args.log_format.unwrap_or(LogFormat::Json));
                portcullis_controller::run(args).await
            }
            Command::Serve(args) => {
                logging::init(args.log_format.unwrap_or(LogFormat::Text));
                serve::run(args).await
            }
            Command::Crds => {
                print!("{}", portcullis_api::crds_yaml());
                Ok(())
            }
            Command::Key(command) => portcullis_keys::run(command).await,
            Command::DemoFunction(args) => {
                logging::init(LogFormat::Text);
                demo_function::run(args).await
            }
        }
    });

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
