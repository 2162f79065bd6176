//! The `vkey` command line. Flag names are a stable interface: scripts and tests
//! outside this repository rely on them.

mod attach;
mod bench;
mod ctl;
mod pin;
mod serve;
mod trace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "vkey", version, about = "A software FIDO2 security key served over USB/IP", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the key: a USB/IP server that exports one FIDO2 USB HID device (or several),
    /// with a control socket.
    Serve(serve::ServeArgs),
    /// Set or change the PIN: of the running key, or of a store offline (--store).
    #[command(subcommand)]
    Pin(pin::PinCommand),
    /// Measure USB/IP FIDO keys (vkey or others) as Linux's usbhid drives them:
    /// latency, throughput, server CPU per operation, side by side.
    Bench(bench::BenchArgs),
    /// Show the running keys: attached, presence, PIN, UV, credentials.
    Status(ctl::Target),
    /// Credentials of the running key: list, show, add, rm, clear, export.
    #[command(subcommand)]
    Cred(ctl::CredCommand),
    /// User presence of the running key: auto, deny, manual; approve or deny-pending
    /// the request that waits.
    #[command(subcommand)]
    Presence(ctl::PresenceCommand),
    /// What built-in UV answers from now on: pass or fail.
    #[command(subcommand)]
    Uv(ctl::UvCommand),
    /// Pull the key out and plug it back in (a power cycle; the host's connection drops).
    Replug(ctl::Target),
    /// Reset the running key (authenticatorReset without the 10 s window): erases
    /// every credential and the PIN.
    Reset(ctl::Target),
    /// Follow the key's events: decoded CTAP requests and responses, credentials,
    /// presence, attach/detach; one line each.
    Trace {
        #[command(flatten)]
        target: ctl::Target,
        /// Print the events as JSON lines.
        #[arg(long)]
        json: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Pin(cmd) => pin::run(cmd, serve::default_store_dir),
        Command::Bench(args) => bench::run(args),
        Command::Status(t) => ctl::status(t),
        Command::Cred(c) => ctl::cred(c),
        Command::Presence(c) => ctl::presence(c),
        Command::Uv(c) => ctl::uv(c),
        Command::Replug(t) => ctl::replug(t),
        Command::Reset(t) => ctl::reset(t),
        Command::Trace { target, json } => ctl::trace(target, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("vkey: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VKEY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs piped to files and CI stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
