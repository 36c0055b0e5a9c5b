"""The adapters' shared piece: SDK on build, client on first call, every failure a located ``ModelError``."""

from __future__ import annotations

import pytest

from corral.harness.models.base import ModelError
from corral.harness.models.sdk import SDKModel, error_body


class _Decoder(SDKModel):
    """A model over the standard library's ``json`` as its "SDK": real imports, no provider needed."""

    provider = "jsonish"
    package = "json"

    def make_client(self, sdk):
        if self.base_url == "broken":
            raise RuntimeError("no route")
        return sdk.JSONDecoder()


def test_the_client_is_made_once_on_first_use():
    model = _Decoder.from_config({"id": "m1", "timeout": 3})
    assert (model.id, model.base_url, model._timeout, model._max_retries) == ("m1", None, 3, 2)
    assert model.client is model.client


def test_a_client_that_cannot_be_made_is_a_model_error_naming_provider_and_model():
    with pytest.raises(ModelError, match=r"^jsonish model 'm1': cannot make a client: no route$"):
        _ = _Decoder("m1", base_url="broken").client


def test_a_failed_request_is_a_model_error_with_its_cause():
    model = _Decoder("m1")
    assert model.send(model.client.decode, {"s": "[1]"}) == [1]
    with pytest.raises(ModelError, match=r"^jsonish model 'm1': JSONDecodeError: Expecting value") as caught:
        model.send(model.client.decode, {"s": "nope"})
    assert (caught.value.provider, caught.value.model) == ("jsonish", "m1")


def test_a_missing_sdk_names_the_extra_at_build_time():
    class Absent(_Decoder):
        provider = "absent"
        package = "corral_no_such_sdk"

    with pytest.raises(ModelError, match=r"the 'corral_no_such_sdk' package is not installed; "
                                         r"install it with: pip install 'corral\[absent\]'"):
        Absent("m1")
    assert Absent("m1", client=object()).id == "m1"  # an injected client needs no SDK


def test_an_error_body_is_read_only_when_it_carries_a_message():
    class HTTPError(Exception):
        def __init__(self, body):
            self.body = body

    assert error_body(HTTPError({"error": {"message": "slow down", "type": "rate"}})) == {
        "message": "slow down", "type": "rate"}
    assert error_body(HTTPError({"message": "flat"})) == {"message": "flat"}
    assert error_body(HTTPError({"error": {"type": "x"}})) is None
    assert error_body(HTTPError("text")) is None
