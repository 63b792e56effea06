# Run by Redis's runtest (`--single`) in place of unit/pubsubshard against the reference
# redis-server: the file's `external:skip` tag disregarded (external_pubsubshard.tcl), then
# Redis's unit/pubsubshard.tcl, unchanged.

source [file join [file dirname [info script]] external_pubsubshard.tcl]

set ::curfile tests/unit/pubsubshard.tcl
source tests/unit/pubsubshard.tcl
