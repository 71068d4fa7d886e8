//! `lazaret`: the mail server (`serve`) and the admin commands that drive it through
//! its admin API.

mod accept;
mod access;
mod admin;
mod cli;
mod deliver;
mod mailfile;
mod net;
mod queue;
mod scan;
mod serve;

use clap::Parser;

fn main() {
    let args = cli::Args::parse();
    let code = match cli::run(args) {
        Ok(()) => 0,
        Err(e) => {
            let code = e.downcast_ref::<cli::Failure>().map_or(1, |f| f.code);
            eprintln!("lazaret: {e:#}");
            code
        }
    };
    std::process::exit(code);
}
