//! Reads one `prompts/*.md` file: TOML front matter between `+++` lines,
//! then the Markdown template of the message the prompt renders. Errors
//! name the line.
//!
//! ```markdown
//! +++
//! title = "Restock plan"
//! description = "What to reorder for a store, most urgent first."
//! tools = ["low_stock", "top_products"]
//!
//! [[arguments]]
//! name = "store_id"
//! description = "The store to restock"
//! type = "integer"
//! required = true
//! complete = "SELECT store_id::text FROM retail.stores WHERE store_id::text LIKE :prefix || '%'"
//!
//! [[arguments]]
//! name = "category"
//! description = "Only this category"
//! +++
//! Call `low_stock` with store_id {{store_id}}{{#category}} and category "{{category}}"{{/category}}.
//! {{^category}}Cover every category.{{/category}}
//! Then call `top_products` …
//! ```
//!
//! The template has three kinds of tags, each on one line:
//! - `{{name}}`: the argument's value (`{{name.start}}` and `{{name.end}}`:
//!   the first and last day of a `month` argument);
//! - `{{#name}}…{{/name}}`: shown only when the optional argument `name` is
//!   given;
//! - `{{^name}}…{{/name}}`: shown only when it is not.
//!
//! A line holding nothing but a section tag is left out of the message
//! whole, so sections may sit on lines of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::query_file::{FileError, is_identifier};
use crate::{ArgumentKind, CompletionSource, Prompt, PromptArgument, capitalised};

fn error<T>(line: usize, message: impl Into<String>) -> Result<T, FileError> {
    Err(FileError {
        line,
        message: message.into(),
    })
}

/// The front matter as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    name: Option<Spanned<String>>,
    title: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tools: Vec<Spanned<String>>,
    #[serde(default)]
    arguments: Vec<Spanned<ArgumentEntry>>,
}

/// One `[[arguments]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgumentEntry {
    name: Spanned<String>,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<ArgumentKind>,
    #[serde(default)]
    required: bool,
    default: Option<Spanned<toml::Value>>,
    min: Option<Spanned<i64>>,
    max: Option<Spanned<i64>>,
    max_length: Option<Spanned<u32>>,
    one_of: Option<Spanned<Vec<String>>>,
    values: Option<Spanned<Vec<String>>>,
    complete: Option<Spanned<String>>,
}

/// Whether `name` may name an MCP prompt: 1 to 128 ASCII letters, digits,
/// `_`, `-` and `.`, as MCP asks of tool names.
pub fn is_valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// Reads the prompt file `file` (its path relative to the workspace, whose
/// stem names the prompt unless the front matter does). `tools` are the
/// tools the server has: the ones of `queries/` and the built-in ones.
pub fn parse(text: &str, file: &str, tools: &[&str]) -> Result<Prompt, FileError> {
    let (front, body, body_line) = split(text)?;
    // Lines of the front matter start at line 2 of the file.
    let line_of = |span: Range<usize>| 2 + front[..span.start].matches('\n').count();
    let matter: FrontMatter = toml::from_str(front).or_else(|err| {
        let line = err.span().map_or(1, line_of);
        error(line, format!("front matter: {}", err.message().trim_end()))
    })?;

    let stem = std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let name = match &matter.name {
        Some(name) if !is_valid_name(name.get_ref()) => {
            return error(
                line_of(name.span()),
                format!(
                    "`{}` is not a prompt name: use 1 to 128 letters, digits, `_`, `-` or `.`",
                    name.get_ref()
                ),
            );
        }
        Some(name) => name.get_ref().clone(),
        None if is_valid_name(stem) => stem.to_owned(),
        None => {
            return error(
                1,
                format!(
                    "the file name `{stem}` is not a prompt name (1 to 128 letters, digits, `_`, \
                     `-` or `.`); rename the file or set `name`"
                ),
            );
        }
    };
    let Some(description) = written(matter.description.as_deref()) else {
        return error(
            1,
            "the front matter has no `description`; it is what a client shows to choose the prompt",
        );
    };
    let title = matter
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map_or_else(
            || capitalised(&name.replace(['_', '-', '.'], " ")),
            str::to_owned,
        );

    let mut arguments = Vec::new();
    let mut argument_lines = Vec::new();
    for entry in &matter.arguments {
        let line = line_of(entry.span());
        if let Some(earlier) = arguments
            .iter()
            .position(|a: &PromptArgument| a.name == *entry.get_ref().name.get_ref())
        {
            return error(
                line_of(entry.get_ref().name.span()),
                format!(
                    "a second argument `{}` (the first is at line {})",
                    arguments[earlier].name, argument_lines[earlier]
                ),
            );
        }
        arguments.push(argument(entry.get_ref(), file, line, &line_of)?);
        argument_lines.push(line_of(entry.get_ref().name.span()));
    }

    let listed = check_tools(&matter.tools, tools, &line_of)?;
    let template = Template::parse(body, body_line)?;
    check_template(&template, &arguments, &argument_lines)?;
    check_tools_named(body, body_line, &matter.tools, &listed, tools, &line_of)?;

    Ok(Prompt {
        name,
        file: file.to_owned(),
        title,
        description,
        tools: listed,
        arguments,
        body: body.to_owned(),
        body_line,
    })
}

/// The front matter, the template and the line where the template starts.
fn split(text: &str) -> Result<(&str, &str, usize), FileError> {
    let usage = "a prompt file starts with a line `+++`, then its TOML front matter, then a \
                 line `+++` and the Markdown template";
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').enumerate();
    match lines.next() {
        Some((_, first)) if first.trim_end() == "+++" => offset += first.len(),
        _ => return error(1, usage),
    }
    let front_start = offset;
    for (index, line) in lines {
        if line.trim_end() == "+++" {
            let front = &text[front_start..offset];
            let mut body = &text[offset + line.len()..];
            let mut body_line = index + 2;
            // blank lines before the template are not part of it
            while let Some(first) = body.split_inclusive('\n').next()
                && first.trim().is_empty()
                && first.ends_with('\n')
            {
                body = &body[first.len()..];
                body_line += 1;
            }
            if body.trim().is_empty() {
                return error(
                    index + 1,
                    "the prompt has no template after the front matter: write the message it renders",
                );
            }
            return Ok((front, body.trim_end(), body_line));
        }
        offset += line.len();
    }
    error(1, format!("the front matter is never closed: {usage}"))
}

/// One `[[arguments]]` table, checked.
fn argument(
    entry: &ArgumentEntry,
    file: &str,
    line: usize,
    line_of: &impl Fn(Range<usize>) -> usize,
) -> Result<PromptArgument, FileError> {
    let name = entry.name.get_ref();
    let name_line = line_of(entry.name.span());
    if !is_identifier(name) {
        return error(
            name_line,
            format!(
                "argument name `{name}` must be snake_case (the template writes `{{{{{name}}}}}`)"
            ),
        );
    }
    let Some(description) = written(entry.description.as_deref()) else {
        return error(
            line.max(name_line),
            format!("argument `{name}` has no `description`; it is what a client shows its user"),
        );
    };
    let kind = entry.kind.unwrap_or(ArgumentKind::Text);
    let kind_name = kind_name(kind);
    let mut argument = PromptArgument {
        name: name.clone(),
        description,
        kind,
        required: entry.required,
        default: None,
        minimum: entry.min.as_ref().map(|m| *m.get_ref()),
        maximum: entry.max.as_ref().map(|m| *m.get_ref()),
        max_length: entry.max_length.as_ref().map(|m| *m.get_ref()),
        one_of: None,
        completion: None,
    };
    let fail = |span: Range<usize>, message: String| FileError {
        line: line_of(span),
        message: format!("argument `{name}`: {message}"),
    };

    for bound in [&entry.min, &entry.max].into_iter().flatten() {
        if kind != ArgumentKind::Integer {
            return Err(fail(
                bound.span(),
                format!("`min` and `max` bound an integer argument, not {kind_name} one"),
            ));
        }
    }
    if let (Some(min), Some(max)) = (&entry.min, &entry.max)
        && min.get_ref() > max.get_ref()
    {
        return Err(fail(
            max.span(),
            format!("`max` {} is below `min` {}", max.get_ref(), min.get_ref()),
        ));
    }
    if let Some(max_length) = &entry.max_length {
        if kind != ArgumentKind::Text {
            return Err(fail(
                max_length.span(),
                format!("`max_length` bounds a text argument, not {kind_name} one"),
            ));
        }
        if *max_length.get_ref() == 0 {
            return Err(fail(
                max_length.span(),
                "`max_length` must be at least 1".to_owned(),
            ));
        }
    }
    if let Some(one_of) = &entry.one_of {
        if kind != ArgumentKind::Text {
            return Err(fail(
                one_of.span(),
                format!("`one_of` lists the values of a text argument, not of {kind_name} one"),
            ));
        }
        let values = one_of.get_ref();
        if values.is_empty() || values.iter().any(|v| v.trim().is_empty() || v.trim() != v) {
            return Err(fail(
                one_of.span(),
                "`one_of` must list one value or more, none blank or with spaces around it"
                    .to_owned(),
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(twice) = values.iter().find(|v| !seen.insert(v.to_lowercase())) {
            return Err(fail(
                one_of.span(),
                format!("`one_of` lists {twice:?} twice"),
            ));
        }
        argument.one_of = Some(values.clone());
    }

    if let Some(default) = &entry.default {
        if entry.required {
            return Err(fail(
                default.span(),
                "a required argument takes no `default`; drop one of them".to_owned(),
            ));
        }
        let text = match (kind, default.get_ref()) {
            (ArgumentKind::Integer, toml::Value::Integer(n)) => n.to_string(),
            (ArgumentKind::Integer, _) => {
                return Err(fail(
                    default.span(),
                    "the `default` of an integer argument is an integer".to_owned(),
                ));
            }
            (_, toml::Value::String(s)) => s.clone(),
            (_, _) => {
                return Err(fail(
                    default.span(),
                    format!("the `default` of {kind_name} argument is a string"),
                ));
            }
        };
        let checked = argument
            .check(text.trim())
            .map_err(|rule| fail(default.span(), format!("`default` {rule}")))?;
        argument.default = Some(checked);
    }

    let explicit = entry
        .values
        .as_ref()
        .map(Spanned::span)
        .or_else(|| entry.complete.as_ref().map(Spanned::span));
    if let (Some(span), Some(_)) = (explicit, &argument.one_of) {
        return Err(fail(
            span,
            "`one_of` already gives the values a client is offered; drop `values` and `complete`"
                .to_owned(),
        ));
    }
    argument.completion = match (&entry.values, &entry.complete) {
        (Some(_), Some(complete)) => {
            return Err(fail(
                complete.span(),
                "give `values` or `complete`, not both: they are two sources of the same \
                 completions"
                    .to_owned(),
            ));
        }
        (Some(values), None) => {
            if values.get_ref().is_empty() {
                return Err(fail(
                    values.span(),
                    "`values` must list one value or more".to_owned(),
                ));
            }
            for value in values.get_ref() {
                argument
                    .check(value.trim())
                    .map_err(|rule| fail(values.span(), format!("`values`: {value:?} {rule}")))?;
            }
            Some(CompletionSource::Values(values.get_ref().clone()))
        }
        (None, Some(complete)) => Some(completion_query(complete, name, file, line_of)?),
        (None, None) => argument.one_of.clone().map(CompletionSource::Values),
    };
    Ok(argument)
}

/// `complete = "SELECT …"`: one bind parameter, `:prefix`.
fn completion_query(
    complete: &Spanned<String>,
    argument: &str,
    file: &str,
    line_of: &impl Fn(Range<usize>) -> usize,
) -> Result<CompletionSource, FileError> {
    let line = line_of(complete.span());
    CompletionSource::query(complete.get_ref(), file, line).map_err(|err| FileError {
        message: format!("argument `{argument}`: `complete`: {}", err.message),
        ..err
    })
}

/// A text as written, trimmed; nothing when it is missing or blank.
fn written(text: Option<&str>) -> Option<String> {
    text.map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// The kind with its article: `a text`, `an integer`.
fn kind_name(kind: ArgumentKind) -> &'static str {
    match kind {
        ArgumentKind::Text => "a text",
        ArgumentKind::Integer => "an integer",
        ArgumentKind::Date => "a date",
        ArgumentKind::Month => "a month",
    }
}

/// The listed tools: each one the server has, once.
fn check_tools(
    listed: &[Spanned<String>],
    tools: &[&str],
    line_of: &impl Fn(Range<usize>) -> usize,
) -> Result<Vec<String>, FileError> {
    let mut names: Vec<String> = Vec::new();
    for tool in listed {
        let name = tool.get_ref();
        if !tools.contains(&name.as_str()) {
            let mut known = tools.to_vec();
            known.sort_unstable();
            return error(
                line_of(tool.span()),
                format!(
                    "`tools`: there is no tool `{name}` (the tools: {})",
                    known.join(", ")
                ),
            );
        }
        if names.contains(name) {
            return error(
                line_of(tool.span()),
                format!("`tools` lists `{name}` twice"),
            );
        }
        names.push(name.clone());
    }
    Ok(names)
}

/// Every listed tool is named in the template, and every tool the template
/// names is listed: the list decides who is offered the prompt.
fn check_tools_named(
    body: &str,
    body_line: usize,
    listed: &[Spanned<String>],
    names: &[String],
    tools: &[&str],
    line_of: &impl Fn(Range<usize>) -> usize,
) -> Result<(), FileError> {
    for (tool, name) in listed.iter().zip(names) {
        if word_at(body, name).is_none() {
            return error(
                line_of(tool.span()),
                format!(
                    "`tools` lists `{name}`, which the template never names; say where the prompt \
                     calls it, or drop it from `tools`"
                ),
            );
        }
    }
    let mut unlisted: Vec<(usize, &str)> = tools
        .iter()
        .filter(|tool| !names.iter().any(|n| n == *tool))
        .filter_map(|tool| word_at(body, tool).map(|at| (at, *tool)))
        .collect();
    unlisted.sort_unstable();
    if let Some((at, tool)) = unlisted.first() {
        return error(
            body_line + body[..*at].matches('\n').count(),
            format!(
                "the template names the tool `{tool}`, which `tools` does not list; list it, so \
                 that only callers who may use it are offered this prompt"
            ),
        );
    }
    Ok(())
}

/// Where `word` first appears in `text` as a whole word (not inside a
/// longer name).
fn word_at(text: &str, word: &str) -> Option<usize> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).map(|(at, _)| at).find(|&at| {
        !text[..at].chars().next_back().is_some_and(is_name)
            && !text[at + word.len()..].chars().next().is_some_and(is_name)
    })
}

/// The template checked against the arguments: every tag names one, every
/// argument is used, and an optional argument's value is written only where
/// it is given (inside its `{{#name}}` section) unless it has a default.
fn check_template(
    template: &Template,
    arguments: &[PromptArgument],
    argument_lines: &[usize],
) -> Result<(), FileError> {
    let mut used = BTreeSet::new();
    check_segments(&template.segments, arguments, &mut Vec::new(), &mut used)?;
    for (argument, line) in arguments.iter().zip(argument_lines) {
        if !used.contains(argument.name.as_str()) {
            return error(
                *line,
                format!(
                    "argument `{}` is never used by the template; write `{{{{{}}}}}` where its value \
                     goes, or drop the argument",
                    argument.name, argument.name
                ),
            );
        }
    }
    Ok(())
}

fn check_segments<'a>(
    segments: &'a [Segment],
    arguments: &[PromptArgument],
    given: &mut Vec<&'a str>,
    used: &mut BTreeSet<&'a str>,
) -> Result<(), FileError> {
    let names = || {
        let names: Vec<&str> = arguments.iter().map(|a| a.name.as_str()).collect();
        match names.is_empty() {
            true => "this prompt has no arguments".to_owned(),
            false => format!("the arguments: {}", names.join(", ")),
        }
    };
    let find = |name: &str, tag: &str, line: usize| {
        arguments
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| FileError {
                line,
                message: format!("`{tag}` names no argument ({})", names()),
            })
    };
    for segment in segments {
        match segment {
            Segment::Text(_) => {}
            Segment::Value {
                argument: name,
                part,
                line,
            } => {
                let tag = Tag::Value(name.clone(), *part).to_string();
                let argument = find(name, &tag, *line)?;
                used.insert(name);
                if *part != Part::Whole && argument.kind != ArgumentKind::Month {
                    return error(
                        *line,
                        format!(
                            "`{tag}`: `.start` and `.end` are the first and last day of a month \
                             argument, and `{name}` is {} one",
                            kind_name(argument.kind)
                        ),
                    );
                }
                if !argument.required
                    && argument.default.is_none()
                    && !given.contains(&name.as_str())
                {
                    return error(
                        *line,
                        format!(
                            "`{tag}`: `{name}` is optional and has no default, so it may have no \
                             value here; put it inside `{{{{#{name}}}}}…{{{{/{name}}}}}`, or give it \
                             a default"
                        ),
                    );
                }
            }
            Segment::Section {
                argument: name,
                inverted,
                body,
                line,
            } => {
                let tag = Tag::Open(name.clone(), *inverted).to_string();
                let argument = find(name, &tag, *line)?;
                used.insert(name);
                if argument.required || argument.default.is_some() {
                    let why = if argument.required {
                        "is required"
                    } else {
                        "has a default"
                    };
                    return error(
                        *line,
                        format!(
                            "`{tag}`: `{name}` {why}, so it always has a value and the section \
                             would {}",
                            if *inverted {
                                "never show"
                            } else {
                                "always show"
                            }
                        ),
                    );
                }
                if *inverted {
                    check_segments(body, arguments, given, used)?;
                } else {
                    given.push(name);
                    check_segments(body, arguments, given, used)?;
                    given.pop();
                }
            }
        }
    }
    Ok(())
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Text(String),
    /// `{{name}}`, `{{name.start}}`, `{{name.end}}`.
    Value {
        argument: String,
        part: Part,
        line: usize,
    },
    /// `{{#name}}…{{/name}}`, or `{{^name}}…{{/name}}` when `inverted`.
    Section {
        argument: String,
        inverted: bool,
        body: Vec<Segment>,
        line: usize,
    },
}

/// Which part of a value a tag writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    /// The first day of a month.
    Start,
    /// The last day of a month.
    End,
}

#[derive(Debug, Clone, PartialEq)]
enum Tag {
    Value(String, Part),
    Open(String, bool),
    Close(String),
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tag::Value(name, Part::Whole) => write!(f, "{{{{{name}}}}}"),
            Tag::Value(name, Part::Start) => write!(f, "{{{{{name}.start}}}}"),
            Tag::Value(name, Part::End) => write!(f, "{{{{{name}.end}}}}"),
            Tag::Open(name, false) => write!(f, "{{{{#{name}}}}}"),
            Tag::Open(name, true) => write!(f, "{{{{^{name}}}}}"),
            Tag::Close(name) => write!(f, "{{{{/{name}}}}}"),
        }
    }
}

enum Piece<'a> {
    Text(&'a str),
    Tag(Tag),
}

/// The text and tags of one line.
fn pieces(line: &str, line_no: usize) -> Result<Vec<Piece<'_>>, FileError> {
    let mut pieces = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let Some(close) = rest[open..].find("}}") else {
            return error(
                line_no,
                "`{{` is never closed by `}}` on this line; a tag is `{{argument}}`, \
                 `{{#argument}}`, `{{^argument}}` or `{{/argument}}`",
            );
        };
        let inner = rest[open + 2..open + close].trim();
        pieces.push(Piece::Tag(tag(inner, line_no)?));
        rest = &rest[open + close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

fn tag(inner: &str, line_no: usize) -> Result<Tag, FileError> {
    let (sigil, name) = match inner.chars().next() {
        Some(c @ ('#' | '^' | '/')) => (Some(c), inner[1..].trim()),
        _ => (None, inner),
    };
    let (name, part) = match (sigil, name.split_once('.')) {
        (None, Some((name, "start"))) => (name, Part::Start),
        (None, Some((name, "end"))) => (name, Part::End),
        _ => (name, Part::Whole),
    };
    if !is_identifier(name) {
        return error(
            line_no,
            format!(
                "`{{{{{inner}}}}}` is not a tag: write `{{{{argument}}}}`, \
                 `{{{{#argument}}}}…{{{{/argument}}}}` or `{{{{^argument}}}}…{{{{/argument}}}}` \
                 with an argument's snake_case name"
            ),
        );
    }
    let name = name.to_owned();
    Ok(match sigil {
        None => Tag::Value(name, part),
        Some('#') => Tag::Open(name, false),
        Some('^') => Tag::Open(name, true),
        _ => Tag::Close(name),
    })
}

impl Template {
    /// Parses a template whose first line is line `first_line` of its file.
    pub fn parse(text: &str, first_line: usize) -> Result<Template, FileError> {
        // open sections: name, inverted, line, and the segments before it
        let mut stack: Vec<(String, bool, usize, Vec<Segment>)> = Vec::new();
        let mut segments: Vec<Segment> = Vec::new();
        for (index, line) in text.split_inclusive('\n').enumerate() {
            let line_no = first_line + index;
            let mut pieces = pieces(line, line_no)?;
            let is_section_tag =
                |p: &Piece<'_>| matches!(p, Piece::Tag(Tag::Open(..) | Tag::Close(_)));
            let standalone = pieces.iter().filter(|p| is_section_tag(p)).count() == 1
                && pieces.iter().all(|p| match p {
                    Piece::Text(text) => text.trim().is_empty(),
                    piece => is_section_tag(piece),
                });
            if standalone {
                pieces.retain(is_section_tag);
            }
            for piece in pieces {
                match piece {
                    Piece::Text(text) => match segments.last_mut() {
                        Some(Segment::Text(last)) => last.push_str(text),
                        _ => segments.push(Segment::Text(text.to_owned())),
                    },
                    Piece::Tag(Tag::Value(argument, part)) => segments.push(Segment::Value {
                        argument,
                        part,
                        line: line_no,
                    }),
                    Piece::Tag(Tag::Open(argument, inverted)) => {
                        let outer = std::mem::take(&mut segments);
                        stack.push((argument, inverted, line_no, outer));
                    }
                    Piece::Tag(Tag::Close(name)) => {
                        let Some((argument, inverted, line, outer)) = stack.pop() else {
                            return error(line_no, format!("`{{{{/{name}}}}}` closes no section"));
                        };
                        if argument != name {
                            return error(
                                line_no,
                                format!(
                                    "`{{{{/{name}}}}}` does not close `{}` of line {line}; close \
                                     that one first",
                                    Tag::Open(argument, inverted)
                                ),
                            );
                        }
                        let body = std::mem::replace(&mut segments, outer);
                        segments.push(Segment::Section {
                            argument,
                            inverted,
                            body,
                            line,
                        });
                    }
                }
            }
        }
        if let Some((argument, inverted, line, _)) = stack.pop() {
            return error(
                line,
                format!(
                    "`{}` is never closed; end the section with `{{{{/{argument}}}}}`",
                    Tag::Open(argument.clone(), inverted)
                ),
            );
        }
        Ok(Template { segments })
    }

    /// The message for the given arguments' values (checked, defaults
    /// applied; an argument left out has no entry).
    pub fn render(&self, values: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        render_into(&self.segments, values, &mut out);
        out.trim().to_owned()
    }
}

fn render_into(segments: &[Segment], values: &BTreeMap<String, String>, out: &mut String) {
    for segment in segments {
        match segment {
            Segment::Text(text) => out.push_str(text),
            Segment::Value { argument, part, .. } => {
                let value = values.get(argument).map(String::as_str).unwrap_or_default();
                match (part, month_days(value)) {
                    (Part::Start, Some(_)) => out.push_str(&format!("{value}-01")),
                    (Part::End, Some(days)) => out.push_str(&format!("{value}-{days:02}")),
                    _ => out.push_str(value),
                }
            }
            Segment::Section {
                argument,
                inverted,
                body,
                ..
            } => {
                if values.contains_key(argument) != *inverted {
                    render_into(body, values, out);
                }
            }
        }
    }
}

/// The number of days of the month `YYYY-MM`, if it is one.
fn month_days(month: &str) -> Option<u32> {
    let bytes = month.as_bytes();
    if bytes.len() != 7 || bytes[4] != b'-' {
        return None;
    }
    let digits = |range: Range<usize>| {
        bytes[range.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| month[range].parse::<u32>().ok())
            .flatten()
    };
    let (year, month) = (digits(0..4)?, digits(5..7)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match (year, month) {
        (0, _) => None,
        (_, 1 | 3 | 5 | 7 | 8 | 10 | 12) => Some(31),
        (_, 4 | 6 | 9 | 11) => Some(30),
        (_, 2) if leap => Some(29),
        (_, 2) => Some(28),
        _ => None,
    }
}

/// Whether `date` is a date, `YYYY-MM-DD`.
fn is_date(date: &str) -> bool {
    date.len() == 10
        && date.as_bytes()[7] == b'-'
        && date[8..].bytes().all(|b| b.is_ascii_digit())
        && month_days(&date[..7]).is_some_and(|days| {
            date[8..]
                .parse::<u32>()
                .is_ok_and(|day| (1..=days).contains(&day))
        })
}

impl PromptArgument {
    /// Checks a value given for this argument (trimmed, not empty): its
    /// form to render, or the rule it breaks, worded as a tool argument's.
    pub fn check(&self, value: &str) -> Result<String, String> {
        match self.kind {
            ArgumentKind::Text => {
                if let Some(max) = self.max_length {
                    let length = value.chars().count();
                    if length > max as usize {
                        return Err(format!("must be at most {max} characters, got {length}"));
                    }
                }
                match &self.one_of {
                    None => Ok(value.to_owned()),
                    Some(allowed) => allowed
                        .iter()
                        .find(|a| a.to_lowercase() == value.to_lowercase())
                        .cloned()
                        .ok_or_else(|| {
                            format!("must be one of {}, got {value:?}", allowed.join(", "))
                        }),
                }
            }
            ArgumentKind::Integer => {
                let Ok(number) = value.parse::<i64>() else {
                    return Err(format!("must be an integer, got {value:?}"));
                };
                if let Some(min) = self.minimum.filter(|min| number < *min) {
                    return Err(format!("must be at least {min}, got {number}"));
                }
                if let Some(max) = self.maximum.filter(|max| number > *max) {
                    return Err(format!("must be at most {max}, got {number}"));
                }
                Ok(number.to_string())
            }
            ArgumentKind::Date if is_date(value) => Ok(value.to_owned()),
            ArgumentKind::Date => Err(format!("must be a date, YYYY-MM-DD, got {value:?}")),
            ArgumentKind::Month if month_days(value).is_some() => Ok(value.to_owned()),
            ArgumentKind::Month => Err(format!("must be a month, YYYY-MM, got {value:?}")),
        }
    }

    /// What a value must be, in words, for a client that shows only the
    /// description: `an integer from 1 to 8`, `a month, YYYY-MM`.
    pub fn expected(&self) -> String {
        let mut parts = vec![match self.kind {
            ArgumentKind::Text => match (&self.one_of, self.max_length) {
                (Some(allowed), _) => format!("one of {}", allowed.join(", ")),
                (None, Some(max)) => format!("text, at most {max} characters"),
                (None, None) => "text".to_owned(),
            },
            ArgumentKind::Integer => match (self.minimum, self.maximum) {
                (Some(min), Some(max)) => format!("an integer from {min} to {max}"),
                (Some(min), None) => format!("an integer, at least {min}"),
                (None, Some(max)) => format!("an integer, at most {max}"),
                (None, None) => "an integer".to_owned(),
            },
            ArgumentKind::Date => "a date, YYYY-MM-DD".to_owned(),
            ArgumentKind::Month => "a month, YYYY-MM".to_owned(),
        }];
        if let Some(default) = &self.default {
            parts.push(format!("default {default}"));
        }
        parts.join("; ")
    }
}
