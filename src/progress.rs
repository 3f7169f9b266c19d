//! The one look of the progress bars of long operations (seeding, the
//! embedding backfill), drawn on stderr.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `total` steps: `what` names them (`rows`, `products`) after
/// `{human_pos}/{human_len}`; `prefix` leads the line. Hidden when not
/// `visible`.
pub(crate) fn bar(visible: bool, total: u64, prefix: &str, what: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{prefix} [{{bar:40}}] {{human_pos}}/{{human_len}} {what}, {{per_sec}}, eta {{eta}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_templates_of_seeding_and_the_backfill_are_valid() {
        for (prefix, what) in [("{msg:>20}", "rows"), ("embedding", "products")] {
            let bar = super::bar(true, 10, prefix, what);
            bar.inc(3);
            assert_eq!(bar.position(), 3);
            bar.finish_and_clear();
        }
        assert!(super::bar(false, 10, "x", "rows").is_hidden());
    }
}
