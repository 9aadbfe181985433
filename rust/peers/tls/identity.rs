//! Who a peer is: the identity its certificate names (SAN URI
//! `spiffe://<trust domain>/node/<id>`, else its first DNS name), checked
//! against the trust domain and the allow-list.

/// A verified peer's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The SAN URI or DNS name the identity was taken from.
    pub name: String,
    /// The node id (the URI's last path segment, or the DNS name): what the
    /// store records as the acknowledger of segments this peer holds.
    pub node: String,
}

/// The identity in `cert` (DER), checked against the trust domain and allow-list.
pub fn identity_of(
    cert: &[u8],
    trust_domain: Option<&str>,
    allow: &[String],
) -> Result<PeerIdentity, String> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("certificate does not parse: {e}"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?
        .ok_or_else(|| "certificate has no subjectAltName".to_string())?;
    let mut identity = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some(rest) = uri.strip_prefix("spiffe://") {
                let Some((domain, node)) = rest.split_once("/node/") else {
                    continue;
                };
                if trust_domain.is_some_and(|td| td != domain) {
                    return Err(format!("{uri} is outside trust domain {trust_domain:?}"));
                }
                identity = Some(PeerIdentity {
                    name: (*uri).to_string(),
                    node: node.to_string(),
                });
                break;
            }
        }
    }
    if identity.is_none() {
        if trust_domain.is_some() {
            return Err("certificate has no spiffe://<trust domain>/node/<id> URI".into());
        }
        identity = san.value.general_names.iter().find_map(|n| match n {
            GeneralName::DNSName(dns) => Some(PeerIdentity {
                name: (*dns).to_string(),
                node: (*dns).to_string(),
            }),
            _ => None,
        });
    }
    let identity =
        identity.ok_or_else(|| "certificate names no node (SAN URI or DNS)".to_string())?;
    crate::store::format::validate_origin(&identity.node)
        .map_err(|e| format!("{}: {e}", identity.name))?;
    if !allow.is_empty() && !allow.iter().any(|p| pattern_matches(p, &identity.name)) {
        return Err(format!("{} matches no allow pattern", identity.name));
    }
    Ok(identity)
}

/// `*` matches any run of characters; everything else matches itself.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("spiffe://td/node/*", "spiffe://td/node/a"));
        assert!(!pattern_matches("spiffe://td/node/*", "spiffe://xx/node/a"));
        assert!(pattern_matches("*", "x"));
        assert!(pattern_matches("a*c*e", "abcde"));
        assert!(!pattern_matches("a*c*e", "abde"));
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exact2"));
        assert!(!pattern_matches("ab*ba", "aba"));
    }
}
