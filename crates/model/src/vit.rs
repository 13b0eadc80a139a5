//! MONAI's ViT (`proj_type="perceptron"`, learnable position embeddings, no class token) under
//! MONAI's parameter names: `patch_embedding.*`, `blocks.{i}.{norm1,attn,norm2,mlp}.*`, `norm.*`.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::layers::{LayerNorm, Linear};
use crate::Result;

/// `PatchEmbeddingBlock` with `proj_type="perceptron"`: the rearrangement
/// `b c (h p1) (w p2) (d p3) -> b (h w d) (p1 p2 p3 c)` followed by `patch_embeddings.1`
/// (a linear layer), plus `position_embeddings (1, n_patches, hidden)`.
#[derive(Debug, Clone)]
pub struct PatchEmbedding {
    linear: Linear,
    position_embeddings: Tensor,
    patch: usize,
    grid: [usize; 3],
}

impl PatchEmbedding {
    /// Builds the block under `vb` for `in_channels`, a `grid` of patches of side `patch`.
    pub fn new(vb: VarBuilder, in_channels: usize, patch: usize, grid: [usize; 3], hidden: usize) -> Result<Self> {
        let patch_dim = in_channels * patch * patch * patch;
        let linear = Linear::new(vb.pp("patch_embeddings").pp("1"), patch_dim, hidden, true)?;
        let n = grid.iter().product::<usize>();
        let position_embeddings =
            vb.get_with_hints((1, n, hidden), "position_embeddings", Init::Randn { mean: 0.0, stdev: 0.02 })?;
        Ok(Self { linear, position_embeddings, patch, grid })
    }

    /// Embeds `x (B, C, D, H, W)` into `(B, n_patches, hidden)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, _, _) = x.dims5()?;
        let (p, [g0, g1, g2]) = (self.patch, self.grid);
        let x = x.reshape(vec![b, c, g0, p, g1, p, g2, p])?.permute(vec![0, 2, 4, 6, 3, 5, 7, 1])?.reshape((
            b,
            g0 * g1 * g2,
            p * p * p * c,
        ))?;
        let pos = self.position_embeddings.to_dtype(x.dtype())?;
        Ok(self.linear.forward(&x)?.broadcast_add(&pos)?)
    }
}

/// `SABlock` with the combined `qkv` linear (bias-free by default) and `out_proj`; scale
/// `dim_head^-0.5`, softmax over the keys.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    qkv: Linear,
    out_proj: Linear,
    num_heads: usize,
}

impl SelfAttention {
    /// Builds the block under `vb`.
    pub fn new(vb: VarBuilder, hidden: usize, num_heads: usize, qkv_bias: bool) -> Result<Self> {
        let qkv = Linear::new(vb.pp("qkv"), hidden, 3 * hidden, qkv_bias)?;
        let out_proj = Linear::new(vb.pp("out_proj"), hidden, hidden, true)?;
        Ok(Self { qkv, out_proj, num_heads })
    }

    /// Applies self-attention to `x (B, n, hidden)`: `qkv`, the attention core
    /// ([`magseg_kernels::self_attention`]: `"b h (qkv l d) -> qkv b l h d"`, scale `d^-0.5`, the
    /// softmax in f32 as autocast does, `"b l h d -> b h (l d)"`, one autograd node), `out_proj`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = magseg_kernels::self_attention(&self.qkv.forward(x)?, self.num_heads)?;
        self.out_proj.forward(&y)
    }
}

/// `MLPBlock`: `linear1 → GELU (exact, erf) → linear2`.
#[derive(Debug, Clone)]
pub struct Mlp {
    linear1: Linear,
    linear2: Linear,
}

impl Mlp {
    /// Builds the block under `vb`.
    pub fn new(vb: VarBuilder, hidden: usize, mlp_dim: usize) -> Result<Self> {
        Ok(Self {
            linear1: Linear::new(vb.pp("linear1"), hidden, mlp_dim, true)?,
            linear2: Linear::new(vb.pp("linear2"), mlp_dim, hidden, true)?,
        })
    }

    /// Applies the block.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear2.forward(&magseg_kernels::gelu_erf(&self.linear1.forward(x)?)?)
    }
}

/// `TransformerBlock`: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`. MONAI also creates an
/// unused `norm_cross_attn` LayerNorm; it is created here too so that state dicts and parameter
/// counts match, and [`crate::is_unused_parameter`] names it.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    norm1: LayerNorm,
    attn: SelfAttention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl TransformerBlock {
    /// Builds the block under `vb`.
    pub fn new(vb: VarBuilder, hidden: usize, mlp_dim: usize, num_heads: usize) -> Result<Self> {
        let mlp = Mlp::new(vb.pp("mlp"), hidden, mlp_dim)?;
        let norm1 = LayerNorm::new(vb.pp("norm1"), hidden)?;
        let attn = SelfAttention::new(vb.pp("attn"), hidden, num_heads, false)?;
        let norm2 = LayerNorm::new(vb.pp("norm2"), hidden)?;
        LayerNorm::new(vb.pp("norm_cross_attn"), hidden)?;
        Ok(Self { norm1, attn, norm2, mlp })
    }

    /// Applies the block to `x (B, n, hidden)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attn.forward(&self.norm1.forward(x)?)?)?;
        Ok((&x + self.mlp.forward(&self.norm2.forward(&x)?)?)?)
    }
}

/// MONAI's `ViT` without classification: patch embedding, `num_layers` transformer blocks and a
/// final LayerNorm `norm`.
#[derive(Debug, Clone)]
pub struct Vit {
    patch_embedding: PatchEmbedding,
    blocks: Vec<TransformerBlock>,
    norm: LayerNorm,
}

/// What [`Vit::forward`] returns.
#[derive(Debug, Clone)]
pub struct VitOutput {
    /// The normalised output of the last block, `(B, n, hidden)`.
    pub last: Tensor,
    /// The output of every block (before the final norm), in order.
    pub hidden_states: Vec<Tensor>,
}

/// The sizes a [`Vit`] needs.
#[derive(Debug, Clone, Copy)]
pub struct VitSizes {
    /// Input channels.
    pub in_channels: usize,
    /// Patch side length.
    pub patch: usize,
    /// Patches per axis.
    pub grid: [usize; 3],
    /// Token width.
    pub hidden: usize,
    /// MLP width.
    pub mlp_dim: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Transformer blocks.
    pub num_layers: usize,
}

impl Vit {
    /// Builds the ViT under `vb`.
    pub fn new(vb: VarBuilder, s: VitSizes) -> Result<Self> {
        let patch_embedding = PatchEmbedding::new(vb.pp("patch_embedding"), s.in_channels, s.patch, s.grid, s.hidden)?;
        let blocks = (0..s.num_layers)
            .map(|i| TransformerBlock::new(vb.pp("blocks").pp(i), s.hidden, s.mlp_dim, s.num_heads))
            .collect::<Result<Vec<_>>>()?;
        let norm = LayerNorm::new(vb.pp("norm"), s.hidden)?;
        Ok(Self { patch_embedding, blocks, norm })
    }

    /// Runs the ViT on `x (B, C, D, H, W)`.
    pub fn forward(&self, x: &Tensor) -> Result<VitOutput> {
        let mut h = self.patch_embedding.forward(x)?;
        let mut hidden_states = Vec::with_capacity(self.blocks.len());
        for blk in &self.blocks {
            h = blk.forward(&h)?;
            hidden_states.push(h.clone());
        }
        Ok(VitOutput { last: self.norm.forward(&h)?, hidden_states })
    }
}
