//! Parsing `#[tool(..)]` and `interrupt(..)`.

use proc_macro2::TokenStream;
use syn::meta::ParseNestedMeta;
use syn::{LitStr, Token};

use crate::attr::{Slot, crate_path, unknown_key};
use crate::ctxt::Ctxt;
use crate::decisions::{self, Decisions};
use crate::governance::{GovernanceArgs, GovernanceSlots};

const TOOL_KEYS: &[&str] = &["name", "description", "interrupt", "crate"];
const INTERRUPT_KEYS: &[&str] = &[
    "allowed",
    "description",
    "when",
    "expires",
    "on_timeout",
    "reviewers",
    "approvals",
];

/// What the reviewer is told.
pub(crate) enum Describe {
    /// `description = "Deleting {path}"`.
    Template(LitStr),
    /// `description = path::to::describe`.
    Function(syn::Path),
}

/// `interrupt` or `interrupt(..)`.
pub(crate) struct InterruptArgs {
    pub(crate) allowed: Option<Decisions>,
    pub(crate) description: Option<Describe>,
    pub(crate) when: Option<syn::Path>,
    pub(crate) governance: GovernanceArgs,
}

/// Everything inside `#[tool(..)]`.
#[derive(Default)]
pub(crate) struct ToolArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) description: Option<LitStr>,
    pub(crate) krate: Option<syn::Path>,
    pub(crate) interrupt: Option<InterruptArgs>,
}

/// Consumes the value of a key we reject, so parsing goes on to the next key.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
    }
    Ok(())
}

pub(crate) fn parse(cx: &Ctxt, attr: TokenStream) -> ToolArgs {
    let mut name = Slot::new(cx, "tool(..)", "name");
    let mut description = Slot::new(cx, "tool(..)", "description");
    let mut krate = Slot::new(cx, "tool(..)", "crate");
    let mut interrupt = Slot::new(cx, "tool(..)", "interrupt");
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            let lit: LitStr = meta.value()?.parse()?;
            if lit.value().is_empty()
                || !lit
                    .value()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                cx.error_spanned_by(
                    &lit,
                    "a tool name may only contain ASCII letters, digits, `_` and `-` \
                     (model providers reject anything else)",
                );
            }
            name.set(&meta.path, lit);
        } else if meta.path.is_ident("description") {
            description.set(&meta.path, meta.value()?.parse::<LitStr>()?);
        } else if meta.path.is_ident("crate") {
            if let Some(path) = crate_path(cx, meta.value()?)? {
                krate.set(&meta.path, path);
            }
        } else if meta.path.is_ident("interrupt") {
            let parsed = parse_interrupt(cx, &meta)?;
            interrupt.set(&meta.path, parsed);
        } else {
            cx.push(unknown_key(&meta.path, "tool(..)", TOOL_KEYS));
            skip_value(&meta)?;
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, attr) {
        cx.push(e);
    }
    ToolArgs {
        name: name.get(),
        description: description.get(),
        krate: krate.get(),
        interrupt: interrupt.get(),
    }
}

fn parse_interrupt(cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<InterruptArgs> {
    let mut allowed = Slot::new(cx, "tool(interrupt(..))", "allowed");
    let mut description = Slot::new(cx, "tool(interrupt(..))", "description");
    let mut when = Slot::new(cx, "tool(interrupt(..))", "when");
    let mut governance = GovernanceSlots::new(cx, "tool(interrupt(..))");
    if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            if governance.parse(cx, &inner)? {
                return Ok(());
            }
            if inner.path.is_ident("allowed") {
                let list = decisions::parse(cx, inner.value()?)?;
                allowed.set(&inner.path, list);
            } else if inner.path.is_ident("description") {
                let value = inner.value()?;
                if value.peek(LitStr) {
                    description.set(&inner.path, Describe::Template(value.parse()?));
                } else {
                    description.set(&inner.path, Describe::Function(value.parse()?));
                }
            } else if inner.path.is_ident("when") {
                when.set(&inner.path, inner.value()?.parse::<syn::Path>()?);
            } else {
                cx.push(unknown_key(
                    &inner.path,
                    "tool(interrupt(..))",
                    INTERRUPT_KEYS,
                ));
                skip_value(&inner)?;
            }
            Ok(())
        })?;
    } else if meta.input.peek(Token![=]) {
        return Err(meta.error(
            "expected `interrupt` or `interrupt(allowed = [..], description = .., when = .., expires = \"4h\", ..)`",
        ));
    }
    Ok(InterruptArgs {
        allowed: allowed.get(),
        description: description.get(),
        when: when.get(),
        governance: governance.finish(),
    })
}
