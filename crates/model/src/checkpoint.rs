//! Checkpoints (`model.safetensors` + `config.json` in one directory) and MONAI UNETR weight
//! import, both with exact name matching: every parameter must be in the file and every tensor
//! in the file must be a parameter.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use crate::magms::named_vars;
use crate::{MagMs, MagMsConfig, ModelError, Result, Unetr, UnetrConfig};

/// The weights' file name inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The configuration's file name inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io { path: path.to_path_buf(), source }
}

/// The path of a temporary sibling of `path` (written, then renamed onto `path`).
fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

impl MagMs {
    /// Writes `dir/model.safetensors` and `dir/config.json` (creating `dir`); each file is
    /// written to a temporary name first and renamed into place.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let weights = dir.join(WEIGHTS_FILE);
        let tmp = tmp_sibling(&weights);
        let tensors: HashMap<String, Tensor> =
            named_vars(self.varmap()).into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, &weights).map_err(io_err(&weights))?;
        let config = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(self.config())
            .map_err(|source| ModelError::Json { path: config.clone(), source })?;
        let tmp = tmp_sibling(&config);
        std::fs::write(&tmp, json + "\n").map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &config).map_err(io_err(&config))?;
        tracing::info!(dir = %dir.display(), parameters = self.num_parameters(), "saved MAG-MS checkpoint");
        Ok(())
    }

    /// Rebuilds the network saved by [`MagMs::save`] in `dir` on `device`.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = read_config(&dir.join(CONFIG_FILE))?;
        let model = MagMs::new(config, device)?;
        load_weights(model.varmap(), dir.join(WEIGHTS_FILE))?;
        Ok(model)
    }
}

/// Reads a `config.json` written by [`MagMs::save`].
pub fn read_config(path: &Path) -> Result<MagMsConfig> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let config: MagMsConfig =
        serde_json::from_str(&text).map_err(|source| ModelError::Json { path: path.to_path_buf(), source })?;
    config.validate()?;
    Ok(config)
}

/// Sets every variable of `varmap` from the safetensors file at `path`, converting to f32.
/// The names must match exactly ([`ModelError::Keys`] lists what is missing and what is
/// unexpected) and so must the shapes ([`ModelError::WeightShape`]); nothing is changed unless
/// both hold.
pub fn load_weights(varmap: &VarMap, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "weight file not found"),
        });
    }
    let vars = named_vars(varmap);
    let device = match vars.first() {
        Some((_, v)) => v.device().clone(),
        None => Device::Cpu,
    };
    let tensors = candle_core::safetensors::load(path, &device)?;
    let want: BTreeSet<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let have: BTreeSet<&str> = tensors.keys().map(String::as_str).collect();
    let missing: Vec<String> = want.difference(&have).map(|s| s.to_string()).collect();
    let unexpected: Vec<String> = have.difference(&want).map(|s| s.to_string()).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(ModelError::Keys { path: path.to_path_buf(), missing, unexpected });
    }
    let mut converted = Vec::with_capacity(vars.len());
    for (name, var) in &vars {
        let t = &tensors[name];
        if t.dims() != var.dims() {
            return Err(ModelError::WeightShape {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: var.dims().to_vec(),
                found: t.dims().to_vec(),
            });
        }
        converted.push(t.to_dtype(DType::F32)?);
    }
    for ((_, var), t) in vars.iter().zip(converted) {
        var.set(&t)?;
    }
    Ok(())
}

/// Loads a MONAI UNETR state dict saved as safetensors (e.g. with
/// `safetensors.torch.save_file(model.state_dict(), path)`) into `model`; MONAI's names are
/// this crate's names, so any difference is reported as [`ModelError::Keys`].
pub fn import_monai_unetr(model: &Unetr, path: impl AsRef<Path>) -> Result<()> {
    load_weights(model.varmap(), path)
}

impl Unetr {
    /// Builds a UNETR for `config` on `device` with the weights of a MONAI state dict saved as
    /// safetensors (see [`import_monai_unetr`]).
    pub fn from_monai(config: UnetrConfig, path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let model = Unetr::new(config, device)?;
        import_monai_unetr(&model, path)?;
        Ok(model)
    }
}
