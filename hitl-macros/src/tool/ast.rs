//! The typed model of a `#[tool]` function.

use syn::{FnArg, ItemFn, Pat, ReturnType, Type};

use crate::ctxt::Ctxt;

/// One model-facing parameter.
pub(crate) struct Param {
    pub(crate) ident: syn::Ident,
    pub(crate) ty: Type,
    pub(crate) doc: Option<String>,
}

/// What the function returns.
pub(crate) enum Output {
    /// `-> Result<T, E>`.
    Result,
    /// `-> T`, or nothing.
    Plain,
}

/// A parameter of the call: a model argument or the tool context.
pub(crate) enum CallArg {
    Param(syn::Ident),
    Context,
}

/// The function, with doc comments on parameters removed (rustc rejects them).
pub(crate) struct ToolFn {
    pub(crate) item: ItemFn,
    pub(crate) params: Vec<Param>,
    pub(crate) call_args: Vec<CallArg>,
    pub(crate) output: Output,
    pub(crate) doc: Option<String>,
}

/// Joins `///` lines: trimmed, blank lines kept as paragraph breaks.
pub(crate) fn doc_string(attrs: &[syn::Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn is_tool_context(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "ToolContext"),
        Type::Reference(r) => is_tool_context(&r.elem),
        _ => false,
    }
}

pub(crate) fn analyze(cx: &Ctxt, mut item: ItemFn) -> ToolFn {
    let sig = &item.sig;
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "a tool cannot be generic: the model calls it with JSON, so its parameter types must be concrete",
        );
    }
    if let Some(c) = &sig.constness {
        cx.error_spanned_by(c, "a tool cannot be a `const fn`");
    }
    if let Some(v) = &sig.variadic {
        cx.error_spanned_by(v, "a tool cannot be variadic");
    }
    let mut params = Vec::new();
    let mut call_args = Vec::new();
    let mut context_seen = false;
    for input in &mut item.sig.inputs {
        let arg = match input {
            FnArg::Receiver(r) => {
                cx.error_spanned_by(
                    &*r,
                    "a tool is a free function, not a method: remove `self`",
                );
                continue;
            }
            FnArg::Typed(arg) => arg,
        };
        let doc = doc_string(&arg.attrs);
        arg.attrs.retain(|a| !a.path().is_ident("doc"));
        if is_tool_context(&arg.ty) {
            if matches!(*arg.ty, Type::Reference(_)) {
                cx.error_spanned_by(&arg.ty, "take the context by value: `cx: ToolContext`");
            }
            if context_seen {
                cx.error_spanned_by(&arg.ty, "a tool takes at most one `ToolContext`");
            }
            context_seen = true;
            call_args.push(CallArg::Context);
            continue;
        }
        let ident = match &*arg.pat {
            Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
            other => {
                cx.error_spanned_by(
                    other,
                    "tool parameters must be plain names (`path: String`): each one is a field of the arguments the model sends",
                );
                continue;
            }
        };
        if let Type::Reference(r) = &*arg.ty {
            cx.error_spanned_by(
                r,
                "tool parameters are decoded from JSON and must be owned: use `String` instead of `&str`, `Vec<T>` instead of `&[T]`",
            );
        }
        call_args.push(CallArg::Param(ident.clone()));
        params.push(Param {
            ident,
            ty: (*arg.ty).clone(),
            doc,
        });
    }
    let output = match &item.sig.output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p)
                if p.qself.is_none()
                    && p.path.segments.last().is_some_and(|s| s.ident == "Result") =>
            {
                Output::Result
            }
            _ => Output::Plain,
        },
        ReturnType::Default => Output::Plain,
    };
    let doc = doc_string(&item.attrs);
    ToolFn {
        item,
        params,
        call_args,
        output,
        doc,
    }
}
