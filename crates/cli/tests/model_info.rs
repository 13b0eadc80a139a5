//! `magseg model-info` on a saved checkpoint: configuration and parameter count, text and JSON.

use std::process::Command;

use candle_core::Device;
use magseg_model::{MagMs, MagMsConfig, ModelKind};

#[test]
fn model_info_prints_config_and_parameter_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MagMsConfig {
        kind: ModelKind::Unet,
        modalities: vec!["flair".into(), "t1ce".into()],
        out_channels: 4,
        patch_size: [16, 16, 16],
        unet_base_channels: 4,
        label_preset: Some("brats".into()),
        ..MagMsConfig::default()
    };
    let net = MagMs::new(cfg, &Device::Cpu).unwrap();
    let expected = net.num_parameters();
    net.save(dir.path()).unwrap();
    let bin = env!("CARGO_BIN_EXE_magseg");
    let o = Command::new(bin).args(["model-info", dir.path().to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("3-D U-Net") && text.contains("flair, t1ce"), "{text}");
    assert!(text.contains(&format!("parameters   {expected} ")), "{text}");
    let o = Command::new(bin).args(["model-info", "--json", dir.path().to_str().unwrap()]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["parameters"], expected);
    assert_eq!(v["config"]["modalities"], serde_json::json!(["flair", "t1ce"]));
    // Not a checkpoint: a clear error.
    let o = Command::new(bin).args(["model-info", "/tmp"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a magseg checkpoint"));
}
