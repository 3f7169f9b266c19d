//! The `sqlmcp` command line.

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_postgres::Config;

use crate::caller::CallerId;
use crate::{db, migrate, seed, tools};

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
    /// Print the tool catalogue: name, description, input and output schema.
    Tools(ToolsArgs),
    /// Call one tool as a caller and print its result (for development).
    Call(CallArgs),
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
}

#[derive(Debug, Args)]
struct ToolsArgs {
    /// A human-readable table instead of JSON.
    #[arg(long)]
    markdown: bool,
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
    app_password: Option<String>,
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
        Command::Call(args) => run_call(args).await,
    }
}

async fn run_call(args: CallArgs) -> Result<()> {
    let caller = CallerId::parse(&args.caller)?;
    let arguments: serde_json::Value = serde_json::from_str(&args.arguments)
        .map_err(|err| anyhow::anyhow!("the arguments are not JSON: {err}"))?;
    let mut client = db::connect(&args.connection.database_url).await?;
    let context = tools::ToolContext::default();
    let output = tools::call(&mut client, &caller, &args.tool, arguments, &context).await?;
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
    println!("| tool | what it answers | arguments | result columns |");
    println!("|---|---|---|---|");
    for tool in &definitions {
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

fn property_names(schema: &serde_json::Value) -> Vec<&str> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
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
    if let Some(password) = &args.app_password {
        migrate::set_app_password(&client, password).await?;
        println!("set the password of role {}", migrate::APP_ROLE);
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
