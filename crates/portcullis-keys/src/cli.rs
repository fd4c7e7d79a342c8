//! Command-line arguments of `portcullis key`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use portcullis_api::KeyScope;

use crate::expiry::{Expiry, parse_expiry, parse_grace};

/// `portcullis key` subcommands.
///
/// Each command works on a cluster through the kubeconfig (the default) or
/// on a config directory with `--config DIR`. The same arguments work when
/// the binary runs as the kubectl plugin `kubectl portcullis`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a key, store its SHA-256 in a new ApiKey and print the key
    /// once on stdout.
    Create(CreateArgs),
    /// Store the SHA-256 of an existing key in a new ApiKey. The key is read
    /// from stdin or an environment variable, never from an argument.
    Import(ImportArgs),
    /// Generate a new key for an existing ApiKey and print it once on stdout.
    Rotate(RotateArgs),
    /// Revoke an ApiKey (set `active: false`). Requests with its key are
    /// rejected as soon as the gateway applies the change.
    Revoke(RevokeArgs),
    /// List the ApiKeys of a namespace with their fingerprints and the routes
    /// that reference them.
    List(ListArgs),
}

/// Target of a key command: a cluster (default) or a config directory.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Config directory of `portcullis serve` to edit instead of a cluster.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kubeconfig", "context"])]
    pub(crate) config: Option<PathBuf>,

    /// Path to the kubeconfig file. Defaults to $KUBECONFIG, then
    /// ~/.kube/config, then the in-cluster service account.
    #[arg(long, value_name = "PATH")]
    pub(crate) kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of the current context.
    #[arg(long, value_name = "NAME")]
    pub(crate) context: Option<String>,

    /// Namespace of the ApiKeys. Defaults to the kubeconfig context's
    /// namespace, else `default`, and to `default` with --config.
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub(crate) namespace: Option<String>,

    /// Maximum time to wait for one API server request, for example 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_request_timeout)]
    pub(crate) request_timeout: Duration,
}

/// Arguments of `key create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the new ApiKey, as listed in a route's `allowedApiKeyIds`.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,

    #[command(flatten)]
    pub(crate) properties: KeyProperties,

    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

/// Arguments of `key import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Name of the new ApiKey, as listed in a route's `allowedApiKeyIds`.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,

    /// Read the key from this environment variable instead of stdin.
    #[arg(long, value_name = "VAR")]
    pub(crate) from_env: Option<String>,

    #[command(flatten)]
    pub(crate) properties: KeyProperties,

    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

/// Properties of a new ApiKey, shared by `create` and `import`.
#[derive(Debug, Args)]
pub struct KeyProperties {
    /// Scope of the key. `deploy` keys are rejected with 403 on every
    /// route.
    #[arg(long, value_enum, default_value_t = ScopeArg::Invoke)]
    pub(crate) scope: ScopeArg,

    /// When the key stops working: an RFC 3339 time
    /// (2030-01-31T00:00:00Z) or a duration from now (90d, 12h).
    #[arg(long, value_name = "TIME|DURATION", value_parser = parse_expiry)]
    pub(crate) expires: Option<Expiry>,

    /// Free text stored with the key, for example who uses it.
    #[arg(long, value_name = "TEXT")]
    pub(crate) description: Option<String>,
}

/// Arguments of `key rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Name of the ApiKey to rotate.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,

    /// Keep accepting the old key for this long (for example 10m or 24h), so
    /// clients can switch without downtime. Without it the old key, and any
    /// key still in an earlier grace period, stops working at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_grace)]
    pub(crate) grace: Option<Duration>,

    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

/// Arguments of `key revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// Name of the ApiKey to revoke.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,

    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

/// Arguments of `key list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) output: OutputFormat,

    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

/// Scope of a new key, as spelled on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// Calls routes.
    Invoke,
    /// Reserved for deployment tooling; rejected by every route.
    Deploy,
}

impl From<ScopeArg> for KeyScope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Invoke => KeyScope::Invoke,
            ScopeArg::Deploy => KeyScope::Deploy,
        }
    }
}

/// Output format of `key list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// A JSON array, one object per key.
    Json,
    /// A YAML list, one entry per key.
    Yaml,
}

fn parse_request_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("the timeout must be longer than zero".into()),
        Ok(duration) => Ok(duration),
        Err(error) => Err(format!(
            "{text:?} is not a duration (examples: 10s, 1m): {error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// Stand-in for the binary's top-level parser, which embeds
    /// `KeyCommand` the same way.
    #[derive(Debug, Parser)]
    #[command(name = "portcullis")]
    struct TestCli {
        #[command(subcommand)]
        command: TopLevel,
    }

    #[derive(Debug, Subcommand)]
    enum TopLevel {
        #[command(subcommand)]
        Key(KeyCommand),
    }

    fn parse(args: &[&str]) -> Result<KeyCommand, clap::Error> {
        let argv = ["portcullis", "key"].iter().chain(args);
        TestCli::try_parse_from(argv).map(|cli| match cli.command {
            TopLevel::Key(command) => command,
        })
    }

    #[test]
    fn cli_definition_is_consistent() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn create_parses_all_options() {
        let command = parse(&[
            "create",
            "partner",
            "--scope",
            "deploy",
            "--expires",
            "30d",
            "--description",
            "Reporting partner",
            "-n",
            "acme",
            "--context",
            "staging",
        ])
        .unwrap();

        let KeyCommand::Create(args) = command else {
            panic!("expected create, got {command:?}");
        };
        assert_eq!(args.name, "partner");
        assert_eq!(args.properties.scope, ScopeArg::Deploy);
        assert_eq!(
            args.properties.expires,
            Some(Expiry::After(Duration::from_secs(30 * 86_400)))
        );
        assert_eq!(
            args.properties.description.as_deref(),
            Some("Reporting partner")
        );
        assert_eq!(args.target.namespace.as_deref(), Some("acme"));
        assert_eq!(args.target.context.as_deref(), Some("staging"));
    }

    #[test]
    fn rotate_parses_grace() {
        let KeyCommand::Rotate(args) = parse(&["rotate", "partner", "--grace", "2s"]).unwrap()
        else {
            panic!("expected rotate");
        };
        assert_eq!(args.grace, Some(Duration::from_secs(2)));
    }

    #[test]
    fn rotate_rejects_bad_grace() {
        assert!(parse(&["rotate", "partner", "--grace", "soon"]).is_err());
        assert!(parse(&["rotate", "partner", "--grace", "0s"]).is_err());
    }

    #[test]
    fn config_conflicts_with_kubeconfig() {
        let error = parse(&["list", "--config", "/tmp/x", "--context", "c"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn import_has_no_value_argument() {
        assert!(parse(&["import", "partner", "the-key-value"]).is_err());
    }

    #[test]
    fn list_output_formats() {
        for (flag, expected) in [
            ("table", OutputFormat::Table),
            ("json", OutputFormat::Json),
            ("yaml", OutputFormat::Yaml),
        ] {
            let KeyCommand::List(args) = parse(&["list", "-o", flag]).unwrap() else {
                panic!("expected list");
            };
            assert_eq!(args.output, expected);
        }
    }
}
