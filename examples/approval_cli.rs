//! An agent whose risky tool calls wait for you at the terminal.
//!
//! Run with `cargo run -p hitl-examples --example approval_cli`, or against a local
//! OpenAI-compatible server (llama.cpp, llama-cpp-python, Ollama, vLLM, ...) with
//! `cargo run -p hitl-examples --example approval_cli -- --base-url http://127.0.0.1:8080/v1 --model gemma`.
//!
//! The model is the one at `--base-url` (or `OPENAI_BASE_URL`) named `--model` (or
//! `OPENAI_MODEL`), which needs no API key; else OpenAI's when `OPENAI_API_KEY` is set
//! (model `gpt-4o-mini` unless named); else a scripted demo model. The agent has three
//! tools on a pretend workspace: `read_file` (runs without review), `delete_file`
//! (approve or reject) and `send_email` (approve, edit, reject, or respond instead of
//! sending). When it proposes a reviewed call, the run pauses and you decide. Threads are stored in `hitl-demo.db`
//! in the current directory: quit at the prompt (`q` or Ctrl-D) and resume later with
//! `--thread <id>`, even after the program exited.
//!
//! Options: `--thread <id>` (resume or start that thread), `--message <text>` (what you
//! ask the agent), `--auto approve|reject` (decide without asking), `--db <file>`,
//! `--base-url <url>`, `--model <name>`, `--tool-choice auto|none|required|<tool>`
//! (llama-cpp-python calls tools only with `--tool-choice auto`), `--record <file>`
//! (save the model's turns and your answers as a fixture a test replays offline, see
//! `examples/tests/recorded.rs`).

use std::io::{BufRead, Write};

use clap::{CommandFactory, Parser, ValueEnum};
use hitl_runtime::agent::{OpenAiModel, ToolChoice};
use hitl_runtime::testing::Recorder;
use hitl_runtime::{
    Command, Decision, Message, PendingInterrupt, RunConfig, RunError, SqliteSaver, validate_json,
};
use serde_json::{Value, json};

mod demo_agent;
use demo_agent::{agent_with, scripted_model};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Auto {
    Approve,
    Reject,
}

#[derive(Debug, Parser)]
#[command(about = "An agent whose risky tool calls wait for your decision")]
struct Args {
    /// The thread to resume, or to start with this id.
    #[arg(long)]
    thread: Option<String>,
    /// What to ask the agent (new threads only).
    #[arg(long, default_value = "Please clean up the workspace as my notes say.")]
    message: String,
    /// Decide every review without asking.
    #[arg(long, value_enum)]
    auto: Option<Auto>,
    /// The SQLite file threads are stored in.
    #[arg(long, default_value = "hitl-demo.db")]
    db: String,
    /// An OpenAI-compatible server, e.g. `http://127.0.0.1:8080/v1` (default:
    /// `OPENAI_BASE_URL`).
    #[arg(long)]
    base_url: Option<String>,
    /// The name of the model the server serves (default: `OPENAI_MODEL`).
    #[arg(long)]
    model: Option<String>,
    /// Whether the model must call a tool: `auto`, `none`, `required` or a tool's name
    /// (default: not sent).
    #[arg(long)]
    tool_choice: Option<String>,
    /// Record the model's turns and the answers given into this file (a fixture for
    /// `hitl_runtime::testing::Fixture`), written when the program ends or pauses.
    #[arg(long)]
    record: Option<std::path::PathBuf>,
}

/// The model the flags and the environment name, if any (else the scripted demo).
fn configured_model(args: &Args) -> Result<Option<OpenAiModel>, String> {
    let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let base_url = args.base_url.clone().or_else(|| env("OPENAI_BASE_URL"));
    let name = args.model.clone().or_else(|| env("OPENAI_MODEL"));
    let mut model = match (base_url, env("OPENAI_API_KEY")) {
        (Some(url), _) => {
            let Some(name) = name else {
                return Err(format!(
                    "--model <name> (or OPENAI_MODEL) is needed with a base URL: the model the server at {url} serves"
                ));
            };
            OpenAiModel::new(name).base_url(url)
        }
        (None, Some(_)) => OpenAiModel::new(name.unwrap_or_else(|| "gpt-4o-mini".into())),
        (None, None) if name.is_some() || args.tool_choice.is_some() => {
            return Err(
                "--model and --tool-choice need a server: pass --base-url (or set OPENAI_BASE_URL), or set OPENAI_API_KEY for OpenAI"
                    .into(),
            );
        }
        (None, None) => return Ok(None),
    };
    if let Some(choice) = &args.tool_choice {
        model = model.tool_choice(match choice.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            tool => ToolChoice::function(tool),
        });
    }
    Ok(Some(model))
}

/// Reads one line; `None` at end of input or on `q`.
fn ask(prompt: &str) -> Option<String> {
    print!("{prompt}");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            let line = line.trim().to_owned();
            (line != "q").then_some(line)
        }
    }
}

/// Asks the reviewer about every action request; `None` if they quit.
fn review(interrupt: &PendingInterrupt, auto: Option<Auto>) -> Option<Value> {
    let requests = interrupt.value["action_requests"].as_array()?;
    let configs = interrupt.value["review_configs"].as_array()?;
    println!(
        "\n== Review needed ({} call{}) ==",
        requests.len(),
        if requests.len() == 1 { "" } else { "s" }
    );
    let mut decisions = Vec::new();
    for (i, (request, config)) in requests.iter().zip(configs).enumerate() {
        let name = request["name"].as_str().unwrap_or("?");
        let allowed: Vec<&str> = config["allowed_decisions"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!("\n[{}] {name} {}", i + 1, request["args"]);
        println!(
            "    {}",
            request["description"]
                .as_str()
                .unwrap_or("")
                .replace('\n', "\n    ")
        );
        let decision = match auto {
            Some(Auto::Approve) => {
                println!("    -> approve (--auto)");
                Decision::Approve
            }
            Some(Auto::Reject) => {
                println!("    -> reject (--auto)");
                Decision::Reject {
                    message: Some("Rejected by --auto reject.".into()),
                }
            }
            None => decide(name, &allowed, &request["args"], &config["args_schema"])?,
        };
        decisions.push(decision);
    }
    Some(json!({ "decisions": decisions }))
}

fn decide(name: &str, allowed: &[&str], args: &Value, schema: &Value) -> Option<Decision> {
    let menu: Vec<String> = allowed
        .iter()
        .map(|d| match *d {
            "approve" => "[a]pprove".to_owned(),
            "edit" => "[e]dit".to_owned(),
            "reject" => "[r]eject".to_owned(),
            "respond" => "re[s]pond".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    loop {
        let choice = ask(&format!("    {} (q to pause and quit): ", menu.join(" / ")))?;
        let picked = match choice.to_lowercase().as_str() {
            "a" | "approve" => "approve",
            "e" | "edit" => "edit",
            "r" | "reject" => "reject",
            "s" | "respond" => "respond",
            _ => "",
        };
        if !allowed.contains(&picked) {
            println!("    Please choose one of: {}", menu.join(", "));
            continue;
        }
        return Some(match picked {
            "approve" => Decision::Approve,
            "reject" => {
                let reason = ask("    Reason (optional, told to the model): ")?;
                Decision::Reject {
                    message: (!reason.is_empty()).then_some(reason),
                }
            }
            "respond" => Decision::Respond {
                message: ask("    Your answer for the model: ")?,
            },
            _ => loop {
                println!("    Current arguments: {args}");
                let text = ask("    New arguments as JSON: ")?;
                let edited: Value = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(e) => {
                        println!("    Not JSON: {e}");
                        continue;
                    }
                };
                if let Err(problems) = validate_json(schema, &edited) {
                    println!(
                        "    Those arguments do not fit `{name}`: {}",
                        problems.join("; ")
                    );
                    continue;
                }
                break Decision::Edit {
                    edited_action: hitl_runtime::Action {
                        name: name.to_owned(),
                        args: edited,
                    },
                };
            },
        });
    }
}

fn print_new_messages(messages: &[Message], from: usize) {
    for m in &messages[from.min(messages.len())..] {
        match m {
            Message::User(u) => println!("\nyou: {}", u.content),
            Message::Assistant(a) => {
                if !a.content.is_empty() {
                    println!("\nagent: {}", a.content);
                }
                for c in &a.tool_calls {
                    println!("agent wants to call {} {}", c.name, c.args);
                }
                for c in &a.invalid_tool_calls {
                    println!(
                        "agent tried to call {} with arguments that are not JSON: {}",
                        c.name.as_deref().unwrap_or("?"),
                        c.args.as_deref().unwrap_or("")
                    );
                }
            }
            Message::Tool(t) => println!("  {} -> {}", t.name.as_deref().unwrap_or("?"), t.content),
            Message::System(_) => {}
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let model = configured_model(&args).unwrap_or_else(|message| {
        Args::command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, message)
            .exit()
    });
    let saver = SqliteSaver::open(&args.db).await?;
    let recorder = Recorder::new();
    let agent = match (model, &args.record) {
        (Some(model), record) => {
            println!("model: {} ({})", model.model(), model.endpoint());
            match record {
                Some(_) => agent_with(recorder.model(model), saver)?,
                None => agent_with(model, saver)?,
            }
        }
        (None, record) => {
            println!("model: scripted demo");
            match record {
                Some(_) => agent_with(recorder.model(scripted_model()), saver)?,
                None => agent_with(scripted_model(), saver)?,
            }
        }
    };
    let result = run(&agent, &args, &recorder).await;
    if let Some(path) = &args.record {
        recorder.save(path)?;
        println!(
            "Recorded the model's turns and the answers in {}.",
            path.display()
        );
    }
    result
}

async fn run(
    agent: &hitl_runtime::agent::Agent,
    args: &Args,
    recorder: &Recorder,
) -> Result<(), Box<dyn std::error::Error>> {
    let thread = args
        .thread
        .clone()
        .unwrap_or_else(|| format!("demo-{}", std::process::id()));
    let cfg = RunConfig::thread(thread.clone());
    println!("Thread `{thread}` (stored in {}).", args.db);

    // (conversation, pending interrupts) after each run.
    let (mut messages, mut pending) = match agent.get_state(&cfg).await {
        Ok(state) if state.next.is_empty() => {
            println!("This thread is finished:");
            print_new_messages(&state.values.messages, 0);
            return Ok(());
        }
        Ok(state) if !state.interrupts.is_empty() => {
            println!("Resuming a paused thread.");
            (state.values.messages.clone(), state.interrupts)
        }
        Ok(_) => {
            println!("Continuing an interrupted run.");
            let out = agent.invoke(None, &cfg).await?;
            (out.values.messages.clone(), out.interrupts)
        }
        Err(RunError::UnknownThread { .. }) => {
            let out = agent
                .invoke(Message::user(args.message.clone()), &cfg)
                .await?;
            (out.values.messages.clone(), out.interrupts)
        }
        Err(e) => return Err(e.into()),
    };
    let mut shown = 0;
    loop {
        print_new_messages(&messages, shown);
        shown = messages.len();
        let Some(interrupt) = pending.first() else {
            break;
        };
        let Some(answer) = review(interrupt, args.auto) else {
            println!(
                "\nPaused. Nothing was decided. Resume later with:\n  cargo run -p hitl-examples --example approval_cli -- --thread {thread}"
            );
            return Ok(());
        };
        match agent.invoke(Command::resume(answer.clone()), &cfg).await {
            Ok(out) => {
                recorder.answered(interrupt, &answer);
                messages = out.values.messages.clone();
                pending = out.interrupts;
            }
            Err(RunError::Resume(e)) => {
                println!("\nThat answer was not accepted: {e}\nAsking again.");
            }
            Err(e) => return Err(e.into()),
        }
    }
    println!("\nDone.");
    Ok(())
}
