"""The test kit: virtual time (:mod:`simulator.testing.virtual_time`), and more to come."""
