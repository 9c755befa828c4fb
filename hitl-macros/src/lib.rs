//! Procedural macros of `hitl-runtime`. Use them through `hitl_runtime`, which
//! re-exports them; their documentation lives there.
//!
//! Each macro is a pipeline of plain functions over `proc_macro2` types: parse and
//! validate (collecting every error, spanned on the offending tokens), then generate.
//! On error the original item is still emitted, so one mistake does not cascade.
//! `HITL_DEBUG_MACRO=<name>` (or `*`) prints an expansion to stderr.

mod attr;
mod ctxt;
mod debug;
mod decisions;
mod governance;
mod interrupt;
mod policy_map;
mod state;
mod tool;
mod tool_set;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

fn finish(
    macro_name: &str,
    item_name: &str,
    result: syn::Result<proc_macro2::TokenStream>,
) -> TokenStream {
    match result {
        Ok(tokens) => {
            debug::dump(macro_name, item_name, &tokens);
            tokens.into()
        }
        Err(e) => e.into_compile_error().into(),
    }
}

/// [`finish`] for a macro used as an expression: its errors go in a block, where
/// several `compile_error!`s are valid.
fn finish_expr(
    macro_name: &str,
    item_name: &str,
    result: syn::Result<proc_macro2::TokenStream>,
) -> TokenStream {
    finish(
        macro_name,
        item_name,
        Ok(result.unwrap_or_else(|e| {
            let errors = e.into_compile_error();
            quote::quote!({ #errors })
        })),
    )
}

/// Derives `hitl_runtime::State`. See the re-export in `hitl_runtime`.
#[proc_macro_derive(State, attributes(state))]
pub fn derive_state(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = input.ident.to_string();
    finish("derive(State)", &name, state::expand(input))
}

/// Derives `hitl_runtime::Interrupt`. See the re-export in `hitl_runtime`.
#[proc_macro_derive(Interrupt, attributes(interrupt))]
pub fn derive_interrupt(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = input.ident.to_string();
    finish("derive(Interrupt)", &name, interrupt::expand(input))
}

/// Makes a function a tool. See the re-export in `hitl_runtime`.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item: proc_macro2::TokenStream = item.into();
    let name = tool::debug_name(&item);
    finish("#[tool]", &name, Ok(tool::expand(attr.into(), item)))
}

/// Review policies by tool. See the re-export in `hitl_runtime`.
#[proc_macro]
pub fn interrupt_on(input: TokenStream) -> TokenStream {
    finish_expr(
        "interrupt_on!",
        "interrupt_on",
        policy_map::expand(input.into()),
    )
}

/// A typed tool set. See the re-export in `hitl_runtime`.
#[proc_macro]
pub fn tools(input: TokenStream) -> TokenStream {
    finish_expr("tools!", "tools", tool_set::expand(input.into()))
}
