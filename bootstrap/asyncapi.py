"""The AsyncAPI document of every event type, generated from the producers' own schemas.

``coproduction asyncapi`` writes docs/asyncapi.yaml; a test fails when the checked-in file is stale.
"""
from __future__ import annotations

import importlib

import yaml
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from coproduction.bus import DEAD_EXCHANGE, EVENTS_EXCHANGE
from coproduction.events import CONTENT_TYPE, REGISTRY, EnvelopeSchema, dataschema_for
from coproduction.service import services


def _load_producers() -> None:
    for spec in services():  # each registers its event schemas
        importlib.import_module(f"{spec.package}.events")


def document() -> dict:
    _load_producers()
    spec = APISpec("coproduction events", "1", "3.0.3", plugins=[MarshmallowPlugin()])
    converter = spec.plugins[0].converter

    def schema_of(schema_cls) -> dict:
        return converter.schema2jsonschema(schema_cls())  # nested schemas land in components.schemas

    envelope = schema_of(EnvelopeSchema)
    channels, messages = {}, {}
    for type_ in sorted(REGISTRY):
        schema_cls, version = REGISTRY[type_]
        name = type_.replace(".", "_").replace("-", "_")
        payload = dict(envelope)
        payload["properties"] = dict(envelope["properties"], data=schema_of(schema_cls),
                                     type={"type": "string", "const": type_},
                                     dataschema={"type": "string", "const": dataschema_for(type_, version)})
        messages[name] = {
            "name": type_,
            "title": type_,
            "contentType": CONTENT_TYPE,
            "summary": (schema_cls.__doc__ or "").strip().splitlines()[0] if schema_cls.__doc__ else type_,
            "bindings": {"amqp": {"deliveryMode": 2, "bindingVersion": "0.2.0"}},
            "payload": payload,
        }
        channels[type_] = {
            "description": f"Routing key {type_} on the topic exchange {EVENTS_EXCHANGE}.",
            "bindings": {"amqp": {"is": "routingKey", "bindingVersion": "0.2.0",
                                  "exchange": {"name": EVENTS_EXCHANGE, "type": "topic", "durable": True,
                                               "autoDelete": False, "vhost": "/"}}},
            "subscribe": {"operationId": f"receive_{name}", "message": {"$ref": f"#/components/messages/{name}"}},
        }
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "coproduction events",
            "version": "1",
            "description": (
                "Every service publishes CloudEvents 1.0 (structured JSON) to the durable topic exchange "
                f"`{EVENTS_EXCHANGE}`, routing key = event type, persistent, with publisher confirms and "
                "`mandatory`. Each consumer owns a durable queue `<queue>` with `<queue>.retry` (TTL, "
                f"dead-letters back) and `<queue>.dead` (bound to `{DEAD_EXCHANGE}`). Delivery is at least "
                "once and ordered per aggregate only at the source: consumers must be idempotent (event "
                "`id`) and apply `aggregateversion` monotonically."),
        },
        "servers": {"rabbitmq": {"url": "amqp://rabbitmq:5672", "protocol": "amqp", "protocolVersion": "0.9.1"}},
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "components": {"messages": messages, "schemas": spec.to_dict().get("components", {}).get("schemas", {})},
    }


def render() -> str:
    return yaml.safe_dump(document(), sort_keys=False, width=100, allow_unicode=True)
