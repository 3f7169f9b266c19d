//! The MCP prompts: one per `prompts/*.md` file, read and checked when the
//! query catalogue is made (`codegen/catalogue/src/prompt_file.rs`), handed
//! over by `build.rs` as `OUT_DIR/prompts.json` and embedded in the binary.
//!
//! `prompts/list` offers a caller the prompts whose tools their scopes all
//! allow; `prompts/get` checks the arguments as `tools/call` does (each
//! refusal names the argument and the rule) and renders the template into
//! one user message.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use rmcp::ErrorData as McpError;
use rmcp::model::{GetPromptResult, JsonObject, ListPromptsResult, PromptMessage, Role};
use serde_json::Value;
use sqlmcp_catalogue::prompt_file::Template;
use sqlmcp_catalogue::{CompletionSource, Prompt, PromptArgument};

use crate::auth::ToolScopes;
use crate::caller::Scopes;
use crate::server::cache_hints::{self, Cacheable};
use crate::tools::ToolError;

/// A prompt with its template parsed.
struct Loaded {
    prompt: Prompt,
    template: Template,
}

/// Every prompt, in name order.
static PROMPTS: LazyLock<Vec<Loaded>> = LazyLock::new(|| {
    let prompts: Vec<Prompt> =
        serde_json::from_str(include_str!(concat!(env!("OUT_DIR"), "/prompts.json")))
            .expect("build.rs writes the catalogue's prompts as JSON");
    prompts
        .into_iter()
        .map(|prompt| {
            let template = Template::parse(&prompt.body, prompt.body_line).unwrap_or_else(|err| {
                panic!(
                    "{}: {err} (checked when the catalogue was made)",
                    prompt.file
                )
            });
            Loaded { prompt, template }
        })
        .collect()
});

/// Every prompt, in name order.
pub fn all() -> impl Iterator<Item = &'static Prompt> {
    PROMPTS.iter().map(|loaded| &loaded.prompt)
}

fn find(name: &str) -> Option<&'static Loaded> {
    PROMPTS.iter().find(|loaded| loaded.prompt.name == name)
}

/// Where the values offered for `argument` of `prompt` come from, if the
/// caller may use the prompt: the same refusals as `prompts/get` (an
/// unknown prompt, a tool the caller's scopes do not allow), and an
/// argument the prompt does not have.
pub fn completion_source(
    prompt: &str,
    argument: &str,
    access: Access<'_>,
) -> Result<Option<&'static CompletionSource>, PromptError> {
    let prompt = &permitted(prompt, access)?.prompt;
    let Some(argument) = prompt.arguments.iter().find(|a| a.name == argument) else {
        return Err(PromptError::Argument(ToolError::InvalidArgument {
            argument: argument.to_owned(),
            rule: format!(
                "no such argument of prompt `{}`; its arguments: {}",
                prompt.name,
                prompt
                    .arguments
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }));
    };
    Ok(argument.completion.as_ref())
}

/// Which tools a caller may use, and so which prompts they are offered:
/// those whose tools their scopes all allow. A request that names no caller
/// (it can call no tool) is offered every prompt, as it is listed every tool.
#[derive(Clone, Copy)]
pub struct Access<'a> {
    pub tool_scopes: &'a ToolScopes,
    pub scopes: Option<&'a Scopes>,
}

impl Access<'_> {
    /// The first tool of `prompt` the caller may not use.
    fn refused_tool<'p>(&self, prompt: &'p Prompt) -> Option<&'p str> {
        let scopes = self.scopes?;
        prompt
            .tools
            .iter()
            .map(String::as_str)
            .find(|tool| !self.tool_scopes.allows(scopes, tool))
    }

    fn allows(&self, prompt: &Prompt) -> bool {
        self.refused_tool(prompt).is_none()
    }
}

/// `prompts/list`: the prompts `access` allows, in name order. Who may see
/// a prompt depends on the caller, so no cache may share the list.
pub fn list(access: Access<'_>) -> ListPromptsResult {
    let prompts = all()
        .filter(|prompt| access.allows(prompt))
        .map(to_mcp)
        .collect();
    ListPromptsResult::with_all_items(prompts).with_hint(cache_hints::CALLERS_LIST)
}

/// A prompt as `prompts/list` shows it. MCP gives prompt arguments no
/// schema, so each description ends with what a value must be: `The
/// store to review. An integer, at least 1.`
pub fn to_mcp(prompt: &Prompt) -> rmcp::model::Prompt {
    let arguments = prompt
        .arguments
        .iter()
        .map(|argument| {
            rmcp::model::PromptArgument::new(&argument.name)
                .with_description(format!(
                    "{}. {}.",
                    argument.description.trim_end_matches('.'),
                    sqlmcp_catalogue::capitalised(&argument.expected())
                ))
                .with_required(argument.required)
        })
        .collect();
    rmcp::model::Prompt::new(&prompt.name, Some(&prompt.description), Some(arguments))
        .with_title(&prompt.title)
}

/// A refused `prompts/get`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptError {
    #[error("unknown prompt `{name}`; the prompts: {}", if .known.is_empty() { "none".to_owned() } else { .known.join(", ") })]
    UnknownPrompt { name: String, known: Vec<String> },
    #[error(
        "refused: prompt `{prompt}` chains the tool `{tool}`, which needs the scope `{scope}`; \
         this caller's credential does not grant it"
    )]
    Refused {
        prompt: String,
        tool: String,
        scope: String,
    },
    #[error(transparent)]
    Argument(#[from] ToolError),
}

impl PromptError {
    /// Every refusal is an invalid-params error; an argument's names the
    /// argument and the rule in its data too.
    pub fn to_mcp(&self) -> McpError {
        let data = match self {
            PromptError::Argument(ToolError::InvalidArgument { argument, rule }) => {
                Some(serde_json::json!({ "argument": argument, "rule": rule }))
            }
            _ => None,
        };
        McpError::invalid_params(self.to_string(), data)
    }
}

/// The prompt named `name`, if there is one and the caller may use it.
fn permitted(name: &str, access: Access<'_>) -> Result<&'static Loaded, PromptError> {
    let Some(loaded) = find(name) else {
        return Err(PromptError::UnknownPrompt {
            name: name.to_owned(),
            known: all()
                .filter(|prompt| access.allows(prompt))
                .map(|prompt| prompt.name.clone())
                .collect(),
        });
    };
    let prompt = &loaded.prompt;
    if let Some(tool) = access.refused_tool(prompt) {
        return Err(PromptError::Refused {
            prompt: prompt.name.clone(),
            tool: tool.to_owned(),
            scope: access.tool_scopes.required(tool).to_owned(),
        });
    }
    Ok(loaded)
}

/// `prompts/get`: checks `arguments` against the prompt's and renders it.
pub fn get(
    name: &str,
    arguments: Option<JsonObject>,
    access: Access<'_>,
) -> Result<GetPromptResult, PromptError> {
    let loaded = permitted(name, access)?;
    let values = values(&loaded.prompt, arguments.unwrap_or_default())?;
    let text = loaded.template.render(&values);
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(&loaded.prompt.description),
    )
}

/// The checked value of every argument given or defaulted. An argument
/// sent as an empty string counts as left out: clients send one for every
/// field of a form their user left blank.
fn values(prompt: &Prompt, arguments: JsonObject) -> Result<BTreeMap<String, String>, ToolError> {
    let invalid = |argument: &str, rule: String| ToolError::InvalidArgument {
        argument: argument.to_owned(),
        rule,
    };
    if let Some(unknown) = arguments
        .keys()
        .find(|key| !prompt.arguments.iter().any(|a| &a.name == *key))
    {
        let expected = match prompt.arguments.as_slice() {
            [] => "; this prompt takes none".to_owned(),
            declared => format!(
                "; expected one of {}",
                declared
                    .iter()
                    .map(|a| format!("`{}`", a.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Err(invalid(unknown, format!("no such argument{expected}")));
    }
    let mut values = BTreeMap::new();
    for argument in &prompt.arguments {
        let given = match arguments.get(&argument.name) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.trim().to_owned()),
            // lenient with clients that send an integer as a number
            Some(Value::Number(number)) => Some(number.to_string()),
            Some(other) => {
                return Err(invalid(
                    &argument.name,
                    format!("must be a string (prompt arguments are strings), got {other}"),
                ));
            }
        };
        match (given.filter(|text| !text.is_empty()), argument) {
            (Some(text), _) => {
                let value = argument
                    .check(&text)
                    .map_err(|rule| invalid(&argument.name, rule))?;
                values.insert(argument.name.clone(), value);
            }
            (
                None,
                PromptArgument {
                    default: Some(default),
                    ..
                },
            ) => {
                values.insert(argument.name.clone(), default.clone());
            }
            (None, PromptArgument { required: true, .. }) => {
                return Err(invalid(&argument.name, "is required".to_owned()));
            }
            (None, _) => {}
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scopes::{READ, SQL};

    fn everyone() -> Access<'static> {
        static SCOPES: LazyLock<ToolScopes> = LazyLock::new(|| ToolScopes::new(&[]).unwrap());
        Access {
            tool_scopes: &SCOPES,
            scopes: None,
        }
    }

    #[test]
    fn every_prompt_is_embedded_and_chains_tools_the_server_has() {
        let names: Vec<&str> = all().map(|p| p.name.as_str()).collect();
        assert!(names.len() >= 3, "{names:?}");
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "in name order, once each");
        let tools: Vec<&str> = crate::tools::definitions().iter().map(|t| t.name).collect();
        for prompt in all() {
            assert!(!prompt.tools.is_empty(), "{}", prompt.name);
            for tool in &prompt.tools {
                assert!(tools.contains(&tool.as_str()), "{}: {tool}", prompt.name);
            }
        }
    }

    #[test]
    fn a_reader_is_offered_the_prompts_of_the_tools_it_may_use() {
        let tool_scopes = ToolScopes::new(&[]).unwrap();
        let reader = Scopes::new([READ]);
        let analyst = Scopes::new([SQL]);
        let listed = |scopes| {
            list(Access {
                tool_scopes: &tool_scopes,
                scopes,
            })
            .prompts
            .len()
        };
        assert_eq!(listed(Some(&reader)), all().count());
        assert_eq!(listed(None), all().count());
        assert_eq!(listed(Some(&analyst)), 0);
        assert_eq!(
            list(everyone()).cache_scope,
            Some(rmcp::model::CacheScope::Private)
        );
    }

    #[test]
    fn completion_sources_are_found_by_prompt_and_argument() {
        for prompt in all() {
            for argument in &prompt.arguments {
                assert!(
                    argument.completion.is_some(),
                    "{}: argument `{}` offers no completions",
                    prompt.name,
                    argument.name
                );
                assert_eq!(
                    completion_source(&prompt.name, &argument.name, everyone()).unwrap(),
                    argument.completion.as_ref()
                );
            }
        }
        let unknown = completion_source("no_such_prompt", "store_id", everyone()).unwrap_err();
        assert!(
            unknown.to_string().starts_with("unknown prompt"),
            "{unknown}"
        );
        let review = completion_source("monthly_store_review", "region", everyone()).unwrap_err();
        assert!(
            review
                .to_string()
                .contains("no such argument of prompt `monthly_store_review`"),
            "{review}"
        );
    }

    #[test]
    fn unknown_prompts_and_arguments_are_refused() {
        let err = get("no_such_prompt", None, everyone()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unknown prompt `no_such_prompt`; the prompts: "),
            "{err}"
        );
        let prompt = all().next().unwrap();
        let mut arguments = JsonObject::new();
        arguments.insert("bogus".into(), "1".into());
        let err = get(&prompt.name, Some(arguments), everyone()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid argument `bogus`: no such argument; expected one of `"),
            "{err}"
        );
        assert_eq!(err.to_mcp().data.unwrap()["argument"], "bogus");
    }
}
