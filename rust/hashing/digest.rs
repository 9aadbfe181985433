use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;

/// Every digest vedette handles is 32 bytes long (BLAKE3-256 and SHA-256).
pub const DIGEST_LEN: usize = 32;

/// The two hash algorithms vedette knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// BLAKE3 with a 256-bit output: what vedette produces (behavioral fingerprints, segment ids).
    Blake3,
    /// SHA-256: where OCI fixes it (artifact digests, policy hashes); also public-key ids.
    Sha256,
}

impl Algorithm {
    /// The name used as the text prefix, `blake3` or `sha256`.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Blake3 => "blake3",
            Algorithm::Sha256 => "sha256",
        }
    }

    /// Looks an algorithm up by its exact lowercase name.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "blake3" => Some(Algorithm::Blake3),
            "sha256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a digest's text form was refused. Each variant says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestParseError {
    /// No `:` separates an algorithm from the hex.
    #[error(
        "digest {} has no algorithm prefix: expected 'blake3:<64 hex>' or 'sha256:<64 hex>'",
        quote(text)
    )]
    MissingPrefix {
        /// The text refused.
        text: String,
    },
    /// The prefix names neither `blake3` nor `sha256` (case matters).
    #[error(
        "digest {} has unknown algorithm {}: expected 'blake3' or 'sha256'",
        quote(text),
        quote(algorithm)
    )]
    UnknownAlgorithm {
        /// The text refused.
        text: String,
        /// What stood before the `:`.
        algorithm: String,
    },
    /// Not 64 hex characters after the prefix.
    #[error(
        "digest {} has {len} hex characters after the prefix: expected 64",
        quote(text)
    )]
    WrongLength {
        /// The text refused.
        text: String,
        /// How many characters follow the prefix.
        len: usize,
    },
    /// A character after the prefix that is not lowercase hex (uppercase is refused too).
    #[error(
        "digest {} has {} at position {position} after the prefix: \
         expected lowercase hex (0-9, a-f)",
        quote(text),
        quote(&found.to_string())
    )]
    NotLowercaseHex {
        /// The text refused.
        text: String,
        /// Index of the first bad character among those after the prefix, from 0.
        position: usize,
        /// The bad character.
        found: char,
    },
    /// Bytes that are not 32 long, given for a digest.
    #[error("a {algorithm} digest is 32 bytes, got {len}")]
    WrongByteLength {
        /// The algorithm the bytes were given for.
        algorithm: Algorithm,
        /// How many bytes were given.
        len: usize,
    },
}

/// `text` in single quotes with control and non-printing characters escaped,
/// as Python shows strings, so error messages read the same from both sides.
pub fn quote(text: &str) -> String {
    format!(
        "'{}'",
        text.escape_debug().to_string().replace("\\\"", "\"")
    )
}

/// A digest with its algorithm: the only way vedette passes a hash around.
///
/// Its text form is `<algorithm>:<64 lowercase hex>`; parsing is strict (no
/// uppercase, no whitespace, no other lengths) so one value has one spelling.
/// Equality runs in constant time over the bytes, because digests are compared
/// against attacker-supplied values (signed release documents, peer segment ids).
#[derive(Clone, Copy)]
pub struct Digest {
    algorithm: Algorithm,
    bytes: [u8; DIGEST_LEN],
}

impl Digest {
    /// A digest of `algorithm` made of these bytes; nothing checks that they came from that
    /// algorithm.
    pub const fn new(algorithm: Algorithm, bytes: [u8; DIGEST_LEN]) -> Digest {
        Digest { algorithm, bytes }
    }

    /// Builds a digest from a byte slice, which must be exactly 32 bytes.
    pub fn from_slice(algorithm: Algorithm, bytes: &[u8]) -> Result<Digest, DigestParseError> {
        let bytes: [u8; DIGEST_LEN] =
            bytes
                .try_into()
                .map_err(|_| DigestParseError::WrongByteLength {
                    algorithm,
                    len: bytes.len(),
                })?;
        Ok(Digest { algorithm, bytes })
    }

    /// The algorithm the digest was made with: what [`super::require_role`] checks against a role.
    pub const fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.bytes
    }

    /// The 64 lowercase hex characters, without the prefix.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(2 * DIGEST_LEN);
        for byte in self.bytes {
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0x0f)] as char);
        }
        out
    }

    /// Parses `<algorithm>:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Digest, DigestParseError> {
        let Some((prefix, hex)) = text.split_once(':') else {
            return Err(DigestParseError::MissingPrefix { text: text.into() });
        };
        let algorithm =
            Algorithm::from_name(prefix).ok_or_else(|| DigestParseError::UnknownAlgorithm {
                text: text.into(),
                algorithm: prefix.into(),
            })?;
        if let Some((position, found)) = hex
            .chars()
            .enumerate()
            .find(|(_, ch)| !matches!(ch, '0'..='9' | 'a'..='f'))
        {
            return Err(DigestParseError::NotLowercaseHex {
                text: text.into(),
                position,
                found,
            });
        }
        // Only ASCII hex digits remain, so bytes and characters agree.
        if hex.len() != 2 * DIGEST_LEN {
            return Err(DigestParseError::WrongLength {
                text: text.into(),
                len: hex.len(),
            });
        }
        let mut bytes = [0u8; DIGEST_LEN];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Digest { algorithm, bytes })
    }
}

/// Value of a digit already checked to be lowercase hex.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => digit - b'a' + 10,
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Digest) -> bool {
        // The algorithm is public; only the bytes need constant time.
        self.algorithm == other.algorithm && bool::from(self.bytes.ct_eq(&other.bytes))
    }
}

impl Eq for Digest {}

impl std::hash::Hash for Digest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.algorithm.hash(state);
        self.bytes.hash(state);
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(text: &str) -> Result<Digest, DigestParseError> {
        Digest::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    #[test]
    fn text_form_round_trips() {
        let text = format!("blake3:{HEX64}");
        let digest = Digest::parse(&text).unwrap();
        assert_eq!(digest.algorithm(), Algorithm::Blake3);
        assert_eq!(digest.to_string(), text);
        assert_eq!(digest.as_bytes()[0], 0xaf);
    }

    #[test]
    fn same_bytes_different_algorithm_are_not_equal() {
        let a = Digest::parse(&format!("blake3:{HEX64}")).unwrap();
        let b = Digest::parse(&format!("sha256:{HEX64}")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, a);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let cases: Vec<(String, &str)> = vec![
            (HEX64.to_string(), "no algorithm prefix"),
            (format!("md5:{HEX64}"), "unknown algorithm 'md5'"),
            (format!("SHA256:{HEX64}"), "unknown algorithm 'SHA256'"),
            (format!("sha256:{}", &HEX64[..63]), "63 hex characters"),
            (format!("sha256:{HEX64}0"), "65 hex characters"),
            (
                format!("sha256:{}", HEX64.to_uppercase()),
                "'A' at position 0",
            ),
            (format!("sha256: {}", &HEX64[1..]), "' ' at position 0"),
            (format!("sha256:{}é", &HEX64[..63]), "'é' at position 63"),
            ("sha256:".to_string(), "0 hex characters"),
        ];
        for (text, expected) in cases {
            let message = Digest::parse(&text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn from_slice_checks_length() {
        let err = Digest::from_slice(Algorithm::Sha256, &[0u8; 31]).unwrap_err();
        assert_eq!(err.to_string(), "a sha256 digest is 32 bytes, got 31");
    }
}
