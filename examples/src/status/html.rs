//! The status report as one plain, server-rendered HTML page: no
//! JavaScript, every value escaped, one `<section id=...>` per subject so
//! people (and tests) can find each part.
//!
//! The certificate, resolver and published-policy sections are laid out
//! by hand; subsystem reports are rendered from their JSON form (objects
//! as key/value tables, lists of objects as tables), so a field a
//! subsystem adds shows up without a change here.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::{CertificateStatus, EXPIRY_WARNING_DAYS, Status};

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em 2em;color:#222}\
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}\
table{border-collapse:collapse;margin:.3em 0}th{background:#f3f3f3}\
section{margin-bottom:1.5em}nav a{margin-right:1em}\
td{max-width:26em;overflow-wrap:break-word}td:has(table){max-width:none}\
h3{font-size:1em;margin:.8em 0 .2em}\
.warn{color:#a40000;font-weight:bold}.muted{color:#777}code{font-size:90%;word-break:break-all}";

/// One section of the page: its anchor id and heading.
struct Section<'a> {
    id: &'a str,
    title: &'a str,
    body: String,
}

/// The whole page.
pub(crate) fn render(s: &Status) -> String {
    let sections = [
        Section {
            id: "certificates",
            title: "Certificates",
            body: certificates(s),
        },
        Section {
            id: "expiring",
            title: "Expiring soon",
            body: expiring(s),
        },
        Section {
            id: "acme",
            title: "ACME schedule",
            body: optional_block(s.acme.as_ref(), "acme.enabled"),
        },
        Section {
            id: "resolver",
            title: "Certificate resolver",
            body: resolver(s),
        },
        Section {
            id: "mta-sts-published",
            title: "MTA-STS policies published",
            body: published(s),
        },
        Section {
            id: "outbound",
            title: "Outbound queue",
            body: outbound(s),
        },
        Section {
            id: "mta-sts-cache",
            title: "MTA-STS policy cache",
            body: mta_sts_cache(s),
        },
        Section {
            id: "tlsrpt",
            title: "TLS-RPT",
            body: optional_block(s.tlsrpt.as_ref(), "tlsrpt_reports"),
        },
        Section {
            id: "smime",
            title: "S/MIME partner store and approvals",
            body: optional_block(s.smime.as_ref(), "smime.enabled"),
        },
        Section {
            id: "listeners",
            title: "Listeners",
            body: listeners(s),
        },
        Section {
            id: "reload",
            title: "Configuration reload",
            body: value_block(&s.reload),
        },
        Section {
            id: "auth-failures",
            title: "Failed logins",
            body: value_block(&s.auth_failures),
        },
        Section {
            id: "store",
            title: "Shared store: nodes and leases",
            body: value_block(&s.store),
        },
    ];
    let mut out = String::new();
    let host = esc(&s.hostname);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>mailtls status: {host}</title>\n<style>{STYLE}</style></head>\n<body>\n\
         <h1>mailtls reference server: {host}</h1>\n\
         <p class=\"muted\">Generated {at}. Machine-readable: <a href=\"/status.json\">status.json</a></p>\n<nav>",
        at = esc(&s.generated_at),
    );
    for sec in &sections {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", sec.id, esc(sec.title));
    }
    out.push_str("</nav>\n");
    for sec in &sections {
        let _ = write!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>\n{}</section>\n",
            sec.id,
            esc(sec.title),
            sec.body
        );
    }
    out.push_str("</body></html>\n");
    out
}

const CERT_HEAD: &str = "<tr><th>names</th><th>key</th><th>expires</th><th>days left</th>\
<th>issuer</th><th>source</th><th>SHA-256 fingerprint</th></tr>\n";

fn cert_rows(certs: &[CertificateStatus]) -> String {
    let mut out = String::new();
    for c in certs {
        // Within the warning window (or expired): flagged in red.
        let days_class = if c.days_left < i64::try_from(EXPIRY_WARNING_DAYS).unwrap_or(i64::MAX) {
            "days-left warn"
        } else {
            "days-left"
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"names\">{}</td><td>{}</td><td>{}</td><td class=\"{days_class}\">{}</td>\
             <td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&c.names.join(", ")),
            esc(&c.key_type),
            esc(&c.not_after),
            c.days_left,
            esc(&c.issuer),
            esc(&c.source),
            esc(&c.fingerprint_sha256),
        );
    }
    out
}

fn certificates(s: &Status) -> String {
    if s.certificates.is_empty() {
        return "<p class=\"warn\">No certificate is loaded.</p>\n".to_owned();
    }
    format!(
        "<table>\n{CERT_HEAD}{}</table>\n",
        cert_rows(&s.certificates)
    )
}

fn expiring(s: &Status) -> String {
    if s.expiring_soon.is_empty() {
        format!("<p>No certificate expires within {EXPIRY_WARNING_DAYS} days.</p>\n")
    } else {
        format!(
            "<p class=\"warn\">{} certificate(s) expire within {EXPIRY_WARNING_DAYS} days:</p>\n\
             <table>\n{CERT_HEAD}{}</table>\n",
            s.expiring_soon.len(),
            cert_rows(&s.expiring_soon)
        )
    }
}

fn resolver(s: &Status) -> String {
    let r = &s.resolver;
    format!(
        "<table>\n\
         <tr><th>generation</th><td>{gen}</td></tr>\n<tr><th>certificates</th><td>{count}</td></tr>\n\
         <tr><th>hits</th><td>{hits} ({exact} exact, {wild} wildcard)</td></tr>\n\
         <tr><th>misses</th><td>{misses} ({nosni} without SNI, {nomatch} unknown name, {refused} refused)</td></tr>\n\
         <tr><th>tls-alpn-01 challenges served</th><td>{challenges}</td></tr>\n\
         <tr><th>reloads</th><td>{reloads} ({failed} refused)</td></tr>\n\
         <tr><th>last reload error</th><td>{err}</td></tr>\n\
         <tr><th>served an invalid certificate</th><td>{invalid}</td></tr>\n\
         <tr><th>bad files (not served)</th><td>{bad_count}{bad}</td></tr>\n</table>\n",
        gen = r.generation,
        count = r.certificates,
        hits = r.hits,
        exact = r.exact_hits,
        wild = r.wildcard_hits,
        misses = r.misses,
        nosni = r.default_no_sni,
        nomatch = r.default_no_match,
        refused = r.refused,
        challenges = r.challenges_served,
        reloads = r.reloads,
        failed = r.failed_reloads,
        err = esc(r.last_reload_error.as_deref().unwrap_or("none")),
        invalid = r.served_invalid,
        bad_count = r.bad_file_count,
        bad = bad_file_list(&r.bad_files),
    )
}

fn bad_file_list(files: &[super::BadFileStatus]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let mut out = String::from("<ul>");
    for f in files {
        let _ = write!(
            out,
            "<li><code>{}</code>: {}</li>",
            esc(&f.file),
            esc(&f.reason)
        );
    }
    out.push_str("</ul>");
    out
}

fn published(s: &Status) -> String {
    if s.mta_sts.is_empty() {
        return "<p>No MTA-STS policy is published (<code>mta_sts.domains</code> is empty).</p>\n"
            .to_owned();
    }
    let mut rows = String::new();
    for p in &s.mta_sts {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td class=\"mode\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&p.url),
            esc(&p.mode),
            esc(&p.mx.join(", ")),
            p.max_age,
            esc(&p.id),
            esc(p.tlsrpt.as_deref().unwrap_or("none")),
        );
    }
    format!(
        "<table>\n<tr><th>policy</th><th>mode</th><th>mx</th><th>max_age (s)</th><th>id</th>\
         <th>TLS-RPT record</th></tr>\n{rows}</table>\n"
    )
}

fn listeners(s: &Status) -> String {
    let mut rows = String::new();
    for l in &s.listeners {
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.name),
            esc(&l.address),
            esc(&l.mode)
        );
    }
    format!("<table>\n<tr><th>name</th><th>address</th><th>mode</th></tr>\n{rows}</table>\n")
}

/// What a section says when its subsystem is off: the key that turns it on.
fn not_configured(key: &str) -> String {
    format!(
        "<p class=\"not-configured\">Not configured (see <code>{}</code>).</p>\n",
        esc(key)
    )
}

/// A subsystem's section: its report, or why there is none.
fn optional_block<T: Serialize>(report: Option<&T>, key: &str) -> String {
    match report {
        Some(r) => value_block(r),
        None => not_configured(key),
    }
}

/// The queue half of the outbound report (the cache has its own section).
fn outbound(s: &Status) -> String {
    let Some(o) = &s.outbound else {
        return not_configured("outbound.enabled");
    };
    match serde_json::to_value(o) {
        Ok(Value::Object(mut map)) => {
            map.remove("mta_sts_cache");
            format!("{}\n", value_html(&Value::Object(map)))
        }
        _ => value_block(o),
    }
}

fn mta_sts_cache(s: &Status) -> String {
    let Some(o) = &s.outbound else {
        return not_configured("outbound.enabled");
    };
    if o.mta_sts_cache.is_empty() {
        return "<p>No policy cached yet (policies are fetched on the first delivery to a domain).</p>\n"
            .to_owned();
    }
    let mut rows = String::new();
    for e in &o.mta_sts_cache {
        let expires = e.expires.map_or_else(
            || "<span class=\"muted\">none</span>".to_owned(),
            |secs| {
                esc(&super::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
                ))
            },
        );
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td class=\"mode\">{}</td><td>{}</td><td>{expires}</td><td>{}</td></tr>",
            esc(&e.domain),
            esc(e.mode.as_deref().unwrap_or("no policy")),
            esc(&e.mx.join(", ")),
            esc(e.last_failure.as_deref().unwrap_or("")),
        );
    }
    format!(
        "<table>\n<tr><th>domain</th><th>mode</th><th>mx</th><th>expires</th>\
         <th>last failed refresh</th></tr>\n{rows}</table>\n"
    )
}

/// Any serialisable report, through its JSON form: its simple fields in
/// one table, then each list or group under its own heading, so nested
/// tables do not squeeze into one cell.
fn value_block<T: Serialize>(report: &T) -> String {
    match serde_json::to_value(report) {
        Ok(Value::Object(map)) => {
            let nested = |v: &Value| match v {
                Value::Array(items) => items.iter().any(Value::is_object),
                Value::Object(m) => !m.is_empty(),
                _ => false,
            };
            let (groups, simple): (Vec<_>, Vec<_>) = map.into_iter().partition(|(_, v)| nested(v));
            let mut out = String::new();
            if !simple.is_empty() {
                out.push_str(&value_html(&Value::Object(simple.into_iter().collect())));
                out.push('\n');
            }
            for (k, v) in &groups {
                let _ = writeln!(out, "<h3>{}</h3>\n{}", label(k), value_html(v));
            }
            out
        }
        Ok(v) => format!("{}\n", value_html(&v)),
        Err(e) => format!(
            "<p class=\"warn\">This report cannot be shown: {}</p>\n",
            esc(&e.to_string())
        ),
    }
}

/// `days_left` reads better as "days left".
fn label(key: &str) -> String {
    esc(&key.replace('_', " "))
}

fn value_html(v: &Value) -> String {
    match v {
        Value::Null => "<span class=\"muted\">none</span>".to_owned(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => esc(s),
        Value::Object(map) if map.is_empty() => "<span class=\"muted\">none</span>".to_owned(),
        Value::Object(map) => {
            let mut out = String::from("<table>");
            for (k, v) in map {
                let _ = write!(
                    out,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    label(k),
                    value_html(v)
                );
            }
            out.push_str("</table>");
            out
        }
        Value::Array(items) if items.is_empty() => "<span class=\"muted\">none</span>".to_owned(),
        Value::Array(items) if items.iter().all(Value::is_object) => {
            // One column per key, in first-seen order.
            let mut columns: Vec<&str> = Vec::new();
            for item in items {
                if let Value::Object(map) = item {
                    for k in map.keys() {
                        if !columns.contains(&k.as_str()) {
                            columns.push(k);
                        }
                    }
                }
            }
            let mut out = String::from("<table><tr>");
            for c in &columns {
                let _ = write!(out, "<th>{}</th>", label(c));
            }
            out.push_str("</tr>");
            for item in items {
                out.push_str("<tr>");
                for c in &columns {
                    let cell = item.get(*c).map_or_else(String::new, value_html);
                    let _ = write!(out, "<td>{cell}</td>");
                }
                out.push_str("</tr>");
            }
            out.push_str("</table>");
            out
        }
        Value::Array(items) => items.iter().map(value_html).collect::<Vec<_>>().join(", "),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a&\"b\">'"), "&lt;a&amp;&quot;b&quot;&gt;&#39;");
    }

    #[test]
    fn json_reports_become_tables_with_escaped_values() {
        let v = json!({
            "queue_length": 3,
            "paused": false,
            "last_error": null,
            "domains": [
                {"domain": "a.example", "successes": 2},
                {"domain": "<b>.example", "failures": 1}
            ],
            "names": ["x.example", "y.example"],
        });
        let html = value_html(&v);
        assert!(html.contains("<th>queue length</th><td>3</td>"), "{html}");
        assert!(html.contains("<th>paused</th><td>no</td>"), "{html}");
        assert!(html.contains("<th>last error</th><td><span class=\"muted\">none</span>"));
        assert!(
            html.contains("<th>domain</th><th>successes</th><th>failures</th>"),
            "{html}"
        );
        assert!(
            html.contains("<td>a.example</td><td>2</td><td></td>"),
            "{html}"
        );
        assert!(
            html.contains("<td>&lt;b&gt;.example</td><td></td><td>1</td>"),
            "{html}"
        );
        assert!(!html.contains("<b>"));
        assert!(html.contains("x.example, y.example"));
        assert_eq!(
            optional_block::<u8>(None, "acme.enabled"),
            "<p class=\"not-configured\">Not configured (see <code>acme.enabled</code>).</p>\n"
        );
    }
}
