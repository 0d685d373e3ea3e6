//! The `smtp-plan` binary: parse the command line, run, exit.

use clap::Parser;

fn main() {
    let cli = smtp_plan::cli::Cli::parse();
    std::process::exit(smtp_plan::app::run(cli));
}
