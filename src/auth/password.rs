//! One password hash as a password file stores it, in the three schemes hydrant reads:
//!
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512, what `mosquitto_passwd` writes by
//!   default since Mosquitto 2.0 (101 iterations, a 12-byte salt, a 64-byte hash);
//! - `$6$<salt>$<hash>`: one SHA-512 over the password followed by the salt, what Mosquitto
//!   1.6 and earlier wrote;
//! - `$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>`: argon2id in PHC string format,
//!   hydrant's default for new entries (Mosquitto 2.0 cannot read it).
//!
//! Salts and hashes of the two Mosquitto schemes are standard base64 (`+/`, padded; unpadded
//! input is accepted too). Every comparison of a computed hash with a stored one runs in
//! constant time.

use std::fmt;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Iterations `mosquitto_passwd` uses for `$7$` entries (Mosquitto 2.x default).
pub const PBKDF2_DEFAULT_ITERATIONS: u32 = 101;

/// Salt length, in bytes, of the `$6$`/`$7$` entries `mosquitto_passwd` writes.
pub const MOSQUITTO_SALT_LEN: usize = 12;

/// Length of a SHA-512 output: the only hash length the Mosquitto schemes have.
const SHA512_LEN: usize = 64;

/// The standard base64 alphabet with padding written and optional when read, as Mosquitto
/// writes it (through OpenSSL) and as other tools that produce its files sometimes do not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a stored hash could not be read, or a new one could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordHashError {
    /// The field starts with none of `$6$`, `$7$`, `$argon2id$` (plain-text passwords are
    /// refused, as by any Mosquitto built with TLS).
    #[error("unknown hash scheme (expected $7$, $6$ or $argon2id$; plain-text passwords are not accepted)")]
    UnknownScheme,
    /// A `$6$`/`$7$` entry has the wrong number of `$`-separated fields.
    #[error("a {scheme} hash has {expected} '$'-separated fields after the scheme, found {found}")]
    FieldCount {
        /// `$6$` or `$7$`.
        scheme: &'static str,
        /// How many fields the scheme has.
        expected: usize,
        /// How many the entry has.
        found: usize,
    },
    /// The iteration count of a `$7$` entry is not a whole number from 1 to 2^32-1.
    #[error("iteration count {0:?} is not a whole number from 1 to 4294967295")]
    Iterations(String),
    /// The salt or hash is not standard base64.
    #[error("the {field} is not valid base64")]
    Base64 {
        /// `salt` or `hash`.
        field: &'static str,
    },
    /// The salt decodes to a length Mosquitto does not accept (12 or 64 bytes).
    #[error("the salt is {0} bytes long; Mosquitto salts are 12 (or 64) bytes")]
    SaltLength(usize),
    /// The hash does not decode to a SHA-512 output.
    #[error("the hash is {0} bytes long; a SHA-512 hash is 64 bytes")]
    HashLength(usize),
    /// An `$argon2...` field that is not a valid PHC string with valid argon2 parameters.
    #[error("invalid argon2 PHC string: {0}")]
    Phc(String),
    /// An argon2 variant other than argon2id (argon2i, argon2d).
    #[error("argon2 variant {0:?} is not accepted; use argon2id")]
    NotArgon2id(String),
    /// The operating system could not provide random bytes for a salt.
    #[error("cannot draw a random salt: {0}")]
    Random(String),
    /// Hashing a new password failed.
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

/// One user's stored password hash, in any scheme hydrant reads.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$6$`: SHA-512 over the password followed by the salt (Mosquitto 1.6 and earlier).
    Sha512 {
        /// The raw salt.
        salt: Vec<u8>,
        /// The raw digest.
        hash: [u8; SHA512_LEN],
    },
    /// `$7$`: PBKDF2-HMAC-SHA512 (Mosquitto 2.x).
    Pbkdf2Sha512 {
        /// PBKDF2 iteration count.
        iterations: u32,
        /// The raw salt.
        salt: Vec<u8>,
        /// The raw derived key.
        hash: [u8; SHA512_LEN],
    },
    /// argon2id, kept as its validated PHC string (which carries parameters, salt and hash).
    Argon2id(String),
}

impl PasswordHash {
    /// Reads the hash field of a password file line (the text after `user:`).
    pub fn parse(field: &str) -> Result<Self, PasswordHashError> {
        if let Some(rest) = field.strip_prefix("$7$") {
            let fields: Vec<&str> = rest.split('$').collect();
            let [iterations, salt, hash] = fields[..] else {
                return Err(PasswordHashError::FieldCount {
                    scheme: "$7$",
                    expected: 3,
                    found: fields.len(),
                });
            };
            let iterations = parse_iterations(iterations)?;
            let (salt, hash) = decode_salt_and_hash(salt, hash)?;
            Ok(Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            })
        } else if let Some(rest) = field.strip_prefix("$6$") {
            let fields: Vec<&str> = rest.split('$').collect();
            let [salt, hash] = fields[..] else {
                return Err(PasswordHashError::FieldCount {
                    scheme: "$6$",
                    expected: 2,
                    found: fields.len(),
                });
            };
            let (salt, hash) = decode_salt_and_hash(salt, hash)?;
            Ok(Self::Sha512 { salt, hash })
        } else if field.starts_with("$argon2") {
            parse_argon2id(field)?;
            Ok(Self::Argon2id(field.to_owned()))
        } else {
            Err(PasswordHashError::UnknownScheme)
        }
    }

    /// Hashes `password` as a `$7$` entry with a fresh random 12-byte salt, the format
    /// Mosquitto 2.x reads and writes.
    pub fn new_pbkdf2_sha512(password: &[u8], iterations: u32) -> Result<Self, PasswordHashError> {
        let mut salt = vec![0u8; MOSQUITTO_SALT_LEN];
        getrandom::getrandom(&mut salt).map_err(|e| PasswordHashError::Random(e.to_string()))?;
        let iterations = iterations.max(1);
        Ok(Self::Pbkdf2Sha512 {
            iterations,
            hash: pbkdf2_sha512(password, &salt, iterations),
            salt,
        })
    }

    /// Hashes `password` as an argon2id entry with the argon2 crate's default parameters
    /// (19 MiB, 2 passes, 1 lane: the OWASP recommendation) and a fresh random salt.
    pub fn new_argon2id(password: &[u8]) -> Result<Self, PasswordHashError> {
        argon2id_with(password, Params::default())
    }

    /// Whether `password` hashes to this hash. The final comparison runs in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Sha512 { salt, hash } => sha512_salted(password, salt).ct_eq(hash).into(),
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => pbkdf2_sha512(password, salt, *iterations)
                .ct_eq(hash)
                .into(),
            Self::Argon2id(phc) => match argon2::PasswordHash::new(phc) {
                // `verify_password` compares the outputs in constant time.
                Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
                Err(_) => false,
            },
        }
    }

    /// A hash of a random password with the same scheme and cost as `self`: verifying
    /// against it takes as long as verifying against `self` and never succeeds. Unknown
    /// users are checked against such a decoy so that a refusal takes the same time whether
    /// or not the user exists.
    pub fn decoy_like(&self) -> Result<Self, PasswordHashError> {
        let mut password = [0u8; 32];
        getrandom::getrandom(&mut password)
            .map_err(|e| PasswordHashError::Random(e.to_string()))?;
        match self {
            Self::Sha512 { salt, .. } => {
                let mut salt = vec![0u8; salt.len()];
                getrandom::getrandom(&mut salt)
                    .map_err(|e| PasswordHashError::Random(e.to_string()))?;
                Ok(Self::Sha512 {
                    hash: sha512_salted(&password, &salt),
                    salt,
                })
            }
            Self::Pbkdf2Sha512 { iterations, .. } => {
                Self::new_pbkdf2_sha512(&password, *iterations)
            }
            Self::Argon2id(phc) => {
                let params = parse_argon2id(phc)?;
                argon2id_with(&password, params)
            }
        }
    }

    /// The scheme's name, for logs and diagnostics (never the hash itself).
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Sha512 { .. } => "sha512",
            Self::Pbkdf2Sha512 { .. } => "pbkdf2-sha512",
            Self::Argon2id(_) => "argon2id",
        }
    }
}

impl fmt::Display for PasswordHash {
    /// The hash field exactly as a password file stores it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                BASE64.encode(salt),
                BASE64.encode(hash)
            ),
            Self::Argon2id(phc) => f.write_str(phc),
        }
    }
}

impl fmt::Debug for PasswordHash {
    /// Names the scheme only: hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({})", self.scheme())
    }
}

fn parse_iterations(text: &str) -> Result<u32, PasswordHashError> {
    match text.parse::<u32>() {
        Ok(n) if n >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(PasswordHashError::Iterations(text.to_owned())),
    }
}

fn decode_salt_and_hash(
    salt: &str,
    hash: &str,
) -> Result<(Vec<u8>, [u8; SHA512_LEN]), PasswordHashError> {
    let salt = BASE64
        .decode(salt)
        .map_err(|_| PasswordHashError::Base64 { field: "salt" })?;
    if salt.len() != MOSQUITTO_SALT_LEN && salt.len() != SHA512_LEN {
        return Err(PasswordHashError::SaltLength(salt.len()));
    }
    let hash = BASE64
        .decode(hash)
        .map_err(|_| PasswordHashError::Base64 { field: "hash" })?;
    let hash: [u8; SHA512_LEN] = hash
        .as_slice()
        .try_into()
        .map_err(|_| PasswordHashError::HashLength(hash.len()))?;
    Ok((salt, hash))
}

/// Validates an argon2id PHC string and returns its parameters.
fn parse_argon2id(phc: &str) -> Result<Params, PasswordHashError> {
    let parsed =
        argon2::PasswordHash::new(phc).map_err(|e| PasswordHashError::Phc(e.to_string()))?;
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return Err(PasswordHashError::NotArgon2id(parsed.algorithm.to_string()));
    }
    if parsed.hash.is_none() {
        return Err(PasswordHashError::Phc("the hash is missing".to_owned()));
    }
    Params::try_from(&parsed).map_err(|e| PasswordHashError::Phc(e.to_string()))
}

fn argon2id_with(password: &[u8], params: Params) -> Result<PasswordHash, PasswordHashError> {
    let salt = SaltString::generate(&mut OsRng);
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let phc = hasher
        .hash_password(password, &salt)
        .map_err(|e| PasswordHashError::Hashing(e.to_string()))?;
    Ok(PasswordHash::Argon2id(phc.to_string()))
}

fn sha512_salted(password: &[u8], salt: &[u8]) -> [u8; SHA512_LEN] {
    let mut digest = Sha512::new();
    digest.update(password);
    digest.update(salt);
    digest.finalize().into()
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; SHA512_LEN] {
    let mut out = [0u8; SHA512_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Debian's `mosquitto_passwd` 2.0.11 (`-b`, password `secret`).
    const MOSQUITTO_PBKDF2: &str = "$7$101$QDRygXXZ+r0DWMEL$koiC6Y7lnrguuItha5R5QH0B4+YfqRMg8cTlqd+gVVjwEiMHO0xOHuJ/ETUrjljVfqM4QgAyLBlpGLLI2L84ag==";
    /// Made by Debian's `mosquitto_passwd` 2.0.11 (`-H sha512 -b`, password `secret`).
    const MOSQUITTO_SHA512: &str = "$6$8riF40sWZ9uGGSor$jCGSO5vMfPMXILqT15l8jZtWqqDEtnSBL4cesuPKe04jbUIdZV1hhYOOAFnk4WoWsQ4x5ZX9yTDTkxSXfWM43A==";

    #[test]
    fn mosquitto_pbkdf2_entry_verifies() {
        let hash = PasswordHash::parse(MOSQUITTO_PBKDF2).expect("valid $7$ entry");
        assert!(matches!(
            hash,
            PasswordHash::Pbkdf2Sha512 {
                iterations: 101,
                ..
            }
        ));
        assert!(hash.verify(b"secret"));
        assert!(!hash.verify(b"Secret"));
        assert!(!hash.verify(b""));
        assert_eq!(hash.to_string(), MOSQUITTO_PBKDF2);
    }

    #[test]
    fn mosquitto_sha512_entry_verifies() {
        let hash = PasswordHash::parse(MOSQUITTO_SHA512).expect("valid $6$ entry");
        assert!(hash.verify(b"secret"));
        assert!(!hash.verify(b"secret "));
        assert_eq!(hash.to_string(), MOSQUITTO_SHA512);
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let unpadded = MOSQUITTO_PBKDF2.trim_end_matches('=');
        let hash = PasswordHash::parse(unpadded).expect("unpadded $7$ entry");
        assert!(hash.verify(b"secret"));
    }

    #[test]
    fn new_pbkdf2_entries_have_mosquitto_layout() {
        let hash = PasswordHash::new_pbkdf2_sha512(b"pw", PBKDF2_DEFAULT_ITERATIONS)
            .expect("hashing works");
        let text = hash.to_string();
        let fields: Vec<&str> = text.split('$').collect();
        assert_eq!(fields[..3], ["", "7", "101"]);
        assert_eq!(fields[3].len(), 16, "12-byte salt is 16 base64 characters");
        assert_eq!(fields[4].len(), 88, "64-byte hash is 88 base64 characters");
        let reparsed = PasswordHash::parse(&text).expect("round trip");
        assert!(reparsed.verify(b"pw"));
        assert!(!reparsed.verify(b"pW"));
    }

    #[test]
    fn new_argon2id_entries_verify() {
        let hash = PasswordHash::new_argon2id(b"pw").expect("hashing works");
        let text = hash.to_string();
        assert!(
            text.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{text}"
        );
        let reparsed = PasswordHash::parse(&text).expect("round trip");
        assert!(reparsed.verify(b"pw"));
        assert!(!reparsed.verify(b"px"));
    }

    #[test]
    fn decoys_never_verify_and_keep_the_cost() {
        let real = PasswordHash::parse(MOSQUITTO_PBKDF2).expect("valid");
        let decoy = real.decoy_like().expect("decoy");
        assert!(matches!(
            decoy,
            PasswordHash::Pbkdf2Sha512 {
                iterations: 101,
                ..
            }
        ));
        assert!(!decoy.verify(b"secret"));
        let argon = PasswordHash::parse(
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$Pz0sRYlHRiPHpGUe96V8jfYUXDkLbqxAoCVcOt+FfGs",
        );
        // The hash may not match any password we know; only its parameters matter here.
        let argon = argon.expect("valid PHC string");
        let decoy = argon.decoy_like().expect("decoy");
        assert!(decoy.to_string().starts_with("$argon2id$v=19$m=8,t=1,p=1$"));
    }

    #[test]
    fn malformed_fields_are_refused_with_a_reason() {
        let cases: [(&str, PasswordHashError); 9] = [
            ("secret", PasswordHashError::UnknownScheme),
            ("$5$abc$def", PasswordHashError::UnknownScheme),
            (
                "$7$101$QDRygXXZ+r0DWMEL",
                PasswordHashError::FieldCount {
                    scheme: "$7$",
                    expected: 3,
                    found: 2,
                },
            ),
            (
                "$6$a$b$c",
                PasswordHashError::FieldCount {
                    scheme: "$6$",
                    expected: 2,
                    found: 3,
                },
            ),
            (
                "$7$0$QDRygXXZ+r0DWMEL$AAAA",
                PasswordHashError::Iterations("0".into()),
            ),
            (
                "$7$+5$QDRygXXZ+r0DWMEL$AAAA",
                PasswordHashError::Iterations("+5".into()),
            ),
            (
                "$7$101$!!!!$AAAA",
                PasswordHashError::Base64 { field: "salt" },
            ),
            ("$7$101$AAAA$AAAA", PasswordHashError::SaltLength(3)),
            (
                "$7$101$QDRygXXZ+r0DWMEL$AAAA",
                PasswordHashError::HashLength(3),
            ),
        ];
        for (field, expected) in cases {
            assert_eq!(PasswordHash::parse(field), Err(expected), "{field}");
        }
        assert!(matches!(
            PasswordHash::parse("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA"),
            Err(PasswordHashError::NotArgon2id(_))
        ));
        assert!(matches!(
            PasswordHash::parse("$argon2id$v=19$m=8,t=1"),
            Err(PasswordHashError::Phc(_))
        ));
    }

    #[test]
    fn debug_output_hides_the_hash() {
        let hash = PasswordHash::parse(MOSQUITTO_PBKDF2).expect("valid");
        assert_eq!(format!("{hash:?}"), "PasswordHash(pbkdf2-sha512)");
    }
}
