"""Why a request was not served. Each carries its HTTP status and OpenAI error code."""

from __future__ import annotations


class RoutingError(Exception):
    status = 500
    code = "internal_error"


class ModelNotFound(RoutingError):
    status = 404
    code = "not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"no local server found for requested model {model!r}")
        self.model = model


class TooManyRequests(RoutingError):
    """The model's concurrencyLimit (queued + in flight) is reached."""

    status = 429
    code = "concurrency_limit"

    def __init__(self, model: str, limit: int) -> None:
        super().__init__(f"Too many requests: model {model!r} already has {limit} requests")
        self.model = model
        self.limit = limit


class KeyTooManyRequests(TooManyRequests):
    """The API key's concurrencyLimit (its requests waiting or in flight) is reached."""

    code = "key_concurrency_limit"

    def __init__(self, key: str, limit: int) -> None:
        RoutingError.__init__(
            self, f"Too many requests: key {key!r} already has {limit} requests in flight"
        )
        self.model = ""
        self.key = key
        self.limit = limit


class ModelForbidden(RoutingError):
    """The request's API key may not use this model (its `models` scope)."""

    status = 403
    code = "model_not_allowed"

    def __init__(self, model: str, key: str) -> None:
        super().__init__(f"API key {key!r} may not use model {model!r}")
        self.model = model
        self.key = key


class SwapFailed(RoutingError):
    """The model could not be started; the message carries the upstream's reason."""

    status = 500
    code = "start_failed"


class ModelNotLoaded(RoutingError):
    """A request that may not load anything (upstream.ignorePaths) found its model not ready."""

    status = 409
    code = "model_not_loaded"

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model} is not loaded")
        self.model = model


class ModelUnloaded(RoutingError):
    status = 503
    code = "model_unloaded"

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} was unloaded while the request waited")
        self.model = model


class ShuttingDown(RoutingError):
    status = 503
    code = "service_unavailable"

    def __init__(self) -> None:
        super().__init__("llamaswap is shutting down")


class Unschedulable(RoutingError):
    """The policy can never run this model (e.g. it cannot fit beside persistent models)."""

    status = 503
    code = "cannot_fit"


class BlockedByUnswappable(Unschedulable):
    """The model cannot run while a model with `swappable: false` runs."""

    code = "not_swappable"


class ReloadInProgress(RuntimeError):
    """A config reload was asked for while another one (or a shutdown) is under way."""
