//! `magseg model-info`: a checkpoint's configuration and parameter count.

use std::path::PathBuf;

use candle_core::Device;
use magseg_model::{MagMs, ModelKind, CONFIG_FILE};
use serde::Serialize;

use crate::CliResult;

/// Arguments of `magseg model-info`.
#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint folder (model.safetensors + config.json).
    model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Info<'a> {
    path: &'a PathBuf,
    config: &'a magseg_model::MagMsConfig,
    parameters: usize,
    parameters_per_modality_encoder: usize,
    weights_bytes: u64,
}

/// Run the command.
pub fn run(a: &Args) -> CliResult {
    if !a.model.join(CONFIG_FILE).is_file() {
        return Err(format!("{}: not a magseg checkpoint (no {CONFIG_FILE})", a.model.display()).into());
    }
    let net = MagMs::load(&a.model, &Device::Cpu)?;
    let cfg = net.config();
    let total = net.num_parameters();
    let per_encoder = net
        .named_vars()
        .iter()
        .filter(|(n, _)| n.starts_with("encoders.0."))
        .map(|(_, v)| v.as_tensor().elem_count())
        .sum();
    let weights_bytes = std::fs::metadata(a.model.join(magseg_model::WEIGHTS_FILE)).map(|m| m.len()).unwrap_or(0);
    let info = Info {
        path: &a.model,
        config: cfg,
        parameters: total,
        parameters_per_modality_encoder: per_encoder,
        weights_bytes,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let kind = match cfg.kind {
        ModelKind::Unetr => format!(
            "MAG-MS with UNETR encoders (feature size {}, hidden {}, MLP {}, {} heads, {} layers, ViT patch {})",
            cfg.feature_size, cfg.hidden_size, cfg.mlp_dim, cfg.num_heads, cfg.num_layers, cfg.vit_patch_size
        ),
        ModelKind::Unet => format!("MAG-MS with 3-D U-Net encoders (base channels {})", cfg.unet_base_channels),
    };
    println!("{}", a.model.display());
    println!("  model        {kind}");
    println!("  modalities   {} (any non-empty subset works)", cfg.modalities.join(", "));
    println!("  classes      {} (labels: {})", cfg.out_channels, cfg.label_preset.as_deref().unwrap_or("not recorded"));
    println!("  patch        {} × {} × {}", cfg.patch_size[0], cfg.patch_size[1], cfg.patch_size[2]);
    println!("  normalise    {}", cfg.normalisation);
    println!(
        "  parameters   {total} ({per_encoder} per modality encoder), weights file {:.1} MB",
        weights_bytes as f64 / 1e6
    );
    Ok(())
}
