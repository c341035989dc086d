"""The validator the tests hold bodies to: the package's own
(``impactagent.server_rules.validation``), and the derivation of its shipped JSON Schema from
the seed's OpenAPI document.

The schema is amended in exactly one place, as the protocol notes require: ``Bucket.le``
accepts a number or the string ``"+Inf"`` (JSON has no infinity; every real implementation
takes the string there).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict

import yaml

from impactagent.server_rules.validation import check_document, notes

OPENAPI = Path(__file__).parent / "data" / "client-metrics.openapi.yaml"
SHIPPED = (Path(__file__).parents[1] / "impactagent" / "devtools" / "schemas"
           / "client-metrics.schema.json")


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/components/schemas/", "#/$defs/") if k == "$ref" else
                    _rewrite_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def derived_schema() -> Dict[str, Any]:
    """The JSON Schema for ``ClientMetrics``, derived from the vendored OpenAPI document."""
    schemas = copy.deepcopy(yaml.safe_load(OPENAPI.read_text())["components"]["schemas"])
    # The one amendment: le is a number, or the string "+Inf".
    schemas["Bucket"]["properties"]["le"] = {"oneOf": [{"type": "number"}, {"const": "+Inf"}]}
    return {"$ref": "#/$defs/ClientMetrics", "$defs": _rewrite_refs(schemas)}


def validate_client_metrics(document: Dict[str, Any]) -> None:
    """Raise ``AssertionError`` naming every problem a real server would have with it."""
    # Serialise first: what the agent would send, NaN or Infinity included, must be JSON.
    raw = json.dumps(document)
    problems = [str(p) for p in check_document(document)]
    # What the server stores but no body of the agent's should show (a histogram that is not
    # cumulative, a sample without its app, no bucket) counts too.
    problems += notes(document)
    if "NaN" in raw or "Infinity" in raw:
        problems.append("NaN or Infinity in the body")
    if problems:
        raise AssertionError("invalid ClientMetrics:\n  " + "\n  ".join(problems))
