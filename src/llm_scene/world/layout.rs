//! Where scene 2's world puts each thing, as plain functions (tests check rendered pixels against
//! them): the tokens along the floor, the newest token's embedding row beside them, the 30 MLP
//! layers stacked upward as 48 x 32 blocks of neuron columns, a residual-norm spine, and the
//! next-token bars on top. Every column's model matrix is T (its place) times S (s_y = its value):
//! the trace's numbers become the scale factors of the matrices scene 1 builds.

use glam::{Mat4, Vec3};

/// Distance between neighbouring columns (world units).
pub const PITCH: f32 = 0.25;
/// A column's width and depth.
pub const COLUMN: f32 = 0.2;
/// A neuron column's height for an activation of 1: the mesh is this tall, S scales it by the
/// activation itself.
pub const MLP_UNIT: f32 = 0.12;
/// An embedding column's height for a value of 1 (embedding values are ~10x smaller).
pub const EMBEDDING_UNIT: f32 = 2.5;
/// A next-token bar's height for a probability of 1.
pub const HEAD_UNIT: f32 = 4.0;
/// The spine's height for a residual norm of 1.
pub const SPINE_UNIT: f32 = 0.0015;
/// Height of layer 0's floor, and between layers.
pub const FIRST_LAYER: f32 = 1.5;
pub const LAYER_GAP: f32 = 1.0;
/// Tokens drawn along the floor (the newest).
pub const MAX_TOKENS: usize = 48;
/// Next-token bars.
pub const HEAD_BARS: usize = 20;
/// Attention: the newest positions drawn for each head, a tile's height for a weight of 1, and
/// the tiles' spacing.
pub const ATTENTION_POSITIONS: usize = 48;
pub const ATTENTION_UNIT: f32 = 0.6;
pub const ATTENTION_PITCH: f32 = 0.2;
const HEAD_PITCH: f32 = 0.6;

/// The model's shape as the world lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldLayout {
    pub layers: usize,
    pub neurons: usize,
    pub embedding: usize,
    /// Columns of a layer's block (48 for 1,536 neurons) and of the embedding's (24 for 576).
    pub cols: usize,
    pub embedding_cols: usize,
    /// Query heads and the KV heads they share (0: no attention drawn).
    pub heads: usize,
    pub kv_heads: usize,
}

impl WorldLayout {
    pub fn new(layers: usize, neurons: usize, embedding: usize) -> Self {
        let side = |n: usize, aspect: f32| ((n as f32 * aspect).sqrt().ceil() as usize).max(1);
        Self {
            layers,
            neurons,
            embedding,
            cols: side(neurons, 1.5),
            embedding_cols: side(embedding, 1.0),
            heads: 0,
            kv_heads: 0,
        }
    }

    /// With each layer's attention: `heads` query heads over `kv_heads` shared KV heads.
    pub fn with_attention(mut self, heads: usize, kv_heads: usize) -> Self {
        self.heads = heads;
        self.kv_heads = kv_heads.clamp(1, heads.max(1));
        self
    }

    /// Head `head` (reading KV head `kv`) of layer `layer`: its tile for drawn slot `slot` of
    /// `ATTENTION_POSITIONS` (the newest position in the last slot), left of the spine, the
    /// heads in rows grouped under their KV heads.
    pub fn attention_base(&self, layer: usize, head: usize, kv: usize, slot: usize) -> Vec3 {
        let rows = self.heads as f32 + (self.kv_heads as f32 - 1.0) * 0.8;
        let row = head as f32 + kv as f32 * 0.8;
        Vec3::new(
            self.spine_base(layer).x
                - 0.8
                - (ATTENTION_POSITIONS - 1 - slot.min(ATTENTION_POSITIONS - 1)) as f32
                    * ATTENTION_PITCH,
            self.layer_height(layer),
            (row - (rows - 1.0) / 2.0) * ATTENTION_PITCH * 1.5,
        )
    }

    fn rows(&self) -> usize {
        self.neurons.div_ceil(self.cols).max(1)
    }

    pub fn layer_height(&self, layer: usize) -> f32 {
        FIRST_LAYER + layer as f32 * LAYER_GAP
    }

    /// The top of the stack, where the head's bars stand.
    pub fn head_height(&self) -> f32 {
        self.layer_height(self.layers) + 3.0
    }

    /// Where neuron `neuron` of layer `layer` stands (the middle of its column's base).
    pub fn column_base(&self, layer: usize, neuron: usize) -> Vec3 {
        let (col, row) = (neuron % self.cols, neuron / self.cols);
        Vec3::new(
            (col as f32 - (self.cols as f32 - 1.0) / 2.0) * PITCH,
            self.layer_height(layer),
            (row as f32 - (self.rows() as f32 - 1.0) / 2.0) * PITCH,
        )
    }

    /// Value `i` of the newest token's embedding row: a square block on the floor.
    pub fn embedding_base(&self, i: usize) -> Vec3 {
        let n = self.embedding_cols;
        let (col, row) = (i % n, i / n);
        let half = (n as f32 - 1.0) / 2.0;
        Vec3::new(
            (col as f32 - half) * PITCH,
            0.0,
            (row as f32 - half) * PITCH + self.floor_front() + 1.5 + half * PITCH,
        )
    }

    /// The front edge of the layer blocks (toward the default camera).
    fn floor_front(&self) -> f32 {
        (self.rows() as f32 / 2.0) * PITCH
    }

    /// Token `slot` of the drawn ones (0 = the oldest drawn), of `count`.
    pub fn token_base(&self, slot: usize, count: usize) -> Vec3 {
        let count = count.max(1) as f32;
        Vec3::new(
            (slot as f32 - (count - 1.0) / 2.0) * PITCH * 1.2,
            0.0,
            self.floor_front() + 0.6,
        )
    }

    /// Layer `layer`'s residual norm stands left of its block.
    pub fn spine_base(&self, layer: usize) -> Vec3 {
        Vec3::new(
            -(self.cols as f32 / 2.0) * PITCH - 1.0,
            self.layer_height(layer),
            0.0,
        )
    }

    /// Next-token candidate `rank` (0 = the most likely).
    pub fn head_base(&self, rank: usize) -> Vec3 {
        Vec3::new(
            (rank as f32 - (HEAD_BARS as f32 - 1.0) / 2.0) * HEAD_PITCH,
            self.head_height(),
            0.0,
        )
    }

    /// The middle of the whole world, for the overview camera.
    pub fn centre(&self) -> Vec3 {
        Vec3::new(0.0, (self.head_height() + HEAD_UNIT * 0.5) / 2.0, 1.5)
    }
}

/// A column's model matrix: T(base) times S(1, value, 1) on a mesh `unit` tall standing on y = 0
/// (so its top is at base.y + unit * value; a negative value hangs below the base).
pub fn column_matrix(base: Vec3, value: f32) -> Mat4 {
    Mat4::from_translation(base) * Mat4::from_scale(Vec3::new(1.0, value, 1.0))
}

/// The middle of a column's top face, where a test looks for its colour.
pub fn column_top(base: Vec3, value: f32, unit: f32) -> Vec3 {
    column_matrix(base, value).transform_point3(Vec3::new(0.0, unit, 0.0))
}
