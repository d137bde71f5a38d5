"""Graphs, neighbour lists, padded batches and structure files."""

from jaxtl.graph.graph import Graph, edge_vectors
from jaxtl.graph.labels import Batch, Labels

__all__ = ["Graph", "Batch", "Labels", "edge_vectors"]
