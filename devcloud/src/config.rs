//! Command line and runtime configuration.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "oboto-devcloud",
    about = "A local Oboto Cloud on a private PostgreSQL"
)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port.
    #[arg(long, default_value_t = 54321)]
    pub port: u16,
    /// Use this database instead of starting a private cluster.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Keep the private cluster (and stored objects) here instead of a temp dir removed on exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "demo")]
    pub seed: Seed,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub jwt_exp: u64,
    /// How long a rotated refresh token may still be presented without revoking the session.
    #[arg(long, default_value_t = 10)]
    pub refresh_reuse_interval: u64,
    /// Largest accepted request body for JSON endpoints, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// At most this many rows per REST response (PostgREST's `db-max-rows`; Supabase lets a
    /// project lower it), whatever `limit` a request asks for.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub db_max_rows: u64,
    /// Largest accepted storage upload, in bytes.
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Close a realtime socket that sent nothing (not even a heartbeat) for this many
    /// milliseconds: Phoenix's idle timeout; tests shorten it to see a hung client dropped.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub realtime_timeout_ms: u64,
    /// At most this many channels joined on one realtime socket (Supabase's
    /// `max_channels_per_client`); as many refused joins may wait for their delayed reply.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub realtime_max_channels: u64,
    /// At most this many postgres_changes entries over all the channels of one realtime
    /// socket: each change is matched against every entry, so this bounds what one socket
    /// costs the dispatcher.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub realtime_max_postgres_changes: u64,
    /// Stop when standard input reaches end of file: a parent that holds the other end of a
    /// pipe (a test runner) takes the cloud down with it however it dies, even by SIGKILL.
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Seed {
    Demo,
    None,
}
