//! `lazaret`: the mail server (`serve`) and the admin commands that drive it through
//! its admin API.

mod accept;
mod access;
mod admin;
mod backup;
mod cli;
mod connection_limits;
mod console;
mod deliver;
mod disk_space;
mod dkim;
mod event_retention;
mod mailfile;
mod memory;
mod metrics;
mod net;
mod privileges;
mod queue;
mod reclaim;
mod scan;
mod serve;
mod server;

use clap::Parser;

fn main() {
    let args = cli::Args::parse();
    if !args.is_serve() {
        // An admin command piped into `head` ends quietly, as other tools do, instead
        // of failing on the closed pipe. The server keeps SIGPIPE ignored: a client
        // that hangs up must not end it.
        // SAFETY: sets a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
