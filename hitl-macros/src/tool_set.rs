//! `tools![a, b, c]`: a typed tool set.

use proc_macro2::TokenStream;
use quote::quote;
use syn::Token;
use syn::parse::Parser;
use syn::punctuated::Punctuated;

use crate::ctxt::Ctxt;

pub(crate) fn expand(tokens: TokenStream) -> syn::Result<TokenStream> {
    let tools = Punctuated::<syn::Path, Token![,]>::parse_terminated.parse2(tokens)?;
    let cx = Ctxt::new();
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
    let tools = tools.iter();
    Ok(quote! {
        ::hitl_runtime::__private::ToolSet::new() #( .with::<#tools>() )*
    })
}
