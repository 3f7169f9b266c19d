//! URI templates of resource templates (`--@ resource`): RFC 6570's simple
//! string expansion only, `zava://stores/{store_id}/summary`. The build
//! checks a template with [`UriTemplate::parse`]; the server reads a URI
//! back into its variables with [`UriTemplate::matches`]. Both use this
//! module, so what the build admits is what the server serves.
//!
//! A variable's value is one path segment: anything but `/`, `?` and `#`,
//! percent-decoded. Two variables need a literal between them, or a URI
//! could be read two ways.

use std::fmt;

use crate::query_file::is_identifier;

/// One piece of a template: a literal or a `{variable}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Variable(String),
}

/// A parsed URI template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTemplate {
    text: String,
    parts: Vec<Part>,
}

/// Characters a literal may not hold (RFC 6570 §2.1, and the braces).
fn allowed_in_literal(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || "\"'<>\\^`|{}".contains(c))
}

impl UriTemplate {
    /// Parses `text`; the error says what is wrong and what to write.
    pub fn parse(text: &str) -> Result<UriTemplate, String> {
        let usage = "expected a URI template like `zava://stores/{store_id}/summary`";
        let scheme_end = text.find(':').unwrap_or(0);
        let scheme = &text[..scheme_end];
        let valid_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !valid_scheme || text[scheme_end..].len() < 2 {
            return Err(format!(
                "`{text}` does not start with a scheme (`zava:`); {usage}"
            ));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                Some(at) if rest[at..].starts_with('}') => {
                    return Err(format!("`{text}`: a `}}` closes no `{{`"));
                }
                Some(at) => {
                    if at > 0 {
                        parts.push(Part::Literal(rest[..at].to_owned()));
                    }
                    let Some(close) = rest[at..].find('}') else {
                        return Err(format!("`{text}`: a `{{` is not closed"));
                    };
                    let name = &rest[at + 1..at + close];
                    if !is_identifier(name) {
                        return Err(format!(
                            "`{text}`: `{{{name}}}` is not a variable; write `{{name}}` with the \
                             snake_case name of a parameter (only simple expansion, no operators, \
                             lists or modifiers)"
                        ));
                    }
                    if matches!(parts.last(), Some(Part::Variable(_))) {
                        return Err(format!(
                            "`{text}`: two variables with nothing between them; separate them (`{{a}}/{{b}}`)"
                        ));
                    }
                    if parts.contains(&Part::Variable(name.to_owned())) {
                        return Err(format!("`{text}`: the variable `{name}` appears twice"));
                    }
                    parts.push(Part::Variable(name.to_owned()));
                    rest = &rest[at + close + 1..];
                }
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    rest = "";
                }
            }
        }
        for part in &parts {
            if let Part::Literal(literal) = part
                && let Some(bad) = literal.chars().find(|&c| !allowed_in_literal(c))
            {
                return Err(format!(
                    "`{text}`: {bad:?} may not appear in a URI template"
                ));
            }
        }
        let Some(Part::Literal(first)) = parts.first() else {
            unreachable!("a valid scheme starts the template");
        };
        if first.len() <= scheme.len() + 1 {
            // `zava:{x}`: the variable would be the whole URI after the scheme
            return Err(format!(
                "`{text}`: put a fixed path before the first variable (`{scheme}://things/{{id}}`)"
            ));
        }
        if !parts.iter().any(|p| matches!(p, Part::Variable(_))) {
            return Err(format!(
                "`{text}` has no `{{variable}}`; a resource template names at least one parameter"
            ));
        }
        Ok(UriTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The variables, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The template with each variable replaced by `{}`: two templates of
    /// one shape would match the same URIs.
    pub fn shape(&self) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(literal) => literal.as_str(),
                Part::Variable(_) => "{}",
            })
            .collect()
    }

    /// The values of the variables if `uri` is one of this template's URIs,
    /// percent-decoded; `None` if it is not (or a value does not decode).
    pub fn matches(&self, uri: &str) -> Option<Vec<(String, String)>> {
        let mut values = Vec::new();
        match_parts(&self.parts, uri, &mut values).then_some(values)
    }
}

impl fmt::Display for UriTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Matches `parts` against all of `uri`, pushing each variable's value;
/// a variable takes the longest value that lets the rest match.
fn match_parts(parts: &[Part], uri: &str, values: &mut Vec<(String, String)>) -> bool {
    match parts.split_first() {
        None => uri.is_empty(),
        Some((Part::Literal(literal), rest)) => uri
            .strip_prefix(literal.as_str())
            .is_some_and(|after| match_parts(rest, after, values)),
        Some((Part::Variable(name), rest)) => {
            let segment_end = uri.find(['/', '?', '#']).unwrap_or(uri.len());
            for end in (1..=segment_end)
                .rev()
                .filter(|&end| uri.is_char_boundary(end))
            {
                if match_parts(rest, &uri[end..], values) {
                    let Some(value) = percent_decode(&uri[..end]) else {
                        return false;
                    };
                    values.insert(0, (name.clone(), value));
                    return true;
                }
            }
            false
        }
    }
}

/// `%XX` sequences decoded; `None` if one is malformed or the result is
/// not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(values: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            values
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn reads_uris_back_into_their_variables() {
        let summary = UriTemplate::parse("zava://stores/{store_id}/summary").unwrap();
        assert_eq!(summary.variables().collect::<Vec<_>>(), ["store_id"]);
        assert_eq!(summary.shape(), "zava://stores/{}/summary");
        assert_eq!(
            summary.matches("zava://stores/12/summary"),
            pairs(&[("store_id", "12")])
        );
        for other in [
            "zava://stores//summary",
            "zava://stores/1/2/summary",
            "zava://stores/1/summary/",
            "zava://stores/1",
            "zava://stores/%zz/summary",
            "zava://shops/1/summary",
        ] {
            assert_eq!(summary.matches(other), None, "{other}");
        }
        let product = UriTemplate::parse("zava://products/{sku}").unwrap();
        assert_eq!(
            product.matches("zava://products/PWR-DRL%201001"),
            pairs(&[("sku", "PWR-DRL 1001")])
        );
        assert_eq!(product.matches("zava://products/a/b"), None);
        let two = UriTemplate::parse("zava://sales/{store_id}/{month}.json").unwrap();
        assert_eq!(
            two.matches("zava://sales/3/2024-05.v2.json"),
            pairs(&[("store_id", "3"), ("month", "2024-05.v2")])
        );
    }

    #[test]
    fn refuses_what_it_cannot_read_back() {
        for (bad, reason) in [
            ("stores/{id}", "scheme"),
            ("zava://stores/{id", "not closed"),
            ("zava://stores/id}", "closes no"),
            ("zava://stores/{+id}", "not a variable"),
            ("zava://stores{?id}", "not a variable"),
            ("zava://stores/{a,b}", "not a variable"),
            ("zava://stores/{Id}", "not a variable"),
            ("zava://stores/{}", "not a variable"),
            ("zava://stores/{a}{b}", "nothing between"),
            ("zava://stores/{a}/{a}", "twice"),
            ("zava://stores/all", "no `{variable}`"),
            ("zava://stores/{a} b", "may not appear"),
            ("zava:{id}", "fixed path"),
        ] {
            let err = UriTemplate::parse(bad).unwrap_err();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }
}
