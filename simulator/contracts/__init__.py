"""Contracts the ecosystem speaks: AsyncAPI 3.0 out of a scenario and a scenario out of
AsyncAPI, messages checked against a contract, and the JSON Schema of scenario files.

Import from here; the modules below are private:

- :mod:`.payload_schema`  a stream's messages as a JSON Schema (pure);
- :mod:`.asyncapi`        a scenario as an AsyncAPI 3.0 document (pure);
- :mod:`.spec`            reading an AsyncAPI document (YAML or JSON) and its payloads;
- :mod:`.from_asyncapi`   an AsyncAPI document → a scenario skeleton (TOML text);
- :mod:`.conformance`     N rendered messages per stream checked against a document;
- :mod:`.scenario_schema` the JSON Schema of scenario files, shipped beside this module.
"""

from simulator.contracts.asyncapi import asyncapi_document
from simulator.contracts.conformance import Violation, check_scenario, render_messages
from simulator.contracts.from_asyncapi import skeleton_toml
from simulator.contracts.payload_schema import message_schema
from simulator.contracts.scenario_schema import scenario_schema, scenario_schema_text
from simulator.contracts.spec import Spec, dump_yaml, load_spec, parse_spec

__all__ = [
    "Spec",
    "Violation",
    "asyncapi_document",
    "check_scenario",
    "dump_yaml",
    "load_spec",
    "message_schema",
    "parse_spec",
    "render_messages",
    "scenario_schema",
    "scenario_schema_text",
    "skeleton_toml",
]
