//! `tools![a, b, c]`: a typed tool set (`tools![crate = "::path"; a, b]` through a
//! re-export of `hitl_runtime`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::Token;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;

use crate::attr::{crate_prefix, root};
use crate::ctxt::Ctxt;

pub(crate) fn expand(tokens: TokenStream) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let parsed = (|input: ParseStream<'_>| {
        let krate = crate_prefix(&cx, input)?;
        let tools = Punctuated::<syn::Path, Token![,]>::parse_terminated(input)?;
        Ok((krate, tools))
    })
    .parse2(tokens);
    let (krate, tools) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            cx.push(e);
            cx.check()?;
            unreachable!("an error was recorded")
        }
    };
    let mut seen: Vec<String> = Vec::new();
    for tool in &tools {
        let name = tool
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        if seen.contains(&name) {
            cx.error_spanned_by(tool, format!("`{name}` is listed twice"));
        }
        seen.push(name);
    }
    cx.check()?;
    let root = root(krate.as_ref());
    let tools = tools.iter();
    Ok(quote! {
        #root::__private::ToolSet::new() #( .with::<#tools>() )*
    })
}
