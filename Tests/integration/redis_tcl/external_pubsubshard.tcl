# Sourced by the pubsubshard wrappers. Redis 7.0.15 tags both start_server blocks of
# tests/unit/pubsubshard.tcl `external:skip` (its second block needs two servers and replication
# between them), so runtest in external-server mode would run none of its tests. For blocks
# tagged `pubsubshard` only, that one tag is disregarded; every other tag check runtest makes
# stays. The two replication tests are then skipped by name (`--skiptest`), with their reason, by
# test_redis_pubsub_tcl.py.

rename tags_acceptable pubsub_relay_runtest_tags_acceptable
proc tags_acceptable {tags err_return} {
    upvar $err_return err
    if {[lsearch -exact $tags pubsubshard] >= 0} {
        set tags [lsearch -all -inline -not -exact $tags external:skip]
    }
    pubsub_relay_runtest_tags_acceptable $tags err
}
