//! `magpipe key generate|show`: this user's signing key, kept in their config folder
//! (`$MAGPIPE_CONFIG_DIR`, `$XDG_CONFIG_HOME/magpipe` or `~/.config/magpipe`), never in a project.

use std::process::ExitCode;

use magpipe_engine::remote::sign::Signer;

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Make an ed25519 key pair that `push` signs records with; prints its public key.
    Generate {
        /// Who signs, as others will see it (for example you@lab, ci@lab).
        name: String,
        /// Replace the key this user has.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key (`name:base64`), what a remote's trusted_keys lists.
    Show,
}

pub fn run(_ctx: &Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    match &a.cmd {
        Sub::Generate { name, force } => {
            let s = Signer::generate(name, *force)?;
            println!("{}", s.public());
        }
        Sub::Show => match Signer::load()? {
            Some(s) => println!("{}", s.public()),
            None => anyhow::bail!("no signing key yet; `magpipe key generate NAME` makes one"),
        },
    }
    Ok(ExitCode::SUCCESS)
}
