//! The DNS side of this server's own MTA-STS policy: the records an
//! operator publishes next to the policy the HTTPS listener serves, printed
//! by `mailtls-server dns-records`.
//!
//! The texts come from [`mailtls_policy::own_domain::Publication`], the same
//! value the web listener serves the policy from, so the `id` in the
//! `_mta-sts` record always belongs to the policy actually served.

use crate::config::Config;

/// TTL used in the printed zone lines unless another is asked for.
pub const DEFAULT_TTL: u32 = 3600;

/// The records for every domain in `[mta_sts]` as a zone-file fragment:
/// per domain, comments naming the policy URL, each record's owner and
/// text, and the host that still needs address records, then the zone
/// lines themselves (`_mta-sts` TXT, and `_smtp._tls` TXT when
/// `[tls_rpt] rua` is set). Empty when no domain is configured.
pub fn dns_records(config: &Config, ttl: u32) -> String {
    let mut out = String::new();
    for p in &config.mta_sts.publications {
        out.push_str(&format!("; MTA-STS (RFC 8461) for {}\n", p.domain));
        out.push_str(&format!(
            ";   policy {} (mode {}, max_age {})\n",
            p.policy_url(),
            p.policy.mode(),
            p.policy.max_age()
        ));
        out.push_str(&format!(
            ";   {} TXT {}\n",
            p.sts_record_name(),
            p.sts_record()
        ));
        match p.tlsrpt_record() {
            Some(t) => out.push_str(&format!(";   {} TXT {t}\n", p.tlsrpt_record_name())),
            None => out.push_str(";   no TLS-RPT record: set [tls_rpt] rua to get reports\n"),
        }
        out.push_str(&format!(
            ";   mta-sts.{}. also needs A/AAAA records for this server's HTTPS listener (port 443 for senders)\n",
            p.domain
        ));
        for line in p.zone_lines(ttl) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_follow_the_configuration() {
        let c = Config::from_toml_str(
            "[mta_sts]\ndomains = [\"a.example\"]\n[tls_rpt]\nrua = [\"mailto:r@a.example\"]\n",
        )
        .unwrap();
        let text = dns_records(&c, 300);
        let p = &c.mta_sts.publications[0];
        assert!(
            text.contains(&format!(
                "_mta-sts.a.example. 300 IN TXT \"v=STSv1; id={}\"\n",
                p.id.as_str()
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "_smtp._tls.a.example. 300 IN TXT \"v=TLSRPTv1; rua=mailto:r@a.example\"\n"
            ),
            "{text}"
        );
        let none = Config::from_toml_str("[mta_sts]\ndomains = []\n").unwrap();
        assert_eq!(dns_records(&none, 300), "");
    }
}
