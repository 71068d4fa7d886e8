"""Crash consistency under load (issue #20): 20 SIGKILLs of a server taking mail over
SMTP and submission, serving IMAP reads and expunges, delivering to a real peer and
running admin quarantines and restores; after each restart `lazaret check` is clean
and every acknowledged copy is present exactly once. The long run (200 kills) is
`python3 tests/crash_harness.py --cycles 200`."""

from crash_harness import Harness, setup

CYCLES = 20


def test_sigkill_at_random_moments_under_mixed_load(tmp_path):
    server, peer = setup(tmp_path)
    try:
        result = Harness(server, peer, seed=20).run(CYCLES)
    finally:
        server.stop()
        peer.stop()
    print(result)
    assert result["kills"] == CYCLES and result["checks"] == CYCLES + 1
    assert result["local_copies_acked"] > 200, f"too little load to prove anything: {result}"
    assert result["sent_out_acked"] > 20, result
    assert result["copies_expunged_over_imap"] > 0 and result["restore_actions"] > 0, result
    # At-least-once: a kill may repeat the deliveries in flight (the delivery workers'
    # batches), never more.
    assert result["peer_duplicates"] <= CYCLES * 16, result
