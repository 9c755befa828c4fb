//! Shared attribute-parsing helpers: one place reports duplicates and unknown keys.

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::ctxt::Ctxt;

/// A value set at most once; a second `set` reports "duplicate".
pub(crate) struct Slot<'c, T> {
    cx: &'c Ctxt,
    attr: &'static str,
    key: &'static str,
    value: Option<(TokenStream, T)>,
}

impl<'c, T> Slot<'c, T> {
    pub(crate) fn new(cx: &'c Ctxt, attr: &'static str, key: &'static str) -> Self {
        Slot {
            cx,
            attr,
            key,
            value: None,
        }
    }

    pub(crate) fn set(&mut self, tokens: impl ToTokens, value: T) {
        let tokens = tokens.into_token_stream();
        if self.value.is_some() {
            self.cx.error_spanned_by(
                tokens,
                format!("duplicate `{}` in `#[{}]`", self.key, self.attr),
            );
        } else {
            self.value = Some((tokens, value));
        }
    }

    pub(crate) fn get(self) -> Option<T> {
        self.value.map(|(_, v)| v)
    }
}

/// An "unknown key" error listing what is allowed.
pub(crate) fn unknown_key(path: &syn::Path, attr: &str, allowed: &[&str]) -> syn::Error {
    let key = path
        .get_ident()
        .map_or_else(|| path.to_token_stream().to_string(), ToString::to_string);
    let expected = allowed
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let message = match closest(&key, allowed) {
        Some(close) => format!(
            "unknown key `{key}` in `#[{attr}]`; did you mean `{close}`? Expected one of: {expected}"
        ),
        None => format!("unknown key `{key}` in `#[{attr}]`; expected one of: {expected}"),
    };
    syn::Error::new_spanned(path, message)
}

/// The value of a `crate = "::path::to::hitl_runtime"` key: the path generated code
/// uses instead of `::hitl_runtime` (for a re-export of the crate).
pub(crate) fn crate_path(
    cx: &Ctxt,
    value: syn::parse::ParseStream<'_>,
) -> syn::Result<Option<syn::Path>> {
    let lit: syn::LitStr = value.parse()?;
    match lit.parse::<syn::Path>() {
        Ok(path) => Ok(Some(path)),
        Err(_) => {
            cx.error_spanned_by(&lit, "expected a path, e.g. `crate = \"::hitl_runtime\"`");
            Ok(None)
        }
    }
}

/// An optional `crate = "::path";` before the items of a function-like macro.
pub(crate) fn crate_prefix(
    cx: &Ctxt,
    input: syn::parse::ParseStream<'_>,
) -> syn::Result<Option<syn::Path>> {
    if !(input.peek(syn::Token![crate]) && input.peek2(syn::Token![=])) {
        return Ok(None);
    }
    input.parse::<syn::Token![crate]>()?;
    input.parse::<syn::Token![=]>()?;
    let path = crate_path(cx, input)?;
    input.parse::<syn::Token![;]>().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected `;` after `crate = \"...\"`, then the items",
        )
    })?;
    Ok(path)
}

/// The root path of `hitl_runtime` in generated code.
pub(crate) fn root(krate: Option<&syn::Path>) -> TokenStream {
    match krate {
        Some(path) => path.to_token_stream(),
        None => quote::quote!(::hitl_runtime),
    }
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(
            closest("alowed", &["allowed", "description"]),
            Some("allowed")
        );
        assert_eq!(closest("zzz", &["allowed", "description"]), None);
        assert_eq!(closest("allowed", &["allowed"]), None);
    }
}
