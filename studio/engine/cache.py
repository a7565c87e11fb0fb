"""A model cache bounded by memory: least recently used models are dropped first."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

from studio.families.base import LoadedModel

Key = TypeVar("Key", bound=Hashable)


class ModelCache(Generic[Key]):
    """Loaded models by key (the engine's: model id, device, dtype)."""

    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self._models: OrderedDict[Key, LoadedModel] = OrderedDict()

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._models

    def keys(self) -> list[Key]:
        return list(self._models)

    @property
    def used(self) -> int:
        return sum(m.nbytes() for m in self._models.values())

    def get(self, key: Key, load: Callable[[], LoadedModel]) -> LoadedModel:
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        model = load()
        self._models[key] = model
        self._evict(keep=key)
        return model

    def _evict(self, keep: Key) -> None:
        while len(self._models) > 1 and self.used > self.budget:
            oldest = next(k for k in self._models if k != keep)
            del self._models[oldest]

    def drop(self, key: Key | None = None) -> None:
        """Forget one model, or all."""
        if key is None:
            self._models.clear()
        else:
            self._models.pop(key, None)
