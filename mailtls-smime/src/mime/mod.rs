//! MIME around CMS: canonicalisation of the content to sign or encrypt,
//! assembly of multipart/signed and application/pkcs7-mime, and reading
//! them back (through mail-parser).

pub(crate) mod build;
pub(crate) mod canon;
pub(crate) mod parse;
