//! Surface extraction tests: 6- vs 26-connectivity on small shapes, grid-border semantics, random
//! masks against the definition.

mod common;

use common::{brute_surface, cuboid, idx, Rng};
use magseg_metrics::{surface, Connectivity, Grid, MetricsError};

fn count(v: &[bool]) -> usize {
    v.iter().filter(|b| **b).count()
}

#[test]
fn cube_with_a_corner_removed_differs_by_one_voxel() {
    let grid = Grid::unit([7, 7, 7]);
    let mut m = cuboid(&grid, [1, 1, 1], [6, 6, 6]);
    m[idx(grid.dims, 1, 1, 1)] = false;
    let s6 = surface(&m, &grid, Connectivity::Six).unwrap();
    let s26 = surface(&m, &grid, Connectivity::TwentySix).unwrap();
    assert_eq!(count(&m), 124);
    assert_eq!(count(&s6), 124 - 27);
    assert_eq!(count(&s26), 124 - 26);
    // The inner corner sees the removed voxel only diagonally.
    let inner = idx(grid.dims, 2, 2, 2);
    assert!(!s6[inner] && s26[inner]);
}

#[test]
fn solid_cube_has_the_same_surface_in_both() {
    let grid = Grid::unit([9, 8, 7]);
    let m = cuboid(&grid, [1, 1, 1], [6, 6, 6]);
    let s6 = surface(&m, &grid, Connectivity::Six).unwrap();
    assert_eq!(count(&s6), 125 - 27);
    assert_eq!(s6, surface(&m, &grid, Connectivity::TwentySix).unwrap());
}

#[test]
fn grid_border_voxels_are_surface() {
    let grid = Grid::unit([6, 6, 6]);
    let m = cuboid(&grid, [0, 0, 0], [6, 6, 6]);
    // Full grid: every voxel on the grid border is surface (border_value = 0), the 4³ core is not.
    for c in [Connectivity::Six, Connectivity::TwentySix] {
        let s = surface(&m, &grid, c).unwrap();
        assert_eq!(count(&s), 216 - 64, "{c:?}");
        assert!(s[idx(grid.dims, 0, 3, 3)] && !s[idx(grid.dims, 1, 3, 3)]);
    }
    let mut one = vec![false; 216];
    one[idx(grid.dims, 2, 3, 4)] = true;
    assert_eq!(surface(&one, &grid, Connectivity::Six).unwrap(), one);
}

#[test]
fn random_masks_match_the_definition() {
    let mut rng = Rng::new(5);
    for dims in [[7, 6, 5], [1, 9, 8], [10, 1, 4], [6, 6, 1], [13, 9, 7]] {
        let grid = Grid::new(dims, [1.0, 0.8, 2.5]);
        for p in [0.3, 0.7, 0.95] {
            let m = rng.mask(dims.iter().product(), p);
            for c in [Connectivity::Six, Connectivity::TwentySix] {
                assert_eq!(surface(&m, &grid, c).unwrap(), brute_surface(&m, &grid, c), "{dims:?} {p} {c:?}");
            }
        }
    }
}

#[test]
fn length_mismatch_is_an_error() {
    let grid = Grid::unit([3, 3, 3]);
    assert!(matches!(surface(&[true; 26], &grid, Connectivity::Six), Err(MetricsError::LengthMismatch { .. })));
    assert_eq!(Connectivity::default(), Connectivity::Six);
    assert_eq!(Connectivity::TwentySix.neighbours(), 26);
}
