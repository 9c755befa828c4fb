//! `#[derive(Interrupt)]`: a typed interrupt payload and the type of its answer.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::attr::{Slot, crate_path, root, unknown_key};
use crate::ctxt::Ctxt;
use crate::governance::{parse_duration, parse_roles};

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let mut resume = Slot::new(&cx, "interrupt(..)", "resume");
    let mut krate = Slot::new(&cx, "interrupt(..)", "crate");
    let mut name = Slot::new(&cx, "interrupt(..)", "name");
    let mut expires = Slot::new(&cx, "interrupt(..)", "expires");
    let mut on_timeout = Slot::new(&cx, "interrupt(..)", "on_timeout");
    let mut reviewers = Slot::new(&cx, "interrupt(..)", "reviewers");
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
            } else if meta.path.is_ident("expires") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                match parse_duration(&lit.value()) {
                    Ok(secs) => expires.set(&meta.path, (meta.path.clone(), secs)),
                    Err(e) => cx.error_spanned_by(&lit, e),
                }
                Ok(())
            } else if meta.path.is_ident("on_timeout") {
                let path: syn::Path = meta.value()?.parse()?;
                on_timeout.set(&meta.path, (meta.path.clone(), path));
                Ok(())
            } else if meta.path.is_ident("reviewers") {
                let roles = parse_roles(&cx, meta.value()?)?;
                reviewers.set(&meta.path, roles);
                Ok(())
            } else if meta.path.is_ident("approvals") {
                meta.value()?.parse::<syn::Expr>()?;
                cx.error_spanned_by(
                    &meta.path,
                    "`approvals` applies to tool reviews (it counts `approve` decisions); a \
                     custom interrupt's answer has no `approve`. Ask several reviewers with a \
                     tool policy, or collect them in your answer type",
                );
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
                    &[
                        "resume",
                        "name",
                        "expires",
                        "on_timeout",
                        "reviewers",
                        "crate",
                    ],
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
    let (expires, on_timeout, reviewers) = (expires.get(), on_timeout.get(), reviewers.get());
    match (&expires, &on_timeout) {
        (None, Some((key, _))) => cx.error_spanned_by(
            key,
            "`on_timeout` needs `expires`: an interrupt that never expires never times out; \
             add `expires = \"4h\"` (or another duration)",
        ),
        (Some((key, _)), None) => cx.error_spanned_by(
            key,
            "an interrupt that expires needs `on_timeout = fn_name`, a function returning the \
             answer applied when nobody answers in time (there is no safe default answer for \
             a custom interrupt)",
        ),
        _ => {}
    }
    cx.check()?;
    let resume = resume.expect("checked above");
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let rt = quote!(#root::__private);
    let governance = match (&expires, &on_timeout, &reviewers) {
        (None, None, None) => quote!(),
        _ => {
            let expires = match &expires {
                Some((_, secs)) => {
                    quote!(::core::option::Option::Some(::std::time::Duration::from_secs(#secs)))
                }
                None => quote!(::core::option::Option::None),
            };
            let on_timeout = match &on_timeout {
                Some((_, path)) => {
                    let check = quote_spanned!(path.span()=>
                        let on_timeout: fn() -> #resume = #path;
                    );
                    quote! {{
                        #check
                        #rt::serde_json::to_value(on_timeout()).ok()
                    }}
                }
                None => quote!(::core::option::Option::None),
            };
            let groups = match &reviewers {
                Some(roles) => quote!(::std::vec![
                    ::std::vec![#(::std::string::String::from(#roles)),*]
                ]),
                None => quote!(::std::vec::Vec::new()),
            };
            quote! {
                fn governance(&self) -> #rt::GovernanceSpec {
                    #rt::GovernanceSpec {
                        expires: #expires,
                        on_timeout: #on_timeout,
                        reviewers: #groups,
                        approvals: 1,
                        ..::core::default::Default::default()
                    }
                }
            }
        }
    };
    Ok(quote! {
        impl #impl_generics #root::Interrupt for #name #ty_generics #where_clause {
            type Resume = #resume;
            const NAME: ::core::option::Option<&'static str> =
                ::core::option::Option::Some(#type_name);

            fn resume_schema() -> ::core::option::Option<#rt::Arc<#rt::serde_json::Value>> {
                ::core::option::Option::Some(#rt::schema_of::<#resume>())
            }

            #governance
        }
    })
}
