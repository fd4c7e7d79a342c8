//! The `portcullis key` commands: create, import, rotate, revoke and list
//! API keys.
//!
//! A key is 32 bytes from the operating system's CSPRNG, encoded as
//! base64url without padding. Only its SHA-256 is stored, in an ApiKey
//! object in a cluster or in a config directory, and the plaintext is
//! printed once, on stdout, by the command that generated it.

#![deny(missing_docs)]

mod cli;
mod commands;
mod expiry;
mod listing;
mod rotation;
mod secret;
mod spec_patch;
mod store;
mod yaml_documents;

pub use cli::{
    CreateArgs, ImportArgs, KeyCommand, KeyProperties, ListArgs, OutputFormat, RevokeArgs,
    RotateArgs, ScopeArg, TargetArgs,
};
pub use expiry::Expiry;

/// Runs one `portcullis key` command.
pub async fn run(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create(args) => commands::create(args).await,
        KeyCommand::Import(args) => commands::import(args).await,
        KeyCommand::Rotate(args) => commands::rotate_key(args).await,
        KeyCommand::Revoke(args) => commands::revoke(args).await,
        KeyCommand::List(args) => listing::list(args).await,
    }
}
