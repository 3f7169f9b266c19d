//! The `sqlmcp` command line.

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_postgres::Config;

use crate::caller::{Caller, CallerId, Principal, Scopes};
use crate::secret::Secret;
use crate::{audit, auth, backfill, db, embeddings, migrate, prompts, seed, server, tools};

#[derive(Debug, Parser)]
#[command(name = "sqlmcp", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending schema migrations (embedded in this binary). Safe to re-run.
    Migrate(MigrateArgs),
    /// Load deterministic Zava Retail sample data.
    Seed(SeedArgs),
    /// Print the tool list: name, description, input and output schema
    /// (with --markdown, the prompts too).
    Tools(ToolsArgs),
    /// Print the prompt list: name, description, arguments and the tools
    /// each prompt chains.
    Prompts(ToolsArgs),
    /// Print everything the files declare: tools, resources, resource
    /// templates, prompts, and where completions come from.
    Catalogue(ToolsArgs),
    /// Call one tool as a caller and print its result (for development).
    Call(CallArgs),
    /// Give every product a current vector of the embedding model (missing
    /// or stale ones), in batches. Resumable, and a no-op when all are current.
    Embed(EmbedArgs),
    /// Serve the tools over MCP: Streamable HTTP, or stdio with --stdio.
    Serve(Box<ServeArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthMode {
    /// Trust the x-rls-user-id header: only behind a trusted network boundary.
    Header,
    /// Verify an Authorization: Bearer JWT.
    Jwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum JwtAlgorithm {
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Connect as the application role (store_manager).
    #[command(flatten)]
    connection: Connection,
    /// A read replica (hot standby) of the database, as the application
    /// role; repeat for several (env: comma-separated). Calls go to the
    /// replicas in turn, and to --database-url when none is up and within
    /// --max-replica-lag.
    #[arg(
        long = "replica-url",
        env = "SQLMCP_REPLICA_URLS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = db::parse_database_url
    )]
    replica_urls: Vec<Config>,
    /// How far behind the primary a replica may be and still take calls
    /// (e.g. 500ms, 5s, 1m); measured every 500 ms. The default tolerates a
    /// burst of writes without sending every call to the primary, and keeps
    /// answers at most a few seconds older than the data.
    #[arg(long, env = "SQLMCP_MAX_REPLICA_LAG", default_value = "5s", value_parser = parse_max_lag)]
    max_replica_lag: std::time::Duration,
    /// Serve one client over stdin/stdout instead of HTTP.
    #[arg(long)]
    stdio: bool,
    /// Address to listen on.
    #[arg(long, env = "SQLMCP_BIND", default_value = "127.0.0.1:8000")]
    bind: std::net::SocketAddr,
    /// Keep MCP sessions instead of serving every request on its own.
    #[arg(long)]
    sessions: bool,
    /// Serve the workbench at /ui: the tools, a form to run each, raw SQL
    /// with the policy's verdict, and the recent calls. Off by default.
    #[arg(long, env = "SQLMCP_UI")]
    ui: bool,
    /// Host header values to accept (DNS-rebinding protection), comma-separated.
    /// Set the names clients use to reach this server; `*` accepts any.
    #[arg(
        long,
        env = "SQLMCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    allowed_hosts: Vec<String>,
    /// Browser Origin values to accept (e.g. https://app.example.com:443), comma-separated.
    #[arg(long, env = "SQLMCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SQLMCP_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Milliseconds a client may take to send a request's headers; idle
    /// keep-alive connections close after this long too.
    #[arg(long, env = "SQLMCP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
    /// Milliseconds a client may take to send a request body, whole.
    #[arg(long, env = "SQLMCP_BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_ms: u64,
    /// Connections open at once at most; more wait until one closes.
    #[arg(long, env = "SQLMCP_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// How HTTP callers prove their identity.
    #[arg(long, env = "SQLMCP_AUTH", value_enum, default_value = "header")]
    auth: AuthMode,
    /// jwt: HS256 shared secret (at least 32 bytes).
    #[arg(long, env = "SQLMCP_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<Secret>,
    /// jwt: PEM public key file, for --jwt-algorithm RS256 or ES256.
    #[arg(long, env = "SQLMCP_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<std::path::PathBuf>,
    /// jwt: the algorithm of --jwt-public-key.
    #[arg(long, env = "SQLMCP_JWT_ALGORITHM", value_enum)]
    jwt_algorithm: Option<JwtAlgorithm>,
    /// jwt: a JWKS file; tokens pick their key by `kid`.
    #[arg(long, env = "SQLMCP_JWKS_FILE")]
    jwks_file: Option<std::path::PathBuf>,
    /// jwt: an OAuth authorization server whose tokens are accepted
    /// (repeatable, or comma-separated). Its keys are found through its
    /// metadata and fetched over HTTPS; the server then publishes its own
    /// metadata as a protected resource (RFC 9728) and names it in every 401.
    #[arg(
        long = "oauth-issuer",
        env = "SQLMCP_OAUTH_ISSUERS",
        value_delimiter = ','
    )]
    oauth_issuers: Vec<String>,
    /// jwt with --oauth-issuer: this server's `/mcp` URL as clients reach it
    /// (e.g. https://mcp.example.com/mcp). Tokens must name it as their
    /// audience (RFC 8707).
    #[arg(long, env = "SQLMCP_RESOURCE_URL")]
    resource_url: Option<String>,
    /// jwt with --oauth-issuer: seconds between two fetches of an issuer's
    /// keys caused by tokens with an unknown `kid`.
    #[arg(long, env = "SQLMCP_OAUTH_REFETCH_SECONDS", default_value_t = 10)]
    oauth_refetch_seconds: u64,
    /// jwt: the required `iss`.
    #[arg(long, env = "SQLMCP_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// jwt: the required `aud`.
    #[arg(long, env = "SQLMCP_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// jwt: a file of revoked token ids (`jti`), one per line; read again
    /// when it changes, without a restart.
    #[arg(long, env = "SQLMCP_JWT_REVOKED_FILE")]
    jwt_revoked_file: Option<std::path::PathBuf>,
    /// jwt: the claim that holds the caller's id. Without a roles, stores or
    /// regions claim that says what the caller may see, it must be a
    /// manager's UUID, mapped to stores as in header mode.
    #[arg(long, env = "SQLMCP_JWT_CLAIM", default_value = "sub")]
    jwt_claim: String,
    /// The identity of a stdio client.
    #[arg(long, env = "SQLMCP_CALLER_ID")]
    caller: Option<String>,
    /// The identity of HTTP calls that name none. Without it they are refused.
    #[arg(long, env = "SQLMCP_DEFAULT_CALLER_ID")]
    default_caller: Option<String>,
    /// Database connections at most.
    #[arg(long, env = "SQLMCP_POOL_SIZE", default_value_t = 16)]
    pool_size: usize,
    /// Milliseconds a call waits for a free connection before it is told the server is busy.
    #[arg(long, env = "SQLMCP_POOL_WAIT_MS", default_value_t = 5_000)]
    pool_wait_ms: u64,
    /// Milliseconds one statement may run.
    #[arg(long, env = "SQLMCP_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    statement_timeout_ms: u64,
    /// Prepare each query once per connection. Set false behind a
    /// transaction-pooling PgBouncer older than 1.21.
    #[arg(long, env = "SQLMCP_STATEMENT_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    statement_cache: bool,
    /// Keep each curated tool's answer for this many milliseconds, per tool,
    /// arguments and caller (0: off). Answers may then be that much older
    /// than the data.
    #[arg(long, env = "SQLMCP_RESULT_CACHE_TTL_MS", default_value_t = 0)]
    result_cache_ttl_ms: u64,
    /// Megabytes of answers the result cache keeps at most.
    #[arg(long, env = "SQLMCP_RESULT_CACHE_MAX_MB", default_value_t = 64)]
    result_cache_max_mb: u64,
    /// Rows a result holds at most.
    #[arg(long, env = "SQLMCP_MAX_ROWS", default_value_t = 1_000)]
    max_rows: usize,
    /// execute_sales_query: rows returned at most.
    #[arg(long, env = "SQLMCP_SQL_MAX_ROWS", default_value_t = 500)]
    sql_max_rows: usize,
    /// execute_sales_query: bytes of result at most.
    #[arg(long, env = "SQLMCP_SQL_MAX_BYTES", default_value_t = 1 << 20)]
    sql_max_bytes: usize,
    /// execute_sales_query: milliseconds the statement may run.
    #[arg(long, env = "SQLMCP_SQL_TIMEOUT_MS", default_value_t = 5_000)]
    sql_timeout_ms: u64,
    /// Seconds calls in flight may run on after a shutdown signal.
    #[arg(long, env = "SQLMCP_SHUTDOWN_SECONDS", default_value_t = 10)]
    shutdown_seconds: u64,
    /// Serve /metrics on this address instead of the main one (e.g. a
    /// private interface, 10.0.0.5:9100); with --stdio, the only place it
    /// is served.
    #[arg(long, env = "SQLMCP_METRICS_BIND")]
    metrics_bind: Option<std::net::SocketAddr>,
    /// /metrics asks for `Authorization: Bearer <token>`. With --auth jwt,
    /// /metrics is served only with a token.
    #[arg(long, env = "SQLMCP_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<Secret>,
    #[command(flatten)]
    rate_limits: server::rate_limit::Flags,
    #[command(flatten)]
    redis: server::shared::RedisFlags,
    /// Log format (logs go to stderr).
    #[arg(long, env = "SQLMCP_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    embedding: embeddings::Settings,
    #[command(flatten)]
    access: auth::AccessSettings,
    #[command(flatten)]
    audit: audit::Flags,
}

#[derive(Debug, Args)]
struct EmbedArgs {
    /// Connect as the role that owns the schema, as `migrate` does.
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    embedding: embeddings::Settings,
    /// Products embedded and written per transaction.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

#[derive(Debug, Args)]
struct CallArgs {
    /// Connect as the application role (store_manager), as the server does.
    #[command(flatten)]
    connection: Connection,
    /// The tool's name, as `sqlmcp tools` lists it.
    tool: String,
    /// The arguments as a JSON object.
    #[arg(default_value = "{}")]
    arguments: String,
    /// The caller's id (a UUID); row-level security shows only what it may see.
    #[arg(long, env = "SQLMCP_CALLER_ID")]
    caller: String,
    #[command(flatten)]
    embedding: embeddings::Settings,
}

#[derive(Debug, Args)]
struct ToolsArgs {
    /// A human-readable table instead of JSON.
    #[arg(long)]
    markdown: bool,
}

/// A lag bound of at least one probe interval: below it, the measure
/// cannot tell a replica that keeps up from one that does not.
fn parse_max_lag(text: &str) -> Result<std::time::Duration, String> {
    let lag = humantime::parse_duration(text)
        .map_err(|err| format!("not a duration such as 500ms, 5s or 1m: {err}"))?;
    if lag < db::replicas::PROBE_EVERY {
        return Err(format!(
            "at least {}ms: replicas' lag is measured every {}ms",
            db::replicas::PROBE_EVERY.as_millis(),
            db::replicas::PROBE_EVERY.as_millis()
        ));
    }
    Ok(lag)
}

#[derive(Debug, Args)]
struct Connection {
    /// PostgreSQL connection URL. `migrate` and `seed` connect as the role that
    /// owns the schema.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = db::parse_database_url)]
    database_url: Config,
}

#[derive(Debug, Args)]
struct MigrateArgs {
    #[command(flatten)]
    connection: Connection,
    /// Also set the password of the application role `store_manager`, which
    /// the migrations create without one.
    #[arg(long, env = "SQLMCP_APP_PASSWORD", hide_env_values = true)]
    app_password: Option<Secret>,
    /// Also set the password of the audit log's role `sqlmcp_audit`, which
    /// the migrations create without one.
    #[arg(long, env = "SQLMCP_AUDIT_PASSWORD", hide_env_values = true)]
    audit_password: Option<Secret>,
}

#[derive(Debug, Args)]
struct SeedArgs {
    #[command(flatten)]
    connection: Connection,
    /// How much data: tiny (tests), small, or full (the original sample's size).
    #[arg(long, value_enum, default_value = "small")]
    scale: seed::Scale,
    /// Random seed; the same seed and scale always give the same rows.
    #[arg(long, default_value_t = seed::DEFAULT_SEED)]
    seed: u64,
    /// Replace existing sample data instead of refusing.
    #[arg(long, conflicts_with = "if_empty")]
    force: bool,
    /// Seed only if the database holds no sample data yet; otherwise succeed
    /// without changing anything.
    #[arg(long)]
    if_empty: bool,
}

pub async fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Migrate(args) => run_migrate(args).await,
        Command::Seed(args) => run_seed(args).await,
        Command::Tools(args) => {
            print_tools(&args);
            Ok(())
        }
        Command::Prompts(args) => {
            print_prompts(&args);
            Ok(())
        }
        Command::Catalogue(args) => {
            print_catalogue(&args);
            Ok(())
        }
        Command::Call(args) => run_call(args).await,
        Command::Embed(args) => run_embed(args).await,
        Command::Serve(args) => run_serve(*args).await,
    }
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    // rmcp logs every stateless request at info; keep it to warnings
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Which tools callers may use, and the scopes of those whose credential
/// names none.
struct Access {
    tool_scopes: auth::ToolScopes,
    default_scopes: Scopes,
}

impl Access {
    fn new(settings: &auth::AccessSettings) -> Result<Access> {
        let tool_scopes = settings.tool_scopes()?;
        let default_scopes = settings.default_scopes(&tool_scopes)?;
        Ok(Access {
            tool_scopes,
            default_scopes,
        })
    }

    /// What a verified token is read with.
    fn jwt<'a>(
        &self,
        args: &'a ServeArgs,
        key: auth::JwtKey<'a>,
        issuer: &'a str,
        audience: &'a str,
    ) -> Result<auth::Authenticator> {
        let verifier = auth::JwtVerifier::new(auth::JwtSettings {
            key,
            issuer,
            audience,
            claims: args.access.claim_names(&args.jwt_claim),
            default_scopes: self.default_scopes.clone(),
            scopes_supported: self
                .tool_scopes
                .all()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            revoked: args.jwt_revoked_file.as_deref(),
        })?;
        Ok(auth::Authenticator::Jwt(Box::new(verifier)))
    }
}

fn authenticator(args: &ServeArgs, access: &Access) -> Result<auth::Authenticator> {
    if args.auth == AuthMode::Header {
        return Ok(auth::Authenticator::Header(access.default_scopes.clone()));
    }
    if !args.oauth_issuers.is_empty() {
        return oauth_authenticator(args, access);
    }
    let key = match (&args.jwt_secret, &args.jwt_public_key, &args.jwks_file) {
        (Some(secret), None, None) => auth::JwtKey::Secret(secret.expose()),
        (None, Some(pem_file), None) => auth::JwtKey::PublicKey {
            pem_file,
            algorithm: match args.jwt_algorithm {
                Some(JwtAlgorithm::Rs256) => jsonwebtoken::Algorithm::RS256,
                Some(JwtAlgorithm::Es256) => jsonwebtoken::Algorithm::ES256,
                None => anyhow::bail!("--jwt-public-key needs --jwt-algorithm RS256 or ES256"),
            },
        },
        (None, None, Some(jwks)) => auth::JwtKey::JwksFile(jwks),
        _ => anyhow::bail!(
            "--auth jwt needs exactly one of --jwt-secret, --jwt-public-key, --jwks-file or --oauth-issuer"
        ),
    };
    let (Some(issuer), Some(audience)) = (&args.jwt_issuer, &args.jwt_audience) else {
        anyhow::bail!("--auth jwt needs --jwt-issuer and --jwt-audience");
    };
    access.jwt(args, key, issuer, audience)
}

/// JWT mode with the keys of OAuth authorization servers.
fn oauth_authenticator(args: &ServeArgs, access: &Access) -> Result<auth::Authenticator> {
    if args.jwt_secret.is_some() || args.jwt_public_key.is_some() || args.jwks_file.is_some() {
        anyhow::bail!(
            "--oauth-issuer takes the issuers' own keys: leave out --jwt-secret, --jwt-public-key and --jwks-file"
        );
    }
    if args.jwt_issuer.is_some() || args.jwt_audience.is_some() {
        anyhow::bail!(
            "with --oauth-issuer the issuers are the --oauth-issuer values and the audience is --resource-url: leave out --jwt-issuer and --jwt-audience"
        );
    }
    let Some(resource) = &args.resource_url else {
        anyhow::bail!(
            "--oauth-issuer needs --resource-url, this server's /mcp URL as clients reach it (e.g. https://mcp.example.com/mcp)"
        );
    };
    reqwest::Url::parse(resource)
        .map_err(|err| anyhow::anyhow!("--resource-url {resource}: {err}"))?;
    let key = auth::JwtKey::Issuers {
        urls: &args.oauth_issuers,
        refetch_every: std::time::Duration::from_secs(args.oauth_refetch_seconds),
    };
    access.jwt(args, key, "", resource)
}

async fn run_serve(args: ServeArgs) -> Result<()> {
    init_logging(args.log_format);
    let access = Access::new(&args.access)?;
    let parse_caller = |value: &Option<String>,
                        flag: &str,
                        principal: fn(CallerId) -> Principal|
     -> Result<Option<Caller>> {
        value
            .as_deref()
            .map(|v| {
                let id = CallerId::configured(flag, v)?;
                Ok(Caller::by_id(id, principal, access.default_scopes.clone()))
            })
            .transpose()
    };
    let caller = parse_caller(&args.caller, "--caller", Principal::Configured)?;
    let default_caller =
        parse_caller(&args.default_caller, "--default-caller", Principal::Default)?;
    let allowed_hosts = if args.allowed_hosts.iter().any(|h| h == "*") {
        Vec::new()
    } else {
        args.allowed_hosts.clone()
    };
    let settings = server::Settings {
        database: args.connection.database_url.clone(),
        replicas: args.replica_urls.clone(),
        max_replica_lag: args.max_replica_lag,
        bind: args.bind,
        sessions: args.sessions,
        allowed_hosts,
        allowed_origins: args.allowed_origins.clone(),
        max_body_bytes: args.max_body_bytes,
        header_timeout: std::time::Duration::from_millis(args.header_timeout_ms),
        body_timeout: std::time::Duration::from_millis(args.body_timeout_ms),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        authenticator: std::sync::Arc::new(authenticator(&args, &access)?),
        default_caller,
        tool_scopes: access.tool_scopes.clone(),
        pool_size: args.pool_size,
        pool_wait: std::time::Duration::from_millis(args.pool_wait_ms),
        limits: tools::CallLimits {
            statement_timeout: std::time::Duration::from_millis(args.statement_timeout_ms),
            max_rows: args.max_rows,
            raw_sql: tools::raw_sql::Limits {
                max_rows: args.sql_max_rows,
                max_bytes: args.sql_max_bytes,
                statement_timeout: std::time::Duration::from_millis(args.sql_timeout_ms),
                ..Default::default()
            },
            statement_cache: args.statement_cache,
        },
        shutdown_deadline: std::time::Duration::from_secs(args.shutdown_seconds),
        metrics: server::MetricsSettings {
            bind: args.metrics_bind,
            token: args.metrics_token.clone(),
        },
        rate_limits: args.rate_limits.settings()?,
        redis: args.redis.settings()?,
        embedder: args.embedding.build()?,
        result_cache: (args.result_cache_ttl_ms > 0).then(|| server::result_cache::Settings {
            ttl: std::time::Duration::from_millis(args.result_cache_ttl_ms),
            max_bytes: args.result_cache_max_mb.saturating_mul(1 << 20),
        }),
        audit: args.audit.settings()?,
        ui: args.ui,
    };
    if args.stdio && args.ui {
        anyhow::bail!(
            "--ui needs HTTP: the workbench is served at /ui beside /mcp; leave out --stdio"
        );
    }
    if args.stdio {
        return server::serve_stdio(settings, caller).await;
    }
    let application = server::Application::build(settings).await?;
    tracing::info!(address = %application.local_addr(), "serving MCP at http://{}/mcp", application.local_addr());
    if args.ui {
        tracing::info!(
            "serving the workbench at http://{}/ui/",
            application.local_addr()
        );
    }
    application
        .run_until_stopped(server::shutdown_signal())
        .await
}

async fn run_call(args: CallArgs) -> Result<()> {
    let caller = CallerId::configured("--caller", &args.caller)?;
    let arguments: serde_json::Value = serde_json::from_str(&args.arguments)
        .map_err(|err| anyhow::anyhow!("the arguments are not JSON: {err}"))?;
    // Only tools that embed need the model: a missing one is an error for them.
    let (embedder, embedder_error) = match args.embedding.build() {
        Ok(embedder) => (embedder, None),
        Err(err) => (None, Some(err)),
    };
    let mut client = db::connect(&args.connection.database_url).await?;
    let context = tools::ToolContext {
        embedder: embedder.as_deref(),
        ..tools::ToolContext::default()
    };
    let called = tools::call(&mut client, &caller.into(), &args.tool, arguments, &context).await;
    let output = match (called, embedder_error) {
        (Err(tools::ToolError::NoEmbeddingModel), Some(err)) => return Err(err),
        (called, _) => called?,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&output.structured).expect("results serialise")
    );
    Ok(())
}

fn print_tools(args: &ToolsArgs) {
    let definitions = tools::definitions();
    if !args.markdown {
        let list: Vec<_> = definitions
            .iter()
            .map(tools::ToolDefinition::to_json)
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("tool definitions serialise")
        );
        return;
    }
    print_tools_table(&definitions);
}

fn print_tools_table(definitions: &[tools::ToolDefinition]) {
    println!("| tool | what it answers | arguments | result columns |");
    println!("|---|---|---|---|");
    for tool in definitions {
        let required: Vec<&str> = tool.input_schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let arguments = property_names(&tool.input_schema)
            .into_iter()
            .map(|arg| match required.contains(&arg) {
                true => format!("`{arg}` (required)"),
                false => format!("`{arg}`"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let columns = property_names(&tool.output_schema["properties"]["rows"]["items"])
            .into_iter()
            .map(|column| format!("`{column}`"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| `{}` | {} | {arguments} | {columns} |",
            tool.name,
            tool.description.replace('\n', " ")
        );
    }
}

/// Each prompt as `prompts/list` shows it, with its file and the tools it
/// chains.
fn prompts_json() -> Vec<serde_json::Value> {
    prompts::all()
        .map(|prompt| {
            let mut json =
                serde_json::to_value(prompts::to_mcp(prompt)).expect("prompts serialise");
            json["tools"] = serde_json::json!(prompt.tools);
            json["source"] = serde_json::json!(prompt.file);
            json
        })
        .collect()
}

/// The prompts as `prompts/list` shows them (with the file and the tools
/// each chains), or as a Markdown table.
fn print_prompts(args: &ToolsArgs) {
    if !args.markdown {
        println!(
            "{}",
            serde_json::to_string_pretty(&prompts_json()).expect("prompts serialise")
        );
        return;
    }
    println!("| prompt | what it does | arguments | tools it chains |");
    println!("|---|---|---|---|");
    for prompt in prompts::all() {
        let arguments = prompt
            .arguments
            .iter()
            .map(|argument| {
                let required = if argument.required { ", required" } else { "" };
                format!("`{}` ({}{required})", argument.name, argument.expected())
            })
            .collect::<Vec<_>>()
            .join(", ");
        let tools = prompt
            .tools
            .iter()
            .map(|tool| format!("`{tool}`"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "| `{}` | {} | {arguments} | {tools} |",
            prompt.name,
            prompt.description.replace('\n', " ")
        );
    }
}

/// `sqlmcp catalogue`: the tools, the resources, the resource templates
/// and their completions, and the prompts, as JSON or as Markdown tables.
fn print_catalogue(args: &ToolsArgs) {
    use crate::resources;
    use sqlmcp_catalogue::CompletionSource;

    let definitions = tools::definitions();
    let completes = |source: &Option<CompletionSource>| match source {
        None => "nothing".to_owned(),
        Some(CompletionSource::Values(values)) => values.join(", "),
        Some(CompletionSource::Query { file, line, .. }) => format!("a query ({file}:{line})"),
    };
    if !args.markdown {
        let templates: Vec<serde_json::Value> = resources::templates_served()
            .iter()
            .map(|template| {
                let mut listed = serde_json::to_value(template.to_mcp()).expect("serialises");
                listed["query"] = template.query.name.clone().into();
                listed["completions"] = template
                    .variables()
                    .iter()
                    .map(|v| (v.name.clone(), serde_json::json!(v.completion)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                listed
            })
            .collect();
        let catalogue = serde_json::json!({
            "tools": definitions.iter().map(tools::ToolDefinition::to_json).collect::<Vec<_>>(),
            "resources": resources::fixed().into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
            "resourceTemplates": templates,
            "prompts": prompts_json(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&catalogue).expect("the catalogue serialises")
        );
        return;
    }
    println!("## Tools\n");
    print_tools_table(&definitions);
    println!("\n## Resources\n");
    println!("| URI | what it is | MIME type |");
    println!("|---|---|---|");
    for (resource, _) in resources::fixed() {
        println!(
            "| `{}` | {} | `{}` |",
            resource.uri,
            resource.description.as_deref().unwrap_or_default(),
            resource.mime_type.as_deref().unwrap_or_default()
        );
    }
    println!("\n## Resource templates\n");
    println!("| URI template | what it answers | query | completions |");
    println!("|---|---|---|---|");
    for template in resources::templates_served() {
        let query = if template.query.tool {
            format!("`{}` (also a tool)", template.query.name)
        } else {
            format!("`{}` (resource only)", template.query.name)
        };
        let completions = template
            .variables()
            .iter()
            .map(|v| format!("`{}`: {}", v.name, completes(&v.completion)))
            .collect::<Vec<_>>()
            .join("; ");
        println!(
            "| `{}` | {} | {query} | {completions} |",
            template.uri,
            template.description().replace('\n', " ")
        );
    }
    println!("\n## Prompts\n");
    print_prompts(args);
}

fn property_names(schema: &serde_json::Value) -> Vec<&str> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

async fn run_embed(args: EmbedArgs) -> Result<()> {
    use std::io::IsTerminal;
    let Some(embedder) = args.embedding.build()? else {
        anyhow::bail!("--embedding-provider none: there is no model to embed with");
    };
    let mut client = db::connect(&args.connection.database_url).await?;
    let started = std::time::Instant::now();
    let report = backfill::run(
        &mut client,
        embedder.as_ref(),
        args.batch_size,
        std::io::stderr().is_terminal(),
    )
    .await?;
    if report.embedded == 0 {
        println!(
            "{}: all {} products have current vectors of {}",
            db::describe(&args.connection.database_url),
            report.products,
            report.model
        );
    } else {
        println!(
            "embedded {} of {} products with {} in {:.1}s",
            report.embedded,
            report.products,
            report.model,
            started.elapsed().as_secs_f64()
        );
    }
    if !backfill::has_index_for(&client, embedder.dimensions()).await? {
        eprintln!(
            "note: no HNSW index serves {0}-dimensional vectors, so searches compare every \
             stored vector; for many products add one in a migration, e.g. \
             CREATE INDEX ON retail.product_description_embeddings USING hnsw \
             ((description_embedding::vector({0})) vector_cosine_ops) \
             WHERE vector_dims(description_embedding) = {0};",
            embedder.dimensions()
        );
    }
    Ok(())
}

async fn run_migrate(args: MigrateArgs) -> Result<()> {
    let config = &args.connection.database_url;
    let mut client = db::connect(config).await?;
    let applied = migrate::run(&mut client).await?;
    if applied.is_empty() {
        println!(
            "{}: up to date ({} migrations)",
            db::describe(config),
            migrate::embedded().len()
        );
    }
    for name in &applied {
        println!("applied {name}");
    }
    for (role, password) in [
        (migrate::APP_ROLE, &args.app_password),
        (migrate::AUDIT_ROLE, &args.audit_password),
    ] {
        if let Some(password) = password {
            migrate::set_password(&client, role, password.expose()).await?;
            println!("set the password of role {role}");
        }
    }
    Ok(())
}

async fn run_seed(args: SeedArgs) -> Result<()> {
    let config = &args.connection.database_url;
    let mut client = db::connect(config).await?;
    let options = seed::SeedOptions {
        scale: args.scale,
        seed: args.seed,
        if_seeded: if args.force {
            seed::IfSeeded::Replace
        } else if args.if_empty {
            seed::IfSeeded::Keep
        } else {
            seed::IfSeeded::Refuse
        },
        progress: true,
    };
    let scale = args.scale.to_possible_value().expect("scales are named");
    eprintln!(
        "seeding {} at scale {} with seed {}",
        db::describe(config),
        scale.get_name(),
        args.seed
    );
    let Some(report) = seed::seed(&mut client, options).await? else {
        println!("the database already holds sample data; left as it is");
        return Ok(());
    };
    println!(
        "loaded {} rows in {:.1}s (generated in {:.1}s)",
        report.rows,
        report.loaded_in.as_secs_f64(),
        report.generated_in.as_secs_f64()
    );
    println!("{:<40} {:>9}  md5", "table", "rows");
    for sum in seed::checksums(&mut client).await? {
        println!("{:<40} {:>9}  {}", sum.table, sum.rows, sum.md5);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_secret_of_the_command_line_shows_in_its_debug_output() {
        let secrets = [
            "jwt-secret-of-at-least-thirty-two-bytes",
            "database-password",
            "sk-embedding-key",
            "app-role-password",
            "metrics-token-value",
            "audit-role-password",
            "audit-url-password",
        ];
        let serve = Cli::try_parse_from([
            "sqlmcp",
            "serve",
            "--database-url",
            "postgres://store_manager:database-password@127.0.0.1/sqlmcp",
            "--auth",
            "jwt",
            "--jwt-secret",
            secrets[0],
            "--embedding-api-key",
            secrets[2],
            "--metrics-token",
            secrets[4],
            "--audit-database-url",
            "postgres://sqlmcp_audit:audit-url-password@127.0.0.1/sqlmcp",
        ])
        .unwrap();
        let migrate = Cli::try_parse_from([
            "sqlmcp",
            "migrate",
            "--database-url",
            "postgres://sqlmcp:database-password@127.0.0.1/sqlmcp",
            "--app-password",
            secrets[3],
            "--audit-password",
            secrets[5],
        ])
        .unwrap();
        let shown = format!("{serve:?}\n{migrate:?}");
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret} shows in {shown}");
        }
    }

    #[test]
    fn oauth_issuers_need_a_resource_url_https_and_no_other_key() {
        let serve = |extra: &[&str]| -> Result<auth::Authenticator> {
            let mut args = vec![
                "sqlmcp",
                "serve",
                "--database-url",
                "postgres://store_manager@127.0.0.1/sqlmcp",
                "--auth",
                "jwt",
            ];
            args.extend(extra);
            let Command::Serve(serve) = Cli::try_parse_from(args).unwrap().command else {
                unreachable!("serve parses as serve")
            };
            authenticator(&serve, &Access::new(&serve.access)?)
        };
        let issuer = ["--oauth-issuer", "https://idp.example.com/realms/zava"];
        let resource = ["--resource-url", "https://mcp.example.com/mcp"];
        let secret = "s".repeat(40);
        let refused = [
            (issuer.to_vec(), "--resource-url"),
            (
                [&issuer[..], &resource[..], &["--jwt-secret", &secret]].concat(),
                "leave out --jwt-secret",
            ),
            (
                [&issuer[..], &resource[..], &["--jwt-audience", "x"]].concat(),
                "leave out --jwt-issuer and --jwt-audience",
            ),
            (
                [
                    &["--oauth-issuer", "http://idp.example.com"][..],
                    &resource[..],
                ]
                .concat(),
                "use https",
            ),
        ];
        for (args, expected) in refused {
            let Err(err) = serve(&args) else {
                panic!("{args:?} is accepted")
            };
            assert!(format!("{err:#}").contains(expected), "{args:?}: {err:#}");
        }
        let accepted = serve(&[&issuer[..], &resource[..]].concat()).unwrap();
        let jwt = accepted.jwt().unwrap();
        assert_eq!(
            jwt.protected_resource_url().unwrap(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            jwt.protected_resource().unwrap()["authorization_servers"],
            serde_json::json!(["https://idp.example.com/realms/zava"])
        );
    }
}
