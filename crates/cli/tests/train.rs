//! `magseg train`: a short run end to end (outputs, summary, resume of a finished run), and the
//! configuration errors that must stop it before any work: a missing file, an unknown key, a
//! missing data set, an unknown modality, a patch larger than the volume, an existing run.

use std::path::Path;
use std::process::{Command, Output};

fn magseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magseg")).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn phantom(dir: &Path, size: usize) {
    let o = magseg(&["phantom", "--out", dir.to_str().unwrap(), "--cases", "3", "--size", &size.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn config(dir: &Path, data: &Path, extra_model: &str, extra: &str) -> String {
    let text = format!(
        "[data]\npath = \"{}\"\nvalidation_count = 1\n{extra}\n[model]\nkind = \"unet\"\npatch = [16, 16, 16]\nunet_base_channels = 4\n{extra_model}\n\
         [train]\nepochs = 2\nsteps_per_epoch = 2\nbatch = 1\nworkers = 1\noutput = \"{}\"\n",
        data.display(),
        dir.join("run").display()
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn short_run_writes_everything_and_resume_of_a_finished_run_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantom(&data, 24);
    let cfg = config(tmp.path(), &data, "", "");
    let o = magseg(&["train", "--config", &cfg]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("finished 4 steps (2 epochs)"), "{out}");
    assert!(out.contains("flair+t1+t1ce+t2") && out.contains("WT"), "{out}");
    let run = tmp.path().join("run");
    for f in ["curves.svg", "metrics.jsonl", "validation.json", "best/model.safetensors", "best/config.json"] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    for f in ["model.safetensors", "config.json", "optimizer.safetensors", "state.json", "train.json"] {
        assert!(run.join("last").join(f).is_file(), "missing last/{f}");
    }
    // The progress notes go to stderr when there is no terminal.
    assert!(stderr(&o).contains("preparing 2 training and 1 validation case(s)"), "{}", stderr(&o));
    // Training again into the same output is refused; --resume of a finished run changes nothing.
    let o = magseg(&["train", "--config", &cfg]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let before = std::fs::read(run.join("last/model.safetensors")).unwrap();
    let o = magseg(&["train", "--config", &cfg, "--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(run.join("last/model.safetensors")).unwrap(), before);
    // The model-info command reads the best model.
    let o = magseg(&["model-info", run.join("best").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn configuration_errors_stop_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantom(&data, 16);
    let run = tmp.path().join("run");
    let expect_error = |cfg: &str, needle: &str| {
        let o = magseg(&["train", "--config", cfg]);
        assert!(!o.status.success(), "{cfg} was accepted");
        let e = stderr(&o);
        assert!(e.contains(needle), "expected '{needle}' in: {e}");
        assert!(!e.contains("panicked"), "{e}");
        assert!(!run.exists(), "an output directory was created for a bad configuration");
    };
    expect_error(tmp.path().join("nope.toml").to_str().unwrap(), "cannot read the configuration");
    expect_error(&config(tmp.path(), &data, "", "epoch = 3"), "unknown field `epoch`");
    expect_error(&config(tmp.path(), &data, "depth = 3", ""), "unknown field `depth`");
    expect_error(&config(tmp.path(), &tmp.path().join("missing"), "", ""), "missing");
    expect_error(&config(tmp.path(), &data, "", "modalities = [\"flair\", \"pd\"]"), "no modality 'pd'");
    expect_error(&config(tmp.path(), &data, "", "layout = \"msd\""), "laid out as BraTS");
    // A 24³ patch cannot fit 16³ phantoms; a 20³ patch is not a multiple of 8 (U-Net).
    let cfg = config(tmp.path(), &data, "", "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("patch = [16, 16, 16]", "patch = [24, 24, 24]");
    std::fs::write(&cfg, text).unwrap();
    expect_error(&cfg, "larger than case");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("patch = [24, 24, 24]", "patch = [20, 20, 20]");
    std::fs::write(&cfg, text).unwrap();
    expect_error(&cfg, "multiple");
    // Run options that cannot work.
    let cfg = config(tmp.path(), &data, "", "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("[train]\n", "[train]\nschedule_by_time = true\n");
    std::fs::write(&cfg, &text).unwrap();
    expect_error(&cfg, "schedule_by_time needs train.time_limit_s");
    let cfg = config(tmp.path(), &data, "", "");
    let o = magseg(&["train", "--config", &cfg, "--precision", "f16"]);
    assert!(!o.status.success() && stderr(&o).contains("expected f32, bf16 or tf32"), "{}", stderr(&o));
    assert!(!run.exists());
    if !cfg!(feature = "cuda") {
        let o = magseg(&["train", "--config", &cfg, "--device", "cuda"]);
        assert!(!o.status.success() && stderr(&o).contains("built without CUDA support"), "{}", stderr(&o));
        assert!(!run.exists());
    }
}

#[test]
fn bf16_mixed_precision_trains_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantom(&data, 24);
    let cfg = config(tmp.path(), &data, "", "");
    let o = magseg(&["train", "--config", &cfg, "--precision", "bf16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "step")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 4, "{log}");
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    // The checkpoint keeps f32 parameters (bf16 is a compute setting), so it predicts as any model.
    let o = magseg(&["model-info", tmp.path().join("run/best").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn ctrl_c_finishes_the_step_writes_a_checkpoint_and_resume_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantom(&data, 24);
    let cfg = config(tmp.path(), &data, "", "").to_string();
    let text = std::fs::read_to_string(&cfg).unwrap().replace("epochs = 2", "epochs = 500");
    std::fs::write(&cfg, text).unwrap();
    let run = tmp.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_magseg"))
        .args(["train", "--config", &cfg])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first logged step, then interrupt as a terminal's Ctrl-C does.
    let log = run.join("metrics.jsonl");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"kind\":\"step\"")) {
        assert!(start.elapsed().as_secs() < 120, "no step logged within 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("interrupted after step"), "{stdout}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("last/state.json")).unwrap()).unwrap();
    let step = state["step"].as_u64().unwrap();
    assert!((1..1000).contains(&step) && state["finished"] == false, "{state}");
    // Resume with a short time limit: it continues after the interrupted step.
    let o = magseg(&["train", "--config", &cfg, "--resume", "--time-limit", "0.001"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("resuming after step {step}")), "{}", stderr(&o));
}
