//! `HITL_DEBUG_MACRO=<name|*>` prints a macro's expansion, formatted, to stderr.

use proc_macro2::TokenStream;

/// Formats generated items for reading.
pub(crate) fn pretty(tokens: &TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}

/// Prints the expansion for `name` if `HITL_DEBUG_MACRO` asks for it.
pub(crate) fn dump(macro_name: &str, item_name: &str, tokens: &TokenStream) {
    let Ok(wanted) = std::env::var("HITL_DEBUG_MACRO") else {
        return;
    };
    if wanted == "*" || wanted == item_name {
        eprintln!(
            "// ---- {macro_name} expansion of `{item_name}` ----\n{}",
            pretty(tokens)
        );
    }
}
