//! The prefetching loader: determinism across worker counts, ordering, shutdown.

mod common;

use std::sync::Arc;

use common::sparse_case;
use magseg_patch::{AugmentConfig, CaseCache, Loader, LoaderConfig, PatchError, PatchSampler, SamplerConfig};

fn setup(patch: [usize; 3]) -> (Arc<CaseCache>, Arc<PatchSampler>) {
    let mut cache = CaseCache::new();
    cache.push(sparse_case([20, 18, 16], [10, 9, 8]));
    cache.push(sparse_case([16, 16, 16], [4, 5, 6]));
    cache.push(sparse_case([18, 20, 17], [12, 3, 9]));
    let cfg = SamplerConfig { patch, pos: 2.0, neg: 1.0, augment: AugmentConfig::default() };
    (Arc::new(cache), Arc::new(PatchSampler::new(cfg).unwrap()))
}

fn run(workers: usize, seed: u64) -> Vec<magseg_patch::Batch> {
    let (cache, sampler) = setup([8, 8, 8]);
    let cfg = LoaderConfig { batch_size: 3, workers, prefetch: 2, seed, batches: Some(10), start: 0 };
    Loader::new(cache, sampler, cfg).unwrap().map(Result::unwrap).collect()
}

#[test]
fn same_seed_same_batches_regardless_of_workers() {
    let one = run(1, 42);
    let three = run(3, 42);
    assert_eq!(one.len(), 10);
    assert_eq!(one, three);
    assert!(one.iter().enumerate().all(|(i, b)| b.index == i as u64 && b.patches.len() == 3));
    assert_ne!(one, run(3, 43));
    assert_eq!(one, run(2, 42));
}

#[test]
fn drop_mid_stream_shuts_down() {
    let (cache, sampler) = setup([8, 8, 8]);
    let cfg = LoaderConfig { batch_size: 2, workers: 3, prefetch: 1, seed: 0, batches: None, start: 0 };
    let mut loader = Loader::new(cache.clone(), sampler, cfg).unwrap();
    for _ in 0..5 {
        loader.next().unwrap().unwrap();
    }
    // Workers are blocked on full queues; dropping must wake and join them.
    drop(loader);
    // Every worker's Arc clone is gone once they are joined.
    assert_eq!(Arc::strong_count(&cache), 1);
}

#[test]
fn sampling_errors_are_reported_and_end_the_stream() {
    let (cache, sampler) = setup([17, 17, 17]);
    let cfg = LoaderConfig { batch_size: 4, workers: 2, prefetch: 1, seed: 0, batches: Some(50), start: 0 };
    let mut loader = Loader::new(cache, sampler, cfg).unwrap();
    let mut saw_error = false;
    for item in loader.by_ref() {
        if let Err(e) = item {
            assert!(matches!(e, PatchError::TooLarge { .. }));
            saw_error = true;
        }
    }
    assert!(saw_error);
    assert!(loader.next().is_none());
}

#[test]
fn invalid_loader_config_and_empty_cache() {
    let (cache, sampler) = setup([8, 8, 8]);
    let bad = LoaderConfig { workers: 0, ..LoaderConfig::default() };
    assert!(Loader::new(cache, sampler.clone(), bad).is_err());
    let empty = Arc::new(CaseCache::new());
    assert!(matches!(Loader::new(empty, sampler, LoaderConfig::default()), Err(PatchError::EmptyCache)));
}

#[test]
fn cache_build_keeps_order() {
    let dims = [[10, 10, 10], [12, 11, 10], [9, 9, 9]];
    let cache = CaseCache::build(&dims, |d| Ok::<_, PatchError>(sparse_case(*d, [1, 1, 1]))).unwrap();
    assert_eq!(cache.len(), 3);
    for (i, d) in dims.iter().enumerate() {
        assert_eq!(cache.get(i).unwrap().dims, *d);
    }
}

#[test]
fn case_from_loaded_stacks_modalities_and_maps_labels() {
    use magseg_volume::{Geometry, LabelPreset, LoadedCase, Volume};
    let g = Geometry::from_spacing([3, 2, 2], [1.0; 3]);
    let img = |base: f32| Volume::new((0..12).map(|v| base + v as f32).collect(), g.clone(), 1).unwrap();
    let labels = Volume::new(vec![0, 0, 1, 2, 4, 0, 0, 0, 0, 0, 0, 4], g.clone(), 1).unwrap();
    let case = LoadedCase {
        id: "c".into(),
        images: vec![("flair".into(), img(0.0)), ("t1".into(), img(100.0))],
        label: Some(labels),
    };
    let preset = LabelPreset::named("brats").unwrap();
    let data = magseg_patch::CaseData::from_loaded(&case, &preset).unwrap();
    assert_eq!((data.dims, data.channels, data.image.len()), ([3, 2, 2], 2, 24));
    assert_eq!(data.image[12], 100.0);
    assert_eq!(data.labels, vec![0, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 3]);
    assert_eq!(data.foreground, vec![2, 3, 4, 11]);
    // Voxel 0 is zero in flair but 100 in t1: inside the brain.
    assert_eq!(data.background.len(), 8);
    let no_label = LoadedCase { label: None, ..case };
    assert!(magseg_patch::CaseData::from_loaded(&no_label, &preset).is_err());
}

#[test]
fn starting_later_gives_the_tail_of_the_same_stream() {
    let (cache, sampler) = setup([8, 8, 8]);
    let all = run(2, 7);
    let cfg = LoaderConfig { batch_size: 3, workers: 3, prefetch: 2, seed: 7, batches: Some(10), start: 6 };
    let tail: Vec<_> = Loader::new(cache, sampler, cfg).unwrap().map(Result::unwrap).collect();
    assert_eq!(tail.len(), 4);
    assert_eq!(tail, all[6..]);
}
