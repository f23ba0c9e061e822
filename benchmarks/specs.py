"""What is benchmarked: the models, the peers, the regularization rules and the training settings.

Pure data and stdlib only, so the parent process can import it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STEPS = 60              # batches per timed epoch
REPEATS = 5             # timed epochs; the median is reported
LEARNING_RATE = 0.01    # SGD, no momentum, for every peer
NUM_CLASSES = 10
SEED = 0
THREADS = 2             # intra-op threads for torch and XLA, in every child

# The "reg" variant, identical for every peer.
KERNEL_L2 = 1e-4        # hidden layers' kernels
BIAS_L1 = 1e-5          # hidden layers' biases
ACTIVITY_L1 = 1e-6      # hidden layers' outputs (after the activation), divided by the batch size
MAX_NORM = 3.0          # every layer's kernel, output layer included, per output unit / filter


@dataclass(frozen=True)
class ModelSpec:
    """A stack of ``Dense(relu)`` or ``Conv2D(3x3, same, relu)`` layers, then ``Dense(10)`` logits.

    With ``vocab``, the inputs are token ids instead: ``Embedding(vocab, embed_dim)``, then
    ``LSTM(lstm_units)`` (its last output), then ``Dense(10)`` logits.
    """

    name: str
    batch: int
    input_shape: tuple[int, ...]            # channels_last for images
    dense_units: tuple[int, ...] = ()
    conv_filters: tuple[int, ...] = ()
    pool_after: tuple[int, ...] = ()        # MaxPooling2D(2) after these conv layers (0-based)
    vocab: int = 0                          # > 0: integer token inputs of shape input_shape
    embed_dim: int = 0
    lstm_units: int = 0
    description: str = ""
    label: str = ""                         # the short form the README's table uses

    @property
    def hidden_layers(self) -> int:
        return len(self.dense_units) + len(self.conv_filters) + (1 if self.lstm_units else 0)

    @property
    def regularized_tensors(self) -> int:
        """Weight tensors carrying a regularizer in the reg variant (hidden kernels and biases,
        and the LSTM's recurrent kernel)."""
        return 2 * self.hidden_layers + (1 if self.lstm_units else 0)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("deep", 64, (64,), dense_units=(64,) * 40,
                  description="40 x Dense(64, relu) on 64 inputs, Dense(10); batch 64", label="40 × Dense(64)"),
        ModelSpec("wide", 128, (784,), dense_units=(1024,) * 2,
                  description="2 x Dense(1024, relu) on 784 inputs, Dense(10); batch 128", label="2 × Dense(1024)"),
        ModelSpec("cnn", 64, (32, 32, 3), conv_filters=(64,) * 4, pool_after=(1, 3),
                  description="4 x Conv2D(64, 3x3, same, relu), MaxPool(2) after the 2nd and 4th, "
                              "Flatten, Dense(10) on 32x32x3; batch 64", label="4 × Conv2D(64)"),
        ModelSpec("many", 32, (32,), dense_units=(32,) * 100,
                  description="100 x Dense(32, relu) on 32 inputs, Dense(10); batch 32 "
                              "(200 regularized tensors in the reg variant)",
                  label="100 × Dense(32), 200 regularized tensors"),
        ModelSpec("lstm", 64, (50,), vocab=1000, embed_dim=64, lstm_units=128,
                  description="Embedding(1000, 64), LSTM(128) (its last output), Dense(10) on token "
                              "sequences of length 50; batch 64", label="Embedding, LSTM(128), 50 steps"),
    )
}


@dataclass(frozen=True)
class PeerSpec:
    name: str
    module: str                          # benchmarks.peers.<module>
    requires: tuple[str, ...]            # importable top-level modules
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""


_XLA_FLAGS = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={THREADS}"

PEERS: dict[str, PeerSpec] = {
    peer.name: peer
    for peer in (
        PeerSpec("floor", "floor_peer", ("torch",), {"KERAS_BACKEND": "torch"},
                 "the bare compute: the torch model's forward and the gradients of its parameters "
                 "(no loss, penalties, optimizer or constraints) under torch.compile; reg runs the plain step"),
        PeerSpec("weightwise", "weightwise_peer", ("torch", "weightwise"), {"KERAS_BACKEND": "torch"},
                 "weightwise.Sequential, compile(), fit() of one epoch (eager)"),
        PeerSpec("weightwise-jit", "weightwise_peer", ("torch", "weightwise"), {"KERAS_BACKEND": "torch"},
                 "compile(..., jit_compile=True): the whole step (forward, penalties, backward, SGD, MaxNorm) "
                 "as one compiled program"),
        PeerSpec("torch", "torch_peer", ("torch",), {"KERAS_BACKEND": "torch"},
                 "hand-written nn.Sequential loop, naive penalties and max-norm by hand (eager)"),
        PeerSpec("torch-compile", "torch_peer", ("torch",), {"KERAS_BACKEND": "torch"},
                 "the same step function under torch.compile (inductor; aot_eager if inductor fails)"),
        PeerSpec("keras-torch", "keras_peer", ("keras", "torch"), {"KERAS_BACKEND": "torch"},
                 "Keras 3 on the torch backend, fit(), jit_compile=False"),
        PeerSpec("keras-torch-jit", "keras_peer", ("keras", "torch"), {"KERAS_BACKEND": "torch"},
                 "Keras 3 on the torch backend, fit(), jit_compile=True (torch.compile)"),
        PeerSpec("keras-jax", "keras_peer", ("keras", "jax"), {"KERAS_BACKEND": "jax", "XLA_FLAGS": _XLA_FLAGS},
                 "Keras 3 on the JAX backend, fit(), jit_compile=True (XLA)"),
    )
}

# What a run measures unless --only says otherwise. keras-torch-jit is left out: its warm-ups
# (100-500 s per model) took more than half of a full run, and it never beat eager keras-torch.
DEFAULT_PEERS: tuple[str, ...] = tuple(name for name in PEERS if name != "keras-torch-jit")

VARIANTS = ("plain", "reg")

# One thread in the smoke run: it checks that everything runs, and must stay fast on a busy machine.
SMOKE = {"models": ("deep",), "peers": ("weightwise", "torch"), "steps": 3, "repeats": 1, "threads": 1}
