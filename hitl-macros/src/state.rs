//! `#[derive(State)]`: channels, reducers and the update type.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::attr::{Slot, closest, crate_path, root, unknown_key};
use crate::ctxt::Ctxt;

const REDUCERS: &[&str] = &["append", "messages", "last_value"];

enum Reducer {
    LastValue,
    Append,
    Messages,
    Custom(syn::Path),
}

struct Channel<'a> {
    field: &'a syn::Field,
    ident: &'a syn::Ident,
    reducer: Reducer,
}

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let krate = parse_container(&cx, &input);
    let channels = parse(&cx, &input);
    cx.check()?;
    Ok(generate(&input, &channels, &root(krate.as_ref())))
}

/// The struct's own `#[state(crate = "::path")]`.
fn parse_container(cx: &Ctxt, input: &DeriveInput) -> Option<syn::Path> {
    let mut krate = Slot::new(cx, "state(..)", "crate");
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("state")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                if let Some(path) = crate_path(cx, meta.value()?)? {
                    krate.set(&meta.path, path);
                }
                Ok(())
            } else {
                Err(unknown_key(&meta.path, "state(..)", &["crate"]))
            }
        });
        if let Err(e) = result {
            cx.push(e);
        }
    }
    krate.get()
}

fn parse<'a>(cx: &Ctxt, input: &'a DeriveInput) -> Vec<Channel<'a>> {
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(
            &input.generics,
            "`#[derive(State)]` does not support generic states; use concrete field types",
        );
    }
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => &named.named,
            other => {
                cx.error_spanned_by(
                    other,
                    "`#[derive(State)]` needs named fields: each field is a channel",
                );
                return Vec::new();
            }
        },
        Data::Enum(e) => {
            cx.error_spanned_by(
                e.enum_token,
                "`#[derive(State)]` needs a struct with named fields, not an enum",
            );
            return Vec::new();
        }
        Data::Union(u) => {
            cx.error_spanned_by(
                u.union_token,
                "`#[derive(State)]` needs a struct with named fields, not a union",
            );
            return Vec::new();
        }
    };
    if fields.len() > 64 {
        cx.error_spanned_by(&input.ident, "a state has at most 64 channels (fields)");
    }
    let mut channels = Vec::new();
    for field in fields {
        let mut reducer = Slot::new(cx, "state(..)", "reducer");
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("state")) {
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("reducer") {
                    let value = meta.value()?;
                    if value.peek(syn::Lit) {
                        let lit: syn::Lit = value.parse()?;
                        return Err(syn::Error::new_spanned(
                            lit,
                            "expected a reducer name, not a literal: \
                             `reducer = append`, `reducer = messages`, `reducer = last_value`, \
                             or `reducer = path::to::function`",
                        ));
                    }
                    let path: syn::Path = value.parse()?;
                    match parse_reducer(&path) {
                        Ok(r) => reducer.set(&path, r),
                        Err(e) => cx.push(e),
                    }
                    Ok(())
                } else {
                    Err(unknown_key(&meta.path, "state(..)", &["reducer"]))
                }
            });
            if let Err(e) = result {
                cx.push(e);
            }
        }
        let ident = field.ident.as_ref().expect("named field");
        channels.push(Channel {
            field,
            ident,
            reducer: reducer.get().unwrap_or(Reducer::LastValue),
        });
    }
    channels
}

fn parse_reducer(path: &syn::Path) -> syn::Result<Reducer> {
    if let Some(ident) = path.get_ident() {
        let name = ident.to_string();
        match name.as_str() {
            "append" => return Ok(Reducer::Append),
            "messages" => return Ok(Reducer::Messages),
            "last_value" => return Ok(Reducer::LastValue),
            _ => {}
        }
        if let Some(close) = closest(&name, REDUCERS) {
            return Err(syn::Error::new_spanned(
                ident,
                format!(
                    "unknown reducer `{name}`; did you mean `{close}`? Expected `append`, \
                     `messages`, `last_value`, or the path of a `fn(&mut T, T)`"
                ),
            ));
        }
    }
    Ok(Reducer::Custom(path.clone()))
}

fn generate(input: &DeriveInput, channels: &[Channel<'_>], root: &TokenStream) -> TokenStream {
    let name = &input.ident;
    let vis = &input.vis;
    let update = format_ident!("{}Update", name);
    let rt = quote!(#root::__private);
    let serde_crate = format!("{}::__private::serde", root.to_string().replace(' ', ""));

    let idents: Vec<_> = channels.iter().map(|c| c.ident).collect();
    let tys: Vec<_> = channels.iter().map(|c| &c.field.ty).collect();
    let indices: Vec<usize> = (0..channels.len()).collect();
    let count = channels.len();

    let specs = channels.iter().map(|c| {
        let n = c.ident.to_string();
        let kind = match c.reducer {
            Reducer::LastValue => quote!(LastValue),
            Reducer::Append => quote!(Append),
            Reducer::Messages => quote!(Messages),
            Reducer::Custom(_) => quote!(Custom),
        };
        quote!(#rt::ChannelSpec { name: #n, reducer: #rt::ReducerKind::#kind })
    });

    // Checks that the field fits its reducer, spanned on the field's type.
    let assertions = channels.iter().filter_map(|c| {
        let ty = &c.field.ty;
        match c.reducer {
            Reducer::Append => Some(quote_spanned!(ty.span()=>
                const _: () = #rt::assert_append_channel::<#ty>();
            )),
            Reducer::Messages => Some(quote_spanned!(ty.span()=>
                const _: () = #rt::assert_messages_channel::<#ty>();
            )),
            _ => None,
        }
    });
    // `reduce(slot, value)` per channel.
    let reduce = |c: &Channel<'_>, slot: TokenStream, value: TokenStream| -> TokenStream {
        let ty = &c.field.ty;
        match &c.reducer {
            Reducer::LastValue => quote!(*#slot = #value;),
            Reducer::Append => quote!(#rt::reducers::append(#slot, #value);),
            Reducer::Messages => quote!(#rt::reducers::add_messages(#slot, #value);),
            Reducer::Custom(path) => quote_spanned!(path.span()=> {
                let reducer: fn(&mut #ty, #ty) = #path;
                reducer(#slot, #value);
            }),
        }
    };

    let apply_arms = channels.iter().enumerate().map(|(i, c)| {
        let ident = c.ident;
        let body = reduce(c, quote!(&mut self.#ident), quote!(value));
        quote! {
            if let ::core::option::Option::Some(value) = update.#ident {
                writes.mark(#i)?;
                #body
            }
        }
    });
    let replay_arms = channels.iter().enumerate().map(|(i, c)| {
        let ident = c.ident;
        let ty = &c.field.ty;
        let body = reduce(c, quote!(&mut self.#ident), quote!(value));
        quote! {
            #i => {
                let value: #ty = #rt::serde_json::from_str(delta.get())?;
                #body
            }
        }
    });
    let prepare = channels.iter().filter_map(|c| {
        let ident = c.ident;
        matches!(c.reducer, Reducer::Messages).then(|| {
            quote! {
                if let ::core::option::Option::Some(list) = &mut self.#ident {
                    #rt::reducers::assign_message_ids(list);
                }
            }
        })
    });
    let setters = channels.iter().map(|c| {
        let ident = c.ident;
        let ty = &c.field.ty;
        let doc = format!(" Sets `{ident}`.");
        // Numbers and bools take the exact type so that literals infer (`.step(3)`).
        if is_primitive(ty) {
            quote! {
                #[doc = #doc]
                #[must_use]
                pub fn #ident(mut self, value: #ty) -> Self {
                    self.#ident = ::core::option::Option::Some(value);
                    self
                }
            }
        } else {
            quote! {
                #[doc = #doc]
                #[must_use]
                pub fn #ident(mut self, value: impl ::core::convert::Into<#ty>) -> Self {
                    self.#ident = ::core::option::Option::Some(value.into());
                    self
                }
            }
        }
    });
    let update_doc = format!(
        " A partial update of [`{name}`]: every channel optional, applied through its \
         reducer. Generated by `#[derive(State)]`."
    );

    quote! {
        #[doc = #update_doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug, ::core::default::Default,
                 #rt::serde::Serialize, #rt::serde::Deserialize)]
        #[serde(crate = #serde_crate, deny_unknown_fields)]
        #vis struct #update {
            #(
                #[serde(default, skip_serializing_if = "::core::option::Option::is_none")]
                pub #idents: ::core::option::Option<#tys>,
            )*
        }

        impl #update {
            #(#setters)*
        }

        const _: () = {
            #(#assertions)*

            impl #rt::StateUpdate for #update {
                fn written(&self) -> #rt::ChannelMask {
                    let mut mask = #rt::ChannelMask::EMPTY;
                    #( if self.#idents.is_some() { mask.insert(#indices); } )*
                    mask
                }

                fn encode_channel(
                    &self,
                    channel: usize,
                ) -> ::core::result::Result<
                    ::core::option::Option<#rt::Box<#rt::RawValue>>,
                    #rt::serde_json::Error,
                > {
                    match channel {
                        #( #indices => self.#idents.as_ref().map(#rt::serde_json::value::to_raw_value).transpose(), )*
                        _ => ::core::result::Result::Ok(::core::option::Option::None),
                    }
                }

                fn prepare(&mut self) {
                    #(#prepare)*
                }
            }

            impl #rt::State for #name {
                type Update = #update;

                fn channels() -> &'static [#rt::ChannelSpec] {
                    static CHANNELS: [#rt::ChannelSpec; #count] = [#(#specs),*];
                    &CHANNELS
                }

                fn apply(
                    &mut self,
                    update: #update,
                    writes: &mut #rt::StepWrites,
                ) -> ::core::result::Result<(), #rt::ReducerError> {
                    #(#apply_arms)*
                    ::core::result::Result::Ok(())
                }

                fn encode_channel(
                    &self,
                    channel: usize,
                ) -> ::core::result::Result<#rt::Box<#rt::RawValue>, #rt::serde_json::Error> {
                    match channel {
                        #( #indices => #rt::serde_json::value::to_raw_value(&self.#idents), )*
                        _ => #rt::unknown_channel(channel),
                    }
                }

                fn decode_channel(
                    &mut self,
                    channel: usize,
                    json: &#rt::RawValue,
                ) -> ::core::result::Result<(), #rt::serde_json::Error> {
                    match channel {
                        #( #indices => { self.#idents = #rt::serde_json::from_str(json.get())?; } )*
                        _ => { #rt::unknown_channel::<()>(channel)?; }
                    }
                    ::core::result::Result::Ok(())
                }

                fn replay_channel(
                    &mut self,
                    channel: usize,
                    delta: &#rt::RawValue,
                ) -> ::core::result::Result<(), #rt::serde_json::Error> {
                    match channel {
                        #(#replay_arms)*
                        _ => { #rt::unknown_channel::<()>(channel)?; }
                    }
                    ::core::result::Result::Ok(())
                }

                fn into_update(self) -> #update {
                    #update { #( #idents: ::core::option::Option::Some(self.#idents), )* }
                }
            }

            impl ::core::convert::From<#update> for #rt::NodeOutput<#name> {
                fn from(update: #update) -> Self {
                    #rt::NodeOutput::update(update)
                }
            }

            impl ::core::convert::From<#update> for #rt::Input<#name> {
                fn from(update: #update) -> Self {
                    #rt::Input::Update(update)
                }
            }
        };
    }
}

fn is_primitive(ty: &syn::Type) -> bool {
    const PRIMITIVES: &[&str] = &[
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "bool", "char",
    ];
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => p
            .path
            .get_ident()
            .is_some_and(|i| PRIMITIVES.contains(&i.to_string().as_str())),
        _ => false,
    }
}
