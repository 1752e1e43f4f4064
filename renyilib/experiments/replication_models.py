"""Models of the adaptive-sharpness replication: FCNN, its LeNet-5 and a two-layer GAT.

* :class:`FCNN` — fully connected 10-64-64-1 with ReLU (replication,
  Sec. III.A). ``activation="elu", output_activation="elu"`` is what the
  published notebook runs (``nn.functional.elu`` after *every* layer, the
  output included, although the report says ReLU).
* :class:`ReplicationLeNet5` — the replication's LeNet-5 (Sec. III.B; channel
  and unit counts from its notebook): conv 5×5 (1→12) – BatchNorm – ReLU –
  max-pool 2, conv 5×5 (12→32) – BatchNorm – ReLU – max-pool 2, then fully
  connected 512→256→128→10 with dropout 0.5 after the first two (ReLU after
  dropout, which equals ReLU before it).
* :class:`GAT` — two ``torch_geometric.nn.GATConv`` layers (Veličković et al.
  2018): dropout 0.6 on the input features and between the layers, 8 hidden
  channels per head, ELU, attention dropout 0.6. ``heads`` is the number of
  attention heads of the first layer (the published notebook defines
  ``heads = 8`` but builds ``torch_geometric.nn.GAT`` without it: one head).
* :class:`NodeClassifier` — wraps a graph network so that its input is a
  tensor of node indices (the graph is a non-persistent buffer): node
  classification becomes ``(x, y) = (node_idx, labels)`` for every measure,
  the Hessian operators and the PGA.

:func:`xavier_init` re-initializes every Linear / Conv weight with
:func:`torch.nn.init.xavier_uniform_` and zeroes their biases (the report's
"Xavier-initialized weights"; GATConv's own initialization is already
Glorot). :func:`build_replication_model` builds a task's model from a name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = [
    "FCNN",
    "GAT",
    "REPLICATION_MODELS",
    "NodeClassifier",
    "ReplicationLeNet5",
    "build_replication_model",
    "fold_batchnorm",
    "xavier_init",
]

#: Names accepted by :func:`build_replication_model`.
REPLICATION_MODELS = ("fcnn", "lenet5", "gat")

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


def _activation(name: str | None, arg: str) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name not in _ACTIVATIONS:
        raise ValueError(f"{arg} must be one of {sorted(_ACTIVATIONS)} or None, got {name!r}")
    return _ACTIVATIONS[name]()


class FCNN(nn.Module):
    """Fully connected network ``sizes[0] → … → sizes[-1]`` (default 10-64-64-1).

    Args:
        sizes: Layer widths, input first (at least two).
        activation: Between layers: ``"relu"`` (the report), ``"elu"`` (the notebook) or ``"tanh"``.
        output_activation: After the last layer: ``None`` (a linear output, as a
            z-scored regression target needs) or an activation name (the
            notebook's ELU, whose output cannot go below −1).
    """

    def __init__(
        self,
        sizes: tuple[int, ...] | list[int] = (10, 64, 64, 1),
        activation: str = "relu",
        output_activation: str | None = None,
    ) -> None:
        super().__init__()
        sizes = tuple(sizes)
        if len(sizes) < 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
            raise ValueError(f"sizes must be at least two positive ints, got {sizes!r}")
        layers: list[nn.Module] = []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            last = i == len(sizes) - 2
            layers.append(_activation(output_activation if last else activation, "activation"))
        self.net = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ReplicationLeNet5(nn.Module):
    """The replication's LeNet-5 for 1×28×28 images (see the module docstring).

    Args:
        num_classes: Output logits.
        channels: Channels of the two convolutions (notebook: 12, 32).
        hidden: Units of the first two fully connected layers (notebook: 256, 128).
        dropout: Dropout probability after the first two fully connected layers.
        batchnorm: ``False`` replaces the two BatchNorm layers by identities (the
            form :func:`fold_batchnorm` returns).
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: tuple[int, int] = (12, 32),
        hidden: tuple[int, int] = (256, 128),
        dropout: float = 0.5,
        batchnorm: bool = True,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        h1, h2 = hidden
        self.conv1 = nn.Conv2d(1, c1, 5)
        self.bn1 = nn.BatchNorm2d(c1) if batchnorm else nn.Identity()
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.bn2 = nn.BatchNorm2d(c2) if batchnorm else nn.Identity()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c2 * 4 * 4, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, num_classes)
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = x.flatten(1)
        x = torch.relu(self.drop1(self.fc1(x)))
        x = torch.relu(self.drop2(self.fc2(x)))
        return self.fc3(x)


class GAT(nn.Module):
    """Two-layer graph attention network (Veličković et al. 2018) with ``GATConv``.

    ``dropout → GATConv(in, hidden, heads) → ELU → dropout → GATConv(hidden·heads, classes, 1)``,
    attention coefficients dropped with the same probability.

    Args:
        in_channels: Node feature size.
        num_classes: Output logits per node.
        hidden: Hidden channels per head (the report: 8).
        heads: Attention heads of the first layer.
        dropout: Feature and attention dropout (the report: 0.6).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: int = 8,
        heads: int = 1,
        dropout: float = 0.6,
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv

        self.dropout = float(dropout)
        self.conv1 = GATConv(in_channels, hidden, heads=heads, dropout=dropout)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=1, dropout=dropout)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = nn.functional.dropout(x, self.dropout, self.training)
        x = nn.functional.elu(self.conv1(x, edge_index))
        x = nn.functional.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


class NodeClassifier(nn.Module):
    """A graph network evaluated on a fixed graph, indexed by nodes: ``model(idx) = net(X, E)[idx]``.

    The node features and edges are non-persistent buffers (moved by ``.to``,
    left out of the state dict); every forward pass runs the whole graph and
    returns the rows of the requested nodes, so a "batch" of node indices has
    the loss of those nodes with full message passing.
    """

    def __init__(self, net: nn.Module, features: torch.Tensor, edge_index: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("features", features, persistent=False)
        self.register_buffer("edge_index", edge_index, persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.net(self.features, self.edge_index)[idx]


def xavier_init(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Xavier-uniform weights (Glorot & Bengio 2010) and zero biases for every Linear / Conv layer.

    Other parameters (BatchNorm: weight 1, bias 0; GATConv's attention
    vectors, already Glorot) keep their initialization.
    """
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            nn.init.xavier_uniform_(m.weight, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def fold_batchnorm(model: ReplicationLeNet5) -> ReplicationLeNet5:
    """The eval-mode function of a :class:`ReplicationLeNet5` as a LeNet-5 without BatchNorm.

    In eval mode a BatchNorm layer is the per-channel affine map
    :math:`z \\mapsto \\gamma (z - \\mu)/\\sqrt{\\sigma^2 + \\epsilon} + \\beta` with its
    running statistics :math:`\\mu, \\sigma^2`; folded into the convolution before it,
    :math:`W' = a W`, :math:`b' = a (b - \\mu) + \\beta` with
    :math:`a = \\gamma/\\sqrt{\\sigma^2 + \\epsilon}` per output channel. The result
    computes the same function in eval mode (dropout off) and is a plain ReLU
    network with max-pooling, which the layer-wise rescaling of minimum
    sharpness leaves invariant (with BatchNorm it does not: the running
    statistics are buffers, not rescaled). Its Hessian is with respect to the
    folded parameters, not to the original ``(W, b, γ, β)``.

    Args:
        model: A LeNet-5 with BatchNorm.

    Returns:
        A new :class:`ReplicationLeNet5` (``batchnorm=False``) in eval mode, on
        the model's device and dtype.
    """
    if not isinstance(model, ReplicationLeNet5) or not isinstance(model.bn1, nn.BatchNorm2d):
        raise TypeError(
            f"model must be a ReplicationLeNet5 with BatchNorm, got {type(model).__name__}"
        )
    ref = next(model.parameters())
    folded = ReplicationLeNet5(
        num_classes=model.fc3.out_features,
        channels=(model.conv1.out_channels, model.conv2.out_channels),
        hidden=(model.fc1.out_features, model.fc2.out_features),
        dropout=model.drop1.p,
        batchnorm=False,
    ).to(device=ref.device, dtype=ref.dtype)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("bn1.", "bn2."))}
    with torch.no_grad():
        for conv, bn in (("conv1", model.bn1), ("conv2", model.bn2)):
            a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w, b = state[f"{conv}.weight"], state[f"{conv}.bias"]
            state[f"{conv}.weight"] = w * a.view(-1, 1, 1, 1)
            state[f"{conv}.bias"] = a * (b - bn.running_mean) + bn.bias
    folded.load_state_dict(state)
    return folded.eval()


def build_replication_model(name: str, data: Any = None, **kwargs: Any) -> nn.Module:
    """Build ``"fcnn"``, ``"lenet5"`` or ``"gat"`` (a :class:`NodeClassifier` over ``data.graph``).

    Args:
        name: One of :data:`REPLICATION_MODELS`.
        data: A :class:`~renyilib.experiments.replication_data.ReplicationData`;
            sets the input size and classes, and for ``"gat"`` the graph.
        **kwargs: Passed to the model's constructor.
    """
    if name == "fcnn":
        if data is not None:
            kwargs.setdefault("sizes", (data.num_features, 64, 64, data.num_classes))
        return FCNN(**kwargs)
    if name == "lenet5":
        if data is not None:
            kwargs.setdefault("num_classes", data.num_classes)
        return ReplicationLeNet5(**kwargs)
    if name == "gat":
        if data is None or data.graph is None:
            raise ValueError("data: the 'gat' model needs a ReplicationData with a graph")
        net = GAT(data.num_features, data.num_classes, **kwargs)
        return NodeClassifier(net, data.graph["features"], data.graph["edge_index"])
    raise ValueError(f"name must be one of {REPLICATION_MODELS}, got {name!r}")
