//! When to send: once per UTC day per policy domain, after the day is over,
//! at a point spread over a window (RFC 8460 §4.1 asks senders not to all
//! send at midnight), and only when there was traffic.

use std::time::Duration;

use time::{Date, OffsetDateTime, Time};

use super::collector::{Aggregate, sum_counts};

/// The sending window and filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// How long after the end of the UTC day the window opens.
    pub window_start: Duration,
    /// How long the window is; each domain gets a fixed point inside it.
    pub window: Duration,
    /// Send only reports that contain at least one failure.
    pub only_with_failures: bool,
}

impl Default for Schedule {
    /// From 00:30 to 04:30 UTC the next day, every domain with traffic.
    fn default() -> Self {
        Self {
            window_start: Duration::from_secs(30 * 60),
            window: Duration::from_secs(4 * 3600),
            only_with_failures: false,
        }
    }
}

/// What to do with one (day, domain) that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Build and send the report.
    Send {
        /// The UTC day.
        day: Date,
        /// The policy domain.
        domain: String,
    },
    /// Nothing to send under this schedule (no failures while
    /// `only_with_failures`): forget the counts.
    Skip {
        /// The UTC day.
        day: Date,
        /// The policy domain.
        domain: String,
    },
}

impl Schedule {
    /// The moment the report for `domain` covering `day` is due. The offset
    /// inside the window is derived from the domain name, so it is the same
    /// on every node and every day, and domains spread evenly.
    pub fn send_at(&self, day: Date, domain: &str) -> OffsetDateTime {
        let next_midnight = day
            .next_day()
            .unwrap_or(day)
            .with_time(Time::MIDNIGHT)
            .assume_utc();
        let window = self.window.as_secs().max(1);
        let digest = crate::crypto::sha256(domain.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let offset = u64::from_be_bytes(first) % window;
        next_midnight + self.window_start + Duration::from_secs(offset)
    }

    /// Every (day, domain) in `agg` whose report is due at `now`.
    pub fn due(&self, agg: &Aggregate, now: OffsetDateTime) -> Vec<Due> {
        let today = now.date();
        agg.grouped()
            .into_iter()
            .filter(|((day, domain), _)| *day < today && self.send_at(*day, domain) <= now)
            .filter_map(|((day, domain), tuples)| {
                let (ok, failed) = sum_counts(tuples.into_iter());
                let domain = domain.to_owned();
                if ok == 0 && failed == 0 {
                    None
                } else if self.only_with_failures && failed == 0 {
                    Some(Due::Skip { day, domain })
                } else {
                    Some(Due::Send { day, domain })
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result_type::{PolicyType, ResultType};
    use crate::tlsrpt::collector::{FailureKey, PolicyKey, TupleKey};
    use time::macros::{date, datetime};

    fn key(domain: &str, day: Date, failed: bool) -> TupleKey {
        TupleKey {
            day,
            policy: PolicyKey {
                policy_type: PolicyType::Sts,
                domain: domain.into(),
                strings: vec![],
                mx_hosts: vec![],
            },
            failure: failed.then(|| FailureKey {
                result_type: ResultType::ValidationFailure,
                sending_mta_ip: None,
                receiving_ip: None,
                receiving_mx_hostname: "mx".into(),
                receiving_mx_helo: None,
                failure_reason_code: None,
                additional_information: None,
            }),
        }
    }

    #[test]
    fn send_times_are_spread_inside_the_window_and_stable() {
        let s = Schedule::default();
        let day = date!(2026 - 11 - 24);
        let open = datetime!(2026-11-25 00:30 UTC);
        let mut distinct = std::collections::BTreeSet::new();
        for i in 0..200 {
            let d = format!("d{i}.example");
            let t = s.send_at(day, &d);
            assert!(t >= open && t < open + time::Duration::hours(4), "{t}");
            assert_eq!(t, s.send_at(day, &d));
            distinct.insert(t);
        }
        assert!(
            distinct.len() > 150,
            "times should be spread, got {}",
            distinct.len()
        );
    }

    #[test]
    fn due_only_after_the_day_and_with_traffic() {
        let mut agg = Aggregate::default();
        let day = date!(2026 - 11 - 24);
        agg.add(key("ok.example", day, false), 4);
        agg.add(key("bad.example", day, true), 1);
        agg.add(key("ok.example", date!(2026 - 11 - 25), false), 4);
        let s = Schedule::default();
        assert!(s.due(&agg, datetime!(2026-11-24 23:59 UTC)).is_empty());
        let late = datetime!(2026-11-25 05:00 UTC);
        let mut due = s.due(&agg, late);
        due.sort_by_key(|d| format!("{d:?}"));
        assert_eq!(
            due,
            [
                Due::Send {
                    day,
                    domain: "bad.example".into()
                },
                Due::Send {
                    day,
                    domain: "ok.example".into()
                }
            ]
        );
        let strict = Schedule {
            only_with_failures: true,
            ..s
        };
        assert!(strict.due(&agg, late).contains(&Due::Skip {
            day,
            domain: "ok.example".into()
        }));
    }
}
