//! The `tern` command: run HyperDHT bootstrap nodes, nodes and test networks, and probe
//! a network by hand.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
