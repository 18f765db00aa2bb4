//! A version as it is proposed and stored: the `.wasm`, its `.toml` and its
//! golden fixtures. The three make its fingerprint: the same bytes with
//! another `.toml` (other grants, other settings) are another version.

use sha2::{Digest, Sha256};

use super::gate::Fixtures;
use crate::runtime::SlotConfig;
use crate::runtime::slot::FixtureFiles;

/// A component proposed for a slot.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub wasm: Vec<u8>,
    /// Its `.toml`, as written.
    pub config_text: Option<String>,
    /// Its golden fixtures.
    pub fixtures: Fixtures,
}

impl Candidate {
    /// sha256 of the `.wasm`, hex.
    pub fn sha256(&self) -> String {
        crate::runtime::digest(&self.wasm)
    }

    /// What identifies the version: the `.wasm`, the `.toml` and the fixtures.
    pub fn fingerprint(&self) -> String {
        let identity = serde_json::json!([self.sha256(), self.config_text, self.fixtures_json()]);
        hex::encode(Sha256::digest(identity.to_string()))
    }

    /// The fixtures as stored: JSON `[[file name, text], ...]`, by file
    /// name (the same files make the same version, in whatever order they came).
    pub fn fixtures_json(&self) -> Option<String> {
        let files = self.fixtures.files()?;
        let mut pairs: Vec<(&str, String)> =
            files.iter().map(|(name, bytes)| (name.as_str(), String::from_utf8_lossy(bytes).into_owned())).collect();
        pairs.sort();
        serde_json::to_string(&pairs).ok()
    }

    /// The fixtures stored as [`Candidate::fixtures_json`] wrote them.
    pub fn fixtures_from_json(json: Option<&str>) -> Fixtures {
        let Some(json) = json else { return Fixtures::None };
        match serde_json::from_str::<Vec<(String, String)>>(json) {
            Ok(pairs) => {
                let files: FixtureFiles = pairs.into_iter().map(|(name, text)| (name, text.into_bytes())).collect();
                Fixtures::Files(files)
            }
            Err(error) => Fixtures::Unreadable(format!("stored fixtures: {error}")),
        }
    }

    /// Its `.toml` parsed (the default settings without one).
    pub fn config(&self, slot: crate::runtime::Slot) -> Result<SlotConfig, String> {
        match self.config_text.as_deref() {
            None => Ok(SlotConfig::default()),
            Some(text) => SlotConfig::parse(text, &format!("{slot}.toml")).map_err(|error| error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(config: Option<&str>, fixtures: Fixtures) -> Candidate {
        Candidate { wasm: b"\0asm".to_vec(), config_text: config.map(str::to_owned), fixtures }
    }

    #[test]
    fn the_toml_and_the_fixtures_are_part_of_a_version() {
        let files: FixtureFiles = vec![("a.input.json".to_owned(), b"{}".to_vec())].into();
        let bare = candidate(None, Fixtures::None);
        let configured = candidate(Some("[component]\nname = \"x\"\n"), Fixtures::None);
        let tested = candidate(None, Fixtures::Files(files));
        assert_ne!(bare.fingerprint(), configured.fingerprint());
        assert_ne!(bare.fingerprint(), tested.fingerprint());
        assert_eq!(bare.fingerprint(), candidate(None, Fixtures::None).fingerprint());
        assert_eq!(bare.sha256(), tested.sha256(), "the same .wasm");
    }

    #[test]
    fn the_order_fixtures_come_in_does_not_make_another_version() {
        let (a, b) = (("a.input.json".to_owned(), b"{}".to_vec()), ("a.expected.json".to_owned(), b"1".to_vec()));
        let one = candidate(None, Fixtures::Files(vec![a.clone(), b.clone()].into()));
        let other = candidate(None, Fixtures::Files(vec![b, a].into()));
        assert_eq!(one.fingerprint(), other.fingerprint());
    }

    #[test]
    fn stored_fixtures_read_back_as_they_were() {
        let files: FixtureFiles = vec![("a.input.json".to_owned(), b"{\"x\": 1}".to_vec())].into();
        let tested = candidate(None, Fixtures::Files(files.clone()));
        let json = tested.fixtures_json();
        let Fixtures::Files(back) = Candidate::fixtures_from_json(json.as_deref()) else { panic!("files") };
        assert_eq!(back, files);
        assert!(matches!(Candidate::fixtures_from_json(Some("not json")), Fixtures::Unreadable(_)));
        assert!(matches!(Candidate::fixtures_from_json(None), Fixtures::None));
    }
}
