//! LVM thin pools' use from `lvs --reportformat json` (see
//! [`LVS_THIN_ARGS`]): every LV whose segment type is `thin-pool`, with
//! its data and metadata use. A pool that is not active has no use to
//! report: it is listed with its reason.

use coloc_proto::agent::v1::ThinPoolHealth;
use serde_json::Value;

use crate::HostError;

/// Every LV of every group, sizes in bytes without suffix.
pub(crate) const LVS_THIN_ARGS: &[&str] = &[
    "--reportformat",
    "json",
    "--units",
    "b",
    "--nosuffix",
    "-o",
    "vg_name,lv_name,segtype,lv_size,data_percent,metadata_percent",
];

const WHAT: &str = "lvs output";

/// The thin pools in `lvs` JSON output (the columns of
/// `LVS_THIN_ARGS`), in lvs' order.
pub fn parse_lvs_thin_pools(json: &str) -> Result<Vec<ThinPoolHealth>, HostError> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| HostError::parse(WHAT, e.to_string()))?;
    let reports = root
        .get("report")
        .and_then(Value::as_array)
        .ok_or_else(|| HostError::parse(WHAT, "no \"report\" array"))?;
    let mut pools = Vec::new();
    for report in reports {
        let Some(lvs) = report.get("lv") else {
            continue;
        };
        let lvs = lvs
            .as_array()
            .ok_or_else(|| HostError::parse(WHAT, "\"lv\" is not an array"))?;
        for lv in lvs {
            let text = |key: &str| lv.get(key).and_then(Value::as_str).map(str::trim);
            if text("segtype") != Some("thin-pool") {
                continue;
            }
            let (Some(vg), Some(name)) = (text("vg_name"), text("lv_name")) else {
                return Err(HostError::parse(
                    WHAT,
                    format!("a thin pool without names: {lv}"),
                ));
            };
            let mut pool = ThinPoolHealth {
                volume_group: vg.to_owned(),
                name: name.to_owned(),
                ..ThinPoolHealth::default()
            };
            pool.size_bytes = text("lv_size")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| HostError::parse(WHAT, format!("{vg}/{name}: no usable lv_size")))?;
            let percent = |key: &str| -> Result<Option<f64>, String> {
                match text(key) {
                    None | Some("") => Ok(None),
                    Some(v) => v
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=100.0).contains(p))
                        .map(Some)
                        .ok_or_else(|| format!("{key} {v:?} is not a percentage")),
                }
            };
            match (percent("data_percent"), percent("metadata_percent")) {
                (Ok(Some(data)), Ok(Some(meta))) => {
                    pool.data_percent = data;
                    pool.metadata_percent = meta;
                }
                (Ok(_), Ok(_)) => {
                    pool.unknown =
                        "lvs gives no data or metadata use: the thin pool is not active".to_owned();
                }
                (Err(reason), _) | (_, Err(reason)) => pool.unknown = reason,
            }
            pools.push(pool);
        }
    }
    Ok(pools)
}
