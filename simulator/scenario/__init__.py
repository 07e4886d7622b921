"""Reading scenario files: the private modules behind :mod:`simulator.scenario_toml`.

Import :func:`~simulator.scenario_toml.load_scenario` and
:func:`~simulator.scenario_toml.parse_scenario` from there; these modules may change.
A file goes through them in this order, each depending only on the ones above it:

- :mod:`.text`      bytes → text → ``dict`` with tomllib (encoding and syntax errors);
- :mod:`.lines`     the line on which each key path is written;
- :mod:`.messages`  how paths and values are shown in a message;
- :mod:`.reader`    :class:`.reader.Context` collects problems, :class:`.reader.Table`
  checks one key at a time;
- :mod:`.fields`    ``[stream.fields]`` → field specs;
- :mod:`.streams`   ``[[stream]]``, its schedule and its envelope;
- :mod:`.server`    ``[server]`` and ``[protocol]``;
- :mod:`.faults`    ``[[fault]]`` → faults (kinds, targets, schedules);
- :mod:`.document`  the whole file → :class:`~simulator.core.model.Scenario`.
"""
