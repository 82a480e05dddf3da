//! What a task watcher's signature may be.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Error, FnArg, GenericArgument, GenericParam, ItemFn, Lifetime, PathArguments,
    Signature, Type, TypeReference,
};

use crate::attr::Errors;

const EXPECTED: &str = "`fn(event: &Event<'_>)`";

/// Checks everything the macro can check syntactically about the function; the return
/// type is checked by the compiler, through the `IntoWatcherResult` trait.
pub(crate) fn function(item: &ItemFn, errors: &mut Errors) {
    for attr in &item.attrs {
        if is_task_watcher(attr) {
            errors.push(Error::new_spanned(
                attr,
                "`#[task_watcher]` is given twice on this function; one function is one watcher, give it one attribute",
            ));
        }
    }
    signature(&item.sig, errors);
}

/// Whether an attribute is `#[task_watcher]` or `#[some::path::task_watcher]`.
pub(crate) fn is_task_watcher(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "task_watcher")
}

fn signature(sig: &Signature, errors: &mut Errors) {
    if let Some(token) = &sig.asyncness {
        errors.push(Error::new_spanned(
            token,
            "a task watcher cannot be `async`: the table calls it synchronously, on the path of the event; hand asynchronous work to a task or a channel",
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(Error::new_spanned(
            token,
            "a task watcher cannot be an `unsafe fn`: the table calls it as a safe function; use an `unsafe` block inside it instead",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(Error::new_spanned(
            abi,
            "a task watcher cannot have an `extern` ABI: the table calls it as a Rust function; remove the `extern`",
        ));
    }
    let mut lifetimes = Vec::new();
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(param) => lifetimes.push(&param.lifetime),
            GenericParam::Type(_) => errors.push(Error::new_spanned(
                param,
                "a task watcher cannot have type parameters: the table stores one function to call (lifetime parameters are fine)",
            )),
            GenericParam::Const(_) => errors.push(Error::new_spanned(
                param,
                "a task watcher cannot have const parameters: the table stores one function to call (lifetime parameters are fine)",
            )),
        }
    }
    if let Some(clause) = &sig.generics.where_clause {
        errors.push(Error::new_spanned(
            clause,
            "a task watcher cannot have a `where` clause (bounds between lifetimes go in the parameter list: `<'a, 'b: 'a>`)",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(Error::new_spanned(
            variadic,
            format!(
                "a task watcher cannot be variadic: it takes exactly one parameter, {EXPECTED}"
            ),
        ));
    }
    if let Some(self_type) = find_self_type(sig.to_token_stream()) {
        errors.push(Error::new(
            self_type.span(),
            "`#[task_watcher]` goes on a free function, not on an associated function: move the watcher out of the `impl` (or trait)",
        ));
        return;
    }
    parameters(sig, &lifetimes, errors);
}

/// `Self` anywhere in the signature: the function is an associated one.
fn find_self_type(tokens: TokenStream) -> Option<Ident> {
    tokens.into_iter().find_map(|token| match token {
        TokenTree::Ident(ident) if ident == "Self" => Some(ident),
        TokenTree::Group(group) => find_self_type(group.stream()),
        _ => None,
    })
}

fn parameters(sig: &Signature, lifetimes: &[&Lifetime], errors: &mut Errors) {
    let inputs = &sig.inputs;
    let Some(first) = inputs.first() else {
        if sig.variadic.is_none() {
            errors.push(Error::new(
                sig.paren_token.span.join(),
                format!("a task watcher takes one parameter, the event: {EXPECTED}"),
            ));
        }
        return;
    };
    if let Some(receiver) = inputs.iter().find_map(|arg| match arg {
        FnArg::Receiver(receiver) => Some(receiver),
        FnArg::Typed(_) => None,
    }) {
        errors.push(Error::new_spanned(
            receiver,
            "`#[task_watcher]` goes on a free function, not on a method: move the watcher out of the `impl` and give it one parameter, `&Event<'_>`",
        ));
        return;
    }
    if inputs.len() > 1 {
        errors.push(Error::new_spanned(
            rest(inputs),
            format!(
                "a task watcher takes exactly one parameter, {EXPECTED}; remove the other {}",
                if inputs.len() > 2 { "ones" } else { "one" }
            ),
        ));
    }
    if let FnArg::Typed(typed) = first
        && let Err(error) = event_type(&typed.ty, lifetimes)
    {
        errors.push(error);
    }
}

/// The parameters after the first one, to point at.
fn rest(inputs: &Punctuated<FnArg, syn::Token![,]>) -> proc_macro2::TokenStream {
    let mut tokens = proc_macro2::TokenStream::new();
    for arg in inputs.iter().skip(1) {
        arg.to_tokens(&mut tokens);
    }
    tokens
}

/// The name in the event parameter's type (`Event` in `&path::Event<'_>`), if the
/// function's first parameter is a reference to a path.
pub(crate) fn event_type_name(item: &ItemFn) -> Option<&Ident> {
    let Some(FnArg::Typed(parameter)) = item.sig.inputs.first() else {
        return None;
    };
    let Type::Reference(reference) = strip(&parameter.ty) else {
        return None;
    };
    let Type::Path(path) = strip(&reference.elem) else {
        return None;
    };
    path.path.segments.last().map(|last| &last.ident)
}

fn strip(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => strip(&group.elem),
        Type::Paren(paren) => strip(&paren.elem),
        ty => ty,
    }
}

/// Checks that the parameter's type is syntactically `&Event`, `&Event<'_>` or
/// `&path::to::Event<'a>` with `'a` declared on the function.
fn event_type(ty: &Type, lifetimes: &[&Lifetime]) -> Result<(), Error> {
    match strip(ty) {
        Type::Reference(reference) => reference_to_event(reference, lifetimes),
        Type::ImplTrait(_) => Err(Error::new_spanned(
            ty,
            "a task watcher cannot take an `impl Trait` parameter: it takes the event, `&Event<'_>`",
        )),
        inner if is_event(inner) => Err(Error::new_spanned(
            ty,
            "a task watcher takes the event by reference: `&Event<'_>`",
        )),
        _ => Err(Error::new_spanned(
            ty,
            format!(
                "a task watcher takes the event, `&Event<'_>`, not `{}`",
                pretty(ty)
            ),
        )),
    }
}

fn reference_to_event(reference: &TypeReference, lifetimes: &[&Lifetime]) -> Result<(), Error> {
    if let Some(token) = &reference.mutability {
        return Err(Error::new_spanned(
            token,
            "a task watcher takes the event by shared reference, `&Event<'_>`, not `&mut`",
        ));
    }
    if let Some(lifetime) = &reference.lifetime {
        check_lifetime(lifetime, lifetimes)?;
    }
    let Type::Path(path) = strip(&reference.elem) else {
        return Err(not_event(reference));
    };
    let Some(last) = path.path.segments.last().filter(|_| path.qself.is_none()) else {
        return Err(not_event(reference));
    };
    if last.ident != "Event" {
        return Err(not_event(reference));
    }
    match &last.arguments {
        PathArguments::None => Ok(()),
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            GenericArgument::Lifetime(lifetime) => check_lifetime(lifetime, lifetimes),
            _ => Err(bad_event_arguments(&last.arguments)),
        },
        arguments => Err(bad_event_arguments(arguments)),
    }
}

fn bad_event_arguments(arguments: &PathArguments) -> Error {
    Error::new_spanned(
        arguments,
        "`Event` has one lifetime parameter: write `&Event<'_>` (or `&Event`)",
    )
}

/// A named lifetime in the parameter must be one of the function's own: `'static` (or a
/// lifetime from outside) would not accept every event.
fn check_lifetime(lifetime: &Lifetime, lifetimes: &[&Lifetime]) -> Result<(), Error> {
    if lifetime.ident == "_" || lifetimes.iter().any(|l| l.ident == lifetime.ident) {
        return Ok(());
    }
    Err(Error::new_spanned(
        lifetime,
        format!(
            "a task watcher is called with events of any lifetime: write `'_` instead of `{lifetime}`"
        ),
    ))
}

fn is_event(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|s| s.ident == "Event"))
}

fn not_event(reference: &TypeReference) -> Error {
    // `&E<'_>` has `Event`'s shape: most likely `Event` renamed, which the macro, seeing
    // names only, cannot follow.
    let renamed = matches!(strip(&reference.elem), Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|last| matches!(&last.arguments,
            PathArguments::AngleBracketed(args) if args.args.len() == 1
                && matches!(args.args[0], GenericArgument::Lifetime(_)))));
    let hint = if renamed {
        "\nthe macro knows the event type by its name: if this is `Event` imported under another name or aliased, write `Event` or its path, `&watchers_core::Event<'_>`"
    } else {
        ""
    };
    Error::new_spanned(
        reference,
        format!(
            "a task watcher takes the event, `&Event<'_>`, not `{}`{hint}",
            pretty(&Type::Reference(reference.clone()))
        ),
    )
}

/// A type as the user would write it (roughly: `quote` puts spaces between tokens).
fn pretty(ty: &Type) -> String {
    let text = ty.to_token_stream().to_string();
    text.replace("& ", "&")
        .replace(" <", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace("' ", "'")
        .replace("( ", "(")
        .replace(" )", ")")
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn check(item: ItemFn) -> Vec<String> {
        let mut errors = Errors::default();
        function(&item, &mut errors);
        errors
            .into_error()
            .map(|e| e.into_iter().map(|e| e.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn accepted() {
        assert!(
            check(parse_quote!(
                fn a(event: &Event<'_>) {}
            ))
            .is_empty()
        );
        assert!(
            check(parse_quote!(
                fn a(_: &Event) {}
            ))
            .is_empty()
        );
        assert!(
            check(parse_quote!(
                pub(crate) fn a(_e: &watchers_core::Event<'_>) -> Result<(), E> {
                    Ok(())
                }
            ))
            .is_empty()
        );
        assert!(
            check(parse_quote!(
                fn a<'a, 'b>(e: &'a Event<'b>) {}
            ))
            .is_empty()
        );
        assert!(
            check(parse_quote!(
                const fn a(e: &Event<'_>) {}
            ))
            .is_empty()
        );
        assert!(
            check(parse_quote!(
                fn a(mut e: &'_ Event<'_>) {}
            ))
            .is_empty()
        );
    }

    #[test]
    fn rejected() {
        let cases: [(ItemFn, &str); 18] = [
            (
                parse_quote!(
                    async fn a(e: &Event) {}
                ),
                "`async`",
            ),
            (
                parse_quote!(
                    unsafe fn a(e: &Event) {}
                ),
                "`unsafe fn`",
            ),
            (
                parse_quote!(
                    extern "C" fn a(e: &Event) {}
                ),
                "ABI",
            ),
            (
                parse_quote!(
                    fn a<T>(e: &Event) {}
                ),
                "type parameters",
            ),
            (
                parse_quote!(
                    fn a<const N: usize>(e: &Event) {}
                ),
                "const parameters",
            ),
            (
                parse_quote!(
                    fn a(e: &Event)
                    where
                        u8: Copy,
                    {
                    }
                ),
                "`where`",
            ),
            (
                parse_quote!(
                    fn a() {}
                ),
                "one parameter",
            ),
            (
                parse_quote!(
                    fn a(e: &Event, f: u8) {}
                ),
                "exactly one",
            ),
            (
                parse_quote!(
                    fn a(&self, e: &Event) {}
                ),
                "method",
            ),
            (
                parse_quote!(
                    fn a(e: Event) {}
                ),
                "by reference",
            ),
            (
                parse_quote!(
                    fn a(e: &mut Event) {}
                ),
                "`&mut`",
            ),
            (
                parse_quote!(
                    fn a(e: u32) {}
                ),
                "not `u32`",
            ),
            (
                parse_quote!(
                    fn a(e: &str) {}
                ),
                "not `&str`",
            ),
            (
                parse_quote!(
                    fn a(e: impl Sized) {}
                ),
                "`impl Trait`",
            ),
            (
                parse_quote!(
                    fn a(e: &Event<'static>) {}
                ),
                "`'static`",
            ),
            (
                parse_quote!(
                    fn a(e: &Event<u8>) {}
                ),
                "one lifetime parameter",
            ),
            (
                parse_quote!(
                    #[task_watcher(events = fork)]
                    fn a(e: &Event) {}
                ),
                "twice",
            ),
            (
                parse_quote!(
                    fn a(e: &Event) -> Result<(), Self::Error> {}
                ),
                "associated function",
            ),
        ];
        for (item, expected) in cases {
            let errors = check(item);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains(expected), "{errors:?} lacks {expected}");
        }
    }
}
