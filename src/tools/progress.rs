//! How far a running call got, for a client that asked to be told: MCP
//! sends it as `notifications/progress` (the server forwards the reports,
//! at a bounded rate: `server::progress`). A tool reports as it goes
//! through [`ToolContext::progress`](super::ToolContext); a call whose
//! client asked for nothing has no reporter, and reporting costs it one
//! branch.
//!
//! What the numbers count:
//! - `execute_sales_query`: rows fetched so far (within the caps), of at
//!   most the row cap; the last report is the row count returned, of
//!   itself.
//! - the other tools: steps. "query sent" (1 of 2), then the row count (2
//!   of 2); a tool that embeds its text first reports "embedding the query"
//!   (1 of 3), "query embedded; searching" (2 of 3), then the row count.

use tokio::sync::watch;

/// One report: the stage, how far, and of how much when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    pub stage: Stage,
    pub progress: u64,
    pub total: Option<u64>,
}

/// What the call is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nothing reported yet.
    Started,
    /// Embedding the text it searches by.
    Embedding,
    /// Its statement went to PostgreSQL.
    QuerySent,
    /// Its text is embedded and the search went to PostgreSQL.
    Searching,
    /// Raw SQL: rows are arriving.
    Fetching,
    /// Answered: `rows` rows, when the tool answers with rows.
    Done { rows: Option<u64> },
}

impl Update {
    /// The words a client shows for this report.
    pub fn message(&self) -> String {
        match self.stage {
            Stage::Started => "started".to_owned(),
            Stage::Embedding => "embedding the query".to_owned(),
            Stage::QuerySent => "query sent".to_owned(),
            Stage::Searching => "query embedded; searching".to_owned(),
            Stage::Fetching => match self.total {
                Some(cap) => format!("{} rows fetched (at most {cap})", self.progress),
                None => format!("{} rows fetched", self.progress),
            },
            Stage::Done { rows: Some(1) } => "1 row".to_owned(),
            Stage::Done { rows: Some(rows) } => format!("{rows} rows"),
            Stage::Done { rows: None } => "done".to_owned(),
        }
    }
}

/// Where a running call reports; shared with the task that runs it.
#[derive(Debug)]
pub struct Reporter {
    latest: watch::Sender<Update>,
}

impl Reporter {
    /// A reporter, and the receiving end that sees its latest report.
    pub fn new() -> (Reporter, watch::Receiver<Update>) {
        let (latest, receiver) = watch::channel(Update {
            stage: Stage::Started,
            progress: 0,
            total: None,
        });
        (Reporter { latest }, receiver)
    }

    /// Replaces the latest report: nothing waits, nothing is allocated.
    pub fn report(&self, update: Update) {
        self.latest.send_replace(update);
    }

    /// The latest report.
    pub fn latest(&self) -> Update {
        *self.latest.borrow()
    }

    /// The text is being embedded.
    pub fn embedding(&self) {
        self.report(Update {
            stage: Stage::Embedding,
            progress: 1,
            total: Some(3),
        });
    }

    /// The statement went to PostgreSQL: step 1 of 2, or, after embedding,
    /// 2 of 3.
    pub fn query_sent(&self) {
        let update = if self.latest().stage == Stage::Embedding {
            Update {
                stage: Stage::Searching,
                progress: 2,
                total: Some(3),
            }
        } else {
            Update {
                stage: Stage::QuerySent,
                progress: 1,
                total: Some(2),
            }
        };
        self.report(update);
    }

    /// Raw SQL: its statement went to PostgreSQL; no row yet, of at most `cap`.
    pub fn rows_expected(&self, cap: usize) {
        self.report(Update {
            stage: Stage::QuerySent,
            progress: 0,
            total: Some(cap as u64),
        });
    }

    /// Raw SQL: `rows` rows fetched so far, of at most `cap`.
    pub fn rows_fetched(&self, rows: usize, cap: usize) {
        self.report(Update {
            stage: Stage::Fetching,
            progress: rows as u64,
            total: Some(cap as u64),
        });
    }

    /// The last report of a call answered with `rows` rows: raw SQL's
    /// counts rows (the row count, of itself), the others' the last step.
    pub fn done(&self, counts_rows: bool, rows: Option<u64>) -> Update {
        let stage = Stage::Done { rows };
        if counts_rows {
            let rows = rows.unwrap_or(0);
            return Update {
                stage,
                progress: rows,
                total: Some(rows),
            };
        }
        let steps = self.latest().total.unwrap_or(1);
        Update {
            stage,
            progress: steps,
            total: Some(steps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_count_up_to_their_total_and_say_what_happened() {
        let (reporter, _seen) = Reporter::new();
        reporter.query_sent();
        assert_eq!(reporter.latest().message(), "query sent");
        assert_eq!(
            (reporter.latest().progress, reporter.latest().total),
            (1, Some(2))
        );
        let done = reporter.done(false, Some(3));
        assert_eq!((done.progress, done.total), (2, Some(2)));
        assert_eq!(done.message(), "3 rows");

        let (reporter, _seen) = Reporter::new();
        reporter.embedding();
        reporter.query_sent();
        assert_eq!(reporter.latest().message(), "query embedded; searching");
        assert_eq!(
            (reporter.latest().progress, reporter.latest().total),
            (2, Some(3))
        );
        let done = reporter.done(false, Some(1));
        assert_eq!(
            (done.progress, done.total, done.message().as_str()),
            (3, Some(3), "1 row")
        );
    }

    #[test]
    fn raw_sql_counts_rows_against_the_cap_and_ends_at_the_row_count() {
        let (reporter, _seen) = Reporter::new();
        reporter.rows_expected(500);
        assert_eq!(reporter.latest().message(), "query sent");
        reporter.rows_fetched(120, 500);
        assert_eq!(
            reporter.latest().message(),
            "120 rows fetched (at most 500)"
        );
        let done = reporter.done(true, Some(120));
        assert_eq!((done.progress, done.total), (120, Some(120)));
        assert_eq!(done.message(), "120 rows");
    }
}
