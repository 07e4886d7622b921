from simulator.cli import entry

entry()
