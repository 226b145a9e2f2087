"""Contract tests: every producer's sample events pass its own schema, the envelope, and every consumer's reader."""
from __future__ import annotations

import importlib
import pkgutil

import pytest

import services
from coproduction.events import REGISTRY, make_event, parse_event, dumps
from gateway.projection import read
from gateway.readers import READERS

SAMPLES = {}
for info in pkgutil.iter_modules(services.__path__):
    try:
        module = importlib.import_module(f"services.{info.name}.events")
    except ModuleNotFoundError:
        continue
    for type_, data in getattr(module, "SAMPLES", {}).items():
        SAMPLES[type_] = (info.name, data)


def test_every_registered_type_has_a_sample_and_a_reader():
    assert set(REGISTRY) == set(SAMPLES), "each event type needs a SAMPLE in its service's events.py"
    assert set(REGISTRY) <= set(READERS), "the gateway must read every type the services publish"


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_sample_travels_through_envelope_and_reader(type_):
    service, data = SAMPLES[type_]
    event = make_event(source=service, type=type_, subject="9434765919", aggregate_id="a1",
                       aggregate_version=1, data=data)
    again = parse_event(dumps(event))
    _service, _kind, read_data = read(again)
    assert _service == service
    assert isinstance(read_data["priorities"], list)


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_envelope_is_a_valid_cloudevent(type_):
    from cloudevents.v1.http import from_json
    service, data = SAMPLES[type_]
    event = make_event(source=service, type=type_, subject="9434765919", aggregate_id="a1",
                       aggregate_version=3, data=data, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    parsed = from_json(dumps(event))
    assert parsed["specversion"] == "1.0" and parsed["type"] == type_
    assert parsed["aggregateversion"] == 3 and parsed["traceparent"].startswith("00-")


def test_the_checked_in_asyncapi_document_is_current():
    from pathlib import Path
    from bootstrap.asyncapi import render
    checked_in = (Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml").read_text()
    assert checked_in == render(), "docs/asyncapi.yaml is stale: run `coproduction asyncapi`"


def test_asyncapi_covers_every_event_type_with_its_payload_schema():
    from bootstrap.asyncapi import document
    doc = document()
    assert set(doc["channels"]) == set(REGISTRY)
    for type_ in REGISTRY:
        name = type_.replace(".", "_").replace("-", "_")
        payload = doc["components"]["messages"][name]["payload"]
        assert payload["properties"]["type"]["const"] == type_
        assert "priorities" in payload["properties"]["data"]["properties"], type_
