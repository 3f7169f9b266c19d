//! What the limits are: rates, caps, overrides per role or scope, and the
//! flags that set them.

use std::collections::HashMap;
use std::str::FromStr;

use super::Budget;

/// Calls per second with a burst: a token bucket of `burst` tokens that
/// refills at `per_second`.
// Field order matters: the derived order compares the rate, then the burst,
// which is what "more generous" means between two rates.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate {
    pub(super) per_second: f64,
    pub(super) burst: u32,
}

impl Rate {
    pub fn new(per_second: f64, burst: u32) -> Result<Rate, String> {
        if !(0.001..=1_000_000.0).contains(&per_second) {
            return Err(format!(
                "calls per second must be between 0.001 and 1000000, got {per_second}"
            ));
        }
        if !(1..=1_000_000).contains(&burst) {
            return Err(format!(
                "the burst must be between 1 and 1000000, got {burst}"
            ));
        }
        Ok(Rate { per_second, burst })
    }
}

/// `CALLS_PER_SEC[:BURST]`; the burst defaults to one second's calls.
impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Rate, String> {
        let (rate, burst) = match text.split_once(':') {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (text, None),
        };
        let per_second: f64 = rate.trim().parse().map_err(|_| {
            format!("`{text}` is not CALLS_PER_SEC[:BURST] (e.g. 20, 20:40 or 0.5:2), or `off`")
        })?;
        let burst = match burst {
            Some(burst) => burst
                .trim()
                .parse()
                .map_err(|_| format!("the burst of `{text}` must be a whole number of calls"))?,
            None if per_second.is_finite() => per_second.ceil().clamp(1.0, 1_000_000.0) as u32,
            None => 1,
        };
        Rate::new(per_second, burst)
    }
}

/// Calls running at once, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Concurrency(pub(super) u32);

impl Concurrency {
    pub fn new(calls: u32) -> Result<Concurrency, String> {
        if calls == 0 {
            return Err("at least 1 call must be allowed at once (or `off`)".to_owned());
        }
        Ok(Concurrency(calls))
    }
}

impl FromStr for Concurrency {
    type Err = String;

    fn from_str(text: &str) -> Result<Concurrency, String> {
        let calls = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a number of calls, or `off`"))?;
        Concurrency::new(calls)
    }
}

/// A limit, or none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit<T> {
    Off,
    On(T),
}

impl<T: PartialOrd + Copy> Limit<T> {
    /// The more generous of two limits: none beats any.
    pub(super) fn more_generous(self, other: Limit<T>) -> Limit<T> {
        match (self, other) {
            (Limit::On(a), Limit::On(b)) => Limit::On(if b > a { b } else { a }),
            _ => Limit::Off,
        }
    }
}

/// `off`, or the limit itself.
impl<T: FromStr<Err = String>> FromStr for Limit<T> {
    type Err = String;

    fn from_str(text: &str) -> Result<Limit<T>, String> {
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(Limit::Off);
        }
        text.parse().map(Limit::On)
    }
}

/// A role or scope and its limit: `LABEL=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled<T> {
    pub label: String,
    pub limit: Limit<T>,
}

impl<T: FromStr<Err = String>> FromStr for Labelled<T> {
    type Err = String;

    fn from_str(text: &str) -> Result<Labelled<T>, String> {
        // the value never holds `=`; a label might
        let Some((label, limit)) = text.rsplit_once('=') else {
            return Err(format!(
                "`{text}` is not LABEL=LIMIT (a role or scope, e.g. analyst=5:10)"
            ));
        };
        let label = label.trim();
        if label.is_empty() {
            return Err(format!("`{text}` names no role or scope before `=`"));
        }
        Ok(Labelled {
            label: label.to_owned(),
            limit: limit.parse().map_err(|err| format!("{label}: {err}"))?,
        })
    }
}

/// One limit: for everyone, and for callers who hold certain labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ByLabel<T> {
    pub global: Limit<T>,
    pub labels: HashMap<String, Limit<T>>,
}

impl<T> Default for ByLabel<T> {
    fn default() -> ByLabel<T> {
        ByLabel {
            global: Limit::Off,
            labels: HashMap::new(),
        }
    }
}

impl<T: PartialOrd + Copy> ByLabel<T> {
    /// `global` and the overrides of `flag`, each label at most once.
    pub fn new(flag: &str, global: Limit<T>, overrides: &[Labelled<T>]) -> anyhow::Result<Self> {
        let mut labels = HashMap::new();
        for Labelled { label, limit } in overrides {
            if labels.insert(label.clone(), *limit).is_some() {
                anyhow::bail!("{flag} names `{label}` twice");
            }
        }
        Ok(ByLabel { global, labels })
    }

    /// The most generous limit among the caller's labels that set one,
    /// else the global one.
    pub(super) fn for_labels(&self, labels: &[&str]) -> Limit<T> {
        labels
            .iter()
            .filter_map(|label| self.labels.get(*label).copied())
            .reduce(Limit::more_generous)
            .unwrap_or(self.global)
    }

    pub(super) fn is_off(&self) -> bool {
        self.global == Limit::Off && self.labels.values().all(|limit| *limit == Limit::Off)
    }
}

/// The limits of one budget.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetSettings {
    pub rate: ByLabel<Rate>,
    pub concurrent: ByLabel<Concurrency>,
}

/// Every limit; the default is none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// Every tool call, raw SQL included.
    pub all_tools: BudgetSettings,
    /// `execute_sales_query` calls, on top of `all_tools`.
    pub raw_sql: BudgetSettings,
}

impl Settings {
    pub(super) fn budget(&self, budget: Budget) -> &BudgetSettings {
        match budget {
            Budget::AllTools => &self.all_tools,
            Budget::RawSql => &self.raw_sql,
        }
    }
}

/// The command line's rate-limit flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// Calls per second each caller may make, all tools together, with a
    /// burst (by default one second's calls), e.g. 20:40; `off`: no limit.
    #[arg(
        long,
        env = "SQLMCP_RATE_LIMIT",
        value_name = "CALLS_PER_SEC[:BURST]",
        default_value = "off"
    )]
    rate_limit: Limit<Rate>,
    /// --rate-limit for callers holding a role or scope, e.g. batch=100:100
    /// (repeatable, or comma-separated); the most generous of a caller's applies.
    #[arg(
        long,
        env = "SQLMCP_RATE_LIMIT_FOR",
        value_name = "LABEL=CALLS_PER_SEC[:BURST]",
        value_delimiter = ','
    )]
    rate_limit_for: Vec<Labelled<Rate>>,
    /// Calls per second each caller may make to execute_sales_query (raw SQL),
    /// which count against --rate-limit too, e.g. 2:4; `off`: no limit of its own.
    #[arg(
        long,
        env = "SQLMCP_RAW_SQL_RATE_LIMIT",
        value_name = "CALLS_PER_SEC[:BURST]",
        default_value = "off"
    )]
    raw_sql_rate_limit: Limit<Rate>,
    /// --raw-sql-rate-limit for callers holding a role or scope.
    #[arg(
        long,
        env = "SQLMCP_RAW_SQL_RATE_LIMIT_FOR",
        value_name = "LABEL=CALLS_PER_SEC[:BURST]",
        value_delimiter = ','
    )]
    raw_sql_rate_limit_for: Vec<Labelled<Rate>>,
    /// Calls each caller may have running at once, all tools together; `off`: no cap.
    #[arg(
        long,
        env = "SQLMCP_MAX_CONCURRENT_CALLS",
        value_name = "CALLS",
        default_value = "off"
    )]
    max_concurrent_calls: Limit<Concurrency>,
    /// --max-concurrent-calls for callers holding a role or scope.
    #[arg(
        long,
        env = "SQLMCP_MAX_CONCURRENT_CALLS_FOR",
        value_name = "LABEL=CALLS",
        value_delimiter = ','
    )]
    max_concurrent_calls_for: Vec<Labelled<Concurrency>>,
    /// execute_sales_query calls each caller may have running at once, which
    /// count against --max-concurrent-calls too; `off`: no cap of its own.
    #[arg(
        long,
        env = "SQLMCP_MAX_CONCURRENT_RAW_SQL",
        value_name = "CALLS",
        default_value = "off"
    )]
    max_concurrent_raw_sql: Limit<Concurrency>,
    /// --max-concurrent-raw-sql for callers holding a role or scope.
    #[arg(
        long,
        env = "SQLMCP_MAX_CONCURRENT_RAW_SQL_FOR",
        value_name = "LABEL=CALLS",
        value_delimiter = ','
    )]
    max_concurrent_raw_sql_for: Vec<Labelled<Concurrency>>,
}

impl Flags {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(Settings {
            all_tools: BudgetSettings {
                rate: ByLabel::new("--rate-limit-for", self.rate_limit, &self.rate_limit_for)?,
                concurrent: ByLabel::new(
                    "--max-concurrent-calls-for",
                    self.max_concurrent_calls,
                    &self.max_concurrent_calls_for,
                )?,
            },
            raw_sql: BudgetSettings {
                rate: ByLabel::new(
                    "--raw-sql-rate-limit-for",
                    self.raw_sql_rate_limit,
                    &self.raw_sql_rate_limit_for,
                )?,
                concurrent: ByLabel::new(
                    "--max-concurrent-raw-sql-for",
                    self.max_concurrent_raw_sql,
                    &self.max_concurrent_raw_sql_for,
                )?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Limit<Rate> {
        text.parse().unwrap()
    }

    fn cap(calls: u32) -> Limit<Concurrency> {
        Limit::On(Concurrency::new(calls).unwrap())
    }

    #[test]
    fn parses_rates_limits_and_labels_and_says_what_is_wrong() {
        assert_eq!(
            "20:40".parse::<Rate>(),
            Rate::new(20.0, 40),
            "rate and burst"
        );
        assert_eq!(
            "2.5".parse::<Rate>(),
            Rate::new(2.5, 3),
            "burst: a second's"
        );
        assert_eq!(
            "0.1".parse::<Rate>(),
            Rate::new(0.1, 1),
            "burst: at least 1"
        );
        assert_eq!("off".parse::<Limit<Rate>>(), Ok(Limit::Off));
        assert_eq!("OFF".parse::<Limit<Concurrency>>(), Ok(Limit::Off));
        assert_eq!("4".parse::<Limit<Concurrency>>(), Ok(cap(4)));
        assert_eq!(
            "sales:sql=2:4".parse::<Labelled<Rate>>(),
            Ok(Labelled {
                label: "sales:sql".to_owned(),
                limit: rate("2:4"),
            }),
            "a scope with a colon"
        );
        for (text, expected) in [
            ("0", "between 0.001 and 1000000, got 0"),
            ("-1", "between 0.001 and 1000000"),
            ("NaN", "between 0.001 and 1000000"),
            ("fast", "`fast` is not CALLS_PER_SEC[:BURST]"),
            ("5:0", "the burst must be between 1 and 1000000, got 0"),
            ("5:1.5", "the burst of `5:1.5` must be a whole number"),
        ] {
            let err = text.parse::<Limit<Rate>>().unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
        for (text, expected) in [
            ("0", "at least 1 call"),
            ("many", "`many` is not a number of calls"),
        ] {
            let err = text.parse::<Limit<Concurrency>>().unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
        for (text, expected) in [
            ("analyst", "`analyst` is not LABEL=LIMIT"),
            ("=5", "names no role or scope"),
            ("analyst=", "analyst: `` is not CALLS_PER_SEC[:BURST]"),
        ] {
            let err = text.parse::<Labelled<Rate>>().unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let twice = ["analyst=1".parse().unwrap(), "analyst=off".parse().unwrap()];
        let err = ByLabel::<Rate>::new("--rate-limit-for", Limit::Off, &twice).unwrap_err();
        assert_eq!(err.to_string(), "--rate-limit-for names `analyst` twice");
    }

    fn labelled<T: FromStr<Err = String>>(pairs: &[(&str, &str)]) -> HashMap<String, Limit<T>> {
        pairs
            .iter()
            .map(|(label, limit)| ((*label).to_owned(), limit.parse().unwrap()))
            .collect()
    }

    /// The flags as `sqlmcp serve` parses them.
    fn flags(args: &[&str]) -> Result<Flags, clap::Error> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            limits: Flags,
        }
        Serve::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map(|serve| serve.limits)
    }

    #[test]
    fn the_flags_default_to_no_limits_and_set_each_budget_globally_and_per_label() {
        let none = flags(&[]).unwrap().settings().unwrap();
        assert_eq!(none, Settings::default());
        let all = flags(&[
            "--rate-limit",
            "20:40",
            "--rate-limit-for",
            "batch=off,analyst=5",
            "--rate-limit-for",
            "sales:sql=50:100",
            "--raw-sql-rate-limit",
            "2:4",
            "--raw-sql-rate-limit-for",
            "sales:sql=10",
            "--max-concurrent-calls",
            "8",
            "--max-concurrent-calls-for",
            "batch=32",
            "--max-concurrent-raw-sql",
            "2",
            "--max-concurrent-raw-sql-for",
            "batch=off",
        ])
        .unwrap()
        .settings()
        .unwrap();
        assert_eq!(
            all.all_tools,
            BudgetSettings {
                rate: ByLabel {
                    global: rate("20:40"),
                    labels: labelled(&[
                        ("batch", "off"),
                        ("analyst", "5"),
                        ("sales:sql", "50:100")
                    ]),
                },
                concurrent: ByLabel {
                    global: cap(8),
                    labels: labelled(&[("batch", "32")]),
                },
            }
        );
        assert_eq!(
            all.raw_sql,
            BudgetSettings {
                rate: ByLabel {
                    global: rate("2:4"),
                    labels: labelled(&[("sales:sql", "10")]),
                },
                concurrent: ByLabel {
                    global: cap(2),
                    labels: labelled(&[("batch", "off")]),
                },
            }
        );
        let err = flags(&["--raw-sql-rate-limit", "0"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid value '0' for '--raw-sql-rate-limit <CALLS_PER_SEC[:BURST]>'")
                && err.contains("calls per second must be between 0.001 and 1000000, got 0"),
            "{err}"
        );
        let err = flags(&["--max-concurrent-calls-for", "batch=0"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch: at least 1 call must be allowed at once"),
            "{err}"
        );
        let err = flags(&["--rate-limit-for", "a=1,a=2"])
            .unwrap()
            .settings()
            .unwrap_err();
        assert_eq!(err.to_string(), "--rate-limit-for names `a` twice");
    }
}
