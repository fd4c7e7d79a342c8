//! Finding the cluster: kubeconfig flags, `$KUBECONFIG`, `~/.kube/config`
//! or the in-cluster service account, in that order.

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::RunArgs;

/// Builds a client as kubectl would find the cluster. Makes no request, so
/// the controller starts even while the API server is unreachable.
///
/// Returns the client and the namespace of the kubeconfig context (or of
/// the service account), which is `default` when neither names one.
pub async fn client(args: &RunArgs) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };

    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("failed to read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("invalid kubeconfig {}", path.display()))?
        }
        (None, Some(context)) => Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("failed to load context {context:?} from the kubeconfig"))?,
        (None, None) => Config::infer().await.context(
            "no cluster found: set --kubeconfig or $KUBECONFIG, or run inside a pod with a service account",
        )?,
    };

    let namespace = config.default_namespace.clone();
    tracing::info!(
        api_server = %config.cluster_url,
        namespace = %namespace,
        "using Kubernetes API server"
    );
    let client = Client::try_from(config).context("failed to build the Kubernetes client")?;
    Ok((client, namespace))
}
