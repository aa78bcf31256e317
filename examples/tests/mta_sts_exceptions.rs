//! `[outbound] mta_sts_exceptions`: domains MTA-STS is not applied to, as
//! MDaemon offers. Read at start, reloaded without a restart, shown on the
//! status page; a bad name is refused naming its key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{start, status_json};
use mailtls_core::DnsName;
use mailtls_examples::Config;

fn exceptions(status: &serde_json::Value) -> Vec<String> {
    status["outbound"]["mta_sts_exceptions"]
        .as_array()
        .unwrap_or_else(|| panic!("{status:#}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exception_list_is_shown_and_reloaded_without_a_restart() {
    let ts = start(|c, _| {
        c.web.mode = mailtls_core::WebSecurity::HttpAndHttps;
        c.outbound.enabled = true;
        c.outbound.mta_sts_exceptions = vec![DnsName::parse("legacy.example").unwrap()];
    })
    .await;
    assert_eq!(exceptions(&status_json(&ts).await), ["legacy.example"]);

    let mut new = ts.server.config().clone();
    new.outbound.mta_sts_exceptions = vec![
        DnsName::parse("partner.example").unwrap(),
        DnsName::parse("other.example").unwrap(),
    ];
    let report = ts.server.reload(new).await.unwrap();
    assert!(
        report
            .applied
            .contains(&"outbound.mta_sts_exceptions".to_owned()),
        "{report:?}"
    );
    assert!(report.restart_required.is_empty(), "{report:?}");
    assert_eq!(
        exceptions(&status_json(&ts).await),
        ["other.example", "partner.example"]
    );
}

#[test]
fn a_bad_exception_names_its_key() {
    let text = mailtls_examples::config::DEFAULT_CONFIG_TOML.replace(
        "mta_sts_exceptions = []",
        "mta_sts_exceptions = [\"good.example\", \"bad..example\"]",
    );
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(err.contains("outbound.mta_sts_exceptions[1]"), "{err}");
}
