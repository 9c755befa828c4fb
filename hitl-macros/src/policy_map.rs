//! `interrupt_on! { tool: [decisions] | true | false | interrupt(allowed = [..],
//! expires = "4h", ..), .. }` (after an optional `crate = "::path";` for a re-export of
//! `hitl_runtime`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::ParseStream;
use syn::{LitBool, Token};

use crate::attr::{Slot, crate_prefix, root, unknown_key};
use crate::ctxt::Ctxt;
use crate::decisions::{self, Decisions};
use crate::governance::{GovernanceArgs, GovernanceSlots};

enum Setting {
    Decisions(Decisions),
    Bool(LitBool),
    /// `interrupt(allowed = [..], expires = "4h", on_timeout = .., reviewers = [..],
    /// approvals = n)`.
    Governed(Option<Decisions>, GovernanceArgs),
}

const KEYS: &[&str] = &["allowed", "expires", "on_timeout", "reviewers", "approvals"];

struct Entry {
    tool: syn::Path,
    setting: Setting,
}

struct Entries {
    krate: Option<syn::Path>,
    entries: Vec<Entry>,
}

/// Parses with errors collected in a `Ctxt` that outlives the parse.
struct Input<'c> {
    cx: &'c Ctxt,
}

impl Input<'_> {
    fn parse(&self, input: ParseStream<'_>) -> syn::Result<Entries> {
        let krate = crate_prefix(self.cx, input)?;
        let mut entries = Vec::new();
        while !input.is_empty() {
            let tool: syn::Path = input.parse()?;
            input.parse::<Token![:]>()?;
            let setting = if input.peek(LitBool) {
                Setting::Bool(input.parse()?)
            } else if input.peek(syn::token::Bracket) {
                Setting::Decisions(decisions::parse(self.cx, input)?)
            } else if input.peek(syn::Ident) && input.peek2(syn::token::Paren) {
                self.governed(input)?
            } else {
                return Err(input.error(
                    "expected `[decisions]`, `true` (every decision) or `false` (never reviewed), e.g. `delete_file: [approve, reject]`",
                ));
            };
            entries.push(Entry { tool, setting });
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(Entries { krate, entries })
    }

    fn governed(&self, input: ParseStream<'_>) -> syn::Result<Setting> {
        let keyword: syn::Ident = input.parse()?;
        if keyword != "interrupt" {
            return Err(syn::Error::new_spanned(
                keyword,
                "expected `interrupt(allowed = [..], expires = \"4h\", ..)`",
            ));
        }
        let content;
        syn::parenthesized!(content in input);
        let tokens: TokenStream = content.parse()?;
        let cx = self.cx;
        let mut allowed = Slot::new(cx, "interrupt(..)", "allowed");
        let mut governance = GovernanceSlots::new(cx, "interrupt(..)");
        let parser = syn::meta::parser(|meta| {
            if governance.parse(cx, &meta)? {
                return Ok(());
            }
            if meta.path.is_ident("allowed") {
                allowed.set(&meta.path, decisions::parse(cx, meta.value()?)?);
                return Ok(());
            }
            cx.push(unknown_key(&meta.path, "interrupt(..)", KEYS));
            meta.value()?.parse::<syn::Expr>()?;
            Ok(())
        });
        syn::parse::Parser::parse2(parser, tokens)?;
        let allowed = allowed.get();
        let governance = governance.finish();
        governance.validate(cx, allowed.as_ref());
        Ok(Setting::Governed(allowed, governance))
    }
}

pub(crate) fn expand(tokens: TokenStream) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let parsed = syn::parse::Parser::parse2(
        |input: ParseStream<'_>| Input { cx: &cx }.parse(input),
        tokens,
    );
    let entries = match parsed {
        Ok(e) => e,
        Err(e) => {
            cx.push(e);
            cx.check()?;
            unreachable!("an error was recorded")
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for entry in &entries.entries {
        let name = entry
            .tool
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if seen.contains(&name) {
            cx.error_spanned_by(&entry.tool, format!("`{name}` has two entries"));
        }
        seen.push(name);
    }
    cx.check()?;
    let root = root(entries.krate.as_ref());
    let sets = entries.entries.iter().map(|entry| {
        let tool = &entry.tool;
        let policy = match &entry.setting {
            Setting::Bool(b) if b.value => {
                let all = decisions::all_set_expr(&root);
                quote!(::core::option::Option::Some(#root::__private::InterruptPolicy::allowing(#all)))
            }
            Setting::Bool(_) => quote!(::core::option::Option::None),
            Setting::Decisions(list) => {
                let set = list.set_expr(&root);
                quote!(::core::option::Option::Some(#root::__private::InterruptPolicy::allowing(#set)))
            }
            Setting::Governed(list, governance) => {
                let set = match list {
                    Some(list) => list.set_expr(&root),
                    None => decisions::all_set_expr(&root),
                };
                let calls = governance.builder_calls(&root);
                quote!(::core::option::Option::Some(#root::__private::InterruptPolicy::allowing(#set) #calls))
            }
        };
        quote!(.set::<#tool>(#policy))
    });
    Ok(quote! {
        #root::__private::PolicyMap::new() #(#sets)*
    })
}
