#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vkey::cli::main()
}
