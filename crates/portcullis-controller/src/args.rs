//! Command-line flags of `portcullis run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use ipnet::IpNet;
use portcullis_gateway::logging::LogFormat;

/// Flags of `portcullis run`, the in-cluster controller and data plane.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Address of the traffic listener.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener (/healthz, /readyz, /metrics, /status).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// Kubeconfig file to use. Without it the cluster is found as kubectl
    /// does: $KUBECONFIG, ~/.kube/config, then the in-cluster service account.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of the current context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    /// Comma-separated namespaces to watch. Empty watches all namespaces.
    #[arg(long, value_name = "NS,...", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// Audience that bearer session tokens must be minted for. Without it
    /// the API server's own audiences apply.
    #[arg(long, value_name = "AUD")]
    pub session_audience: Option<String>,

    /// Comma-separated CIDRs of proxies whose X-Forwarded-For is trusted.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,

    /// Log line format (default: json).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Namespace of the leader-election Lease. Defaults to $POD_NAMESPACE,
    /// then the kubeconfig or service-account namespace, then `default`.
    #[arg(long, value_name = "NS", env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Name of the leader-election Lease.
    #[arg(long, value_name = "NAME", default_value = "portcullis-leader")]
    pub lease_name: String,

    /// Identity of this replica in the Lease. Defaults to $POD_NAME, then
    /// `<hostname>-<pid>`.
    #[arg(long, value_name = "ID", env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Wrapper that lets [`RunArgs::try_parse_from`] parse the flags alone.
#[derive(Parser)]
#[command(name = "portcullis-run", no_binary_name = true)]
struct RunOnly {
    #[command(flatten)]
    args: RunArgs,
}

impl RunArgs {
    /// Parses flags as `portcullis run` would, without the program name.
    ///
    /// Used by tests and embedders that start the controller in process.
    pub fn try_parse_from<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        RunOnly::try_parse_from(flags).map(|parsed| parsed.args)
    }

    /// Returns the namespaces to watch, trimmed and without duplicates, or
    /// `None` for all namespaces.
    pub(crate) fn namespaces(&self) -> Option<Vec<String>> {
        let mut namespaces: Vec<String> = self
            .watch_namespaces
            .iter()
            .map(|ns| ns.trim().to_owned())
            .filter(|ns| !ns.is_empty())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        (!namespaces.is_empty()).then_some(namespaces)
    }

    /// Returns `--identity`, else `<hostname>-<pid>`.
    pub(crate) fn identity(&self) -> String {
        if let Some(identity) = self.identity.as_deref().filter(|id| !id.trim().is_empty()) {
            return identity.trim().to_owned();
        }
        let host = hostname::get()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| "portcullis".to_owned());
        format!("{host}-{}", std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_chart() {
        let args = RunArgs::try_parse_from(Vec::<String>::new()).unwrap();
        assert_eq!(args.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(args.admin_listen, "0.0.0.0:9090".parse().unwrap());
        assert_eq!(args.lease_name, "portcullis-leader");
        assert_eq!(args.namespaces(), None);
        assert!(args.trusted_proxies.is_empty());
        assert!(args.session_audience.is_none());
    }

    #[test]
    fn lists_split_on_commas() {
        let args = RunArgs::try_parse_from([
            "--watch-namespaces",
            "beta, acme,beta",
            "--trusted-proxies",
            "10.0.0.0/8,192.168.1.0/24",
            "--log-format",
            "text",
        ])
        .unwrap();
        assert_eq!(
            args.namespaces(),
            Some(vec!["acme".to_owned(), "beta".to_owned()])
        );
        assert_eq!(args.trusted_proxies.len(), 2);
        assert_eq!(args.log_format, Some(LogFormat::Text));
    }

    #[test]
    fn invalid_cidr_is_rejected() {
        let error = RunArgs::try_parse_from(["--trusted-proxies", "10.0.0.0/33"]).unwrap_err();
        assert!(error.to_string().contains("10.0.0.0/33"), "{error}");
    }

    #[test]
    fn identity_prefers_flag() {
        let args = RunArgs::try_parse_from(["--identity", "pod-a"]).unwrap();
        assert_eq!(args.identity(), "pod-a");
        let args = RunArgs::try_parse_from(Vec::<String>::new()).unwrap();
        if std::env::var_os("POD_NAME").is_none() {
            assert!(
                args.identity()
                    .ends_with(&format!("-{}", std::process::id()))
            );
        }
    }
}
