# Sourced by the relay_*.tcl wrappers (run by Redis's runtest with `--single` when the server
# under test is the relay; test_redis_pubsub_tcl.py passes them).
#
# In external-server mode runtest's run_external_server_test sends FLUSHALL and FUNCTION FLUSH
# before the tests of each start_server block, outside any catch: against the relay, which holds
# no keys and no functions and carries neither command, the "unknown command" reply would abort the
# whole file before its first test. These two calls, and nothing else, are taken out of runtest's
# own procedure (found in its body at run time, so no Redis code is copied here). Any other
# command the tests send reaches the relay.

set body [info body run_external_server_test]
set n [regsub {\n[ \t]*r flushall\n[ \t]*r function flush\n} $body "\n" body]
if {$n != 1} {
    error "relay_external_server.tcl: 'r flushall' / 'r function flush' not found in run_external_server_test (a different runtest?)"
}
proc run_external_server_test {code overrides} $body
