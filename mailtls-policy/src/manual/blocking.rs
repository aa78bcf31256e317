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
//! | `Collector::open`, `Collector::record`, `flush`, `sync`, `forget_*`, `add_counts`, `subtract` | yes: `record` does one `write(2)` (or none with `Durability::Buffered` or `Collector::in_memory`), `open` reads and compacts the log | none; call `record` from the delivery path, `open` at startup |
//! | `Collector::flush_to` | no (async) | the local log rewrite in `spawn_blocking`; the store's own I/O is the store's |
//! | `LocalCounters` (`CounterStore`) | no (async) | log writes in `spawn_blocking` |
//! | `queue_due_reports` | no (async) | through the `CounterStore` and the outbox's store |
//! | `Outbox::open`, `FileOutbox::open` | yes: create the directories (startup) | none |
//! | `Outbox::enqueue`, `pending`, `undeliverable`, `recently_sent`, `deliver_due` | no (async) | `FileOutbox` does each file step in `spawn_blocking`; delivery through the async `DeliverReport` |
//! | `PolicyCache::with_store` | no (async) | the file store reads in `spawn_blocking` |
//! | `HickoryResolver` (feature `hickory`) | `new` reads `/etc/resolv.conf` and a trust-anchor file | hickory spawns its connection tasks on the current tokio runtime |
//! | `PolicyFetcher`, `HttpsPoster` (features `fetch`, `tlsrpt-deliver`) | no | reqwest runs its connection pool on the current tokio runtime |
//! | `SmtpSubmitter` (feature `tlsrpt-deliver`) | no | lettre's tokio transport |
