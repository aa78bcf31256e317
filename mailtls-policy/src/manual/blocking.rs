//! # What blocks, what spawns
//!
//! The library never blocks the async runtime in an `async fn`: file I/O
//! behind an `async fn` runs under `tokio::task::spawn_blocking`, and DNS
//! goes through the asynchronous [`DnsResolver`](crate::dns::DnsResolver).
//! The calls below are the exceptions and the places where work moves to
//! another thread or task.
//!
//! | call | blocks? | threads and tasks |
//! |---|---|---|
//! | parsing (`parse_policy`, `parse_record`, `TlsRptRecord`, `parse_received`), `plan`, `PlanVerifier` | no I/O; CPU only | none |
//! | `PolicyCache::open` | yes: reads the cache file (startup) | none |
//! | `MtaSts::policy_for`, `refresh_due` | no | after a change, one debounced save as a tokio task (`MtaSts::with_save_delay`) that writes through the cache's store (the file store uses `spawn_blocking`) |
//! | `MtaSts::save`, `PolicyCache::save` | no (async) | the file store writes in `spawn_blocking` |
//! | `Collector::open`, `Collector::record`, `flush`, `forget_*` | yes: `record` does one `write(2)` (or none with `Durability::Buffered`), `open` reads and compacts the log | none; call `record` from the delivery path, `open` at startup |
//! | `queue_due_reports` | yes: writes the outbox files | none; run it from `spawn_blocking` or a timer thread once a day |
//! | `Outbox::open`, `enqueue`, `pending`, `undeliverable`, `recently_sent` | yes: small file operations | none |
//! | `Outbox::deliver_due` | no (async) | each file step in `spawn_blocking`; delivery through the async `DeliverReport` |
//! | `PolicyCache::with_store` | no (async) | the file store reads in `spawn_blocking` |
//! | `HickoryResolver` (feature `hickory`) | `new` reads `/etc/resolv.conf` and a trust-anchor file | hickory spawns its connection tasks on the current tokio runtime |
//! | `PolicyFetcher`, `HttpsPoster` (features `fetch`, `tlsrpt-deliver`) | no | reqwest runs its connection pool on the current tokio runtime |
//! | `SmtpSubmitter` (feature `tlsrpt-deliver`) | no | lettre's tokio transport |
