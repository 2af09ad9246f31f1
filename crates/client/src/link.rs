//! Enrollment links: `countersign://enroll?gateway=<url>&code=<code>&pin=sha256/<…>`.

use crate::{Error, Result};

/// What an admin hands a new approver: where the gateway is, the single-use code,
/// and the pin of the gateway's TLS key.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentLink {
    /// The gateway's base URL.
    pub gateway: String,
    /// The single-use enrollment code (a secret until used).
    pub code: String,
    /// `sha256/…` of the gateway's TLS key; absent only for plain-HTTP gateways.
    pub pin: Option<String>,
}

impl std::fmt::Debug for EnrollmentLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollmentLink")
            .field("gateway", &self.gateway)
            .field("code", &"<redacted>")
            .field("pin", &self.pin)
            .finish()
    }
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or_else(|| Error::Link("truncated %-escape".into()))?;
                out.push(
                    u8::from_str_radix(hex, 16).map_err(|_| Error::Link(format!("bad %-escape %{hex}")))?,
                );
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::Link("not UTF-8".into()))
}

impl EnrollmentLink {
    /// Parse a link.
    ///
    /// # Errors
    /// [`Error::Link`] naming what is wrong.
    pub fn parse(link: &str) -> Result<EnrollmentLink> {
        let query = link
            .trim()
            .strip_prefix("countersign://enroll?")
            .ok_or_else(|| Error::Link("it must start with countersign://enroll?".into()))?;
        let (mut gateway, mut code, mut pin) = (None, None, None);
        for pair in query.split('&') {
            let (k, v) =
                pair.split_once('=').ok_or_else(|| Error::Link(format!("{pair:?} is not key=value")))?;
            let slot = match k {
                "gateway" => &mut gateway,
                "code" => &mut code,
                "pin" => &mut pin,
                other => return Err(Error::Link(format!("unknown parameter {other:?}"))),
            };
            if slot.replace(percent_decode(v)?).is_some() {
                return Err(Error::Link(format!("{k} given twice")));
            }
        }
        let gateway = gateway.ok_or_else(|| Error::Link("no gateway".into()))?;
        let code = code.filter(|c| !c.is_empty()).ok_or_else(|| Error::Link("no code".into()))?;
        if let Some(p) = &pin
            && !(p.starts_with("sha256/") && p.len() == 7 + 43)
        {
            return Err(Error::Link(format!("pin {p:?} is not sha256/<43 base64url characters>")));
        }
        if gateway.starts_with("https://") && pin.is_none() {
            return Err(Error::Link("an https gateway needs a pin".into()));
        }
        Ok(EnrollmentLink { gateway: gateway.trim_end_matches('/').to_owned(), code, pin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn links_parse_and_refuse_what_is_wrong() {
        let l = EnrollmentLink::parse(&format!(
            "countersign://enroll?gateway=https%3A%2F%2Fgw.example%3A8440&code=ABC&pin={}",
            PIN.replace('/', "%2F")
        ))
        .unwrap();
        assert_eq!(
            (l.gateway.as_str(), l.code.as_str(), l.pin.as_deref()),
            ("https://gw.example:8440", "ABC", Some(PIN))
        );
        assert!(!format!("{l:?}").contains("ABC"), "the code is not in Debug output");
        for bad in [
            "https://gw.example/enroll?code=A",
            "countersign://enroll?gateway=https%3A%2F%2Fgw&code=A",
            "countersign://enroll?gateway=http%3A%2F%2Fgw&code=",
            "countersign://enroll?gateway=x&code=A&code=B",
            "countersign://enroll?gateway=x&code=A&pin=sha256/short",
            "countersign://enroll?gateway=x&code=A&extra=1",
            "countersign://enroll?gateway=x&code=%zz",
        ] {
            assert!(EnrollmentLink::parse(bad).is_err(), "{bad}");
        }
    }
}
