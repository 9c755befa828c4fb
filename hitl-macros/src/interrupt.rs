//! `#[derive(Interrupt)]`: a typed interrupt payload and the type of its answer.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::attr::{Slot, crate_path, root, unknown_key};
use crate::ctxt::Ctxt;

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let mut resume = Slot::new(&cx, "interrupt(..)", "resume");
    let mut krate = Slot::new(&cx, "interrupt(..)", "crate");
    let mut name = Slot::new(&cx, "interrupt(..)", "name");
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("interrupt"))
    {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("resume") {
                let ty: syn::Type = meta.value()?.parse()?;
                resume.set(&meta.path, ty);
                Ok(())
            } else if meta.path.is_ident("name") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                if lit.value().trim().is_empty() {
                    cx.error_spanned_by(&lit, "the interrupt's `name` must not be empty");
                } else {
                    name.set(&meta.path, lit);
                }
                Ok(())
            } else if meta.path.is_ident("crate") {
                if let Some(path) = crate_path(&cx, meta.value()?)? {
                    krate.set(&meta.path, path);
                }
                Ok(())
            } else {
                Err(unknown_key(
                    &meta.path,
                    "interrupt(..)",
                    &["resume", "name", "crate"],
                ))
            }
        });
        if let Err(e) = result {
            cx.push(e);
        }
    }
    let resume = resume.get();
    let root = root(krate.get().as_ref());
    let type_name = match name.get() {
        Some(lit) => lit.value(),
        None => input.ident.to_string(),
    };
    if resume.is_none() && !cx.has_errors() {
        cx.error_spanned_by(
            &input.ident,
            format!(
                "`#[derive(Interrupt)]` needs the type of the answer: add \
                 `#[interrupt(resume = AnswerType)]` to `{}`",
                input.ident
            ),
        );
    }
    cx.check()?;
    let resume = resume.expect("checked above");
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let rt = quote!(#root::__private);
    Ok(quote! {
        impl #impl_generics #root::Interrupt for #name #ty_generics #where_clause {
            type Resume = #resume;
            const NAME: ::core::option::Option<&'static str> =
                ::core::option::Option::Some(#type_name);

            fn resume_schema() -> ::core::option::Option<#rt::Arc<#rt::serde_json::Value>> {
                ::core::option::Option::Some(#rt::schema_of::<#resume>())
            }
        }
    })
}
