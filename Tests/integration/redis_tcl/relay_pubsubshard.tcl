# Run by Redis's runtest (`--single`) in place of unit/pubsubshard when the server under test is
# the relay: runtest's external-server set-up minus FLUSHALL / FUNCTION FLUSH
# (relay_external_server.tcl), the file's `external:skip` tag disregarded
# (external_pubsubshard.tcl), then Redis's unit/pubsubshard.tcl, unchanged.

source [file join [file dirname [info script]] relay_external_server.tcl]
source [file join [file dirname [info script]] external_pubsubshard.tcl]

set ::curfile tests/unit/pubsubshard.tcl
source tests/unit/pubsubshard.tcl
