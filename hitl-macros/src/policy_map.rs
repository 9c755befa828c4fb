//! `interrupt_on! { tool: [decisions] | true | false, .. }` (after an optional
//! `crate = "::path";` for a re-export of `hitl_runtime`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::ParseStream;
use syn::{LitBool, Token};

use crate::attr::{crate_prefix, root};
use crate::ctxt::Ctxt;
use crate::decisions::{self, Decisions};

enum Setting {
    Decisions(Decisions),
    Bool(LitBool),
}

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
        };
        quote!(.set::<#tool>(#policy))
    });
    Ok(quote! {
        #root::__private::PolicyMap::new() #(#sets)*
    })
}
