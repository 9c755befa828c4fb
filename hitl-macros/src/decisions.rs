//! Decision lists: `[approve, edit, reject, respond]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{Ident, Token, bracketed};

use crate::attr::closest;
use crate::ctxt::Ctxt;

pub(crate) const DECISIONS: &[&str] = &["approve", "edit", "reject", "respond"];

/// A parsed, validated decision list.
pub(crate) struct Decisions {
    /// The decisions (valid, without duplicates), with their tokens.
    pub(crate) list: Vec<Ident>,
}

impl Decisions {
    /// `DecisionSet` expression.
    pub(crate) fn set_expr(&self, root: &TokenStream) -> TokenStream {
        let variants = self.list.iter().map(|d| variant(&d.to_string()));
        quote! {
            #root::__private::DecisionSet::NONE #( .with(#root::__private::DecisionType::#variants) )*
        }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.list.iter().any(|d| d == name)
    }
}

pub(crate) fn all_set_expr(root: &TokenStream) -> TokenStream {
    quote!(#root::__private::DecisionSet::ALL)
}

fn variant(name: &str) -> Ident {
    let v = match name {
        "approve" => "Approve",
        "edit" => "Edit",
        "reject" => "Reject",
        "respond" => "Respond",
        other => unreachable!("validated decision `{other}`"),
    };
    Ident::new(v, proc_macro2::Span::call_site())
}

/// Parses `[a, b, ..]`, reporting unknown, duplicate and missing decisions to `cx`.
pub(crate) fn parse(cx: &Ctxt, input: ParseStream<'_>) -> syn::Result<Decisions> {
    let content;
    let brackets = bracketed!(content in input);
    let items: Punctuated<syn::Expr, Token![,]> = Punctuated::parse_terminated(&content)?;
    let mut list: Vec<Ident> = Vec::new();
    for item in &items {
        let ident = match item {
            syn::Expr::Path(p) if p.path.get_ident().is_some() && p.attrs.is_empty() => {
                p.path.get_ident().cloned().expect("checked")
            }
            other => {
                cx.error_spanned_by(
                    other,
                    "expected a decision name: `approve`, `edit`, `reject` or `respond`",
                );
                continue;
            }
        };
        let name = ident.to_string();
        if !DECISIONS.contains(&name.as_str()) {
            let hint = closest(&name, DECISIONS)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            cx.error_spanned_by(
                &ident,
                format!(
                    "unknown decision `{name}`; {hint}expected one of `approve`, `edit`, `reject`, `respond`"
                ),
            );
            continue;
        }
        if list.iter().any(|d| d == &ident) {
            cx.error_spanned_by(&ident, format!("`{name}` is listed twice"));
            continue;
        }
        list.push(ident);
    }
    if items.is_empty() {
        cx.push(syn::Error::new(
            brackets.span.join(),
            "a review policy must allow at least one decision: \
             `[approve]`, `[approve, reject]`, `[approve, edit, reject, respond]`, ...; \
             to never review the tool, leave out `interrupt`",
        ));
    }
    Ok(Decisions { list })
}
