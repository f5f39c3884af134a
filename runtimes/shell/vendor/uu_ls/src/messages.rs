// WASMBOX_HOOKS: ls's own English messages.
//
// uucore embeds a utility's messages at build time from that utility's crate as unpacked in the
// cargo registry next to uucore. This crate replaces the registry's `uu_ls` through
// `[patch.crates-io]`, so on a machine that never downloaded the original, uucore had no `ls-*`
// messages and `ls` printed raw message ids ("ls-error-cannot-access-no-such-file"). The
// vendored crate therefore carries its own messages; ids it does not define (the common
// `common-*` ones) still come from uucore.

use fluent::{FluentArgs, FluentBundle, FluentResource};

const EN_US: &str = include_str!("../locales/en-US.ftl");

thread_local! {
    static BUNDLE: Option<FluentBundle<FluentResource>> = bundle();
}

fn bundle() -> Option<FluentBundle<FluentResource>> {
    let resource = FluentResource::try_new(EN_US.to_string()).unwrap_or_else(|(partial, _)| partial);
    let mut bundle = FluentBundle::new(vec!["en-US".parse().ok()?]);
    // As uucore does: no Unicode directional isolates around arguments.
    bundle.set_use_isolating(false);
    bundle.add_resource(resource).ok()?;
    Some(bundle)
}

/// The message `id` formatted with `args`, from ls's own strings or else uucore's.
pub(crate) fn message(id: &str, args: Option<FluentArgs>) -> String {
    let own = BUNDLE.with(|bundle| {
        let bundle = bundle.as_ref()?;
        let pattern = bundle.get_message(id)?.value()?;
        let mut errors = Vec::new();
        Some(
            bundle
                .format_pattern(pattern, args.as_ref(), &mut errors)
                .into_owned(),
        )
    });
    match (own, args) {
        (Some(text), _) => text,
        (None, Some(args)) => uucore::locale::get_message_with_args(id, args),
        (None, None) => uucore::locale::get_message(id),
    }
}

/// uucore's `translate!`, looking in [`message`] first; arguments that are numbers are passed
/// as numbers, as uucore passes them.
macro_rules! translate {
    ($id:expr) => {
        $crate::messages::message($id, None)
    };
    ($id:expr, $($key:expr => $value:expr),+ $(,)?) => {{
        let mut args = fluent::FluentArgs::new();
        $(
            let value = $value.to_string();
            if let Some(number) = uucore::locale::exact_fluent_integer(&value) {
                args.set($key, number);
            } else if uucore::locale::is_integer_literal(&value) {
                args.set($key, value);
            } else if let Ok(number) = value.parse::<f64>() {
                args.set($key, number);
            } else {
                args.set($key, value);
            }
        )+
        $crate::messages::message($id, Some(args))
    }};
}
