//! Reading the TSIG key file of `acme.tsig_key_file` in the two forms DNS
//! operators already have: BIND's `key` clause (what `tsig-keygen` and
//! `knotc`-side tooling export) and `nsupdate -y`'s `ALG:NAME:SECRET`.

use mailtls_acme::solver::TsigKey;

/// The key's name, algorithm and base64 secret as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TsigKeyText {
    pub(crate) name: String,
    pub(crate) algorithm: String,
    pub(crate) secret_b64: String,
}

impl TsigKeyText {
    /// The key for the updater; only HMAC-SHA256 is supported there.
    pub(crate) fn into_key(self) -> Result<TsigKey, String> {
        if !self.algorithm.eq_ignore_ascii_case("hmac-sha256") {
            return Err(format!(
                "key {} uses {}; only hmac-sha256 is supported",
                self.name, self.algorithm
            ));
        }
        TsigKey::hmac_sha256(self.name, &self.secret_b64).map_err(|e| e.to_string())
    }
}

/// Parses either form; the error says what is missing.
pub(crate) fn parse(text: &str) -> Result<TsigKeyText, String> {
    let trimmed = text.trim();
    if trimmed.starts_with("key") {
        parse_bind(trimmed)
    } else {
        parse_colon(trimmed)
    }
}

/// `key "NAME" { algorithm hmac-sha256; secret "BASE64"; };`
fn parse_bind(text: &str) -> Result<TsigKeyText, String> {
    // Comments (`#`, `//`) never hold the key; drop them line by line.
    let cleaned: String = text
        .lines()
        .map(|l| {
            let l = l.split('#').next().unwrap_or("");
            l.split("//").next().unwrap_or("")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let rest = cleaned
        .trim_start()
        .strip_prefix("key")
        .ok_or("no key clause")?;
    let (name_part, body) = rest.split_once('{').ok_or("no { after the key name")?;
    let name = name_part.trim().trim_matches('"').trim_end_matches('.');
    if name.is_empty() {
        return Err("the key clause has no name".into());
    }
    let body = body.split('}').next().unwrap_or("");
    let mut algorithm = None;
    let mut secret = None;
    for stmt in body.split(';') {
        let stmt = stmt.trim();
        if let Some(v) = stmt.strip_prefix("algorithm") {
            algorithm = Some(v.trim().trim_matches('"').to_owned());
        } else if let Some(v) = stmt.strip_prefix("secret") {
            secret = Some(v.trim().trim_matches('"').to_owned());
        }
    }
    Ok(TsigKeyText {
        name: name.to_owned(),
        algorithm: algorithm.ok_or("the key clause has no algorithm")?,
        secret_b64: secret.ok_or("the key clause has no secret")?,
    })
}

/// `[ALG:]NAME:SECRET` (the algorithm defaults to hmac-sha256 here, not
/// nsupdate's hmac-md5, which nobody should still use).
fn parse_colon(text: &str) -> Result<TsigKeyText, String> {
    let line = text.lines().next().unwrap_or("").trim();
    let parts: Vec<&str> = line.split(':').collect();
    let (algorithm, name, secret) = match parts.as_slice() {
        [alg, name, secret] => (*alg, *name, *secret),
        [name, secret] => ("hmac-sha256", *name, *secret),
        _ => {
            return Err("neither a BIND key clause nor ALGORITHM:NAME:SECRET on one line".into());
        }
    };
    if name.is_empty() || secret.is_empty() {
        return Err("empty key name or secret".into());
    }
    Ok(TsigKeyText {
        name: name.trim_end_matches('.').to_owned(),
        algorithm: algorithm.to_owned(),
        secret_b64: secret.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bind_clause_as_tsig_keygen_writes_it() {
        let text = "key \"acme-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"q0OQ3TxZQ6C9aqnh6GJUsnRiJ8VHhyMkYwdD3xFZRmk=\";\n};\n";
        let k = parse(text).unwrap();
        assert_eq!(k.name, "acme-update");
        assert_eq!(k.algorithm, "hmac-sha256");
        assert_eq!(k.secret_b64, "q0OQ3TxZQ6C9aqnh6GJUsnRiJ8VHhyMkYwdD3xFZRmk=");
        k.into_key().unwrap();
    }

    #[test]
    fn colon_form_and_errors() {
        let k = parse("hmac-sha256:upd.example.:c2VjcmV0c2VjcmV0\n").unwrap();
        assert_eq!(k.name, "upd.example");
        let k = parse("upd:c2VjcmV0").unwrap();
        assert_eq!(k.algorithm, "hmac-sha256");
        let e = parse("hmac-md5:upd:c2VjcmV0")
            .unwrap()
            .into_key()
            .unwrap_err();
        assert!(e.contains("hmac-md5"), "{e}");
        assert!(parse("garbage").is_err());
        assert!(
            parse("key \"k\" { algorithm hmac-sha256; };")
                .unwrap_err()
                .contains("secret")
        );
        assert!(parse("hmac-sha256:k:%%%").unwrap().into_key().is_err());
    }
}
