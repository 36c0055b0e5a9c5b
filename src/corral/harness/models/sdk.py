"""What the SDK-backed adapters share: the SDK imported when a model is built, its client made on the first
call, and every failure — a missing SDK, a client that cannot be made, a call that fails — a ``ModelError``
that names the provider, the model and the cause."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from corral.harness.models.base import ModelError

T = TypeVar("T")


class SDKModel:
    """An adapter over a provider's SDK. A subclass names its ``provider`` and ``package`` and says how to
    make the client (``make_client``); ``client=`` injects a ready one (tests, shared sessions)."""

    provider: ClassVar[str]
    package: ClassVar[str]  # the SDK's import name; also what a missing-SDK error says to install

    def __init__(
        self,
        id: str,
        *,
        base_url: str | None = None,
        max_retries: int | None = 2,
        timeout: float | None = None,
        client: Any = None,
    ) -> None:
        self.id = id
        self.base_url = base_url
        self._max_retries = max_retries
        self._timeout = timeout
        self._client = client
        if client is None:
            self.sdk()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Any:
        """The ``model:`` mapping of an agent file (its ``id`` checked already) → a model."""
        return cls(str(config["id"]), **cls.config_options(config))

    @classmethod
    def config_options(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "base_url": config.get("base_url"),
            "max_retries": int(config.get("max_retries", 2)),
            "timeout": config.get("timeout"),
        }

    def sdk(self) -> Any:
        try:
            return importlib.import_module(self.package)
        except ImportError:
            raise ModelError.missing_sdk(self.provider, self.id, self.package) from None

    def error(self, cause: str) -> ModelError:
        return ModelError.of(self.provider, self.id, cause)

    @property
    def client(self) -> Any:
        if self._client is None:
            sdk = self.sdk()
            try:
                self._client = self.make_client(sdk)
            except ModelError:
                raise
            except Exception as exc:
                raise self.error(f"{self.client_problem()}: {exc}") from exc
        return self._client

    def make_client(self, sdk: Any) -> Any:
        raise NotImplementedError

    def client_problem(self) -> str:
        """What to say before the SDK's own words when the client cannot be made."""
        return "cannot make a client"

    def send(self, request: Callable[..., T], kwargs: Mapping[str, Any]) -> T:
        """``request(**kwargs)``, its failure a ``ModelError`` (``reason`` says what went wrong)."""
        try:
            return request(**kwargs)
        except Exception as exc:
            raise self.error(self.reason(exc)) from exc

    def reason(self, exc: Exception) -> str:
        return f"{type(exc).__name__}: {exc}"


class HTTPSDKModel(SDKModel):
    """An SDK whose failures are ``APIStatusError`` (an HTTP answer) and ``APIConnectionError`` (no answer),
    as the ``openai`` and ``anthropic`` SDKs raise them."""

    api_name: ClassVar[str]  # where requests go without ``base_url``: "the OpenAI API"

    def __init__(
        self,
        id: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 2,
        timeout: float | None = None,
        client: Any = None,
    ) -> None:
        super().__init__(id, base_url=base_url, max_retries=max_retries, timeout=timeout, client=client)
        self._api_key = api_key

    @classmethod
    def config_options(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return {**super().config_options(config), "api_key": config.get("api_key")}

    def reason(self, exc: Exception) -> str:
        sdk = self.sdk()
        if isinstance(exc, sdk.APIStatusError):
            return f"HTTP {exc.status_code}: {self.status_reason(exc)}"
        if isinstance(exc, sdk.APIConnectionError):
            return f"cannot reach {self.base_url or self.api_name}: {exc}"
        return super().reason(exc)

    def status_reason(self, exc: Any) -> str:
        """The error body's message, else the SDK's."""
        error = error_body(exc)
        if error is not None:
            return str(error["message"])
        return str(getattr(exc, "message", None) or exc)


def error_body(exc: Any) -> Mapping[str, Any] | None:
    """The ``error`` object of an HTTP error's JSON body (or the body itself), when it has a message."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and error.get("message"):
            return error
    return None
