"""``luanti-tune schema event|observation|action``: publish the JSON Schemas."""

from __future__ import annotations

import json
from typing import Any

import click
from pydantic import TypeAdapter

from luanti_tune.schemas import EVENT_ADAPTER, Action, EventBatch, Observation


def json_schema(name: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one contract: event, batch, observation or action."""
    if name == "event":
        schema = EVENT_ADAPTER.json_schema(by_alias=True)
    elif name == "batch":
        schema = EventBatch.model_json_schema(by_alias=True)
    elif name == "observation":
        schema = Observation.model_json_schema(by_alias=True)
    elif name == "action":
        schema = TypeAdapter(Action).json_schema(by_alias=True)
    else:
        raise ValueError(f"unknown schema {name!r}")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema.setdefault("title", name)
    return schema


@click.command()
@click.argument("name", type=click.Choice(["event", "batch", "observation", "action"]))
def schema(name: str) -> None:
    """Print the JSON Schema of NAME (event, batch, observation, action)."""
    click.echo(json.dumps(json_schema(name), indent=2, sort_keys=True))
