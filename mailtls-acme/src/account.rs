//! Accounts (RFC 8555 §7.3): create or find, contact, terms, External Account
//! Binding, key rollover, deactivation.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::client::{AcmeClient, Response};
use crate::error::AcmeError;
use crate::key::{AccountKey, KeyRef, eab_jws, sign_jws};
use crate::types::AccountObject;

/// External Account Binding credentials the CA handed out (RFC 8555 §7.3.4).
#[derive(Clone)]
pub struct ExternalAccountBinding {
    key_id: String,
    hmac_key: Vec<u8>,
}

impl std::fmt::Debug for ExternalAccountBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalAccountBinding")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ExternalAccountBinding {
    /// Credentials from the key id and the base64url MAC key the CA gave.
    pub fn new(key_id: impl Into<String>, hmac_key_b64url: &str) -> Result<Self, AcmeError> {
        let hmac_key = URL_SAFE_NO_PAD
            .decode(hmac_key_b64url.trim().trim_end_matches('='))
            .map_err(|e| AcmeError::Config(format!("EAB MAC key is not base64url: {e}")))?;
        Ok(ExternalAccountBinding {
            key_id: key_id.into(),
            hmac_key,
        })
    }
}

/// What to send when creating an account. Start from
/// [`NewAccountOptions::new`] (nothing) or [`NewAccountOptions::with_email`]
/// and chain the `with_*` methods.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NewAccountOptions {
    /// Contact URIs, e.g. `mailto:postmaster@example.com`.
    pub contact: Vec<String>,
    /// Whether the operator agreed to the CA's terms of service.
    pub terms_of_service_agreed: bool,
    /// External Account Binding, for CAs that need it.
    pub external_account_binding: Option<ExternalAccountBinding>,
}

impl NewAccountOptions {
    /// No contact, terms not agreed, no EAB.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a contact URI (e.g. `mailto:postmaster@example.com`).
    #[must_use]
    pub fn with_contact(mut self, uri: impl Into<String>) -> Self {
        self.contact.push(uri.into());
        self
    }

    /// Records whether the operator agreed to the CA's terms of service.
    #[must_use]
    pub fn with_terms_of_service_agreed(mut self, agreed: bool) -> Self {
        self.terms_of_service_agreed = agreed;
        self
    }

    /// Binds the account to the CA's external account (RFC 8555 §7.3.4).
    #[must_use]
    pub fn with_external_account_binding(mut self, eab: ExternalAccountBinding) -> Self {
        self.external_account_binding = Some(eab);
        self
    }

    /// Options with one `mailto:` contact and the terms agreed.
    pub fn with_email(email: &str) -> Self {
        NewAccountOptions {
            contact: vec![format!("mailto:{email}")],
            terms_of_service_agreed: true,
            external_account_binding: None,
        }
    }
}

/// An account at one CA: its key and URL. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Account {
    pub(crate) client: AcmeClient,
    pub(crate) key: Arc<AccountKey>,
    pub(crate) url: String,
}

impl AcmeClient {
    /// Creates the account for `key`, or returns the existing one if the CA
    /// already knows the key (RFC 8555 §7.3.1 answers 200 then).
    pub async fn new_account(
        &self,
        key: AccountKey,
        options: &NewAccountOptions,
    ) -> Result<Account, AcmeError> {
        let url = self.directory().new_account.clone();
        let mut payload = serde_json::Map::new();
        if !options.contact.is_empty() {
            payload.insert("contact".into(), json!(options.contact));
        }
        if options.terms_of_service_agreed {
            payload.insert("termsOfServiceAgreed".into(), true.into());
        }
        if let Some(eab) = &options.external_account_binding {
            payload.insert(
                "externalAccountBinding".into(),
                eab_jws(&key.jwk(), &eab.key_id, &eab.hmac_key, &url),
            );
        }
        let resp = self
            .post(&key, KeyRef::Jwk, &url, Some(&Value::Object(payload)))
            .await?;
        Ok(Account {
            client: self.clone(),
            key: Arc::new(key),
            url: resp.location()?,
        })
    }

    /// Finds the existing account for `key` without creating one
    /// (`onlyReturnExisting`). Fails with `accountDoesNotExist` otherwise.
    pub async fn find_account(&self, key: AccountKey) -> Result<Account, AcmeError> {
        let url = self.directory().new_account.clone();
        let resp = self
            .post(
                &key,
                KeyRef::Jwk,
                &url,
                Some(&json!({"onlyReturnExisting": true})),
            )
            .await?;
        Ok(Account {
            client: self.clone(),
            key: Arc::new(key),
            url: resp.location()?,
        })
    }

    /// An account already known by its URL (from storage), without a request.
    pub fn account_from_parts(&self, key: AccountKey, url: impl Into<String>) -> Account {
        Account {
            client: self.clone(),
            key: Arc::new(key),
            url: url.into(),
        }
    }
}

impl Account {
    /// The account URL (the `kid`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The account key.
    pub fn key(&self) -> &AccountKey {
        &self.key
    }

    /// The client this account talks through.
    pub fn client(&self) -> &AcmeClient {
        &self.client
    }

    /// A signed request as this account; `None` is POST-as-GET.
    pub(crate) async fn post(
        &self,
        url: &str,
        payload: Option<&Value>,
    ) -> Result<Response, AcmeError> {
        self.client
            .post(&self.key, KeyRef::Kid(&self.url), url, payload)
            .await
    }

    /// Fetches the account object.
    pub async fn fetch(&self) -> Result<AccountObject, AcmeError> {
        self.post(&self.url, None).await?.json()
    }

    /// Replaces the contact URIs.
    pub async fn update_contact(&self, contact: &[String]) -> Result<AccountObject, AcmeError> {
        self.post(&self.url, Some(&json!({"contact": contact})))
            .await?
            .json()
    }

    /// Rolls the account over to `new_key` (RFC 8555 §7.3.5) and returns the
    /// account as it now is; the old key no longer works.
    pub async fn rollover(&self, new_key: AccountKey) -> Result<Account, AcmeError> {
        let url = self
            .client
            .directory()
            .key_change
            .clone()
            .ok_or(AcmeError::MissingDirectoryEntry("keyChange"))?;
        let inner_payload = json!({"account": self.url, "oldKey": self.key.jwk()});
        // The inner JWS is signed by the new key, carries its jwk and no nonce.
        let inner = sign_jws(&new_key, KeyRef::Jwk, None, &url, Some(&inner_payload))?;
        self.post(&url, Some(&inner)).await?;
        Ok(Account {
            client: self.client.clone(),
            key: Arc::new(new_key),
            url: self.url.clone(),
        })
    }

    /// Deactivates the account (RFC 8555 §7.3.6). Irreversible.
    pub async fn deactivate(&self) -> Result<AccountObject, AcmeError> {
        self.post(&self.url, Some(&json!({"status": "deactivated"})))
            .await?
            .json()
    }
}

impl AcmeClient {
    /// The stored account for this CA, or a new one (key of `alg`) that is
    /// then stored. The key is saved before the account is created so a
    /// crash in between cannot orphan an account (the next run finds it with
    /// the same key).
    pub async fn load_or_create_account(
        &self,
        storage: &dyn crate::storage::Storage,
        alg: crate::key::SigningAlgorithm,
        options: &NewAccountOptions,
    ) -> Result<Account, AcmeError> {
        let dir = self.directory_url().to_owned();
        if let Some(stored) = storage.load_account(&dir).await? {
            let key = AccountKey::from_pem(&stored.key_pem)?;
            if !stored.url.is_empty() {
                return Ok(self.account_from_parts(key, stored.url));
            }
            // Key saved but account creation never confirmed: create or find.
            return self.create_and_store(storage, key, options).await;
        }
        let key = AccountKey::generate_off_runtime(alg).await?;
        self.create_and_store(storage, key, options).await
    }

    /// Registers `account`'s key again, after the CA answered
    /// `accountDoesNotExist` (it lost or purged the account), with
    /// `options` (contact, terms, EAB), and stores the new account URL.
    /// The key stays: whatever the operator tied to it (a CAA
    /// `accounturi` aside, which names the URL) keeps working.
    pub async fn register_again(
        &self,
        storage: &dyn crate::storage::Storage,
        account: &Account,
        options: &NewAccountOptions,
    ) -> Result<Account, AcmeError> {
        let key = AccountKey::from_pkcs8_der(account.key().pkcs8_der())?;
        self.create_and_store(storage, key, options).await
    }

    /// Saves `key` (without a URL: a crash before the CA answers must not
    /// lose it), registers it, and saves the account URL.
    async fn create_and_store(
        &self,
        storage: &dyn crate::storage::Storage,
        key: AccountKey,
        options: &NewAccountOptions,
    ) -> Result<Account, AcmeError> {
        let dir = self.directory_url().to_owned();
        storage
            .save_account(&dir, &crate::storage::StoredAccount::new("", key.to_pem()))
            .await?;
        let account = self.new_account(key, options).await?;
        storage
            .save_account(
                &dir,
                &crate::storage::StoredAccount::new(account.url(), account.key().to_pem()),
            )
            .await?;
        Ok(account)
    }
}
