# Run by Redis's runtest (`--single`, a path relative to its tests/ directory) in place of
# unit/pubsub when the server under test is the relay; test_redis_pubsub_tcl.py passes it.
# runtest's external-server set-up minus FLUSHALL / FUNCTION FLUSH (relay_external_server.tcl),
# then Redis's unit/pubsub.tcl, unchanged.

source [file join [file dirname [info script]] relay_external_server.tcl]

set ::curfile tests/unit/pubsub.tcl
source tests/unit/pubsub.tcl
