"""JSON Schemas (events, the gate policy document) and the AsyncAPI 3.0 document of the bus."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts import commands, governance, targets, tasks
from contracts.docs_text import cleaned
from contracts.envelope import CommandEnvelope, EventEnvelope
from contracts.events import EVENT_TYPES
from contracts.policy import PolicyDocument

#: Bus commands: (aggregate, command) → body struct.
BUS_COMMANDS: dict[tuple[str, str], type[commands.Command]] = {
    ("finding", "record"): commands.RecordFinding,
    ("project", "create"): commands.CreateProject,
    ("scan", "submit"): commands.SubmitScan,
    ("scan_target", "register"): targets.RegisterScanTarget,
    ("scan_job", "request"): targets.RequestScanJob,
    ("task", "create"): tasks.CreateTasks,
    ("task", "claim"): tasks.ClaimTask,
    ("task", "heartbeat"): tasks.TaskHeartbeat,
    ("task", "complete"): tasks.CompleteTask,
    ("task", "release"): tasks.ReleaseTask,
    ("version", "register"): governance.RegisterVersion,
    ("tests", "submit"): governance.SubmitTestResults,
    ("promotion", "request"): governance.RequestPromotion,
    ("exception", "request"): governance.RequestException,
    ("exception", "decide"): governance.DecideException,
    ("approval", "decide"): governance.DecideApproval,
    ("approval", "comment"): governance.CommentApproval,
}


def _name(type_: str) -> str:
    return type_.replace(".", "_")


def event_schemas() -> dict[str, Any]:
    """`{"$defs": …, "events": {type: {"$ref": …}}}` for every event payload."""
    types = sorted(EVENT_TYPES)
    schemas, defs = msgspec.json.schema_components(
        [EVENT_TYPES[t] for t in types], ref_template="#/$defs/{name}"
    )
    return cleaned(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "PeaRL event payloads",
            "events": dict(zip(types, schemas, strict=True)),
            "$defs": defs,
        }
    )


def policy_schema() -> dict[str, Any]:
    """The gate policy document (YAML or JSON) that `pearl policy validate` checks."""
    return cleaned(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "PeaRL gate policy",
            **msgspec.json.schema(PolicyDocument),
        }
    )


def asyncapi() -> dict[str, Any]:
    """AsyncAPI 3.0: one channel per event type and bus command, payloads by reference."""
    structs: list[Any] = [
        EventEnvelope,
        CommandEnvelope,
        *BUS_COMMANDS.values(),
        *(EVENT_TYPES[t] for t in sorted(EVENT_TYPES)),
    ]
    _, defs = msgspec.json.schema_components(structs, ref_template="#/components/schemas/{name}")
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    org = {"org": {"description": "the org (tenant) slug"}}
    for type_ in sorted(EVENT_TYPES):
        _, aggregate, event, _version = type_.split(".")
        key = _name(type_)
        messages[key] = {
            "name": type_,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {"type": "string"},
                    "Pearl-Position": {"type": "string"},
                    "traceparent": {"type": "string"},
                },
            },
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/EventEnvelope"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": type_},
                            "data": {"$ref": f"#/components/schemas/{EVENT_TYPES[type_].__name__}"},
                        },
                    },
                ]
            },
        }
        channels[key] = {
            "address": f"pearl.evt.{{org}}.{aggregate}.{event}",
            "parameters": org,
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        operations[f"receive_{key}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{key}"},
        }
    for (aggregate, command), body in sorted(BUS_COMMANDS.items()):
        key = f"cmd_{aggregate}_{command}"
        messages[key] = {
            "name": f"pearl.{aggregate}.{command}",
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "required": ["Authorization"],
                "properties": {
                    "Authorization": {"type": "string", "description": "Bearer <API key or JWT>"}
                },
            },
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CommandEnvelope"},
                    {
                        "type": "object",
                        "properties": {"data": {"$ref": f"#/components/schemas/{body.__name__}"}},
                    },
                ]
            },
        }
        channels[key] = {
            "address": f"pearl.cmd.{{org}}.{aggregate}.{command}",
            "parameters": org,
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        operations[f"send_{key}"] = {"action": "send", "channel": {"$ref": f"#/channels/{key}"}}
    return cleaned(
        {
            "asyncapi": "3.0.0",
            "info": {
                "title": "PeaRL bus",
                "version": "1.0.0",
                "description": "Commands in on pearl.cmd.<org>.…, every stored event out on "
                "pearl.evt.<org>.… (JetStream stream PEARL_EVENTS).",
            },
            "defaultContentType": "application/json",
            "channels": channels,
            "operations": operations,
            "components": {"messages": messages, "schemas": defs},
        }
    )
