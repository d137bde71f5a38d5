"""Graphs, neighbour lists, padded batches and structure files."""

from jaxtl.graph.batching import (
    Budget,
    batch_atoms,
    graph_from_configuration,
    pad_batch,
    pad_to_capacity,
    round_capacity,
)
from jaxtl.graph.dataset import Budgets, EpochBatches, GraphDataset, batch_iterator, choose_budgets, plan_batches
from jaxtl.graph.graph import Graph, edge_vectors
from jaxtl.graph.io import (
    Configuration,
    DataError,
    DataKeys,
    check_config_type_weights,
    check_elements,
    configuration_from_atoms,
    is_isolated_atom,
    read_configurations,
    read_frames,
    split_isolated_atoms,
)
from jaxtl.graph.labels import Batch, Labels
from jaxtl.graph.neighbours import neighbour_list

__all__ = [
    "Batch",
    "batch_atoms",
    "Budget",
    "Budgets",
    "Configuration",
    "DataError",
    "DataKeys",
    "EpochBatches",
    "Graph",
    "GraphDataset",
    "Labels",
    "batch_iterator",
    "check_config_type_weights",
    "check_elements",
    "choose_budgets",
    "configuration_from_atoms",
    "edge_vectors",
    "graph_from_configuration",
    "is_isolated_atom",
    "neighbour_list",
    "pad_batch",
    "pad_to_capacity",
    "plan_batches",
    "read_configurations",
    "read_frames",
    "round_capacity",
    "split_isolated_atoms",
]
