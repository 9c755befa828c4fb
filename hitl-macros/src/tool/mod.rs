//! `#[tool]`: parse the attribute and the function, validate, generate.

pub(crate) mod args;
mod ast;
mod expand;
mod validate;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

use crate::ctxt::Ctxt;

/// The keyword of a non-function item, to point the error at.
fn item_keyword(item: &syn::Item) -> (TokenStream, &'static str) {
    match item {
        syn::Item::Struct(s) => (s.struct_token.into_token_stream(), "a struct"),
        syn::Item::Enum(e) => (e.enum_token.into_token_stream(), "an enum"),
        syn::Item::Impl(i) => (i.impl_token.into_token_stream(), "an impl block"),
        syn::Item::Trait(t) => (t.trait_token.into_token_stream(), "a trait"),
        syn::Item::Mod(m) => (m.mod_token.into_token_stream(), "a module"),
        syn::Item::Const(c) => (c.const_token.into_token_stream(), "a constant"),
        syn::Item::Static(s) => (s.static_token.into_token_stream(), "a static"),
        syn::Item::Type(t) => (t.type_token.into_token_stream(), "a type alias"),
        other => (other.into_token_stream(), "this item"),
    }
}

/// The name `HITL_DEBUG_MACRO` matches against.
pub(crate) fn debug_name(item: &TokenStream) -> String {
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(f)) => f.sig.ident.to_string(),
        _ => String::new(),
    }
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let args = args::parse(&cx, attr);
    let function = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(f)) => f,
        Ok(other) => {
            let (keyword, what) = item_keyword(&other);
            cx.error_spanned_by(
                keyword,
                format!("`#[tool]` goes on a function (`async fn name(..) -> ..`), not on {what}"),
            );
            let errors = cx
                .check()
                .expect_err("an error was recorded")
                .to_compile_error();
            return quote!(#other #errors);
        }
        Err(e) => {
            cx.push(e);
            let errors = cx
                .check()
                .expect_err("an error was recorded")
                .to_compile_error();
            return quote!(#item #errors);
        }
    };
    let f = ast::analyze(&cx, function);
    validate::validate(&cx, &args, &f);
    match cx.check() {
        Ok(()) => expand::expand(&args, &f),
        Err(e) => expand::fallback(&args, &f, e.to_compile_error()),
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::expand;
    use crate::debug::pretty;

    #[test]
    fn expansion_of_a_reviewed_async_tool() {
        let out = expand(
            quote!(interrupt(
                allowed = [approve, reject],
                description = "Deleting {path} cannot be undone"
            )),
            quote! {
                /// Delete a file from the workspace.
                pub async fn delete_file(
                    /// Path relative to the workspace root.
                    path: String,
                ) -> Result<String, ToolError> {
                    Ok(format!("deleted {path}"))
                }
            },
        );
        insta::assert_snapshot!(pretty(&out));
    }

    #[test]
    fn expansion_of_a_sync_tool_with_context_and_options() {
        let out = expand(
            quote!(
                name = "transfer-money",
                crate = "::my_app::hitl",
                interrupt(description = describe, when = over_limit)
            ),
            quote! {
                /// Move money.
                fn transfer(cx: ToolContext, amount: f64, to: String) -> String {
                    format!("{} {amount} {to}", cx.tool_call_id())
                }
            },
        );
        insta::assert_snapshot!(pretty(&out));
    }

    #[test]
    fn expansion_of_an_unreviewed_tool() {
        let out = expand(
            quote!(),
            quote! {
                /// Read a file.
                async fn read_file(path: String) -> Result<String, std::io::Error> {
                    std::fs::read_to_string(path)
                }
            },
        );
        insta::assert_snapshot!(pretty(&out));
    }
}
