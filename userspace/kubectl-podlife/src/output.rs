//! Output formats, as kubectl's `-o`.

use anyhow::Result;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Yaml,
}

/// A JSON value in the structured formats (text is each command's own).
pub fn structured(v: &Value, f: Format) -> Result<String> {
    Ok(match f {
        Format::Yaml => serde_saphyr::to_string(v)?,
        _ => {
            let mut s = serde_json::to_string_pretty(v)?;
            s.push('\n');
            s
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_and_json_carry_the_same_fields() {
        let v = json!({"uid": "u1", "events": [{"type": "PodAdmitted"}]});
        let y = structured(&v, Format::Yaml).unwrap();
        assert!(
            y.contains("uid: u1") && y.contains("type: PodAdmitted"),
            "{y}"
        );
        let j: Value = serde_json::from_str(&structured(&v, Format::Json).unwrap()).unwrap();
        assert_eq!(j, v);
    }
}
