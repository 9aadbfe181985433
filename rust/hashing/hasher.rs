use super::digest::{Algorithm, Digest};

/// One-shot BLAKE3 (single thread; see [`super::hash_file`] for the threaded path).
pub fn blake3(data: &[u8]) -> Digest {
    Digest::new(Algorithm::Blake3, *::blake3::hash(data).as_bytes())
}

/// One-shot SHA-256 (ring's assembly, with SHA-NI/ARMv8 crypto extensions when present).
pub fn sha256(data: &[u8]) -> Digest {
    sha256_finish(ring::digest::digest(&ring::digest::SHA256, data))
}

fn sha256_finish(output: ring::digest::Digest) -> Digest {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(output.as_ref());
    Digest::new(Algorithm::Sha256, bytes)
}

/// An incremental hasher for either algorithm. `Clone` forks the state, so a
/// common prefix can be hashed once and finished in several ways.
#[derive(Clone)]
// A hasher lives for a whole stream, so its inline size (BLAKE3 keeps a
// ~2 KiB chaining stack) costs nothing worth an allocation per hasher.
#[allow(clippy::large_enum_variant)]
pub enum Hasher {
    /// A BLAKE3 state (one thread; whole files go through [`super::hash_file`] to use more).
    Blake3(::blake3::Hasher),
    /// A SHA-256 state (ring).
    Sha256(ring::digest::Context),
}

impl Hasher {
    /// A hasher for `algorithm` with nothing fed yet.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Blake3 => Hasher::Blake3(::blake3::Hasher::new()),
            Algorithm::Sha256 => Hasher::Sha256(ring::digest::Context::new(&ring::digest::SHA256)),
        }
    }

    /// The algorithm its digests will be in.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Blake3(_) => Algorithm::Blake3,
            Hasher::Sha256(_) => Algorithm::Sha256,
        }
    }

    /// Feeds `data`, after everything fed before.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Blake3(hasher) => {
                hasher.update(data);
            }
            Hasher::Sha256(context) => context.update(data),
        }
    }

    /// The digest of everything fed so far; the hasher can keep going.
    pub fn digest(&self) -> Digest {
        match self {
            Hasher::Blake3(hasher) => Digest::new(Algorithm::Blake3, *hasher.finalize().as_bytes()),
            Hasher::Sha256(context) => sha256_finish(context.clone().finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nist_sha256_vectors() {
        // FIPS 180-2 appendix B examples.
        let cases: [(&[u8], &str); 3] = [
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(sha256(input).hex(), expected);
        }
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            sha256(&million_a).hex(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn incremental_equals_one_shot_and_clone_forks() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for algorithm in [Algorithm::Blake3, Algorithm::Sha256] {
            let mut hasher = Hasher::new(algorithm);
            hasher.update(&data[..1000]);
            let fork = hasher.clone();
            hasher.update(&data[1000..]);
            let expected = match algorithm {
                Algorithm::Blake3 => blake3(&data),
                Algorithm::Sha256 => sha256(&data),
            };
            assert_eq!(hasher.digest(), expected);
            assert_eq!(hasher.digest(), expected, "digest() must not consume state");
            let mut fork = fork;
            fork.update(&data[1000..]);
            assert_eq!(fork.digest(), expected);
        }
    }
}

#[cfg(test)]
mod vectors {
    use super::*;

    #[test]
    fn official_blake3_vectors() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/blake3_vectors.json")).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let len = case["input_len"].as_u64().unwrap() as usize;
            let input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let expected = case["hash"].as_str().unwrap();
            assert_eq!(blake3(&input).hex(), expected, "input_len {len}");
            let mut hasher = Hasher::new(Algorithm::Blake3);
            for chunk in input.chunks(97) {
                hasher.update(chunk);
            }
            assert_eq!(
                hasher.digest().hex(),
                expected,
                "incremental, input_len {len}"
            );
        }
    }
}
