//! What `#[task_watcher]` expands to: the function, unchanged, and its registration; or,
//! on an error, the function alone and the errors.

use std::fmt::Write as _;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{Error, Expr, Item, ItemFn, ReturnType, Stmt, TraitItemFn};

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
            if let Some(expr) = expression(&item) {
                errors.push(not_a_function_but_expression(&expr));
                return expression_fallback(&errors);
            }
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
            return fallback(allow_unused_import(item), &errors);
        }
    };
    valid::function(&function, &mut errors);
    match args {
        Some(args) if errors.is_empty() => registration(&function, &args),
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

/// For an attribute on an expression (which only a nightly compiler accepts, with an
/// error of its own): one expression, so that the compiler sees no tokens after it to
/// ask for a `;` before; the last error is its value, of the type that suppresses further
/// errors, so that no type mismatch is reported where the expression was used.
fn expression_fallback(errors: &Errors) -> TokenStream {
    let errors: Vec<TokenStream> = errors
        .iter()
        .map(|error| error.to_compile_error())
        .collect();
    quote!({ #(#errors);* })
}

/// The tokens as an expression, or an expression statement (which rustc hands over with
/// its `;`); not a `let`, which stays as it was so that its binding stays defined.
fn expression(tokens: &TokenStream) -> Option<Expr> {
    let expr = match syn::parse2::<Expr>(tokens.clone()) {
        Ok(expr) => expr,
        Err(_) => match syn::parse2::<Stmt>(tokens.clone()) {
            Ok(Stmt::Expr(expr, _)) => expr,
            _ => return None,
        },
    };
    (!matches!(expr, Expr::Let(_))).then_some(expr)
}

/// The error for an expression with the attribute: for a closure, where to put it instead.
fn not_a_function_but_expression(expr: &Expr) -> Error {
    match expr {
        Expr::Closure(closure) => Error::new_spanned(
            pair(&closure.or1_token, &closure.or2_token),
            "`#[task_watcher]` goes on a free function, not on a closure: declare the watcher as `fn name(event: &Event<'_>)`, or register the closure at run time with `watchers_core::watcher(\"name\", events).register(closure)`",
        ),
        _ => Error::new(
            Span::call_site(),
            "`#[task_watcher]` goes on a free function, not on an expression",
        ),
    }
}

/// The function without its registration: without another `#[task_watcher]`, which
/// would only repeat the errors; and without a C-variadic `...`, which rustc would
/// report again. It is left unused without an `allow(dead_code)`: rustc reports no
/// `dead_code` in a crate with errors, and the `allow` would be an error of its own
/// under a `#![forbid(dead_code)]`.
fn fallback_function(mut function: ItemFn) -> ItemFn {
    function.attrs.retain(|attr| !valid::is_task_watcher(attr));
    if function.sig.variadic.take().is_some() {
        // `fn f(a: A, ...)`: drop the comma left after `a: A`.
        let inputs = std::mem::take(&mut function.sig.inputs);
        function.sig.inputs = inputs.into_iter().collect();
    }
    function
}

/// Marks a `use` that will not be registered as possibly unused: `unused_imports` is
/// reported even next to errors. No other item is marked: `dead_code` is never reported
/// in a crate with errors, and an `allow` under a `#![forbid(dead_code)]` would be an
/// error of its own (E0453).
fn allow_unused_import(mut item: Item) -> Item {
    if let Item::Use(item) = &mut item {
        item.attrs.push(syn::parse_quote!(#[allow(unused_imports)]));
    }
    item
}

/// The error for an item that is not a function, pointing at its keyword (and name).
fn not_a_function(item: &Item) -> Error {
    let (tokens, what) = match item {
        Item::Const(item) => (pair(&item.const_token, &item.ident), "a constant"),
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
        Item::TraitAlias(item) => (pair(&item.trait_token, &item.ident), "a trait alias"),
        Item::Type(item) => (pair(&item.type_token, &item.ident), "a type alias"),
        Item::Union(item) => (pair(&item.union_token, &item.ident), "a union"),
        Item::Use(item) => (item.use_token.to_token_stream(), "a `use` declaration"),
        Item::Verbatim(tokens) => {
            if let Ok(method) = syn::parse2::<TraitItemFn>(tokens.clone()) {
                return Error::new_spanned(
                    &method.sig,
                    "`#[task_watcher]` goes on a free function with a body, not on a declaration (of a trait method or a foreign function)",
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

/// The spans of the first and last tokens of a type.
fn first_and_last_spans(tokens: TokenStream) -> (Span, Span) {
    let mut tokens = tokens.into_iter();
    let span_of = |token: &TokenTree, first: bool| match token {
        TokenTree::Group(group) if first => group.span_open(),
        TokenTree::Group(group) => group.span_close(),
        token => token.span(),
    };
    let first = tokens
        .next()
        .map_or_else(Span::call_site, |token| span_of(&token, true));
    let last = tokens.last().map_or(first, |token| span_of(&token, false));
    (first, last)
}

/// Two tokens, to point at both.
fn pair(first: &impl ToTokens, second: &impl ToTokens) -> TokenStream {
    let mut tokens = first.to_token_stream();
    second.to_tokens(&mut tokens);
    tokens
}

/// The function and its `Watcher` record, a constant whose initialiser submits it to
/// `inventory`.
fn registration(function: &ItemFn, args: &Args) -> TokenStream {
    let Args {
        events,
        priority,
        name,
        krate,
    } = args;
    // Spanned on the path, so that a path that is not the runtime is reported there.
    let private_span = krate
        .segments
        .last()
        .map_or_else(Span::call_site, |segment| segment.ident.span());
    let private = quote_spanned!(private_span=> #krate::__private);
    let ident = &function.sig.ident;
    let bare_name = ident.unraw().to_string();
    let holder = record_ident(ident);

    let name = name.as_ref().map_or_else(
        || quote!(::core::concat!(::core::module_path!(), "::", #bare_name)),
        ToTokens::to_token_stream,
    );
    let events = events.iter().map(|event| {
        let constant = EVENTS
            .iter()
            .find(|(name, _)| event.unraw() == name)
            .map_or("EMPTY", |(_, constant)| constant);
        let constant = syn::Ident::new(constant, event.span());
        quote!(#private::EventSet::#constant)
    });
    let events = events
        .reduce(|set, next| quote!(#set.union(#next)))
        .unwrap_or_else(|| quote!(#private::EventSet::EMPTY));
    // Reports the line of the function's name, not of the attribute.
    let line = quote_spanned!(ident.span()=> ::core::line!());
    let shim = shim(function, &private);
    let cfgs = function
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"));
    let vis = &function.vis;
    // The record calls the function: that is the macro's use, not the user's, and a
    // `#[deprecated]` watcher would otherwise warn about itself. Only then, so that a
    // crate that forbids `deprecated` still compiles its other watchers.
    let allow_deprecated = function
        .attrs
        .iter()
        .any(|attr| attr.path().is_ident("deprecated"))
        .then(|| quote!(#[allow(deprecated)]));

    // The record is a constant with the function's visibility, so that an explicit table
    // can name it (`watcher_record!`) and get the very record `inventory` gets. The
    // submission stays inside its initialiser, where items are allowed in any context
    // the function may be in (an unnamed `const _` is not allowed in an `impl`, where
    // the compiler, not this macro, reports the function). The one item named inside
    // has the record's own name, which the function cannot have: so the function's
    // name means there what it means next to the function.
    quote! {
        #function

        #(#cfgs)*
        #allow_deprecated
        #[doc(hidden)]
        #vis const #holder: #private::Watcher = {
            const #holder: #private::Watcher = #private::Watcher::new(#name, #events, #shim)
                .with_priority(#priority)
                .with_location(#private::Location {
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: #line,
                });
            #private::inventory::submit! { #holder }
            #holder
        };
    }
}

/// What the table calls: a closure of the table's `WatcherFn` type that calls the
/// function with the event and converts what it returns.
///
/// How the function is called from the event is decided here alone: another form of
/// parameter (say, one event's own data) would be another body for this closure, next
/// to another accepted signature in `valid`.
fn shim(function: &ItemFn, private: &TokenStream) -> TokenStream {
    let ident = &function.sig.ident;
    // Hygienic, so that a function called `event` or `returned` is not shadowed; located
    // at the parameter's type name, so that a type the macro took for the event by its
    // name (a crate's own `Event`) is reported there.
    let event = syn::Ident::new(
        "event",
        Span::mixed_site().located_at(
            valid::event_type_name(function).map_or_else(|| ident.span(), syn::Ident::span),
        ),
    );
    // An unsupported return type is reported on the whole return type: the argument of
    // `into_watcher_result` is an expression from its first token to its last.
    let (first, last) = match &function.sig.output {
        ReturnType::Type(_, ty) => first_and_last_spans(ty.to_token_stream()),
        ReturnType::Default => (ident.span(), ident.span()),
    };
    let returned = syn::Ident::new("returned", Span::mixed_site().located_at(last));
    let identity = quote_spanned!(first=> ::core::convert::identity);
    let argument = quote_spanned!(last=> (#returned));
    quote! {
        |#event: &#private::Event<'_>| -> #private::WatcherResult {
            let #returned = #ident(#event);
            #private::IntoWatcherResult::into_watcher_result(#identity #argument)
        }
    }
}

/// The name of the constant that holds the record of the watcher function `ident`.
///
/// Upper case, so as not to need an `allow(non_upper_case_globals)` (which a `forbid`
/// would refuse), and one-to-one, so that two functions of one module never share a
/// record: a lower-case letter becomes its capital, a capital `A` becomes `_A`, `_`
/// becomes `__`, any other character `_<its code point in decimal>_`, and digits stay.
/// `audit` gives `__TASK_WATCHER_AUDIT`, `Audit` `__TASK_WATCHER__AUDIT`. It is longer
/// than the function's name, so it never shadows the function.
pub(crate) fn record_ident(ident: &syn::Ident) -> syn::Ident {
    let mut encoded = String::from("__TASK_WATCHER_");
    for c in ident.unraw().to_string().chars() {
        match c {
            'a'..='z' => encoded.push(c.to_ascii_uppercase()),
            '0'..='9' => encoded.push(c),
            'A'..='Z' => {
                encoded.push('_');
                encoded.push(c);
            }
            '_' => encoded.push_str("__"),
            other => {
                let _ = write!(encoded, "_{}_", u32::from(other));
            }
        }
    }
    syn::Ident::new(&encoded, ident.span())
}

/// `watcher_record!(path::to::function)`: the path of the function's record constant.
pub(crate) fn watcher_record(input: TokenStream) -> TokenStream {
    let mut path = match syn::parse2::<syn::Path>(input) {
        Ok(path) => path,
        Err(error) => {
            return Error::new(
                error.span(),
                "`watcher_record!` takes the path of a `#[task_watcher]` function, like `watcher_record!(audit::watch)`",
            )
            .to_compile_error();
        }
    };
    if let Some(last) = path.segments.last_mut() {
        last.ident = record_ident(&last.ident);
    }
    path.to_token_stream()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_distinct_and_upper_case() {
        let names = [
            "audit",
            "Audit",
            "AUDIT",
            "aUdit",
            "a_b",
            "a__b",
            "A_B",
            "_a",
            "_A",
            "a1",
            "A1",
            "r#match",
            "match_",
            "caf\u{e9}",
            "CAF\u{c9}",
            "x\u{3bb}",
            "X\u{39b}",
        ];
        let records: Vec<String> = names
            .iter()
            .map(|name| {
                let ident = match name.strip_prefix("r#") {
                    Some(raw) => syn::Ident::new_raw(raw, Span::call_site()),
                    None => syn::Ident::new(name, Span::call_site()),
                };
                record_ident(&ident).to_string()
            })
            .collect();
        for (i, record) in records.iter().enumerate() {
            assert!(!record.chars().any(char::is_lowercase), "{record}");
            assert!(
                !records[..i].contains(record),
                "{} and another name share {record}",
                names[i]
            );
        }
        assert_eq!(records[0], "__TASK_WATCHER_AUDIT");
        assert_eq!(records[1], "__TASK_WATCHER__AUDIT");
        assert_eq!(records[11], "__TASK_WATCHER_MATCH");
    }
}
