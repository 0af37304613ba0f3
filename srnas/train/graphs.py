"""Whole-step graphs for the training loop: capture forward, backward and the optimiser step
once per input shape, replay them afterwards (small SR nets are launch-bound on a GPU).

`Trainer` drives the control flow (warm-up steps, one graph per scale and shape, the lr as a
device tensor, fallback to eager steps); a `GraphBackend` does the device work:

- `CudaGraphs`: `torch.cuda.CUDAGraph` captured on the trainer's device on an explicit side
  stream, all graphs of one run sharing one memory pool; `reset` after a failed capture ends the
  capture, drops graphs, stream and pool, so the run goes on eagerly with nothing left behind.
- `RecordedGraphs`: a stand-in for tests and CPU runs whose "capture" records the step function
  and whose replay runs it, so the control flow runs in the CPU test suite.

A captured step must read its inputs from, and leave its loss in, tensors that stay the same
between replays (`StaticStep`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch


class GraphBackend(Protocol):
    """What the trainer needs from a graph implementation."""

    name: str

    def side_stream(self) -> contextlib.AbstractContextManager[Any]:
        """Where warm-up steps run before a capture (CUDA requires a side stream)."""
        ...

    def capture(self, step: Callable[[], None]) -> Any:
        """A graph of ``step`` (which is not run by the capture itself)."""
        ...

    def replay(self, graph: Any) -> None: ...

    def reset(self) -> None:
        """Forget every graph and the resources behind them (after a failed capture)."""
        ...


class CudaGraphs:
    """CUDA graphs on one device, captured on a side stream, sharing one memory pool."""

    name = "cuda-graphs"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._stream: torch.cuda.Stream | None = None
        self._pool: Any = None
        self._graphs: list[torch.cuda.CUDAGraph] = []

    @property
    def stream(self) -> torch.cuda.Stream:
        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device)
        return self._stream

    @contextlib.contextmanager
    def side_stream(self) -> Iterator[None]:
        main = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(main)
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            yield
        main.wait_stream(self.stream)

    def capture(self, step: Callable[[], None]) -> torch.cuda.CUDAGraph:
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        with torch.cuda.device(self.device):
            with torch.cuda.graph(graph, pool=self._pool, stream=self.stream):
                step()
        self._graphs.append(graph)
        return graph

    def replay(self, graph: torch.cuda.CUDAGraph) -> None:
        graph.replay()

    def reset(self) -> None:
        with contextlib.suppress(Exception):  # a capture that failed midway may still be open
            torch.cuda.synchronize(self.device)
        for graph in self._graphs:
            with contextlib.suppress(Exception):
                graph.reset()
        self._graphs.clear()
        self._stream = None
        self._pool = None
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()


class RecordedGraphs:
    """Stand-in graphs: capture records the step, replay runs it (tests, CPU)."""

    name = "recorded-graphs"

    def __init__(self) -> None:
        self.captured: list[Callable[[], None]] = []
        self.replays = 0

    def side_stream(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def capture(self, step: Callable[[], None]) -> Callable[[], None]:
        self.captured.append(step)
        return step

    def replay(self, graph: Callable[[], None]) -> None:
        self.replays += 1
        graph()

    def reset(self) -> None:
        self.captured.clear()


class StaticStep:
    """The tensors one captured step reads and writes: inputs copied in before each replay,
    the loss left behind by it, and the warm-up count before the capture."""

    def __init__(self) -> None:
        self.warm = 0
        self.graph: Any = None
        self.lr: torch.Tensor | None = None
        self.hr: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None
        self.checked = False
