//! What `#[task_watcher]` expands to: the function, unchanged, and its registration; or,
//! on an error, the function alone and the errors.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Error, Item, ItemFn, ReturnType, TraitItemFn};

use crate::attr::{self, Args, EVENTS, Errors};
use crate::valid;

/// The whole expansion.
pub(crate) fn task_watcher(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = match attr::parse(args) {
        Ok(args) => Some(args),
        Err(args_errors) => {
            errors.append(args_errors);
            None
        }
    };
    let item = match syn::parse2::<Item>(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            errors.push(Error::new(
                Span::call_site(),
                "`#[task_watcher]` goes on a free function",
            ));
            return fallback(item, &errors);
        }
    };
    let function = match item {
        Item::Fn(function) => function,
        item => {
            errors.push(not_a_function(&item));
            return fallback(allow_dead_code(item), &errors);
        }
    };
    valid::function(&function, &mut errors);
    match args {
        Some(args) if errors.is_empty() => registration(function, args),
        _ => fallback(fallback_function(function), &errors),
    }
}

/// The item as it was (so that the errors about it are the only ones), and the errors.
fn fallback(item: impl ToTokens, errors: &Errors) -> TokenStream {
    let errors = errors.to_compile_error();
    quote! {
        #item
        #errors
    }
}

/// The function without its registration: not used anywhere, which is not worth a
/// warning next to the error; and without another `#[task_watcher]`, which would only
/// repeat the errors.
fn fallback_function(mut function: ItemFn) -> ItemFn {
    function.attrs.retain(|attr| !valid::is_task_watcher(attr));
    function.attrs.push(syn::parse_quote!(#[allow(dead_code)]));
    function
}

/// Marks an item that will not be registered as possibly unused.
fn allow_dead_code(mut item: Item) -> Item {
    let attrs = match &mut item {
        Item::Const(item) => &mut item.attrs,
        Item::Enum(item) => &mut item.attrs,
        Item::Static(item) => &mut item.attrs,
        Item::Struct(item) => &mut item.attrs,
        Item::Trait(item) => &mut item.attrs,
        Item::Type(item) => &mut item.attrs,
        Item::Union(item) => &mut item.attrs,
        Item::Impl(item) => &mut item.attrs,
        _ => return item,
    };
    attrs.push(syn::parse_quote!(#[allow(dead_code)]));
    item
}

/// The error for an item that is not a function, pointing at its keyword (and name).
fn not_a_function(item: &Item) -> Error {
    let (tokens, what) = match item {
        Item::Const(item) => (
            pair(&item.const_token, &item.ident),
            "a constant",
        ),
        Item::Enum(item) => (pair(&item.enum_token, &item.ident), "an enum"),
        Item::ExternCrate(item) => (item.extern_token.to_token_stream(), "an `extern crate`"),
        Item::ForeignMod(item) => (item.abi.to_token_stream(), "an `extern` block"),
        Item::Impl(item) => (
            pair(&item.impl_token, &item.self_ty),
            "an `impl` block (a method or an associated function cannot be a task watcher either)",
        ),
        Item::Macro(item) => (item.mac.path.to_token_stream(), "a macro invocation"),
        Item::Mod(item) => (pair(&item.mod_token, &item.ident), "a module"),
        Item::Static(item) => (pair(&item.static_token, &item.ident), "a static"),
        Item::Struct(item) => (pair(&item.struct_token, &item.ident), "a struct"),
        Item::Trait(item) => (pair(&item.trait_token, &item.ident), "a trait"),
        Item::TraitAlias(item) => (
            pair(&item.trait_token, &item.ident),
            "a trait alias",
        ),
        Item::Type(item) => (pair(&item.type_token, &item.ident), "a type alias"),
        Item::Union(item) => (pair(&item.union_token, &item.ident), "a union"),
        Item::Use(item) => (item.use_token.to_token_stream(), "a `use` declaration"),
        Item::Verbatim(tokens) => {
            if let Ok(method) = syn::parse2::<TraitItemFn>(tokens.clone()) {
                return Error::new_spanned(
                    &method.sig,
                    "`#[task_watcher]` goes on a free function with a body, not on a trait method",
                );
            }
            return Error::new(
                Span::call_site(),
                "`#[task_watcher]` goes on a free function",
            );
        }
        _ => {
            return Error::new(
                Span::call_site(),
                "`#[task_watcher]` goes on a free function",
            );
        }
    };
    Error::new_spanned(
        tokens,
        format!("`#[task_watcher]` goes on a free function, not on {what}"),
    )
}

/// Two tokens, to point at both.
fn pair(first: &impl ToTokens, second: &impl ToTokens) -> TokenStream {
    let mut tokens = first.to_token_stream();
    second.to_tokens(&mut tokens);
    tokens
}

/// The function and the `inventory` submission of its `Watcher` record.
fn registration(function: ItemFn, args: Args) -> TokenStream {
    let Args {
        events,
        priority,
        name,
        krate,
    } = args;
    let private = quote!(#krate::__private);
    let ident = &function.sig.ident;
    let bare_name = ident.unraw().to_string();
    // Both names differ from the function's, so that neither can shadow it.
    let holder = format_ident!("__task_watcher_{}", bare_name);
    let shim = format_ident!("__task_watcher_shim_{}", bare_name);
    let event = format_ident!("event");

    let name = match name {
        Some(name) => name.to_token_stream(),
        None => quote! {
            ::core::concat!(::core::module_path!(), "::", #bare_name)
        },
    };
    let events = events.iter().map(|event| {
        let constant = EVENTS
            .iter()
            .find(|(name, _)| event.unraw() == name)
            .map_or("EMPTY", |(_, constant)| constant);
        let constant = syn::Ident::new(constant, event.span());
        quote!(#private::EventSet::#constant)
    });
    let events = events.reduce(|set, next| quote!(#set.union(#next)));
    // Reports the line of the function's name, not of the attribute.
    let line = quote_spanned!(ident.span()=> ::core::line!());
    // An unsupported return type is reported on the return type.
    let output_span = match &function.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => ident.span(),
    };
    let call = quote_spanned! {output_span=>
        #private::IntoWatcherResult::into_watcher_result(#ident(#event))
    };
    let cfgs = function
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"));

    quote! {
        #function

        #(#cfgs)*
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        const #holder: () = {
            fn #shim(#event: &#private::Event<'_>) -> #private::WatcherResult {
                #call
            }
            #private::inventory::submit! {
                #private::Watcher::new(#name, #events, #shim)
                    .with_priority(#priority)
                    .with_location(#private::Location {
                        module_path: ::core::module_path!(),
                        file: ::core::file!(),
                        line: #line,
                    })
            }
        };
    }
}
