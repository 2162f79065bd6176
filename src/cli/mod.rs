//! The `vkey` command line. Flag names are a stable interface: scripts and tests
//! outside this repository rely on them.

mod bench;
mod pin;
mod serve;

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
    /// Run the key: a USB/IP server that exports one FIDO2 USB HID device.
    Serve(serve::ServeArgs),
    /// Set or change the PIN of a store while the key is not running.
    #[command(subcommand)]
    Pin(pin::PinCommand),
    /// Measure USB/IP FIDO keys (vkey or others) as Linux's usbhid drives them:
    /// latency, throughput, server CPU per operation, side by side.
    Bench(bench::BenchArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Pin(cmd) => pin::run(cmd, serve::default_store_dir),
        Command::Bench(args) => bench::run(args),
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
