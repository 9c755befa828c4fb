//! Generating the tool type, its arguments struct and its policy.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::args::{Describe, ToolArgs};
use super::ast::{CallArg, Output, ToolFn};
use crate::decisions::{self, DECISIONS};

/// `delete_file` -> `DeleteFile`.
pub(crate) fn pascal(ident: &syn::Ident) -> String {
    let raw = ident.to_string();
    let name = raw.strip_prefix("r#").unwrap_or(&raw);
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

pub(crate) fn root(args: &ToolArgs) -> TokenStream {
    crate::attr::root(args.krate.as_ref())
}

pub(crate) fn tool_name(args: &ToolArgs, f: &ToolFn) -> String {
    args.name.as_ref().map_or_else(
        || {
            let raw = f.item.sig.ident.to_string();
            raw.strip_prefix("r#").unwrap_or(&raw).to_owned()
        },
        syn::LitStr::value,
    )
}

fn allows_impls(root: &TokenStream, ident: &syn::Ident, decisions: &[&str]) -> TokenStream {
    let traits = decisions.iter().map(|d| {
        let t = format_ident!("Allows{}", pascal(&format_ident!("{}", d)));
        quote!(impl #root::__private::#t for #ident {})
    });
    quote!(#(#traits)*)
}

pub(crate) fn expand(args: &ToolArgs, f: &ToolFn) -> TokenStream {
    let root = root(args);
    let p = quote!(#root::__private);
    let root_str = root.to_string().replace(' ', "");
    let serde_crate = format!("{root_str}::__private::serde");
    let schemars_crate = format!("{root_str}::__private::schemars");

    let item = &f.item;
    let vis = &item.vis;
    let ident = &item.sig.ident;
    let name = tool_name(args, f);
    let args_ident = format_ident!("{}Args", pascal(ident));
    let description = args
        .description
        .as_ref()
        .map(syn::LitStr::value)
        .or_else(|| f.doc.clone())
        .unwrap_or_default();

    let fields = f.params.iter().map(|param| {
        let (ident, ty) = (&param.ident, &param.ty);
        let doc = param.doc.as_ref().map(|d| {
            let d = format!(" {d}");
            quote!(#[doc = #d])
        });
        quote! { #doc pub #ident: #ty, }
    });
    let assertions = f.params.iter().map(|param| {
        let ty = &param.ty;
        quote_spanned!(ty.span()=> const _: () = #p::assert_tool_param::<#ty>();)
    });
    let param_idents: Vec<_> = f.params.iter().map(|p| &p.ident).collect();
    let call_args = f.call_args.iter().map(|a| match a {
        CallArg::Param(i) => quote!(#i),
        CallArg::Context => quote!(cx),
    });
    let uses_context = f.call_args.iter().any(|a| matches!(a, CallArg::Context));
    let drop_context = (!uses_context).then(|| quote!(let _ = cx;));
    let awaited = if item.sig.asyncness.is_some() {
        quote!(#ident(#(#call_args),*).await)
    } else {
        // A sync tool runs on the blocking pool: it may block.
        quote!(#p::blocking(move || #ident(#(#call_args),*)).await)
    };
    let convert = match f.output {
        Output::Result => quote!(#p::tool_result(out)),
        Output::Plain => quote!(#p::tool_value(out)),
    };

    let (policy, allowed): (TokenStream, Vec<&str>) = match &args.interrupt {
        None => (quote!(::core::option::Option::None), Vec::new()),
        Some(interrupt) => {
            let (set, allowed) = match &interrupt.allowed {
                Some(list) => (
                    list.set_expr(&root),
                    DECISIONS
                        .iter()
                        .copied()
                        .filter(|d| list.contains(d))
                        .collect(),
                ),
                None => (decisions::all_set_expr(&root), DECISIONS.to_vec()),
            };
            let describe = match &interrupt.description {
                None => quote!(),
                Some(Describe::Template(lit)) => quote!(let policy = policy.description(#lit);),
                Some(Describe::Function(path)) => {
                    let check = quote_spanned!(path.span()=>
                        let describe: fn(&#args_ident) -> ::std::string::String = #path;
                    );
                    quote! {
                        #check
                        let policy = policy.describe_with(move |args| {
                            let args: #args_ident = #p::serde_json::from_value(args.clone()).ok()?;
                            ::core::option::Option::Some(describe(&args))
                        });
                    }
                }
            };
            let when = match &interrupt.when {
                None => quote!(),
                Some(path) => {
                    let check = quote_spanned!(path.span()=>
                        let when: fn(&#args_ident) -> bool = #path;
                    );
                    quote! {
                        #check
                        let policy = policy.when(move |args| {
                            let args: #args_ident = #p::serde_json::from_value(args.clone()).ok()?;
                            ::core::option::Option::Some(when(&args))
                        });
                    }
                }
            };
            let governance = interrupt.governance.builder_calls(&root);
            (
                quote! {
                    let policy = #p::InterruptPolicy::allowing(#set) #governance;
                    #describe
                    #when
                    ::core::option::Option::Some(policy)
                },
                allowed,
            )
        }
    };
    let allows = allows_impls(&root, ident, &allowed);
    let args_doc =
        format!(" The arguments of the [`{ident}`] tool (`{name}`), as the model sends them.");
    let review = if allowed.is_empty() {
        "Its calls are not reviewed.".to_owned()
    } else {
        format!(
            "Its calls are reviewed; allowed decisions: {}.",
            allowed
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let tool_doc = format!(
        " The `{name}` tool, generated by `#[tool]` from the function `{ident}`. {review}\n\n {description}"
    );

    quote! {
        #item

        // First, so that an unsupported parameter type is the first error reported.
        const _: () = {
            #(#assertions)*
        };

        #[doc = #args_doc]
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            #p::serde::Serialize,
            #p::serde::Deserialize,
            #p::schemars::JsonSchema,
        )]
        #[serde(crate = #serde_crate, deny_unknown_fields)]
        #[schemars(crate = #schemars_crate, description = "")]
        #vis struct #args_ident {
            #(#fields)*
        }

        #[doc = #tool_doc]
        #[allow(non_camel_case_types)]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::default::Default)]
        #vis struct #ident {}

        const _: () = {
            impl #p::Tool for #ident {
                const NAME: &'static str = #name;
                type Args = #args_ident;

                fn description() -> &'static str {
                    #description
                }

                fn policy() -> ::core::option::Option<#p::InterruptPolicy> {
                    #policy
                }

                fn call(
                    args: #args_ident,
                    cx: #p::ToolContext,
                ) -> #p::BoxFuture<'static, ::core::result::Result<#p::Value, #p::ToolError>> {
                    let #args_ident { #(#param_idents),* } = args;
                    #drop_context
                    #p::boxed(async move {
                        let out = #awaited;
                        #convert
                    })
                }
            }

            impl #p::ToolArgs for #args_ident {
                type Tool = #ident;
            }

            #allows
        };
    }
}

/// What to emit when the input has errors: the function as written, the errors, and a
/// stub tool type so that uses of it elsewhere do not pile up more errors.
pub(crate) fn fallback(args: &ToolArgs, f: &ToolFn, errors: TokenStream) -> TokenStream {
    if f.item.sig.receiver().is_some() {
        // Inside an impl block: no items can go next to the method.
        let item = &f.item;
        return quote!(#item #errors);
    }
    let root = root(args);
    let p = quote!(#root::__private);
    let item = &f.item;
    let vis = &item.vis;
    let ident = &item.sig.ident;
    let name = tool_name(args, f);
    let allows = allows_impls(&root, ident, DECISIONS);
    quote! {
        #item
        #errors

        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        const _: () = {
            impl #p::Tool for #ident {
                const NAME: &'static str = #name;
                type Args = #p::Value;
                fn description() -> &'static str {
                    ""
                }
                fn policy() -> ::core::option::Option<#p::InterruptPolicy> {
                    ::core::option::Option::None
                }
                fn call(
                    _: #p::Value,
                    _: #p::ToolContext,
                ) -> #p::BoxFuture<'static, ::core::result::Result<#p::Value, #p::ToolError>> {
                    ::core::unreachable!("this tool did not compile")
                }
            }
            #allows
        };
    }
}
