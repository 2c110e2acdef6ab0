"""The steps of a daily batch. Each is a plain function of a StepContext that reads committed inputs through
batch.datasets and commits its output; each declares itself in the graph (batch.graph) with ``@step``. None of
them knows how it is being run (CLI, local runner, GKE Job) or which gates guard it.

Importing this package registers every step; the graph orders them by what they read and write.
"""

from batch.graph import GRAPH
from batch.steps import (  # noqa: F401  (registration)
    aggregate,
    candidates,
    export,
    index,
    publish,
    related,
    train,
)

__all__ = ["GRAPH"]
