//! The arguments of `#[task_watcher(...)]`.

use std::fmt::Write as _;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::quote;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::{Error, Expr, ExprLit, ExprUnary, Ident, Lit, LitInt, LitStr, Path, Token, UnOp};

use crate::suggest;

/// The event names, in `EventKind` order, with the `EventSet` constant of each.
pub(crate) const EVENTS: [(&str, &str); 10] = [
    ("fork", "FORK"),
    ("exec", "EXEC"),
    ("uid", "UID"),
    ("gid", "GID"),
    ("sid", "SID"),
    ("comm", "COMM"),
    ("ptrace", "PTRACE"),
    ("coredump", "COREDUMP"),
    ("exit", "EXIT"),
    ("free", "FREE"),
];

const KEYS: [&str; 4] = ["events", "priority", "name", "crate"];

const EXAMPLE: &str = "#[task_watcher(events = fork | exit)]";

/// The parsed arguments.
pub(crate) struct Args {
    /// The events, as written (each a known name, none repeated), never empty.
    pub events: Vec<Ident>,
    /// The priority, 0 if not given.
    pub priority: i32,
    /// The name, if given (non-empty).
    pub name: Option<LitStr>,
    /// The runtime crate's path, `::watchers_core` if not given.
    pub krate: Path,
}

/// Arguments as they are being parsed: `None` for each one not seen yet.
#[derive(Default)]
struct Builder {
    events: Option<Vec<Ident>>,
    priority: Option<i32>,
    name: Option<LitStr>,
    krate: Option<Path>,
}

/// Errors gathered while parsing, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn append(&mut self, errors: Errors) {
        if let Some(error) = errors.0 {
            self.push(error);
        }
    }

    #[cfg(test)]
    pub(crate) fn into_error(self) -> Option<Error> {
        self.0
    }

    /// Each error on its own.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Error> + '_ {
        self.0.iter().flat_map(|error| error.clone())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn to_compile_error(&self) -> TokenStream {
        self.0
            .as_ref()
            .map(Error::to_compile_error)
            .unwrap_or_default()
    }
}

/// Parses the attribute's arguments, gathering every error.
pub(crate) fn parse(args: TokenStream) -> Result<Args, Errors> {
    let mut errors = Errors::default();
    if args.is_empty() {
        errors.push(Error::new(
            Span::call_site(),
            format!("`#[task_watcher]` needs the events to watch, e.g. `{EXAMPLE}`"),
        ));
        return Err(errors);
    }

    let mut builder = Builder::default();
    let parser = syn::meta::parser(|meta| {
        if let Err(error) = builder.parse_one(&meta) {
            errors.push(error);
            skip_to_comma(meta.input);
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        errors.push(error);
    }

    let events = match builder.events {
        Some(events) => events,
        None => {
            // An `events = ...` that failed to parse was reported already.
            if errors.is_empty() {
                errors.push(Error::new(
                    Span::call_site(),
                    format!(
                        "`#[task_watcher]` needs the events to watch: add `events = ...`, e.g. `{EXAMPLE}`"
                    ),
                ));
            }
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Args {
        events,
        priority: builder.priority.unwrap_or(0),
        name: builder.name,
        krate: builder
            .krate
            .unwrap_or_else(|| syn::parse_quote!(::watchers_core)),
    })
}

/// After an error in one argument, skips the rest of it so that the next ones are still
/// parsed (and their errors reported too).
fn skip_to_comma(input: ParseStream) {
    while !input.is_empty() && !input.peek(Token![,]) {
        if input.parse::<TokenTree>().is_err() {
            break;
        }
    }
}

impl Builder {
    fn parse_one(&mut self, meta: &ParseNestedMeta) -> syn::Result<()> {
        let path = &meta.path;
        let Some(key) = path.get_ident().map(Ident::unraw) else {
            let text: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            return Err(Error::new_spanned(path, self.unknown_key(&text.join("::"))));
        };
        let key = key.to_string();
        if !KEYS.contains(&key.as_str()) {
            return Err(Error::new_spanned(path, self.unknown_key(&key)));
        }
        let seen = match key.as_str() {
            "events" => self.events.is_some(),
            "priority" => self.priority.is_some(),
            "name" => self.name.is_some(),
            _ => self.krate.is_some(),
        };
        if seen {
            return Err(Error::new_spanned(
                path,
                format!("`{key}` is given twice; give it once"),
            ));
        }
        if !meta.input.peek(Token![=]) {
            let example = match key.as_str() {
                "events" => "events = fork | exit",
                "priority" => "priority = 10",
                "name" => "name = \"my_watcher\"",
                _ => "crate = ::watchers_core",
            };
            return Err(Error::new_spanned(
                path,
                format!("expected `=` after `{key}`, as in `{example}`"),
            ));
        }
        let eq: Token![=] = meta.input.parse()?;
        let input = meta.input;
        match key.as_str() {
            "events" => self.events = Some(parse_events(input, &quote!(#path #eq))?),
            "priority" => self.priority = Some(parse_priority(input, &quote!(#path #eq))?),
            "name" => self.name = Some(parse_name(input, &quote!(#path #eq))?),
            _ => self.krate = Some(parse_crate(input, &quote!(#path #eq))?),
        }
        Ok(())
    }

    /// The message for an argument that is not one of [`KEYS`].
    fn unknown_key(&self, key: &str) -> String {
        let mut message = format!("unknown argument `{key}`");
        if EVENTS.iter().any(|(event, _)| *event == key) {
            // `events = fork, exit`
            let mut events: Vec<String> = self
                .events
                .iter()
                .flatten()
                .map(ToString::to_string)
                .collect();
            events.push(key.to_owned());
            let _ = write!(
                message,
                "; events are separated by `|`, not `,`: did you mean `events = {}`?",
                events.join(" | ")
            );
        } else if let Some(close) = suggest::closest(key, &KEYS) {
            let _ = write!(message, "; did you mean `{close}`?");
        }
        let _ = write!(message, "\nthe arguments are {}", suggest::list(&KEYS));
        message
    }
}

/// Whether the value of an argument ends here.
fn at_end(input: ParseStream) -> bool {
    input.is_empty() || input.peek(Token![,])
}

/// `fork | exit | ...`
fn parse_events(input: ParseStream, key: &TokenStream) -> syn::Result<Vec<Ident>> {
    if at_end(input) {
        return Err(Error::new_spanned(
            key,
            format!(
                "the list of events is empty; name at least one: {}",
                event_list()
            ),
        ));
    }
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(Error::new(
            lit.span(),
            format!(
                "the events are names, not a string: write `events = {}`",
                lit.value().replace(',', " |")
            ),
        ));
    }
    let mut errors = Errors::default();
    let mut events: Vec<Ident> = Vec::new();
    // A syntax error ends the list; the errors about the events before it still count.
    let stop = |errors: Errors, error: Error| match errors.0 {
        Some(mut before) => {
            before.combine(error);
            Err(before)
        }
        None => Err(error),
    };
    loop {
        if is_path(input) {
            let path = Path::parse_mod_style(input)?;
            errors.push(path_as_event(&path));
        } else if !input.peek(Ident::peek_any) {
            return stop(
                errors,
                input.error(format!(
                    "expected an event name, separated from the next by `|`, as in `events = fork | exit`; the events are {}",
                    event_list()
                )),
            );
        } else {
            let event = Ident::parse_any(input)?;
            let name = event.unraw().to_string();
            if !EVENTS.iter().any(|(known, _)| *known == name) {
                let names: Vec<&str> = EVENTS.iter().map(|(name, _)| *name).collect();
                let hint = suggest::closest(&name, &names)
                    .map(|close| format!("; did you mean `{close}`?"))
                    .unwrap_or_default();
                errors.push(Error::new(
                    event.span(),
                    format!(
                        "unknown event `{name}`{hint}\nthe events are {}",
                        event_list()
                    ),
                ));
            } else if events.iter().any(|seen| seen.unraw() == name) {
                errors.push(Error::new(
                    event.span(),
                    format!("the event `{name}` is listed twice; list it once"),
                ));
            } else {
                events.push(event);
            }
        }
        if at_end(input) {
            break;
        }
        if !input.peek(Token![|]) {
            return stop(
                errors,
                input.error("expected `|` between two events, as in `events = fork | exit`"),
            );
        }
        let bar: Token![|] = input.parse()?;
        if input.peek(Token![|]) {
            return stop(
                errors,
                input.error("expected one `|` between two events, not `||`"),
            );
        }
        if at_end(input) {
            return stop(errors, Error::new(bar.span, "expected an event after `|`"));
        }
    }
    match errors.0 {
        Some(error) => Err(error),
        None => Ok(events),
    }
}

/// Whether the next event is written as a path, such as `EventSet::FORK`.
fn is_path(input: ParseStream) -> bool {
    input.peek(Token![::]) || (input.peek(Ident::peek_any) && input.peek2(Token![::]))
}

/// The error for an event written as a path (`EventSet::FORK`): the attribute takes the
/// bare names, which it turns into `EventSet` constants itself.
fn path_as_event(path: &Path) -> Error {
    let mut written = String::new();
    if path.leading_colon.is_some() {
        written.push_str("::");
    }
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    written.push_str(&segments.join("::"));
    let last = path
        .segments
        .last()
        .map(|segment| segment.ident.unraw().to_string())
        .unwrap_or_default();
    let lower = last.to_lowercase();
    let names: Vec<&str> = EVENTS.iter().map(|(name, _)| *name).collect();
    let hint = if names.contains(&lower.as_str()) {
        format!(": write `{lower}` instead of `{written}`")
    } else if let Some(close) = suggest::closest(&lower, &names) {
        format!(", and `{last}` is none of them; did you mean `{close}`?")
    } else {
        format!(", and `{last}` is none of them")
    };
    Error::new_spanned(
        path,
        format!(
            "the events are bare names, not paths{hint}\nthe events are {}",
            event_list()
        ),
    )
}

/// `fork`, `exec`, ... in backticks.
fn event_list() -> String {
    let names: Vec<&str> = EVENTS.iter().map(|(name, _)| *name).collect();
    suggest::list(&names)
}

/// `10`, `-5`
fn parse_priority(input: ParseStream, key: &TokenStream) -> syn::Result<i32> {
    if at_end(input) {
        return Err(Error::new_spanned(
            key,
            "expected a priority after `=`, as in `priority = 10`",
        ));
    }
    if input.peek(Token![+]) {
        return Err(leading_plus(input));
    }
    let expr: Expr = input.parse()?;
    let expr = ungroup(&expr);
    let (negative, lit) = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => (false, lit),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: inner,
            ..
        }) => match ungroup(inner) {
            Expr::Lit(ExprLit {
                lit: Lit::Int(lit), ..
            }) => (true, lit),
            _ => return Err(not_an_integer(expr)),
        },
        _ => return Err(not_an_integer(expr)),
    };
    if !matches!(lit.suffix(), "" | "i32") {
        return Err(Error::new(
            lit.span(),
            format!(
                "the priority is an `i32`: drop the `{}` suffix",
                lit.suffix()
            ),
        ));
    }
    integer_value(negative, lit).ok_or_else(|| {
        Error::new_spanned(
            expr,
            format!(
                "the priority is an `i32`: {}{lit} is out of range ({}..={})",
                if negative { "-" } else { "" },
                i32::MIN,
                i32::MAX
            ),
        )
    })
}

/// `priority = +5`: Rust has no unary `+`, so this is not an expression at all; the
/// error points at the `+` and shows the number without it.
fn leading_plus(input: ParseStream) -> Error {
    let Ok(plus) = input.parse::<Token![+]>() else {
        return input.error("expected a priority, as in `priority = 10`");
    };
    let after = input.fork();
    let fix = match after.parse::<LitInt>() {
        Ok(lit) if at_end(&after) => format!("write `priority = {lit}`"),
        _ => "write the number alone, as in `priority = 10`".to_owned(),
    };
    Error::new(plus.span, format!("a priority has no leading `+`: {fix}"))
}

/// The expression inside the invisible groups that `macro_rules!` puts around an
/// `$x:expr` or `$x:literal` fragment.
fn ungroup(expr: &Expr) -> &Expr {
    match expr {
        Expr::Group(group) => ungroup(&group.expr),
        expr => expr,
    }
}

fn integer_value(negative: bool, lit: &LitInt) -> Option<i32> {
    let magnitude = lit.base10_parse::<u64>().ok()?;
    let value = if negative {
        -i64::try_from(magnitude).ok()?
    } else {
        i64::try_from(magnitude).ok()?
    };
    i32::try_from(value).ok()
}

fn not_an_integer(expr: &Expr) -> Error {
    let message = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(_), ..
        }) => {
            "the priority is a number, not a string: write it without quotes, as in `priority = 10`"
        }
        _ => "the priority must be an integer literal, as in `priority = 10` or `priority = -5`",
    };
    Error::new_spanned(expr, message)
}

/// `"name"`
fn parse_name(input: ParseStream, key: &TokenStream) -> syn::Result<LitStr> {
    if at_end(input) {
        return Err(Error::new_spanned(
            key,
            "expected a name after `=`, as in `name = \"my_watcher\"`",
        ));
    }
    let expr: Expr = input.parse()?;
    match ungroup(&expr) {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => {
            if lit.value().trim().is_empty() {
                Err(Error::new(
                    lit.span(),
                    "the name of a watcher cannot be empty; leave `name` out to use the function's path",
                ))
            } else {
                Ok(lit.clone())
            }
        }
        expr => Err(Error::new_spanned(
            expr,
            "the name must be a string literal, as in `name = \"my_watcher\"`",
        )),
    }
}

/// `::path::to::watchers_core` or `"::path::to::watchers_core"`
fn parse_crate(input: ParseStream, key: &TokenStream) -> syn::Result<Path> {
    if at_end(input) {
        return Err(Error::new_spanned(
            key,
            "expected a path after `=`, as in `crate = ::watchers_core`",
        ));
    }
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return lit.parse_with(Path::parse_mod_style).map_err(|_| {
            Error::new(
                lit.span(),
                format!(
                    "`{}` is not a path to the `watchers_core` crate, such as `::watchers_core`",
                    lit.value()
                ),
            )
        });
    }
    if input.peek(Token![::]) || input.peek(Ident::peek_any) {
        let path = Path::parse_mod_style(input)?;
        if at_end(input) {
            return Ok(path);
        }
    }
    Err(input
        .error("expected a path to the `watchers_core` crate, as in `crate = ::watchers_core`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(tokens: TokenStream) -> Args {
        match parse(tokens) {
            Ok(args) => args,
            Err(errors) => panic!("{}", errors.to_compile_error()),
        }
    }

    fn err(tokens: TokenStream) -> String {
        match parse(tokens) {
            Ok(_) => panic!("accepted"),
            Err(errors) => errors
                .into_error()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        }
    }

    /// How many errors `tokens` give, `None` for none.
    fn error_count(tokens: TokenStream) -> Option<usize> {
        parse(tokens)
            .err()
            .and_then(Errors::into_error)
            .map(|e| e.into_iter().count())
    }

    #[test]
    fn full() {
        let args = ok(quote!(
            events = fork | exit | free,
            priority = -5,
            name = "x",
            crate = ::rt
        ));
        let events: Vec<String> = args.events.iter().map(Ident::to_string).collect();
        assert_eq!(events, ["fork", "exit", "free"]);
        assert_eq!(args.priority, -5);
        assert_eq!(args.name.map(|n| n.value()).as_deref(), Some("x"));
        let krate = args.krate;
        assert_eq!(quote!(#krate).to_string(), quote!(::rt).to_string());
    }

    #[test]
    fn defaults_and_string_crate() {
        let args = ok(quote!(events = exec, crate = "crate::rt",));
        assert_eq!(args.priority, 0);
        assert!(args.name.is_none());
        let krate = args.krate;
        assert_eq!(quote!(#krate).to_string(), quote!(crate::rt).to_string());
    }

    #[test]
    fn priority_bounds() {
        assert_eq!(
            ok(quote!(events = fork, priority = -2147483648)).priority,
            i32::MIN
        );
        assert_eq!(
            ok(quote!(events = fork, priority = 2147483647)).priority,
            i32::MAX
        );
        assert!(err(quote!(events = fork, priority = 2147483648)).contains("out of range"));
        assert!(
            err(quote!(events = fork, priority = -99999999999999999999999))
                .contains("out of range")
        );
        assert!(err(quote!(events = fork, priority = 1.5)).contains("integer literal"));
        assert!(err(quote!(events = fork, priority = 1u8)).contains("suffix"));
        assert_eq!(ok(quote!(events = fork, priority = -1i32)).priority, -1);
    }

    #[test]
    fn errors_accumulate() {
        let message = err(quote!(events = exot | fork | fork, priorty = 1, name = ""));
        assert!(message.contains("did you mean `exit`"), "{message}");
        let count = error_count(quote!(events = exot | fork | fork, priorty = 1, name = ""));
        assert_eq!(count, Some(4));
    }

    /// `tokens` in the invisible group that `macro_rules!` puts around a fragment.
    fn invisible(tokens: TokenStream) -> proc_macro2::Group {
        proc_macro2::Group::new(proc_macro2::Delimiter::None, tokens)
    }

    #[test]
    fn fragments_in_invisible_groups() {
        let name = invisible(quote!("from a fragment"));
        let priority = invisible(quote!(-7));
        let args = ok(quote!(events = fork, name = #name, priority = #priority));
        assert_eq!(
            args.name.map(|n| n.value()).as_deref(),
            Some("from a fragment")
        );
        assert_eq!(args.priority, -7);

        let magnitude = invisible(quote!(7));
        assert_eq!(
            ok(quote!(events = fork, priority = -#magnitude)).priority,
            -7
        );
        let nested = invisible(quote!(#magnitude));
        assert_eq!(ok(quote!(events = fork, priority = #nested)).priority, 7);

        let not_a_string = invisible(quote!(5));
        assert!(err(quote!(events = fork, name = #not_a_string)).contains("string literal"));
        let too_big = invisible(quote!(-2147483649));
        assert!(err(quote!(events = fork, priority = #too_big)).contains("-2147483649 is out"));
    }

    #[test]
    fn leading_plus() {
        assert_eq!(
            err(quote!(events = fork, priority = +5)),
            "a priority has no leading `+`: write `priority = 5`"
        );
        assert!(err(quote!(events = fork, priority = +x)).contains("write the number alone"));
        assert!(err(quote!(events = fork, priority = +5 + 1)).contains("write the number alone"));
    }

    #[test]
    fn events_as_paths() {
        let message = err(quote!(events = EventSet::FORK | exit));
        assert!(
            message.starts_with(
                "the events are bare names, not paths: write `fork` instead of `EventSet::FORK`"
            ),
            "{message}"
        );
        assert!(
            err(quote!(events = ::watchers_core::EventSet::EXIT))
                .contains("write `exit` instead of `::watchers_core::EventSet::EXIT`")
        );
        assert!(err(quote!(events = EventSet::EXITED)).contains("did you mean `exit`?"));
        let count = error_count(quote!(events = EventSet::FORK | EventSet::EXIT));
        assert_eq!(count, Some(2));
    }

    #[test]
    fn errors_before_a_syntax_error_are_kept() {
        let count = error_count(quote!(events = exot | fork exit));
        assert_eq!(count, Some(2));
    }

    #[test]
    fn missing() {
        assert!(err(quote!()).contains("needs the events"));
        assert!(err(quote!(priority = 1)).contains("add `events = ...`"));
        assert!(err(quote!(events = )).contains("empty"));
        assert!(err(quote!(events)).contains("expected `=`"));
        assert!(err(quote!(events = fork |)).contains("after `|`"));
        assert!(err(quote!(events = fork exit)).contains("expected `|`"));
        assert!(err(quote!(events = fork, exit)).contains("did you mean `events = fork | exit`"));
    }
}
