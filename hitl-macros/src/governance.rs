//! The governance keys of a review policy: `expires = "4h"`,
//! `on_timeout = reject("..")`, `reviewers = ["finance"]`, `approvals = 2`; parsed,
//! checked against the allowed decisions, and turned into builder calls.

use proc_macro2::TokenStream;
use quote::quote;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{LitInt, LitStr, Token, bracketed};

use crate::attr::Slot;
use crate::ctxt::Ctxt;
use crate::decisions::Decisions;

/// The decision applied on timeout.
pub(crate) struct Timeout {
    /// `approve`, `reject` or `respond` (the ident, for spans).
    decision: syn::Ident,
    message: Option<LitStr>,
}

/// The governance keys as written.
#[derive(Default)]
pub(crate) struct GovernanceArgs {
    expires: Option<(LitStr, u64)>,
    on_timeout: Option<(syn::Path, Timeout)>,
    reviewers: Option<Vec<LitStr>>,
    approvals: Option<(LitInt, u32)>,
}

/// Collects the governance keys of one attribute.
pub(crate) struct GovernanceSlots<'c> {
    expires: Slot<'c, (LitStr, u64)>,
    on_timeout: Slot<'c, (syn::Path, Timeout)>,
    reviewers: Slot<'c, Vec<LitStr>>,
    approvals: Slot<'c, (LitInt, u32)>,
}

impl<'c> GovernanceSlots<'c> {
    pub(crate) fn new(cx: &'c Ctxt, attr: &'static str) -> Self {
        GovernanceSlots {
            expires: Slot::new(cx, attr, "expires"),
            on_timeout: Slot::new(cx, attr, "on_timeout"),
            reviewers: Slot::new(cx, attr, "reviewers"),
            approvals: Slot::new(cx, attr, "approvals"),
        }
    }

    /// Parses `key = value` if `key` is a governance key; returns whether it was.
    pub(crate) fn parse(&mut self, cx: &Ctxt, meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
        let key = &meta.path;
        let value = || meta.value();
        if key.is_ident("expires") {
            let lit: LitStr = value()?.parse()?;
            match parse_duration(&lit.value()) {
                Ok(secs) => self.expires.set(key, (lit, secs)),
                Err(e) => cx.error_spanned_by(&lit, e),
            }
        } else if key.is_ident("on_timeout") {
            if let Some(t) = parse_timeout(cx, value()?)? {
                self.on_timeout.set(key, (key.clone(), t));
            }
        } else if key.is_ident("reviewers") {
            let roles = parse_roles(cx, value()?)?;
            self.reviewers.set(key, roles);
        } else if key.is_ident("approvals") {
            let lit: LitInt = value()?.parse()?;
            match lit.base10_parse::<u32>() {
                Ok(0) | Err(_) => cx.error_spanned_by(
                    &lit,
                    "`approvals` is how many distinct reviewers must approve: at least 1",
                ),
                Ok(n) => self.approvals.set(key, (lit, n)),
            }
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    pub(crate) fn finish(self) -> GovernanceArgs {
        GovernanceArgs {
            expires: self.expires.get(),
            on_timeout: self.on_timeout.get(),
            reviewers: self.reviewers.get(),
            approvals: self.approvals.get(),
        }
    }
}

/// `["finance", "ops"]`: at least one role, none empty.
pub(crate) fn parse_roles(cx: &Ctxt, input: ParseStream<'_>) -> syn::Result<Vec<LitStr>> {
    let content;
    let brackets = bracketed!(content in input);
    let roles: Punctuated<LitStr, Token![,]> = Punctuated::parse_terminated(&content)?;
    if roles.is_empty() {
        cx.push(syn::Error::new(
            brackets.span.join(),
            "`reviewers` lists no role, so nobody could decide; name at least one \
             role (`reviewers = [\"finance\"]`), or leave the key out to let anyone decide",
        ));
    }
    for role in &roles {
        if role.value().trim().is_empty() {
            cx.error_spanned_by(role, "a role must not be empty");
        }
    }
    Ok(roles.into_iter().collect())
}

fn parse_timeout(cx: &Ctxt, input: ParseStream<'_>) -> syn::Result<Option<Timeout>> {
    let expr: syn::Expr = input.parse()?;
    let (ident, args) = match &expr {
        syn::Expr::Path(p) if p.path.get_ident().is_some() => {
            (p.path.get_ident().cloned().expect("checked"), None)
        }
        syn::Expr::Call(call) => match &*call.func {
            syn::Expr::Path(p) if p.path.get_ident().is_some() => (
                p.path.get_ident().cloned().expect("checked"),
                Some(&call.args),
            ),
            _ => {
                cx.error_spanned_by(&expr, TIMEOUT_FORM);
                return Ok(None);
            }
        },
        _ => {
            cx.error_spanned_by(&expr, TIMEOUT_FORM);
            return Ok(None);
        }
    };
    let message = match args {
        None => None,
        Some(args) => match args.iter().collect::<Vec<_>>().as_slice() {
            [
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }),
            ] => Some(s.clone()),
            _ => {
                cx.error_spanned_by(args, "expected one message, a string literal");
                return Ok(None);
            }
        },
    };
    match ident.to_string().as_str() {
        "approve" if message.is_some() => {
            cx.error_spanned_by(
                &expr,
                "`approve` takes no message: write `on_timeout = approve`",
            );
            Ok(None)
        }
        "edit" => {
            cx.error_spanned_by(
                &ident,
                "`on_timeout` cannot be `edit`: nobody writes the new arguments when a review \
                 times out; use `reject(\"..\")`, `respond(\"..\")` or `approve`",
            );
            Ok(None)
        }
        "respond" if message.is_none() => {
            cx.error_spanned_by(
                &ident,
                "`respond` needs the text the model gets: `on_timeout = respond(\"..\")`",
            );
            Ok(None)
        }
        "approve" | "reject" | "respond" => Ok(Some(Timeout {
            decision: ident,
            message,
        })),
        _ => {
            cx.error_spanned_by(&ident, TIMEOUT_FORM);
            Ok(None)
        }
    }
}

const TIMEOUT_FORM: &str = "expected the decision applied on timeout: `approve`, `reject`, \
     `reject(\"why\")` or `respond(\"answer\")`";

/// Parses `"30m"`, `"4h"`, `"1h30m"`, `"2d"` into seconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "`{text}` is not a duration; write a number and a unit (s, m, h, d), e.g. \"30m\", \"4h\" or \"1h30m\""
        )
    };
    let (mut total, mut digits, mut any) = (0u64, String::new(), false);
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(bad());
    }
    if total == 0 {
        return Err(format!(
            "`{text}` is zero: a review that expires at once cannot be answered"
        ));
    }
    Ok(total)
}

impl GovernanceArgs {
    /// Checks the keys against each other and against the allowed decisions (`None`:
    /// every decision).
    pub(crate) fn validate(&self, cx: &Ctxt, allowed: Option<&Decisions>) {
        let allows = |d: &str| allowed.is_none_or(|list| list.contains(d));
        if let Some((key, t)) = &self.on_timeout {
            if self.expires.is_none() {
                cx.error_spanned_by(
                    key,
                    "`on_timeout` needs `expires`: a review that never expires never times out; \
                     add `expires = \"4h\"` (or another duration)",
                );
            }
            let name = t.decision.to_string();
            if !allows(&name) {
                cx.error_spanned_by(
                    &t.decision,
                    format!(
                        "`on_timeout` applies `{name}`, which this policy does not allow; add \
                         `{name}` to `allowed` or time out with an allowed decision"
                    ),
                );
            }
        }
        if let Some((lit, n)) = &self.approvals
            && *n > 1
        {
            if !allows("approve") {
                cx.error_spanned_by(
                    lit,
                    "`approvals` above 1 counts approvals, but this policy does not allow \
                     `approve`; add it to `allowed`",
                );
            }
            if allows("edit") {
                cx.error_spanned_by(
                    lit,
                    "`approvals` above 1 cannot be combined with `edit`: two reviewers would \
                     approve different calls; leave `edit` out of `allowed`",
                );
            }
        }
    }

    /// The builder calls that add these keys to `policy` (an `InterruptPolicy`).
    pub(crate) fn builder_calls(&self, root: &TokenStream) -> TokenStream {
        let p = quote!(#root::__private);
        let mut calls = TokenStream::new();
        if let Some((_, secs)) = &self.expires {
            calls.extend(quote!(.expires(::std::time::Duration::from_secs(#secs))));
        }
        if let Some((_, t)) = &self.on_timeout {
            let decision = match (t.decision.to_string().as_str(), &t.message) {
                ("approve", _) => quote!(#p::Decision::Approve),
                ("reject", Some(m)) => quote!(#p::Decision::Reject {
                    message: ::core::option::Option::Some(::std::string::String::from(#m)),
                }),
                ("reject", None) => quote!(#p::Decision::Reject {
                    message: ::core::option::Option::None,
                }),
                (_, m) => quote!(#p::Decision::Respond {
                    message: ::std::string::String::from(#m),
                }),
            };
            calls.extend(quote!(.on_timeout(#decision)));
        }
        if let Some(roles) = &self.reviewers {
            calls.extend(quote!(.reviewers([#(#roles),*])));
        }
        if let Some((_, n)) = &self.approvals {
            calls.extend(quote!(.approvals(#n)));
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_or_say_how_to_write_them() {
        assert_eq!(parse_duration("4h"), Ok(4 * 3600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        for bad in ["", "4", "h", "4 hours", "-1h", "4x"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
        assert!(parse_duration("0m").unwrap_err().contains("zero"));
    }
}
