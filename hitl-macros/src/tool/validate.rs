//! Checks that need both the attribute and the function.

use super::args::{Describe, ToolArgs};
use super::ast::ToolFn;
use crate::ctxt::Ctxt;

/// The `{placeholder}` names of a description template (`{{` and `}}` are escapes).
pub(crate) fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err("an unclosed `{` (write `{{` for a literal brace)".into());
                        }
                    }
                }
                names.push(name);
            }
            '}' => return Err("an unmatched `}` (write `}}` for a literal brace)".into()),
            _ => {}
        }
    }
    Ok(names)
}

pub(crate) fn validate(cx: &Ctxt, args: &ToolArgs, f: &ToolFn) {
    if args.description.is_none() && f.doc.is_none() {
        cx.error_spanned_by(
            &f.item.sig.ident,
            format!(
                "tool `{}` has no description: the model needs one to know when to call it. \
                 Add a doc comment (`/// What it does.`) or `#[tool(description = \"...\")]`",
                f.item.sig.ident
            ),
        );
    }
    let Some(interrupt) = &args.interrupt else {
        return;
    };
    interrupt
        .governance
        .validate(cx, interrupt.allowed.as_ref());
    if let Some(Describe::Template(lit)) = &interrupt.description {
        match placeholders(&lit.value()) {
            Err(problem) => cx.error_spanned_by(lit, format!("the description has {problem}")),
            Ok(names) => {
                let params: Vec<String> = f.params.iter().map(|p| p.ident.to_string()).collect();
                for name in names {
                    if !params.contains(&name) {
                        let known = if params.is_empty() {
                            "it has none".to_owned()
                        } else {
                            format!(
                                "its parameters are {}",
                                params
                                    .iter()
                                    .map(|p| format!("`{p}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        };
                        cx.error_spanned_by(
                            lit,
                            format!(
                                "`{{{name}}}` in the description is not a parameter of `{}`; {known}",
                                f.item.sig.ident
                            ),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn finds_placeholders_and_escapes() {
        assert_eq!(placeholders("Delete {path} ({n})").unwrap(), ["path", "n"]);
        assert_eq!(placeholders("{{not}} {a}").unwrap(), ["a"]);
        assert!(placeholders("oops {a").is_err());
        assert!(placeholders("oops }").is_err());
    }
}
