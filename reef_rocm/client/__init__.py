"""Python client of `reef serve`: ``Client(address)``, ``client.load(...) -> Model``,
``model.infer(inputs)``, ``model.infer_async(inputs) -> Future`` (docs/server.md). It uses
only the generated protocol code (reef_rocm.proto) and its own helpers."""

from reef_rocm.client.api import Client, Model, RemoteError, TensorSpec, default_address

__all__ = ["Client", "Model", "RemoteError", "TensorSpec", "default_address"]
